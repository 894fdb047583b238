"""Text embedding streams into memory-mapped shards: the same files as writing one in-RAM matrix."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from tomcap.corpus import CorpusConfig, SourceConfig, run_corpus
from tomcap.embed import EmbedConfig, EmbeddingSet, run_embed
from tomcap.embed.store import ShardSink, write_shards

SLICE = Path(__file__).parent / "fixtures" / "embed" / "karpathy_slice.json"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shard_sink_writes_the_bytes_of_write_shards(tmp_path):
    emb = np.random.default_rng(0).normal(size=(23, 8)).astype(np.float32)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    names = write_shards(emb, tmp_path / "a", "float16", 10)
    sink = ShardSink(tmp_path / "b", 23, 8, "float16", 10)
    order = np.random.default_rng(1).permutation(23)
    for part in np.array_split(order, 4):  # rows arrive in any order, across shard boundaries
        sink[part] = emb[part]
    assert sink.close() == names == ["emb-00000.npy", "emb-00001.npy", "emb-00002.npy"]
    assert [_sha(tmp_path / "a" / n) for n in names] == [_sha(tmp_path / "b" / n) for n in names]
    (tmp_path / "c").mkdir()
    empty = ShardSink(tmp_path / "c", 0, 8, "float32", 10).close()
    assert np.load(tmp_path / "c" / empty[0]).shape == (0, 8)


def test_chunked_encoding_equals_one_call(tmp_path, monkeypatch):
    import tomcap.embed.stage as stage

    src = tmp_path / "caps.json"
    src.write_text(SLICE.read_text())
    corpus = run_corpus(CorpusConfig(sources=[SourceConfig(path=src, name="k")]), tmp_path / "data")
    cfg = EmbedConfig(model="tomcap-test-tiny", device="cpu", batch_size=16, dtype="float32", shard_rows=50)
    whole = EmbeddingSet.open(run_embed(cfg, tmp_path / "one", corpus=corpus))
    monkeypatch.setattr(stage, "ENCODE_CHUNK_ROWS", 13)
    chunked = EmbeddingSet.open(run_embed(cfg, tmp_path / "chunks", corpus=corpus))
    assert len(chunked.shards) == len(whole.shards) > 1
    assert chunked.ids["caption_id"].to_list() == whole.ids["caption_id"].to_list()
    np.testing.assert_allclose(chunked.array(), whole.array(), rtol=0, atol=1e-5)
    assert json.loads((chunked.ref.dir / "manifest.json").read_text())["rows"]["encoded"] == len(whole.ids)
