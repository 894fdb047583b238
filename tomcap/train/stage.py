"""Train stage: corpus + text embeddings (+ gap stats, datastore, paired image embeddings) -> adaptor.

The artifact holds the final checkpoint (``adaptor.safetensors`` + ``checkpoint.json``, loadable
with :func:`tomcap.model.load_adaptor`) and ``train_log.json`` (loss curves). While training, the
resumable checkpoint lives in ``<data_dir>/work/train/<key>/``: a killed run started again with
the same inputs continues from it and ends with the same weights.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec, stage_key
from ..errors import InputDataError
from ..model.adaptor import build_adaptor
from ..model.checkpoint import CHECKPOINT_JSON, WEIGHTS_FILE, decoder_shape
from ..model.checkpoint import decoder_fingerprint as checkpoint_decoder_fingerprint
from .config import TrainConfig
from .entity_cache import HeadCache
from .entity_glue import fit_entities, resolve_entities, vocabulary_fingerprint
from .data import ArrayRetrieval, BatchBuilder, Exclusions, ShardRows, TrainData, describe, group_codes
from .loop import LAST, ProgressFn, torch_threads, train

log = logging.getLogger(__name__)

SPEC = StageSpec(name="train", version="1", modules=("tomcap.train", "tomcap.model"))
WORK_SUBDIR = Path("work") / "train"
ENTITY_HEADS_SUBDIR = Path("work") / "entity_heads"
"""Fitted entity heads by the content of their inputs (:mod:`.entity_cache`), shared by runs that fit the same one."""
LOG_FILE = "train_log.json"
RUN_FIELDS = frozenset({"seconds", "resumed_from"})
"""Training summary fields that describe the run, not the result (manifest info only)."""
VAL_SEED_TAG = 2
"""Tag of the validation batches' noise generator (training micro-batches use tag 1)."""


def decoder_fingerprint(config: TrainConfig) -> str:
    """Content hash of a local GPT-2 folder, or the hub name (the one the checkpoint records)."""
    return checkpoint_decoder_fingerprint(config.model)


def upstream_fingerprints(config: TrainConfig, corpus: ArtifactRef, embed: ArtifactRef, gap: ArtifactRef | None = None,
                          index: ArtifactRef | None = None, image_embed: ArtifactRef | None = None) -> dict[str, str]:
    out = {"corpus": corpus.fingerprint, "embed": embed.fingerprint, "gpt2": decoder_fingerprint(config)}
    vocabulary = vocabulary_fingerprint(config.model)
    if vocabulary is not None:
        out["entities"] = vocabulary
    for name, ref in (("gap", gap), ("index", index), ("image_embed", image_embed)):
        if ref is not None:
            out[name] = ref.fingerprint
    return out


# -- inputs -------------------------------------------------------------------------------------------
def _corpus_and_embeddings(corpus: ArtifactRef, embed: ArtifactRef) -> tuple[Any, ShardRows, Any]:
    """(corpus frame, text embeddings in corpus order as a view over the memory-mapped shards, EmbeddingSet)."""
    import polars as pl

    from ..corpus.stage import read_corpus
    from ..embed.store import EmbeddingSet

    df = read_corpus(corpus)
    emb = EmbeddingSet.open(embed)
    ids = emb.ids[emb.id_column]
    if ids.len() == df.height and ids.equals(df["caption_id"]):
        return df, ShardRows(emb, np.arange(df.height)), emb
    rows = (df.select("caption_id").with_row_index("_q")
            .join(emb.ids.with_row_index("_row").unique(emb.id_column, keep="last"), left_on="caption_id",
                  right_on=emb.id_column, how="left").sort("_q")["_row"])
    if rows.null_count():
        missing = df["caption_id"].filter(rows.is_null())
        raise InputDataError(f"{len(missing)} corpus captions have no embedding (e.g. {missing[0]})", path=embed.dir,
                             fix="rerun 'tomcap embed' on this corpus")
    return df, ShardRows(emb, rows.cast(pl.Int64).to_numpy()), emb


