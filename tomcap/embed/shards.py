"""Scale-out of the text embedding: the corpus in row ranges, each embedded by its own task.

Each range becomes a small ``embed_shard`` artifact (cached, atomic: a killed worker loses only its
range). The final ``embed`` artifact is then built by :func:`tomcap.embed.stage.run_embed` as
always; its incremental reuse finds every caption in the shard artifacts, so it encodes nothing. It
has the single-task run's key; its values equal that run's up to float rounding (each task batches
its own rows by length, and BLAS results depend on the batch shape).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec
from ..corpus.stage import read_corpus
from ..errors import InputDataError
from .config import EmbedConfig
from .stage import SHARD_STAGE, clip_for, model_fingerprint, reuse_signature
from .store import IDS_FILE, write_shards
from .text import TextEncodeStats, encode_texts

SPEC = StageSpec(name=SHARD_STAGE, version="1", modules=("tomcap.embed",))
KEY_ARGS = ("start", "stop")
"""Plain arguments of :func:`run_embed_shard` that enter its cache key (see ``tasks/cache.py``)."""


def upstream_fingerprints(config: EmbedConfig, corpus: ArtifactRef, start: int, stop: int) -> dict[str, str]:
    return {"corpus": corpus.fingerprint, "clip": model_fingerprint(config), "rows": f"{start}:{stop}"}


def plan_row_ranges(n_rows: int, map_rows: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most ``map_rows`` rows covering ``n_rows``; an empty corpus is an error."""
    if n_rows <= 0:
        raise InputDataError("the corpus has no captions to embed", fix="check the corpus sources and filters")
    return [(a, min(a + map_rows, n_rows)) for a in range(0, n_rows, map_rows)]


def corpus_row_ranges(config: EmbedConfig, corpus: ArtifactRef) -> list[tuple[int, int]]:
    """The row ranges of ``corpus`` for ``config.map_rows`` (one range when it is null)."""
    n = read_corpus(corpus).height
    return plan_row_ranges(n, config.map_rows or max(n, 1))


def run_embed_shard(config: EmbedConfig, data_dir: Path | str, *, corpus: ArtifactRef, start: int, stop: int,
                    force: bool = False) -> ArtifactRef:
    """Embed corpus rows [start, stop) into an ``embed_shard`` artifact (same layout as 'embed')."""
    upstream = upstream_fingerprints(config, corpus, start, stop)
    fp = upstream["clip"]

    def build(tmp: Path) -> BuildOutput:
        df = read_corpus(corpus).select("caption_id", "text", "image_id")
        if not 0 <= start < stop <= df.height:
            raise InputDataError(f"row range {start}:{stop} is outside the corpus ({df.height} rows)", path=corpus.dir,
                                 fix="plan the ranges with corpus_row_ranges on this corpus")
        part = df.slice(start, stop - start)
        clip = clip_for(config)
        stats = TextEncodeStats()
        t0 = time.perf_counter()
        emb = encode_texts(clip, part["text"].to_list(), batch_size=config.batch_size, precision=config.precision,
                           truncate=config.truncate, progress=config.progress, stats=stats)
        shards = write_shards(np.asarray(emb, np.float32), tmp, config.dtype, config.shard_rows)
        part.select("caption_id", "image_id").write_parquet(tmp / IDS_FILE[SHARD_STAGE])
        return BuildOutput(rows={"rows": part.height, "start": start, "stop": stop},
                           info={"model": config.model, "model_fingerprint": fp, "dim": clip.embed_dim,
                                 "dtype": config.dtype, "precision": config.precision, "shards": shards,
                                 "encode_s": round(time.perf_counter() - t0, 3),
                                 "reuse_signature": reuse_signature(config, fp)})

    return ArtifactStore(data_dir).build(SPEC, config, upstream, build, force=force)
