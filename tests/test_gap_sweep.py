"""The gap sweep's weight surgery (benchmarks/gap_sweep.py): an exact image-embedding shift, bisection, fp16 save."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tomcap.clip import load_clip

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gap_sweep.py"
_spec = importlib.util.spec_from_file_location("gap_sweep", _PATH)
gs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gs)


@pytest.fixture(scope="module")
def world_clip():
    torch.manual_seed(0)
    return load_clip("tomcap-world-clip", None, device="cpu")


def test_bias_shift_translates_image_embeddings_exactly(world_clip):
    model = world_clip.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    c = np.random.default_rng(0).normal(size=world_clip.embed_dim) * 3.0
    moved = copy.deepcopy(model)
    moved.load_state_dict(gs.shifted_state(state, c))
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        diff = (moved.encode_image(images) - model.encode_image(images)).double().numpy()
        text = world_clip.tokenizer(["a red square"])
        same_text = torch.equal(moved.encode_text(text), model.encode_text(text))
    assert np.abs(diff - c[None]).max() < 1e-4
    assert np.allclose(gs.realised_shift(state, gs.shifted_state(state, c)), c, atol=1e-5)
    assert same_text  # the text tower is untouched


def test_other_architectures_are_refused():
    with pytest.raises(NotImplementedError, match="pinv"):
        gs.shift_key({gs.VIT_SHIFT_KEY: torch.zeros(4)})
    with pytest.raises(KeyError):
        gs.shift_key({"visual.fc.bias": torch.zeros(4)})
    with pytest.raises(ValueError, match="shape"):
        gs.shifted_state({gs.SHIFT_KEY: torch.zeros(4)}, np.zeros(3))


def test_bisection_hits_each_target():
    rng = np.random.default_rng(1)
    dim = 16
    offset = np.zeros(dim)
    offset[0] = 1.0
    text = gs.l2n(rng.normal(size=(400, dim)) + 2.0 * offset)
    feats = 30.0 * gs.l2n(rng.normal(size=(200, dim)) - 2.0 * offset)  # unnormalised, far from the text
    base = gs.gap_with_shift(feats, text, np.zeros(dim))
    for target in (0.2, 0.5, base + 0.05):
        s, c, g = gs.bisect_shift(feats, text, target)
        assert abs(g - target) <= gs.BISECT_TOL
        assert g == pytest.approx(gs.gap_with_shift(feats, text, c))
        assert (s < 0) == (target > base)


def test_saved_file_is_fp16_with_one_metadata_key(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    state = {gs.SHIFT_KEY: torch.zeros(3), "w": torch.ones(2, 2)}
    path = gs.save_clip(gs.shifted_state(state, np.array([0.5, -1.0, 2.0])), tmp_path / "c.safetensors",
                        {"model_name": "tomcap-world-clip", "seed": 0})
    loaded = load_file(str(path))
    assert all(v.dtype == torch.float16 for v in loaded.values())
    assert loaded[gs.SHIFT_KEY].tolist() == [0.5, -1.0, 2.0]
    with safe_open(str(path), "pt") as f:
        assert list(f.metadata()) == ["tomcap"]
        assert json.loads(f.metadata()["tomcap"])["model_name"] == "tomcap-world-clip"