def _gap_stats(gap: ArtifactRef | None, emb: Any, config: TrainConfig):
    if gap is None:
        return None
    from ..gapmath import load_stats

    stats = load_stats(gap.dir)
    fp = stats.model_fingerprint
    if stats.dim != emb.dim or (fp is not None and fp != emb.model_fingerprint):
        raise InputDataError(f"gap stats come from another CLIP model (dim {stats.dim}, model {fp}) than the "
                             f"embeddings (dim {emb.dim}, model {emb.model_fingerprint})", path=gap.dir,
                             fix="rerun 'tomcap gap' with the CLIP model of the text embeddings")
    return stats


def _retrieval(index: ArtifactRef | None, df: Any, embeddings: ShardRows, emb: Any) -> tuple[Any, Exclusions]:
    """(retrieval source, datastore rows each corpus caption must not retrieve: itself + its image's captions)."""
    if index is None:
        # Exact search over the training corpus itself (small corpora, library callers): datastore row i is
        # corpus row i, and only this path holds the embeddings as one float32 matrix.
        groups = group_codes(df["image_id"].to_list())
        return (ArrayRetrieval(embeddings[np.arange(len(embeddings))], df["text"].to_list()),
                Exclusions(groups, groups, np.arange(df.height)))
    from .index_glue import datastore_retrieval

    return datastore_retrieval(index, emb, df)


def _paired_images(image_embed: ArtifactRef | None, df: Any, config: TrainConfig, dim: int) -> np.ndarray | None:
    """Image embedding per caption (by image id) for the paired oracle; None in text-only runs."""
    if config.query != "image":
        return None
    if image_embed is None:
        raise InputDataError("train.query is 'image' (paired oracle) but no image embeddings were given",
                             fix="pass an 'embed_images' artifact of the corpus's images, or set train.query: text")
    from ..embed.store import EmbeddingSet

    img = EmbeddingSet.open(image_embed)
    if img.dim != dim:
        raise InputDataError(f"image embeddings have dim {img.dim}, text embeddings {dim}", path=image_embed.dir,
                             fix="embed images with the CLIP model of the text embeddings")
    pos = {str(i): r for r, i in enumerate(img.id_list().tolist())}
    ids = df["image_id"].to_list()
    missing = sorted({i for i in ids if i is None or str(i) not in pos}, key=str)
    if missing:
        raise InputDataError(f"{len(missing)} corpus image ids have no image embedding (e.g. {missing[0]})",
                             path=image_embed.dir,
                             fix="embed the images of every corpus caption (file names = image ids)")
    return ShardRows(img, np.array([pos[str(i)] for i in ids]))


