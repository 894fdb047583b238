"""Decoding against a naive reference: no cache, no batching, one image at a time."""
from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from tomcap.generate.decoding import DecodeConfig, banned_next_tokens, beam_decode, decode, greedy_decode
from tomcap.generate.guidance import ADAPTOR_MODEL, BASE_LM_MODEL, COND, LM, UNCOND, Guidance
from tomcap.generate.streams import Stream

VOCAB, WIDTH, EOS, PAD = 40, 32, 0, 1


def _gpt2(cross: bool, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=WIDTH, n_layer=2, n_head=2,
                     add_cross_attention=cross, bos_token_id=EOS, eos_token_id=EOS)
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module")
def models():
    return {ADAPTOR_MODEL: _gpt2(True, 0), BASE_LM_MODEL: _gpt2(False, 1)}


def _streams(n_images: int, seed: int = 0) -> dict[str, list[Stream]]:
    g = torch.Generator().manual_seed(seed)
    cond, uncond, lm = [], [], []
    for i in range(n_images):
        prompt = torch.randint(2, VOCAB, (3 + 2 * i,), generator=g).tolist()  # prompts of different lengths
        enc = torch.randn(1 + (i % 3), WIDTH, generator=g)
        cond.append(Stream(ADAPTOR_MODEL, prompt, enc))
        uncond.append(Stream(ADAPTOR_MODEL, prompt[-2:], torch.zeros(1, WIDTH)))
        lm.append(Stream(BASE_LM_MODEL, prompt[-2:]))
    return {COND: cond, UNCOND: uncond, LM: lm}


@torch.no_grad()
def _reference_greedy(models, streams, i: int, guidance: Guidance, max_new: int, ngram: int) -> list[int]:
    out: list[int] = []
    for _ in range(max_new):
        lp = {}
        for role in guidance.roles:
            s = streams[role][i]
            ids = torch.tensor([s.prompt_ids + out])
            kw = {} if s.encoder_states is None else {"encoder_hidden_states": s.encoder_states[None]}
            lp[role] = torch.log_softmax(models[s.model](input_ids=ids, **kw).logits[0, -1].float(), -1)[None]
        score = guidance.combine(lp)[0]
        for t in banned_next_tokens(out, ngram):
            score[t] = float("-inf")
        tok = int(score.argmax())
        if tok == EOS:
            break
        out.append(tok)
    return out


@pytest.mark.parametrize("gamma,lm_alpha", [(1.0, None), (0.0, None), (2.5, None), (1.0, 0.7)])
def test_batched_cached_greedy_matches_reference(models, gamma, lm_alpha):
    streams = _streams(4)
    cfg = DecodeConfig(strategy="greedy", max_new_tokens=8, guidance_scale=gamma, lm_alpha=lm_alpha,
                       lm_beta=0.3 if lm_alpha else 0.0, no_repeat_ngram_size=2)
    got = greedy_decode(models, streams, cfg, EOS, PAD)
    for i in range(4):
        assert got[i].tokens == _reference_greedy(models, streams, i, cfg.guidance(), 8, 2)


def test_gamma_one_is_conditional_and_zero_is_unconditional(models):
    streams = _streams(3)
    base = DecodeConfig(strategy="greedy", max_new_tokens=8, no_repeat_ngram_size=0)
    cond_only = greedy_decode(models, {COND: streams[COND]}, base, EOS, PAD)
    with_uncond = Guidance(cfg_scale=1.0)
    lp = {COND: torch.randn(2, VOCAB), UNCOND: torch.randn(2, VOCAB)}
    assert torch.allclose(with_uncond.combine(lp), lp[COND])
    assert [h.tokens for h in greedy_decode(models, streams, base.model_copy(update={"guidance_scale": 1.0}), EOS,
                                            PAD)] == \
        [h.tokens for h in cond_only]
    uncond_as_cond = {COND: streams[UNCOND]}
    g0 = greedy_decode(models, streams, base.model_copy(update={"guidance_scale": 0.0}), EOS, PAD)
    assert [h.tokens for h in g0] == [h.tokens for h in greedy_decode(models, uncond_as_cond, base, EOS, PAD)]


