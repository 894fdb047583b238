"""Text embedding stage ('embed'): corpus artifact -> L2-normalised CLIP text embeddings.

Text embedding is incremental: inside the build, caption ids already embedded by an earlier 'embed'
artifact with the same model, weights, dtype and precision are copied from it and only new captions
are encoded. The cache key stays (config + corpus fingerprint): reuse never changes what is stored.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import polars as pl

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec
from ..clip import LoadedClip, load_seeded_clip, register_model_configs, seeded_fingerprint
from ..config import canonical_json, hash_text
from ..corpus.stage import read_corpus
from ..errors import ArtifactError, ConfigError
from .config import EmbedConfig, ImageEmbedConfig
from .store import IDS_FILE, EmbeddingSet, ShardSink
from .text import TextEncodeStats, encode_texts

log = logging.getLogger(__name__)

SPEC = StageSpec(name="embed", version="1", modules=("tomcap.embed",))
SHARD_STAGE = "embed_shard"
ENCODE_CHUNK_ROWS = 131_072
"""Captions tokenised and encoded per call (length-sorted within it): bounds the token tensor and the
float32 outputs held at once (~0.3 GB at dim 512) whatever the corpus size."""
"""Stage name of the partial artifacts that scale-out tasks write (``tomcap.embed.shards``)."""


def model_fingerprint(config: EmbedConfig | ImageEmbedConfig) -> str:
    """``name@weights`` identity (weights by file hash or tag), checked early: unknown names/paths raise."""
    import open_clip

    register_model_configs()
    if config.model not in open_clip.list_models():
        raise ConfigError(f"open_clip does not know the model '{config.model}'",
                          fix="use one of the names printed by `tomcap models` (open_clip.list_models())")
    return seeded_fingerprint(config.model, config.pretrained, config.init_seed)


def clip_for(config: EmbedConfig | ImageEmbedConfig) -> LoadedClip:
    """Load the configured CLIP; random init is seeded (``init_seed``) so that 'random-init' names one model."""
    return load_seeded_clip(config.model, config.pretrained, config.device, config.init_seed)


def validate(config: EmbedConfig) -> None:
    """Refuse an unknown model or missing weights before any stage of a run starts."""
    model_fingerprint(config)


def upstream_fingerprints(config: EmbedConfig, corpus: ArtifactRef) -> dict[str, str]:
    return {"corpus": corpus.fingerprint, "clip": model_fingerprint(config)}


def reuse_signature(config: EmbedConfig, fingerprint: str) -> str:
    """Embeddings are interchangeable between artifacts with equal signatures."""
    return hash_text(canonical_json([fingerprint, config.dtype, config.precision, SPEC.version]))


def _reuse(store: ArtifactStore, signature: str, ids: pl.Series, emb: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Fill emb rows whose caption id an earlier compatible artifact holds; returns the filled mask and sources."""
    filled = np.zeros(len(ids), bool)
    sources = []
    want = pl.DataFrame({"caption_id": ids, "_row": np.arange(len(ids))})
    for m in [*store.list(SHARD_STAGE), *store.list(SPEC.name)]:
        if m.info.get("reuse_signature") != signature or filled.all():
            continue
        try:
            old = EmbeddingSet.open(ArtifactRef(stage=m.stage, key=m.key, path=str(store.path_for(m.stage, m.key)),
                                                fingerprint=m.fingerprint, cached=True))
        except ArtifactError as err:  # a damaged earlier artifact is not reused (its rows are encoded again)
            log.warning("not reusing embeddings of %s: %s", m.key, err)
            continue
        hit = (want.filter(~pl.Series(filled)).join(old.ids.select("caption_id").with_row_index("_old"),
                                                    on="caption_id"))
        if hit.height == 0:
            continue
        rows, old_rows = hit["_row"].to_numpy(), hit["_old"].to_numpy().astype(np.int64)
        emb[rows] = old.rows(old_rows)
        filled[rows] = True
        sources.append(m.key)
        log.info("reused %d embeddings from %s", hit.height, m.key)
    return filled, sources


def run_embed(config: EmbedConfig, data_dir: Path | str, corpus: ArtifactRef, *, force: bool = False) -> ArtifactRef:
    """Text embeddings (sharded .npy, L2-normalised) + caption_ids.parquet of a corpus artifact."""
    store = ArtifactStore(data_dir)
    upstream = upstream_fingerprints(config, corpus)

    def build(tmp: Path) -> BuildOutput:
        df = read_corpus(corpus).select("caption_id", "text", "image_id")
        clip = clip_for(config)
        fp = model_fingerprint(config)
        sig = reuse_signature(config, fp)
        emb = ShardSink(tmp, df.height, clip.embed_dim, config.dtype, config.shard_rows)
        filled, sources = _reuse(store, sig, df["caption_id"], emb) if config.reuse else (np.zeros(df.height, bool), [])
        todo = np.flatnonzero(~filled)
        stats = TextEncodeStats()
        t0 = time.perf_counter()
        for a in range(0, todo.size, ENCODE_CHUNK_ROWS):  # tokens and float32 outputs of one chunk at a time
            part = todo[a:a + ENCODE_CHUNK_ROWS]
            emb[part] = encode_texts(clip, df["text"].gather(part).to_list(), batch_size=config.batch_size,
                                     precision=config.precision, truncate=config.truncate, progress=config.progress,
                                     stats=stats)
        encode_s = time.perf_counter() - t0
        shards = emb.close()
        df.select("caption_id", "image_id").write_parquet(tmp / IDS_FILE[SPEC.name])
        return BuildOutput(
            rows={"rows": df.height, "encoded": int(todo.size), "reused": int(filled.sum())},
            info={"model": config.model, "pretrained": clip.pretrained, "model_fingerprint": fp, "dim": clip.embed_dim,
                  "dtype": config.dtype, "precision": config.precision, "shards": shards, "truncated": stats.truncated,
                  "token_positions": stats.positions, "encode_s": round(encode_s, 3),
                  "texts_per_s": round(todo.size / encode_s, 1) if encode_s > 0 and todo.size else None,
                  "reuse_signature": sig, "reused_from": sources})

    return store.build(SPEC, config, upstream, build, force=force)
