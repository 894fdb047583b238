"""CLIP-based evaluation metrics with the tiny random-init CLIP (real model, real image files)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tomcap.cli.main import main
from tomcap.clip import load_clip
from tomcap.errors import InputDataError
from tomcap.evaluate.clip_metrics import clip_scores, embed_images, embed_texts, find_images, recall_at_k

TINY = "tomcap-test-tiny"
SLICE = Path(__file__).parent / "fixtures" / "eval" / "magic_slice.json"
N_IMAGES = 8


@pytest.fixture(scope="module")
def clip():
    return load_clip(TINY, None, device="cpu")


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """Eight distinct random images named like the slice's records (COCO file names)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for r in json.loads(SLICE.read_text())[:N_IMAGES]:
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / r["image_name"])
    return folder


def test_own_image_scores_higher_and_recall_is_perfect(clip, image_dir):
    paths = sorted(image_dir.iterdir())
    img = embed_images(clip, paths, batch_size=3)
    assert img.shape == (N_IMAGES, clip.embed_dim) and np.isfinite(img).all()
    rng = np.random.default_rng(1)
    # captions whose embeddings are their own image's plus a little noise
    cap = img + 0.05 * np.linalg.norm(img, axis=1,
                                      keepdims=True) * rng.standard_normal(img.shape) / math.sqrt(img.shape[1])
    own = clip_scores(img, cap)["CLIPScore"]
    other = clip_scores(np.roll(img, 1, axis=0), cap)["CLIPScore"]
    assert (own > other).all() and (own <= 2.5).all() and (own >= 0).all()
    assert recall_at_k(cap, img) == {"recall@1": 1.0, "recall@5": 1.0}
    assert recall_at_k(np.roll(cap, 1, axis=0), img)["recall@1"] == 0.0


def test_refclipscore_is_harmonic_mean(clip):
    texts = ["a dog on grass", "a red car", "two cats", "a plane in the sky"]
    emb = embed_texts(clip, texts, batch_size=2)
    img = emb[::-1].copy()
    refs = np.concatenate([emb, emb[:1]])
    owner = np.array([0, 1, 2, 3, 0])
    out = clip_scores(img, emb, refs, owner)
    # each caption is among its own references: ref part = 1, so RefCLIP-S = 2c/(c+1)
    c = out["CLIPScore"]
    assert np.allclose(out["RefCLIPScore"], np.where(c > 0, 2 * c / (c + 1), 0.0))


def test_find_images_by_name_or_number(image_dir, tmp_path):
    name = sorted(p.name for p in image_dir.iterdir())[0]
    number = str(int(name.rsplit("_", 1)[1].split(".")[0]))
    assert find_images(image_dir, [name, number]) == [image_dir / name, image_dir / name]
    with pytest.raises(InputDataError, match="no image file for 1 of 1 image ids: 12345"):
        find_images(image_dir, ["12345"])


@pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")
def test_cli_with_clip_metrics(image_dir, tmp_path):
    res = tmp_path / "paired.json"
    res.write_text(json.dumps(json.loads(SLICE.read_text())[:N_IMAGES]))
    out = tmp_path / "out"
    assert main(["evaluate", "--results", str(res), "--out", str(out), "--no-meteor",
                 "--clip-model", TINY, "--images", str(image_dir)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("CLIPScore", "RefCLIPScore", "recall@1", "recall@5", "gap_centroid_distance",
                "gap_mean_paired_cosine", "gap_frechet_centered"):
        assert math.isfinite(m[key]), key
    assert 0 <= m["recall@1"] <= m["recall@5"] <= 1


def test_clip_model_without_images_is_a_config_error(tmp_path, capsys):
    assert main(["evaluate", "--results", str(SLICE), "--out", str(tmp_path / "o"), "--clip-model", TINY]) == 2
    assert "clip_model and images go together" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_gap_metrics_use_normalised_embeddings():
    import numpy as np

    from tomcap.evaluate.clip_metrics import gap_metrics

    rng = np.random.default_rng(0)
    img, cap = rng.normal(size=(50, 8)) + 2.0, rng.normal(size=(50, 8)) - 1.0
    raw = gap_metrics(img * 10.0, cap * 3.0)
    unit = gap_metrics(img / np.linalg.norm(img, axis=1, keepdims=True), cap / np.linalg.norm(cap, axis=1,
                                                                                              keepdims=True))
    assert raw == pytest.approx(unit) and 0.0 < raw["gap_centroid_distance"] <= 2.0