def test_batched_cfg_equals_two_pass(models):
    streams = _streams(4, seed=3)
    for strategy in ("greedy", "beam"):
        cfg = DecodeConfig(strategy=strategy, beam_size=3, max_new_tokens=8, guidance_scale=3.0)
        one = decode(models, streams, cfg, EOS, PAD)
        two = decode(models, streams, cfg.model_copy(update={"batched_guidance": False}), EOS, PAD)
        assert [h[0].tokens for h in one] == [h[0].tokens for h in two]
        assert [h[0].score for h in one] == pytest.approx([h[0].score for h in two], abs=1e-4)


def test_beam_one_equals_greedy(models):
    streams = _streams(5, seed=4)
    cfg = DecodeConfig(beam_size=1, max_new_tokens=10, guidance_scale=2.0, no_repeat_ngram_size=3)
    beam = beam_decode(models, streams, cfg, EOS, PAD)
    greedy = greedy_decode(models, streams, cfg.model_copy(update={"strategy": "greedy"}), EOS, PAD)
    assert [h[0].tokens for h in beam] == [h.tokens for h in greedy]


def test_batch_composition_does_not_change_results(models):
    streams = _streams(4, seed=5)
    cfg = DecodeConfig(beam_size=3, max_new_tokens=8, guidance_scale=2.0)
    together = beam_decode(models, streams, cfg, EOS, PAD)
    for i in range(4):
        alone = beam_decode(models, {r: [rows[i]] for r, rows in streams.items()}, cfg, EOS, PAD)
        assert [h.tokens for h in alone[0]] == [h.tokens for h in together[i]]


def test_beam_reorders_keep_each_images_condition_without_copying_it(models, monkeypatch):
    """Beam reorders within images leave the encoder states and cross-attention caches in place: the same
    hypotheses and scores as copying them at every step (images of different condition sizes, CFG rows, and an
    image whose search ends first, after which the batch shrinks and the conditions are copied)."""
    from tomcap.generate import guidance, streams as stream_module

    sizes = []
    reorder_rows = stream_module.StreamBatch.reorder

    def recording(self, index, same_encoder=False):
        sizes.append((same_encoder, self.size, len(index)))
        return reorder_rows(self, index, same_encoder)

    monkeypatch.setattr(stream_module.StreamBatch, "reorder", recording)
    case = _streams(5, seed=9)
    cfg = DecodeConfig(beam_size=2, max_new_tokens=30, guidance_scale=1.5)
    kept = beam_decode(models, case, cfg, EOS, PAD)
    assert any(s and n == m for s, n, m in sizes) and any(s and n > m for s, n, m in sizes)
    reorder = guidance.GuidedScorer.reorder
    monkeypatch.setattr(guidance.GuidedScorer, "reorder", lambda self, index, same_encoder=False: reorder(self, index))
    copied = beam_decode(models, case, cfg, EOS, PAD)
    assert [[(h.tokens, h.score) for h in c] for c in kept] == [[(h.tokens, h.score) for h in c] for c in copied]


def test_beam_finds_at_least_greedy_score(models):
    streams = _streams(4, seed=6)
    cfg = DecodeConfig(beam_size=4, max_new_tokens=6, length_penalty=0.0, no_repeat_ngram_size=0)
    beam = beam_decode(models, streams, cfg, EOS, PAD)
    greedy = greedy_decode(models, streams, cfg, EOS, PAD)
    for b, g in zip(beam, greedy):
        assert b[0].score >= g.score - 1e-5


def test_beam_returns_every_finished_hypothesis_best_first_for_reranking(models):
    streams = _streams(4, seed=6)
    cfg = DecodeConfig(beam_size=4, max_new_tokens=6, length_penalty=1.0)
    beams = beam_decode(models, streams, cfg, EOS, PAD)
    plain = decode(models, streams, cfg, EOS, PAD)
    ranked = decode(models, streams, cfg.model_copy(update={"clip_rerank": True}), EOS, PAD)
    assert [len(c) for c in plain] == [1, 1, 1, 1]
    assert all(len(c) > 1 for c in ranked), "reranking needs the other finished beams as candidates"
    for p, r in zip(plain, ranked):
        assert p[0].tokens == r[0].tokens  # the best normalised score is still first
        norm = [h.score / (len(h.tokens) + 1) for h in r]
        assert norm == sorted(norm, reverse=True)
    assert [[h.tokens for h in c] for c in beams] == [[h.tokens for h in c] for c in ranked]


