"""Gap stage ('gap'): text + image embedding artifacts -> Gaussian modality-gap statistics and a report.

Inputs: a text 'embed' artifact, an 'embed_images' artifact (unpaired images), and optionally a
paired 'embed_images' artifact whose image ids match the corpus ``image_id`` of captions (then the
noise std is measured as the std of image − text differences; otherwise ``noise_std`` is used).
Writes ``stats.safetensors`` + ``stats.json`` (:mod:`tomcap.gapmath`), ``report.md`` and PNG histograms;
the centroid and distribution gaps before/after the correction go in the manifest info.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from . import gapmath
from .artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec
from .embed.store import EmbeddingSet
from .errors import ArtifactError, InputDataError
from .gap_config import GapConfig
from .gap_report import write_report

log = logging.getLogger(__name__)

SPEC = StageSpec(name="gap", version="1", modules=("tomcap.gap", "tomcap.gap_config", "tomcap.gap_report",
                                                     "tomcap.gapmath"))


def upstream_fingerprints(config: GapConfig, text: ArtifactRef, images: ArtifactRef,
                          paired: ArtifactRef | None = None) -> dict[str, str]:
    out = {"text": text.fingerprint, "images": images.fingerprint}
    if paired is not None:
        out["paired"] = paired.fingerprint
    return out


def _open(ref: ArtifactRef, stage: str, role: str) -> EmbeddingSet:
    es = EmbeddingSet.open(ref)
    if es.ref.stage != stage:
        raise ArtifactError(f"the {role} input is a '{es.ref.stage}' artifact, expected '{stage}'", path=ref.dir,
                            fix=f"pass an '{stage}' artifact as the {role} input")
    if len(es) == 0:
        raise InputDataError(f"the {role} embeddings are empty: gap statistics need at least 2 rows", path=ref.dir,
                             fix="embed a non-empty corpus / image folder")
    return es


def _stored(es: EmbeddingSet) -> np.ndarray:
    """All rows in the stored dtype (the memory map itself for one shard): reductions chunk over it."""
    return es.shards[0] if len(es.shards) == 1 else np.concatenate(es.shards)


def _sample(es: EmbeddingSet, rows: int, rng: np.random.Generator) -> np.ndarray:
    idx = np.sort(rng.choice(len(es), size=min(rows, len(es)), replace=False))
    return es.rows(idx)


def paired_arrays(text: EmbeddingSet, paired: EmbeddingSet) -> tuple[np.ndarray, np.ndarray]:
    """(text, image) rows (P, D) each: every caption whose image_id has an embedding in the paired set."""
    t = text.ids.select("image_id").with_row_index("_t").filter(pl.col("image_id").is_not_null())
    i = paired.ids.select("image_id").with_row_index("_i")
    pairs = t.join(i, on="image_id", how="inner").sort("_t")
    if pairs.height == 0:
        raise InputDataError("no caption's image_id matches an image id of the paired set", path=paired.ref.dir,
                             fix="name paired images by their corpus image_id (or set embed_images.image_id_regex)")
    return text.rows(pairs["_t"].to_numpy().astype(np.int64)), paired.rows(pairs["_i"].to_numpy().astype(np.int64))


def gap_figures(img: np.ndarray, txt: np.ndarray) -> dict[str, float]:
    return {"centroid_gap": gapmath.centroid_gap(img, txt),
            "distribution_gap": gapmath.frechet_distance_centered(img, txt)}


def run_gap(config: GapConfig, data_dir: Path | str, text: ArtifactRef, images: ArtifactRef,
            paired: ArtifactRef | None = None, *, force: bool = False) -> ArtifactRef:
    """Estimate μ/σ per modality, the noise std and the gaps before/after correction."""
    upstream = upstream_fingerprints(config, text, images, paired)

    def build(tmp: Path) -> BuildOutput:
        t_es, i_es = _open(text, "embed", "text"), _open(images, "embed_images", "image")
        p_es = _open(paired, "embed_images", "paired image") if paired is not None else None
        for other in filter(None, (i_es, p_es)):
            if other.model_fingerprint != t_es.model_fingerprint:
                raise ArtifactError(
                    f"text embeddings come from {t_es.model_fingerprint} "
                    f"but image embeddings from {other.model_fingerprint}",
                    path=other.ref.dir, fix="embed texts and images with the same CLIP model and weights")
        pt, pi = paired_arrays(t_es, p_es) if p_es is not None else (None, None)
        stats = gapmath.estimate_stats(_stored(t_es), _stored(i_es), paired_text=pt, paired_image=pi,
                                       noise_std_default=config.noise_std,
                                       meta={"model_fingerprint": t_es.model_fingerprint, "text_key": text.key,
                                             "images_key": images.key})
        files = gapmath.save_stats(stats, tmp)
        rng = np.random.default_rng(config.seed)
        txt_s, img_s = _sample(t_es, config.sample_rows, rng), _sample(i_es, config.sample_rows, rng)
        corrected = gapmath.correct_text(txt_s, stats, renormalize=config.renormalize)
        info = {"dim": stats.dim, "model_fingerprint": t_es.model_fingerprint, "renormalize": config.renormalize,
                "noise_std_source": "paired" if pt is not None else "config",
                "noise_std_mean": float(stats.noise_std.mean()),
                "before": gap_figures(img_s, txt_s), "after": gap_figures(img_s, corrected)}
        cos = None
        if pt is not None:
            cos = {"before": np.sum(gapmath.l2_normalize(pt) * gapmath.l2_normalize(pi), 1),
                   "after": np.sum(gapmath.correct_text(pt, stats, renormalize=True) * gapmath.l2_normalize(pi), 1)}
            info["paired_cosine"] = {k: float(v.mean()) for k, v in cos.items()}
        files += write_report(tmp, stats, info, txt_s, img_s, corrected, cos)
        log.info("gap: centroid %.4f -> %.4f, distribution %.4f -> %.4f", info["before"]["centroid_gap"],
                 info["after"]["centroid_gap"], info["before"]["distribution_gap"], info["after"]["distribution_gap"])
        return BuildOutput(rows={"text_rows": stats.n_text, "image_rows": stats.n_image, "paired_rows": stats.n_paired},
                           info={**info, "files": files})

    return ArtifactStore(data_dir).build(SPEC, config, upstream, build, force=force)
