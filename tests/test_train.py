"""Text-only training on a tiny random-init GPT-2: recipe maths, self-exclusion, loop behaviour, resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tomcap.errors import ConfigError, InputDataError
from tomcap.model import AdaptorConfig, build_adaptor
from tomcap.model.tiny import make_random_gpt2
from tomcap.train.config import TrainConfig
from tomcap.train.data import (NO_GROUP, ArrayRetrieval, BatchBuilder, TrainData, add_noise, exclusion_rows,
                               group_codes)
from tomcap.train.loop import batch_loss, get_lr, train

COLORS, SHAPES = ("red", "blue", "green"), ("cube", "ball", "cone", "ring")
TEXTS = [f"a {c} {s} on the {g}" for c in COLORS for s in SHAPES for g in ("grass", "sand")]
DIM = 16


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return make_random_gpt2(tmp_path_factory.mktemp("gpt2"), TEXTS * 5)


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def world():
    """Captions in pairs per image; embeddings random but fixed."""
    rng = np.random.default_rng(0)
    emb = _unit(rng.standard_normal((len(TEXTS), DIM)))
    image_ids = [f"img{i // 2}" for i in range(len(TEXTS))]
    groups = group_codes(image_ids)
    excl = exclusion_rows(groups, groups, np.arange(len(TEXTS)))
    return TrainData(list(TEXTS), emb, excl), ArrayRetrieval(emb, TEXTS)


def _cfg(gpt2_dir, **kw):
    model = AdaptorConfig(gpt2_dir=gpt2_dir, clip_dim=DIM, k=2, lora_rank=4)
    base = dict(model=model, steps=6, batch_size=4, warmup_steps=2, lr=5e-3, min_lr=5e-4, eval_every=3,
                checkpoint_every=2, gap_correction=False, noise_std=0.05)
    return TrainConfig(**(base | kw))


def test_get_lr_warmup_and_cosine():
    cfg = TrainConfig(steps=110, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    assert get_lr(0, cfg) == pytest.approx(1e-4)
    assert get_lr(9, cfg) == pytest.approx(1e-3)
    assert get_lr(10, cfg) == pytest.approx(1e-3)
    assert get_lr(60, cfg) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert get_lr(110, cfg) == pytest.approx(1e-4)


def test_exclusion_rows_hand_checked():
    groups = np.array([0, 0, 1, NO_GROUP, 1, 2])
    ex = exclusion_rows(groups, groups[[0, 3, 4]], np.array([0, 3, -1]))
    assert [e.tolist() for e in ex] == [[0, 1], [3], [2, 4]]


def test_noise_matches_hand_computation():
    x = _unit(np.array([[1.0, 0.0, 0.0], [0.0, 3.0, 4.0]]))
    std = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    z = np.random.default_rng(7).standard_normal(x.shape, dtype=np.float32)
    expect = x + 0.5 * std * z
    got = add_noise(x, std, 0.5, np.random.default_rng(7), renormalize=False)
    np.testing.assert_allclose(got, expect, rtol=1e-6)
    got_n = add_noise(x, std, 0.5, np.random.default_rng(7), renormalize=True)
    np.testing.assert_allclose(got_n, expect / np.linalg.norm(expect, axis=1, keepdims=True), rtol=1e-6)


def test_gap_correction_in_batches_matches_hand_computation(gpt2_dir, world):
    data, store = world
    model = build_adaptor(_cfg(gpt2_dir).model)
    mu_t, sd_t = np.full(DIM, 0.1, np.float32), np.full(DIM, 0.5, np.float32)
    mu_i, sd_i = np.full(DIM, -0.2, np.float32), np.full(DIM, 0.25, np.float32)
    correct = lambda e: _unit((e - mu_t) * sd_i / sd_t + mu_i)  # noqa: E731
    cfg = _cfg(gpt2_dir, gap_correction=True, noise=False, cond_dropout=0.0)
    b = BatchBuilder(model, cfg, data, store, correct=correct).build(np.array([3, 5]), np.random.default_rng(0))
    e = data.embeddings[[3, 5]]
    hand = (e - 0.1) * 0.5 + (-0.2)
    np.testing.assert_allclose(b.condition[:, 0].numpy(), hand / np.linalg.norm(hand, axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(b.condition[:, 1:].numpy(), store.matrix[store.search(b.condition[:, 0].numpy(), 2,
                               [data.exclude[3], data.exclude[5]])], rtol=1e-6)


def test_real_gapmath_correction_if_present():
    gapmath = pytest.importorskip("tomcap.gapmath")
    e = _unit(np.random.default_rng(1).standard_normal((4, DIM)))
    mu_t, sd_t = np.full(DIM, 0.1, np.float32), np.full(DIM, 0.5, np.float32)
    mu_i, sd_i = np.full(DIM, -0.2, np.float32), np.full(DIM, 0.25, np.float32)
    stats = gapmath.GaussianStats(mu_t=mu_t, sigma_t=sd_t, mu_i=mu_i, sigma_i=sd_i, noise_std=sd_i)
    got = np.asarray(gapmath.correct_text(e, stats, renormalize=False))
    np.testing.assert_allclose(got, (e - 0.1) * 0.5 - 0.2, rtol=1e-5)


def test_retrieval_never_returns_self_or_same_image(gpt2_dir, world):
    data, store = world
    model = build_adaptor(_cfg(gpt2_dir).model)
    cfg = _cfg(gpt2_dir, noise=False, cond_dropout=0.0, batch_size=len(TEXTS))
    builder = BatchBuilder(model, cfg, data, store)
    idx = np.arange(len(TEXTS))
    rows = store.search(data.embeddings, 2, data.exclude)
    for i in idx:
        assert i not in rows[i] and (i ^ 1) not in rows[i]  # captions 2j and 2j+1 share an image
    # Without exclusion, each caption's nearest neighbour is itself.
    assert (store.search(data.embeddings, 1, [np.empty(0, np.int64)] * len(idx))[:, 0] == idx).all()
    batch = builder.build(idx, np.random.default_rng(0))
    for i in idx:
        prompt = model.decode(batch.input_ids[i][batch.labels[i] == -100].tolist()[1:])
        assert TEXTS[i] not in prompt and TEXTS[i ^ 1] not in prompt


def test_cond_dropout_drops_prompt_and_condition(gpt2_dir, world):
    data, store = world
    model = build_adaptor(_cfg(gpt2_dir).model)
    b = BatchBuilder(model, _cfg(gpt2_dir, cond_dropout=0.999), data, store).build(np.arange(4),
                                                                                  np.random.default_rng(0))
    assert not b.keep.any()
    uncond = model.prompt_ids(None)
    assert b.input_ids[0, : len(uncond)].tolist() == uncond


def test_bad_inputs(gpt2_dir, world):
    data, store = world
    model = build_adaptor(_cfg(gpt2_dir).model)
    other = ArrayRetrieval(_unit(np.random.default_rng(0).standard_normal((5, DIM + 8))), TEXTS[:5])
    with pytest.raises(InputDataError, match="datastore has dim"):
        BatchBuilder(model, _cfg(gpt2_dir), data, other)
    with pytest.raises(InputDataError, match="noise std"):
        BatchBuilder(model, _cfg(gpt2_dir), data, store, noise_std=np.ones(DIM + 1))
    with pytest.raises(ConfigError, match="gap"):
        BatchBuilder(model, _cfg(gpt2_dir, gap_correction=True), data, store)
    with pytest.raises(ConfigError, match="image embeddings"):
        BatchBuilder(model, _cfg(gpt2_dir, query="image"), data, store)


def _run(gpt2_dir, world, tmp, cfg, stop_after=None):
    data, store = world
    model = build_adaptor(cfg.model, seed=cfg.seed)
    builder = BatchBuilder(model, cfg, data, store)
    val = builder.fixed_batches(seed_tag=2)[:1]
    return model, train(model, cfg, builder.micro_batch, val, tmp, stop_after=stop_after)


def test_frozen_unchanged_trainable_changed(gpt2_dir, world, tmp_path):
    cfg = _cfg(gpt2_dir, steps=3, grad_accum=2)
    ref = build_adaptor(cfg.model, seed=cfg.seed)
    before = {n: p.detach().clone() for n, p in ref.named_parameters()}
    model, res = _run(gpt2_dir, world, tmp_path, cfg)
    after = dict(model.named_parameters())
    for n, p in after.items():
        if p.requires_grad:
            assert not torch.equal(before[n], p), f"trainable {n} did not change"
        else:
            assert torch.equal(before[n], p), f"frozen {n} changed"
    assert res.steps == 3 and (tmp_path / "last" / "adaptor.safetensors").is_file()


def test_loss_decreases_on_repeated_batch(gpt2_dir, world):
    data, store = world
    cfg = _cfg(gpt2_dir, lr=1e-2, cond_dropout=0.0, noise=False)
    model = build_adaptor(cfg.model)
    model.eval()  # no dropout: a clean overfitting signal
    batch = BatchBuilder(model, cfg, data, store).build(np.arange(4), np.random.default_rng(0))
    opt = torch.optim.AdamW(model.trainable_named_parameters().values(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = batch_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_resume_gives_same_weights(gpt2_dir, world, tmp_path):
    cfg = _cfg(gpt2_dir, steps=5, grad_accum=2)
    full, _ = _run(gpt2_dir, world, tmp_path / "a", cfg)
    _run(gpt2_dir, world, tmp_path / "b", cfg, stop_after=3)  # "interrupted" after step 3
    resumed, res = _run(gpt2_dir, world, tmp_path / "b", cfg)
    assert res.resumed_from == 3 and res.steps == 5
    for n, p in full.trainable_named_parameters().items():
        assert torch.equal(p, resumed.trainable_named_parameters()[n]), n


def test_paired_oracle_uses_image_embeddings(gpt2_dir, world):
    data, store = world
    img = _unit(np.random.default_rng(3).standard_normal(data.embeddings.shape))
    paired = TrainData(data.texts, data.embeddings, data.exclude, img)
    model = build_adaptor(_cfg(gpt2_dir).model)
    cfg = _cfg(gpt2_dir, query="image", gap_correction=True, noise=False, cond_dropout=0.0)
    b = BatchBuilder(model, cfg, paired, store).build(np.array([0, 7]), np.random.default_rng(0))
    np.testing.assert_allclose(b.condition[:, 0].numpy(), img[[0, 7]], rtol=1e-6)


def test_bf16_autocast_step(gpt2_dir, world, tmp_path):
    model, res = _run(gpt2_dir, world, tmp_path, _cfg(gpt2_dir, steps=1, warmup_steps=0, precision="bf16"))
    assert res.steps == 1 and np.isfinite(res.train_losses[0])
    assert all(p.dtype == torch.float32 for p in model.parameters())
