"""Captioner glue on a tiny random adaptor: streams per role, guidance paths, rerank of samples."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tomcap.generate.captioner import build_streams, caption_batch
from tomcap.generate.decoding import DecodeConfig
from tomcap.generate.guidance import COND, LM, UNCOND, Guidance
from tomcap.model import AdaptorConfig, build_adaptor
from tomcap.model.adaptor import load_decoder
from tomcap.model.tiny import make_random_gpt2

TEXTS = [f"a {c} {s} in the {p}" for c in ("red", "blue", "green") for s in ("cube", "ball") for p in ("left",
                                                                                                       "right")] * 4
CLIP_DIM, K = 16, 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = make_random_gpt2(tmp_path_factory.mktemp("gpt2"), TEXTS)
    model = build_adaptor(AdaptorConfig(gpt2_dir=folder, clip_dim=CLIP_DIM, k=K, lora_rank=4)).eval()
    rng = np.random.default_rng(0)
    img = rng.normal(size=(3, CLIP_DIM)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    ret = rng.normal(size=(3, K, CLIP_DIM)).astype(np.float32)
    texts = [[TEXTS[i], TEXTS[i + 1]] for i in range(3)]
    return model, load_decoder(str(folder)), img, ret, texts


def test_streams_have_the_right_prompts_and_states(setup):
    model, _, img, ret, texts = setup
    s = build_streams(model, torch.tensor(img), texts, torch.tensor(ret), Guidance(cfg_scale=2.0, lm_alpha=1.0,
                                                                                   lm_beta=0.5), 60)
    assert set(s) == {COND, UNCOND, LM}
    assert s[COND][0].prompt_ids == model.prompt_ids(texts[0], budget=60)
    assert s[COND][0].encoder_states.shape == (1 + K, model.d_model)
    assert s[UNCOND][0].prompt_ids == model.prompt_ids(None) and s[UNCOND][0].encoder_states.shape == (1, model.d_model)
    assert s[LM][0].encoder_states is None


def test_guided_and_two_pass_captions_agree(setup):
    model, _, img, ret, texts = setup
    cfg = DecodeConfig(strategy="beam", beam_size=2, max_new_tokens=6, guidance_scale=2.0)
    one = caption_batch(model, img, texts, ret, cfg)
    two = caption_batch(model, img, texts, ret, cfg.model_copy(update={"batched_guidance": False}))
    assert [c.text for c in one] == [c.text for c in two] and len(one) == 3


def test_lm_guidance_needs_and_uses_the_base_lm(setup):
    model, base, img, ret, texts = setup
    cfg = DecodeConfig(strategy="greedy", max_new_tokens=6, lm_alpha=1.0, lm_beta=0.5)
    with pytest.raises(ValueError, match="base language model"):
        caption_batch(model, img, texts, ret, cfg)
    assert len(caption_batch(model, img, texts, ret, cfg, base_lm=base)) == 3


def _random_text_encoder():
    rng = np.random.default_rng(1)
    table: dict[str, np.ndarray] = {}

    def encode(captions):
        for c in captions:
            table.setdefault(c, rng.normal(size=CLIP_DIM).astype(np.float32))
        out = np.stack([table[c] for c in captions])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return encode


def test_sampling_reranks_with_clip(setup):
    model, _, img, ret, texts = setup
    cfg = DecodeConfig(strategy="sample", num_samples=4, max_new_tokens=6, seed=3)
    encode = _random_text_encoder()
    caps = caption_batch(model, img, texts, ret, cfg, text_encoder=encode, likelihood_weight=0.0)
    for b, cap in enumerate(caps):
        sims = [float(encode([c])[0] @ img[b]) for c in cap.candidates]
        assert len(cap.candidates) == 4 and cap.text == cap.candidates[int(np.argmax(sims))]


def test_beam_search_reranks_its_finished_beams_with_clip(setup):
    model, _, img, ret, texts = setup
    cfg = DecodeConfig(strategy="beam", beam_size=4, max_new_tokens=6, no_repeat_ngram_size=0)
    plain = caption_batch(model, img, texts, ret, cfg)
    ranked_cfg = cfg.model_copy(update={"clip_rerank": True})
    with pytest.raises(ValueError, match="CLIP text encoder"):
        caption_batch(model, img, texts, ret, ranked_cfg)
    encode = _random_text_encoder()
    caps = caption_batch(model, img, texts, ret, ranked_cfg, text_encoder=encode, likelihood_weight=0.0)
    for b, (cap, p) in enumerate(zip(caps, plain)):
        assert len(cap.candidates) > 1 and cap.candidates[0] == p.text
        sims = [float(encode([c])[0] @ img[b]) for c in cap.candidates]
        assert cap.text == cap.candidates[int(np.argmax(sims))]
    # a huge likelihood weight gives back beam search's own choice
    same = caption_batch(model, img, texts, ret, ranked_cfg, text_encoder=encode, likelihood_weight=1e6)
    assert [c.text for c in same] == [c.text for c in plain]


def test_consensus_rerank_follows_the_neighbours(setup, monkeypatch):
    model, _, img, ret, texts = setup
    # the random decoder's byte tokens spell no words: one word per token id, so n-grams are the token n-grams
    monkeypatch.setattr(model, "decode", lambda tokens: " ".join(f"w{t}" for t in tokens))
    cfg = DecodeConfig(strategy="beam", beam_size=4, max_new_tokens=6, no_repeat_ngram_size=0, clip_rerank=True)
    encode = _random_text_encoder()
    clip_only = caption_batch(model, img, texts, ret, cfg, text_encoder=encode, likelihood_weight=0.0)
    # each image's neighbours repeat one of its candidates that CLIP did not choose: a heavy weight picks it
    wanted = [next(c for c in cap.candidates if c != cap.text) for cap in clip_only]
    caps = caption_batch(model, img, texts, ret, cfg, text_encoder=encode, likelihood_weight=0.0,
                         neighbours=[[w, w] for w in wanted], consensus_weight=1e3)
    assert [c.text for c in caps] == wanted
    assert [c.candidates for c in caps] == [c.candidates for c in clip_only]
    with pytest.raises(ValueError, match="nearest captions"):
        caption_batch(model, img, texts, ret, cfg, text_encoder=encode, consensus_weight=1.0)
