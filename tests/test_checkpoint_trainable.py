"""Trainable-only checkpoints: the frozen GPT-2 is referenced (name/folder + content fingerprint), never copied."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tomcap.errors import ConfigError
from tomcap.generate.captioner import caption_batch
from tomcap.generate.decoding import DecodeConfig
from tomcap.model import AdaptorConfig, build_adaptor, load_adaptor, save_checkpoint
from tomcap.model.checkpoint import WEIGHTS_FILE, decoder_fingerprint
from tomcap.model.tiny import make_random_gpt2

TEXTS = [f"a {c} {s} left of a {c2} {s2}" for c in ("red", "blue", "green") for s in ("cube", "ball", "cone")
         for c2 in ("small", "big") for s2 in ("tree", "house")] * 4
CLIP_DIM = 16
SHAPE = {"n_embd": 64, "n_layer": 4, "n_head": 4, "n_positions": 96, "initializer_range": 0.3}
SAFETENSORS_HEADER_SLACK = 64 * 1024
"""Bytes allowed on top of 4 x trainable parameters (the JSON header naming each tensor)."""


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return make_random_gpt2(tmp_path_factory.mktemp("gpt2") / "base", TEXTS, **SHAPE)


def _captions(model, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(2, CLIP_DIM)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    ret = rng.normal(size=(2, 2, CLIP_DIM)).astype(np.float32)
    texts = [["a red cube left of a big tree", "a red ball"], ["a blue cone", "a green cube left of a small house"]]
    cfg = DecodeConfig(strategy="beam", beam_size=2, max_new_tokens=6, guidance_scale=1.5)
    return [c.text for c in caption_batch(model, img, texts, ret, cfg)]


def test_checkpoint_holds_only_trainable_weights_and_names_the_decoder(gpt2_dir, tmp_path):
    cfg = AdaptorConfig(gpt2_dir=gpt2_dir, clip_dim=CLIP_DIM, k=2)  # the user defaults: reduce 4, rsLoRA r=8
    model = build_adaptor(cfg, seed=3)
    with torch.no_grad():  # trained-looking weights, so equal captions mean the weights were restored
        for p in model.trainable_named_parameters().values():
            p.add_(torch.randn_like(p) * 0.05)
    save_checkpoint(tmp_path / "ck", model, step=5)

    counts = model.param_counts()
    size = (tmp_path / "ck" / WEIGHTS_FILE).stat().st_size
    assert 4 * counts.trainable <= size <= 4 * counts.trainable + SAFETENSORS_HEADER_SLACK
    assert size < 4 * (counts.total - counts.trainable) / 2  # the frozen decoder is not in it
    assert sorted(f.name for f in (tmp_path / "ck").iterdir()) == ["adaptor.safetensors", "checkpoint.json"]
    dec = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())["decoder"]
    assert dec["gpt2_dir"] == str(gpt2_dir) and dec["fingerprint"] == decoder_fingerprint(cfg)
    assert dec["n_embd"] == 64 and dec["n_layer"] == 4

    loaded = load_adaptor(tmp_path / "ck")
    for n, p in model.state_dict().items():  # frozen weights rebuilt from the folder, trained ones from the file
        assert torch.equal(p, loaded.state_dict()[n]), n
    assert _captions(loaded) == _captions(model.eval())


def test_moved_or_replaced_base_decoder(gpt2_dir, tmp_path):
    model = build_adaptor(AdaptorConfig(gpt2_dir=gpt2_dir, clip_dim=CLIP_DIM, k=2), seed=1)
    save_checkpoint(tmp_path / "ck", model, step=0)
    moved = tmp_path / "moved"
    shutil.copytree(gpt2_dir, moved)
    meta_path = tmp_path / "ck" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta["adaptor"]["gpt2_dir"] = meta["decoder"]["gpt2_dir"] = str(tmp_path / "gone")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="missing") as err:
        load_adaptor(tmp_path / "ck")
    assert "gpt2_dir=" in str(err.value) and "checkpoint.json" in str(err.value)
    assert _captions(load_adaptor(tmp_path / "ck", gpt2_dir=moved)) == _captions(model.eval())

    other = make_random_gpt2(tmp_path / "other", TEXTS, seed=7, **SHAPE)  # same shape, other weights
    with pytest.raises(ConfigError, match="another decoder"):
        load_adaptor(tmp_path / "ck", gpt2_dir=other)
