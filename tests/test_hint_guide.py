"""Hint-guided decoding (generate.decode.hint_bonus): which tokens get the bonus, and that it steers real
searches (greedy, beam with images leaving the batch, sampling) on tiny random decoders toward each image's
own hinted phrase, and leaves them alone at 0."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_decoding import EOS, PAD, VOCAB, _streams, models  # noqa: F401 (the fixture)

from tomcap.errors import ConfigError
from tomcap.generate.decoding import DecodeConfig, decode
from tomcap.generate.hint_guide import add_hint_bonus, next_hint_tokens, says


def test_next_tokens_start_or_continue_what_is_not_yet_said():
    phrases = [[5, 6], [7]]
    assert next_hint_tokens([], phrases) == [5, 7]
    assert next_hint_tokens([3, 5], phrases) == [6, 7]  # "yellow" was said: "diamond" binds to it
    assert next_hint_tokens([5, 6, 2], phrases) == [7]
    assert next_hint_tokens([7, 5, 6], phrases) == []
    assert next_hint_tokens([5, 9], [[5, 6, 8]]) == [5]  # a broken beginning starts over
    assert next_hint_tokens([5, 6], [[5, 6, 8]]) == [8]
    assert says([1, 5, 6], [5, 6]) and not says([5, 1, 6], [5, 6])


def test_says_is_contiguous_occurrence_anywhere():
    rng = np.random.default_rng(0)
    for _ in range(2000):  # small alphabet: repeated first tokens, partial matches, matches at either end
        seq = rng.integers(4, size=rng.integers(0, 12)).tolist()
        phrase = rng.integers(4, size=rng.integers(1, 4)).tolist()
        want = any(seq[i:i + len(phrase)] == phrase for i in range(len(seq) - len(phrase) + 1))
        assert says(seq, phrase) == want and says(tuple(seq), tuple(phrase)) == want, (seq, phrase)


def test_bonus_is_added_to_the_next_tokens_only():
    scores = torch.zeros(2, 10)
    scores[1, 7] = float("-inf")  # a blocked token stays blocked
    out = add_hint_bonus(scores.clone(), [[], [5]], [[[5, 6], [7]], [[5, 6], [7]]], 2.0)
    assert out[0].nonzero().ravel().tolist() == [5, 7] and out[0, 5] == 2.0
    assert out[1, 6] == 2.0 and out[1, 7] == float("-inf") and out[1, 5] == 0.0
    assert torch.equal(add_hint_bonus(scores.clone(), [[], []], [[[5]], [[5]]], 0.0), scores)


def _phrases(n_images: int) -> list[list[list[int]]]:
    return [[[2 + 3 * i, 3 + 3 * i]] for i in range(n_images)]  # a different two-token phrase per image


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_a_large_bonus_makes_every_image_say_its_own_phrase(models, strategy):  # noqa: F811
    streams = {"cond": _streams(5)["cond"]}
    phrases = _phrases(5)
    cfg = DecodeConfig(strategy=strategy, beam_size=3, num_samples=2, max_new_tokens=10, no_repeat_ngram_size=0)
    plain = decode(models, streams, cfg, EOS, PAD)
    assert sum(says(c[0].tokens, p[0]) for c, p in zip(plain, phrases)) <= 1  # random decoders rarely do
    guided = decode(models, streams, cfg.model_copy(update={"hint_bonus": 30.0}), EOS, PAD, phrases)
    for cands, p in zip(guided, phrases):
        assert says(cands[0].tokens, p[0]), (cands[0].tokens, p)
    off = decode(models, streams, cfg, EOS, PAD, phrases)  # hints given, bonus 0: the plain search
    assert [[h.tokens for h in c] for c in off] == [[h.tokens for h in c] for c in plain]


def test_beam_rows_follow_images_that_leave_the_search(models):  # noqa: F811
    # image 0 ends at once (EOS is forced), so the rows of the others shift: each must keep its own phrase
    streams = {"cond": _streams(4)["cond"]}
    phrases = _phrases(4)
    phrases[0] = [[EOS]]
    cfg = DecodeConfig(strategy="beam", beam_size=2, max_new_tokens=8, no_repeat_ngram_size=0, hint_bonus=30.0)
    got = decode(models, streams, cfg, EOS, PAD, phrases)
    assert got[0][0].tokens == []
    for cands, p in zip(got[1:], phrases[1:]):
        assert says(cands[0].tokens, p[0])


def test_hint_bonus_without_an_entity_head_is_refused(tmp_path):
    from test_captioner import CLIP_DIM, K, TEXTS

    from tomcap.generate.captioner import caption_batch
    from tomcap.model import AdaptorConfig, build_adaptor
    from tomcap.model.tiny import make_random_gpt2

    model = build_adaptor(AdaptorConfig(gpt2_dir=make_random_gpt2(tmp_path, TEXTS), clip_dim=CLIP_DIM, k=K,
                                        lora_rank=2)).eval()
    img = np.ones((1, CLIP_DIM), np.float32) / np.sqrt(CLIP_DIM)
    with pytest.raises(ConfigError, match="hint_bonus"):
        caption_batch(model, img, [[]], None, DecodeConfig(hint_bonus=1.0, max_new_tokens=4))


def test_captions_of_an_entity_model_say_their_own_hints(tmp_path):
    # the glue: each image's predicted entity names -> token ids as a caption says them -> that image's search
    from test_captioner import CLIP_DIM, K, TEXTS

    from tomcap.generate.captioner import caption_batch
    from tomcap.model import AdaptorConfig, build_adaptor
    from tomcap.model.tiny import make_random_gpt2

    names = ("blue ball", "green cube", "red cube")
    torch.manual_seed(0)
    model = build_adaptor(AdaptorConfig(gpt2_dir=make_random_gpt2(tmp_path, TEXTS), clip_dim=CLIP_DIM, k=K,
                                        lora_rank=2, entities={"names": names, "hidden": 8,
                                                               "max_entities": 1})).eval()
    rng = np.random.default_rng(0)
    img = rng.normal(size=(6, CLIP_DIM)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    cfg = DecodeConfig(strategy="beam", beam_size=2, max_new_tokens=8, no_repeat_ngram_size=0)
    guided = caption_batch(model, img, [[] for _ in img], None, cfg.model_copy(update={"hint_bonus": 30.0}))
    assert len({c.entities for c in guided}) > 1  # the images are hinted different entities
    for c in guided:
        assert c.entities in names and c.entities in c.text, (c.entities, c.text)