def test_diverse_beam_groups_without_penalty_are_plain_beams_of_their_width(models):
    streams = _streams(4, seed=7)
    plain = beam_decode(models, streams, DecodeConfig(beam_size=3, max_new_tokens=8), EOS, PAD)
    grouped = beam_decode(models, streams, DecodeConfig(beam_size=6, beam_groups=2, max_new_tokens=8), EOS, PAD)
    for p, g in zip(plain, grouped):
        assert sorted(h.tokens for h in g) == sorted(h.tokens for h in p for _ in range(2))


@torch.no_grad()
def _reference_score(models, streams, i: int, guidance: Guidance, tokens: list[int], ended: bool) -> float:
    """Sum of guided log-scores of ``tokens`` (+ EOS when ``ended``), no cache, no batching."""
    total, seq = 0.0, tokens + [EOS] if ended else tokens
    for j, tok in enumerate(seq):
        lp = {}
        for role in guidance.roles:
            st = streams[role][i]
            kw = {} if st.encoder_states is None else {"encoder_hidden_states": st.encoder_states[None]}
            logits = models[st.model](input_ids=torch.tensor([st.prompt_ids + seq[:j]]), **kw).logits[0, -1]
            lp[role] = torch.log_softmax(logits.float(), -1)[None]
        total += float(guidance.combine(lp)[0, tok])
    return total


def test_diversity_penalty_gives_each_group_its_own_first_token(models):
    streams = _streams(4, seed=8)
    cfg = DecodeConfig(beam_size=4, beam_groups=4, diversity_penalty=1e4, max_new_tokens=8, no_repeat_ngram_size=0,
                       guidance_scale=1.5)
    diverse = beam_decode(models, streams, cfg, EOS, PAD)
    for i, hyps in enumerate(diverse):
        firsts = [h.tokens[0] for h in hyps if h.tokens]
        assert len(firsts) == len(set(firsts)) >= 3
        for h in hyps:  # the penalty steers the search only: scores stay the guided log-scores
            ended = len(h.tokens) < cfg.max_new_tokens
            assert h.score == pytest.approx(_reference_score(models, streams, i, cfg.guidance(), h.tokens, ended),
                                            abs=1e-4)


def test_plain_beam_keys_and_group_sizes():
    plain = DecodeConfig(beam_size=4)
    assert "beam_groups" not in plain.key_dict() and "diversity_penalty" not in plain.key_dict()
    assert "beam_groups" in DecodeConfig(beam_size=4, beam_groups=2, diversity_penalty=0.5).key_dict()
    with pytest.raises(ValueError, match="beam_groups"):
        DecodeConfig(beam_size=6, beam_groups=4)


def test_clip_rerank_with_greedy_is_a_config_error():
    with pytest.raises(ValueError, match="clip_rerank needs several candidates"):
        DecodeConfig(strategy="greedy", clip_rerank=True)


def test_sampling_is_seeded(models):
    streams = _streams(2, seed=7)
    cfg = DecodeConfig(strategy="sample", num_samples=4, max_new_tokens=6, seed=11)
    a = decode(models, streams, cfg, EOS, PAD)
    b = decode(models, streams, cfg, EOS, PAD)
    assert [[h.tokens for h in c] for c in a] == [[h.tokens for h in c] for c in b]
    assert len(a) == 2 and all(len(c) == 4 for c in a)


def test_no_repeat_ngram_and_negative_gamma():
    assert sorted(banned_next_tokens([5, 6, 7, 5, 6], 3)) == [7]
    assert banned_next_tokens([5, 6], 3) == []
    assert sorted(banned_next_tokens([4, 4, 9], 1)) == [4, 4, 9]
    with pytest.raises(ValueError, match=">= 0"):
        Guidance(cfg_scale=-0.5)
    with pytest.raises(Exception, match="guidance_scale"):
        DecodeConfig(guidance_scale=-1)
