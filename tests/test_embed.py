"""Text/image embedding: exact per-batch truncation, stage artifacts, incremental reuse, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tomcap.clip import load_clip
from tomcap.cli.main import main
from tomcap.corpus import CorpusConfig, SourceConfig, read_corpus, run_corpus
from tomcap.embed import (EmbedConfig, EmbeddingSet, ImageEmbedConfig, encode_images, encode_texts, run_embed,
                          run_embed_images)
from tomcap.embed.text import TextEncodeStats, truncation_supported
from tomcap.errors import ConfigError, InputDataError

from pathlib import Path

TINY = "tomcap-test-tiny"
SLICE = Path(__file__).parent / "fixtures" / "embed" / "karpathy_slice.json"


def _captions(n: int | None = None) -> list[str]:
    caps = [c for r in json.loads(SLICE.read_text()) for c in r["captions"]]
    return caps[:n] if n else caps


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_clip(TINY, device="cpu")


def test_truncation_is_exact_tiny(tiny):
    caps = _captions()
    fast, full = TextEncodeStats(), TextEncodeStats()
    a = encode_texts(tiny, caps, batch_size=16, truncate=True, stats=fast)
    b = encode_texts(tiny, caps, batch_size=16, truncate=False, stats=full)
    assert fast.truncated and not full.truncated
    assert np.abs(a - b).max() <= 1e-5
    assert fast.positions < full.positions / 1.5  # the padding really is skipped
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_truncation_is_exact_vit_b32():
    torch.manual_seed(0)
    clip = load_clip("ViT-B-32", device="cpu")
    caps = _captions(24)
    a = encode_texts(clip, caps, batch_size=8, truncate=True)
    b = clip.model.encode_text(clip.tokenizer(caps)).detach()
    b = torch.nn.functional.normalize(b, dim=-1).numpy()
    assert np.abs(a - b).max() <= 1e-5


def test_non_causal_tower_falls_back(tiny):
    caps = _captions(20)
    ref = encode_texts(tiny, caps, truncate=False)
    mask = tiny.model.attn_mask
    tiny.model.attn_mask = None  # bidirectional tower: cutting padding would change outputs
    try:
        assert not truncation_supported(tiny)
        stats = TextEncodeStats()
        out = encode_texts(tiny, caps, truncate=True, stats=stats)
        assert not stats.truncated and out.shape == ref.shape
    finally:
        tiny.model.attn_mask = mask


def _corpus(tmp_path, records):
    src = tmp_path / "caps.json"
    src.write_text(json.dumps(records))
    return run_corpus(CorpusConfig(sources=[SourceConfig(path=src)]), tmp_path / "data")


def test_stage_artifact_and_incremental_reuse(tmp_path):
    recs = json.loads(SLICE.read_text())
    cfg = EmbedConfig(model=TINY, device="cpu", batch_size=32)
    corpus = _corpus(tmp_path, recs[:-2])
    ref = run_embed(cfg, tmp_path / "data", corpus=corpus)
    m = ref.manifest()
    n = m.rows["rows"]
    assert m.rows["encoded"] == n and m.rows["reused"] == 0
    assert m.info["dim"] == 32 and m.info["dtype"] == "float16" and m.info["truncated"]
    es = EmbeddingSet.open(ref.dir)
    assert es.shards[0].dtype == np.float16 and isinstance(es.shards[0], np.memmap)
    assert es.ids["caption_id"].to_list() == read_corpus(corpus)["caption_id"].to_list()
    np.testing.assert_allclose(np.linalg.norm(es.array(), axis=1), 1.0, atol=2e-3)
    assert run_embed(cfg, tmp_path / "data", corpus=corpus).cached

    # Grow the corpus by ~1%: only the new captions are encoded, old ones are copied bit for bit.
    grown = _corpus(tmp_path, recs[:-2] + [{"image_name": "new.jpg",
                                           "captions": ["a brand new caption about a red kite"]},
                                          {"image_name": "new2.jpg", "captions": ["another new caption of two dogs"]}])
    ref2 = run_embed(cfg, tmp_path / "data", corpus=grown)
    m2 = ref2.manifest()
    assert ref2.key != ref.key
    assert m2.rows == {"rows": n + 2, "encoded": 2, "reused": n}
    es2 = EmbeddingSet.open(ref2)
    np.testing.assert_array_equal(es2.array()[:n], es.array())
    fresh = run_embed(cfg.model_copy(update={"reuse": False}), tmp_path / "other", corpus=grown)
    # Same model (seeded init): a fresh full encode agrees up to float16 rounding of batch-order noise.
    np.testing.assert_allclose(EmbeddingSet.open(fresh).array(), es2.array(), atol=1e-3)


def _png(path, color):
    from PIL import Image

    Image.new("RGB", (40, 30), color).save(path)


def test_image_stage_and_bad_images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, c in enumerate(["red", "green", "blue"]):
        _png(folder / f"COCO_val2014_{i:012d}.png", c)
    cfg = ImageEmbedConfig(model=TINY, device="cpu", images=folder, image_id_regex=r"(\d+)$")
    ref = run_embed_images(cfg, tmp_path / "data")
    es = EmbeddingSet.open(ref)
    assert es.id_list().tolist() == ["0", "1", "2"] and es.array().shape == (3, 32)
    (folder / "broken.png").write_bytes(b"not an image")
    with pytest.raises(InputDataError, match="broken.png.*skip_bad_images"):
        run_embed_images(cfg.model_copy(update={"image_id_regex": None}), tmp_path / "data")
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "data" / "artifacts" / "embed_images").iterdir())
    ok = run_embed_images(cfg.model_copy(update={"image_id_regex": None, "skip_bad_images": True}), tmp_path / "data")
    assert ok.manifest().rows["skipped"] == 1 and "broken.png" in ok.manifest().info["skipped_files"][0]["file"]


def test_in_memory_images(tiny):
    arr = np.zeros((20, 20, 3), np.uint8)
    res = encode_images(tiny, [arr, arr + 200], batch_size=1)
    assert res.embeddings.shape == (2, 32) and res.kept == [0, 1]


def test_unknown_model_and_missing_pretrained(tmp_path, capsys):
    corpus = _corpus(tmp_path, json.loads(SLICE.read_text())[:2])
    with pytest.raises(ConfigError, match="tomcap models"):
        run_embed(EmbedConfig(model="no-such-clip"), tmp_path / "data", corpus=corpus)
    with pytest.raises(ConfigError, match="neither a known tag nor an existing file"):
        run_embed(EmbedConfig(model=TINY, pretrained=str(tmp_path / "missing.safetensors")), tmp_path / "data",
                  corpus=corpus)
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"clip:\n  model: no-such-clip\ncorpus:\n  sources: [{{path: {tmp_path / 'caps.json'}}}]\n")
    assert main(["embed", "--config", str(cfg), "--data-dir", str(tmp_path / "data")]) == 2
    assert "tomcap models" in capsys.readouterr().err
    assert main(["models", "clip"]) == 0
    assert TINY in capsys.readouterr().out
    assert not (tmp_path / "data" / "artifacts" / "embed").exists()


def test_length_batches_never_mix_lengths():
    from tomcap.embed.text import length_batches

    lengths = np.array([3, 3, 3, 4, 4, 7, 7, 7, 7, 7])
    assert length_batches(lengths, 3) == [(0, 3), (3, 5), (5, 8), (8, 10)]
    assert length_batches(np.array([], np.int64), 4) == []
