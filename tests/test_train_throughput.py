"""The fast training path computes what the plain one does: cached token ids equal the tokenizer's,
length-sorted sub-batches give the whole batch's loss and gradient, the fused GELU equals gelu_new."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tomcap.model import AdaptorConfig, build_adaptor
from tomcap.model.tiny import make_random_gpt2
from tomcap.train.config import TrainConfig
from tomcap.train.data import ArrayRetrieval, BatchBuilder, PromptTokens, TrainData, exclusion_rows, group_codes
from tomcap.train.loop import backward_in_chunks, batch_loss, fuse_activations
from tomcap.world import WorldConfig
from tomcap.world.captions import scene_captions
from tomcap.world.splits import train_scenes

DIM = 16


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    world = WorldConfig(n_train_scenes=60, n_test_images=2, n_val_images=2)
    texts, owners = [], []
    for s in train_scenes(world):
        for c in scene_captions(s, 3, world.seed, world.relation_share):
            texts.append(c)
            owners.append(s.scene_id)
    gpt2 = make_random_gpt2(tmp_path_factory.mktemp("gpt2"), texts)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((len(texts), DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    g = group_codes(owners)
    data = TrainData(texts, emb, exclusion_rows(g, g, np.arange(len(texts))))
    cfg = TrainConfig(model=AdaptorConfig(gpt2_dir=gpt2, clip_dim=DIM, k=2, lora_rank=4), steps=5, batch_size=16,
                      warmup_steps=1, gap_correction=False, cond_dropout=0.3)
    return build_adaptor(cfg.model, seed=0), cfg, data, ArrayRetrieval(emb, texts)


def test_cached_tokens_equal_the_tokenizer_path(setup):
    model, cfg, data, retrieval = setup
    fast = BatchBuilder(model, cfg, data, retrieval)
    assert fast.tokens is not None
    slow = BatchBuilder(model, cfg, data, retrieval)
    slow.tokens = None
    for micro in range(6):
        a, b = fast.micro_batch(micro), slow.micro_batch(micro)
        for x, y in zip((a.input_ids, a.attention_mask, a.labels), (b.input_ids, b.attention_mask, b.labels)):
            assert torch.equal(x, y)
    # a prompt over the length budget drops retrieved captions exactly as example_ids does
    tok = PromptTokens(model, data.texts)
    long = [data.texts[1] * 6, data.texts[2]]
    assert tok.example(0, long) == model.example_ids(long, data.texts[0])


def test_length_chunks_give_the_whole_batch_loss_and_gradient(setup):
    model, cfg, data, retrieval = setup
    batch = BatchBuilder(model, cfg, data, retrieval).micro_batch(3)
    parts = batch.length_chunks(4)
    assert len(parts) == 4 and sum(len(p.keep) for p in parts) == len(batch.keep)
    assert max(p.input_ids.shape[1] for p in parts) == batch.input_ids.shape[1]
    assert min(p.input_ids.shape[1] for p in parts) < batch.input_ids.shape[1]
    whole, chunked = copy.deepcopy(model).eval(), copy.deepcopy(model).eval()  # no dropout draws to differ
    loss = batch_loss(whole, batch)
    loss.backward()
    value = backward_in_chunks(chunked, batch, cfg, torch.device("cpu"))
    assert value == pytest.approx(float(loss), rel=1e-5)
    for (n, p), q in zip(whole.trainable_named_parameters().items(), chunked.trainable_named_parameters().values()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-4), n


def test_fused_gelu_equals_gelu_new(setup):
    model, cfg, data, retrieval = setup
    batch = BatchBuilder(model, cfg, data, retrieval).micro_batch(0)
    plain, fused = copy.deepcopy(model).eval(), copy.deepcopy(model).eval()
    assert fuse_activations(fused) == model.decoder.config.n_layer
    with torch.no_grad():
        assert float(batch_loss(fused, batch)) == pytest.approx(float(batch_loss(plain, batch)), rel=1e-6)