def split_rows(n: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows): a seeded permutation; val takes ``val_size`` rows (at most a tenth)."""
    perm = np.random.default_rng([config.seed, 0]).permutation(n)
    n_val = min(config.val_size, max(1, n // 10))
    train_rows = np.sort(perm[n_val:])
    if config.max_rows is not None and len(train_rows) > config.max_rows:
        train_rows = np.sort(train_rows[:: max(1, len(train_rows) // config.max_rows)][: config.max_rows])
    return train_rows, np.sort(perm[:n_val])


# -- stage --------------------------------------------------------------------------------------------
def run_train(config: TrainConfig, data_dir: Path | str, *, corpus: ArtifactRef, embed: ArtifactRef,
              gap: ArtifactRef | None = None, index: ArtifactRef | None = None, image_embed: ArtifactRef | None = None,
              force: bool = False, progress: ProgressFn | None = None) -> ArtifactRef:
    """Build (or reuse) the trained adaptor artifact. ``progress`` gets one dict per step."""
    upstream = upstream_fingerprints(config, corpus, embed, gap, index, image_embed)
    store = ArtifactStore(data_dir)
    work = store.data_dir / WORK_SUBDIR / stage_key(SPEC, config, upstream)

    def build(tmp: Path) -> BuildOutput:
        with torch_threads(config.threads):
            heads = HeadCache(store.data_dir / ENTITY_HEADS_SUBDIR, SPEC.code_version())
            out = _train_into(tmp, config, work, dict(corpus=corpus, embed=embed, gap=gap, index=index,
                                                      image_embed=image_embed), progress, heads)
        shutil.rmtree(work, ignore_errors=True)
        return out

    return store.build(SPEC, config, upstream, build, force=force)


def _train_into(tmp: Path, config: TrainConfig, work: Path, refs: dict[str, ArtifactRef | None],
                progress: ProgressFn | None, heads: HeadCache | None = None) -> BuildOutput:
    """Read the inputs (``refs``: run_train's keyword refs), train in ``work``, write the artifact into ``tmp``;
    ``heads``: where fitted entity heads are kept."""
    embed = refs["embed"]
    df, embeddings, emb = _corpus_and_embeddings(refs["corpus"], embed)
    stats = _gap_stats(refs["gap"], emb, config) if config.gap_correction or config.noise else None
    retrieval, exclude = _retrieval(refs["index"], df, embeddings, emb) if config.uses_retrieval else (None, None)
    images = _paired_images(refs["image_embed"], df, config, emb.dim)
    n = df.height
    if retrieval is None:
        exclude = Exclusions.none(n)
    full = TrainData(df["text"], embeddings, exclude, images)
    train_rows, val_rows = split_rows(n, config)
    train_data, val_data = full.subset(train_rows), full.subset(val_rows)

    model_cfg = config.model.model_copy(update={"clip_dim": emb.dim}) if config.model.clip_dim is None else config.model
    if model_cfg.clip_dim != emb.dim:
        raise InputDataError(f"train.model.clip_dim is {model_cfg.clip_dim}, the embeddings have dim {emb.dim}",
                             path=embed.dir, fix="leave train.model.clip_dim null (it follows the embeddings)")
    model_cfg, vocab = resolve_entities(model_cfg)
    resolved = config.model_copy(update={"model": model_cfg})
    model = build_adaptor(model_cfg, seed=config.seed)
    correct = None
    if stats is not None and config.gap_correction:
        from ..gapmath import correct_text

        correct = lambda e: correct_text(e, stats, renormalize=config.renormalize)  # noqa: E731
    noise_std = stats.noise_std if stats is not None else None
    builder = BatchBuilder(model, resolved, train_data, retrieval, correct, noise_std)
    entity_info = fit_entities(model, vocab, builder, resolved, heads) if vocab is not None else None
    val_batches = BatchBuilder(model, resolved, val_data, retrieval, correct, noise_std).fixed_batches(VAL_SEED_TAG)
    result = train(model, resolved, builder.micro_batch, val_batches, work, progress=progress)
    for name in (WEIGHTS_FILE, CHECKPOINT_JSON):
        shutil.copy2(work / LAST / name, tmp / name)
    counts = model.param_counts()
    summary = result.summary()
    # How long it took and where it resumed go to the manifest only: a resumed run's files must equal an
    # uninterrupted run's, so that what is trained on this artifact keeps its cache key.
    curves = {k: v for k, v in summary.items() if k not in RUN_FIELDS}
    (tmp / LOG_FILE).write_text(json.dumps({"train_losses": result.train_losses, **curves}, indent=1),
                                encoding="utf-8")
    info = {"params": {"trainable": counts.trainable, "total": counts.total, "share": round(counts.share, 4)},
            "decoder": {"source": model_cfg.decoder_source, **decoder_shape(model)}, "clip_dim": emb.dim,
            "clip_model_fingerprint": emb.model_fingerprint, "data": describe(train_data), "val_rows": len(val_data),
            "resolved_model": model_cfg.model_dump(mode="json"), **{k: v for k,
                                                                    v in summary.items() if k != "val_losses"},
            "val_losses": summary["val_losses"]}
    if entity_info is not None:
        info["entity_head"] = entity_info
    rows = {"train_rows": len(train_data), "val_rows": len(val_data), "steps": result.steps,
            "val_loss_first": summary["val_loss_first"], "val_loss_last": summary["val_loss_last"]}
    log.info("train: %d steps in %.1fs, val loss %s -> %s", result.steps, result.seconds, summary["val_loss_first"],
             summary["val_loss_last"])
    return BuildOutput(rows=rows, info=info)
