"""The evaluation stage: config, stage protocol and the build of an evaluation artifact.

``run_evaluate`` writes into the data directory's artifact store (cached by key, as every stage);
``evaluate_to_dir`` writes the same folder, manifest included, at a path the user names (the
``--out`` of the CLI), atomically: it is built beside the target and renamed into place.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec, input_sha256, load_ref
from ..constants import FINGERPRINT_CHARS, MANIFEST_NAME, TMP_PREFIX, TRASH_PREFIX
from ..errors import ArtifactError, ConfigError, InputDataError
from .coco_metrics import EvalItem, score_items
from .config import EvaluateConfig
from .loading import Coverage, align, coverage, load_references, load_results, results_path
from .report import RunResult, write_run, write_sweep

log = logging.getLogger(__name__)

SPEC = StageSpec(name="evaluate", version="1", modules=("tomcap.evaluate",))
METEOR_CACHE_SUBDIR = Path("cache") / "meteor"


def _results_inputs(config: EvaluateConfig, generate: ArtifactRef | None) -> list[Path]:
    paths = list(config.results) + ([generate.dir] if generate is not None else [])
    if not paths:
        raise ConfigError("nothing to evaluate: no results file and no generation artifact",
                          fix="pass --results FILE (repeatable) or a generation artifact")
    return paths


def _images_fingerprint(folder: Path) -> str:
    """Cheap identity of an image folder: names and sizes of its files."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(folder).as_posix()}\0{f.stat().st_size}\n".encode())
    return h.hexdigest()[:FINGERPRINT_CHARS]


def _check_refs_file(path: Path) -> None:
    if not path.is_file():
        what = "is a directory, not a references file" if path.is_dir() else "references file not found"
        raise ConfigError(what, path=path, fix="pass an existing references file with --refs (or evaluate.refs)")


def validate(config: EvaluateConfig) -> None:
    """Refuse a missing references file before any stage of a run starts (not after training)."""
    if config.refs is not None:
        _check_refs_file(Path(config.refs))


def clip_fingerprint(config: EvaluateConfig) -> str | None:
    """The CLIP metrics' model identity, as embedding artifacts name theirs (None: no CLIP metrics)."""
    from ..clip import seeded_fingerprint

    if config.clip_model is None:
        return None
    return seeded_fingerprint(config.clip_model, config.clip_pretrained, config.clip_init_seed)


def stored_images(config: EvaluateConfig, images: ArtifactRef | None) -> ArtifactRef | None:
    """``images`` (an embed_images artifact of the evaluated images) if the CLIP metrics can read their
    image embeddings from it instead of encoding every image again: it holds the same CLIP model's."""
    if images is None or config.clip_model is None:
        return None
    if images.manifest().info.get("model_fingerprint") != clip_fingerprint(config):
        log.info("the test-image embeddings come from another CLIP than evaluate.clip_model: encoding the images")
        return None
    return images


def upstream_fingerprints(config: EvaluateConfig, generate: ArtifactRef | None = None,
                          images: ArtifactRef | None = None) -> dict[str, str]:
    """Content fingerprints of the inputs: references, each results file, images, CLIP weights."""
    up: dict[str, str] = {}
    if config.refs is not None:
        _check_refs_file(Path(config.refs))
        up["refs"] = input_sha256(Path(config.refs))[:FINGERPRINT_CHARS]
    for i, p in enumerate(config.results):
        f = results_path(Path(p))
        if not f.is_file():
            raise ConfigError(f"results file not found: {f}", fix="pass an existing file with --results")
        up[f"results/{i}"] = input_sha256(f)[:FINGERPRINT_CHARS]
    if generate is not None:
        up["generate"] = generate.fingerprint
    if config.images is not None:
        up["images"] = _images_fingerprint(config.images)
    if config.clip_model is not None:
        up["clip"] = clip_fingerprint(config)
    stored = stored_images(config, images)
    if stored is not None:
        up["image_embed"] = stored.fingerprint
    return up


def _check_coverage(cov: Coverage, source: str, required: bool) -> Coverage:
    """Scores of part of the references are not comparable to scores of all of them: warn, or refuse."""
    if cov.fraction < 1.0:
        msg = (f"results cover {cov.images_scored} of the {cov.images_in_refs} reference images "
               f"({100 * cov.fraction:.1f}%)")
        if required:
            raise InputDataError(msg, path=source, fix="caption every image of the references (or score without "
                                 "--require-full-coverage / evaluate.require_full_coverage: false)")
        log.warning("%s: %s; scores of a subset are not comparable to full-set scores", source, msg)
    return cov


def meteor_cache_dir(config: EvaluateConfig, data_dir: Path | None) -> Path | None:
    """Where filtered METEOR paraphrase tables are kept (None: do not keep them)."""
    return Path(data_dir) / METEOR_CACHE_SUBDIR if config.meteor_cache and data_dir is not None else None


def _stored_rows(stored: ArtifactRef | None, paths: list[Path], images_dir: Path):
    """Stored embeddings (N, D) of the image files ``paths`` (under ``images_dir``) from an embed_images
    artifact of that folder, matched by relative file name; None if any file is not in it."""
    if stored is None:
        return None
    import numpy as np

    from ..embed.store import EmbeddingSet

    emb = EmbeddingSet.open(stored)
    pos = {f: r for r, f in enumerate(emb.ids["file"].to_list())}
    names = [p.relative_to(images_dir).as_posix() for p in paths]
    if any(n not in pos for n in names):
        log.info("some evaluated images are not in %s: encoding the images", stored.dir)
        return None
    return emb.rows(np.array([pos[n] for n in names], np.int64))


def _build(config: EvaluateConfig, generate: ArtifactRef | None, tmp: Path, data_dir: Path | None,
           images: ArtifactRef | None = None) -> BuildOutput:
    t0 = time.perf_counter()
    keys = config.paired_keys
    refs = load_references(config.refs, keys) if config.refs is not None else None
    items, sources, covers = [], [], []
    for path in _results_inputs(config, generate):
        res = load_results(path, keys)
        res_keys, ref_keys, gts, hyps = align(res, refs)
        covers.append(_check_coverage(coverage(ref_keys, refs if refs is not None else res.refs), res.source,
                                      config.require_full_coverage if config.require_full_coverage is not None
                                      else generate is not None))
        items.append(EvalItem(name=res.name, keys=res_keys, ref_keys=ref_keys, refs=gts, hyps=hyps))
        sources.append(res.source)
    t_load = time.perf_counter() - t0
    scored = score_items(items, meteor=config.meteor, spice=config.spice, meteor_workers=config.meteor_workers,
                         cache_dir=meteor_cache_dir(config, data_dir))
    clip = None
    if config.clip_model is not None:
        from ..clip import load_seeded_clip

        clip = load_seeded_clip(config.clip_model, config.clip_pretrained, config.device, config.clip_init_seed)
    stored = stored_images(config, images)
    image_source = "encoded"
    runs = []
    for item, sc, source, cov in zip(items, scored, sources, covers):
        metrics: dict[str, Any] = dict(sc.metrics)
        metrics["coverage"] = cov.as_dict()
        per_image = dict(sc.per_image)
        if clip is not None:
            from .clip_metrics import clip_metrics, find_images

            paths = find_images(config.images, item.keys)
            img = _stored_rows(stored, paths, Path(config.images))
            if img is not None:  # the pipeline embedded these images with this very CLIP already
                image_source = f"stored:{stored.fingerprint}"
            corpus, per = clip_metrics(clip, paths, item.hyps, item.refs, config.clip_batch_size,
                                       image_embeddings=img)
            metrics.update(corpus)
            per_image.update(per)
        metrics["bleu_stats"] = sc.bleu_stats
        metrics["n_images"] = len(item.keys)
        runs.append(RunResult(name=item.name, source=source, keys=item.keys, captions=item.hyps, refs=item.refs,
                              metrics=metrics, per_image=per_image, timings=sc.timings))
    if len(runs) == 1:
        write_run(runs[0], tmp, config.report_samples)
        folders = ["."]
    else:
        folders = write_sweep(runs, tmp, config.report_samples)
    timings = {"load": round(t_load, 3), **{k: round(v, 3) for k, v in scored[0].timings.items()},
               "wall": round(time.perf_counter() - t0, 3)}
    info = {"metrics": {d: r.metrics for d, r in zip(folders, runs)}, "timings": timings,
            "clip": clip_fingerprint(config), "clip_images": image_source if clip is not None else None}
    return BuildOutput(rows={"n_results": len(runs), "n_images": sum(len(r.keys) for r in runs)}, info=info)


def run_evaluate(config: EvaluateConfig, data_dir: Path, generate: ArtifactRef | None = None,
                 images: ArtifactRef | None = None, force: bool = False) -> ArtifactRef:
    """Stage protocol: the evaluation artifact in ``data_dir``'s store (cached by key). ``images``: the
    embed_images artifact of the evaluated images; CLIP metrics read its embeddings when it holds
    evaluate.clip_model's (float16-stored embeddings move CLIPScore by ~1e-3 against re-encoding)."""
    return ArtifactStore(data_dir).build(SPEC, config, upstream_fingerprints(config, generate, images),
                                         lambda tmp: _build(config, generate, tmp, data_dir, images), force=force)


def evaluate_to_dir(config: EvaluateConfig, out: Path, generate: ArtifactRef | None = None,
                    data_dir: Path | None = None) -> ArtifactRef:
    """Write the evaluation artifact (with its manifest) at ``out``, replacing an earlier evaluation there.

    The folder is built by the artifact store under a temp root beside ``out`` and renamed into
    place, so a failure leaves nothing at ``out`` (and an earlier evaluation there untouched).
    ``data_dir`` only hosts caches (filtered METEOR tables); None keeps none.
    """
    out = Path(out).resolve()
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MANIFEST_NAME).is_file())):
        raise ArtifactError("exists and is not an earlier evaluation output", path=out,
                            fix="choose a new --out folder, or remove this one")
    if (out / MANIFEST_NAME).is_file():
        load_ref(out, stage=SPEC.name)  # only ever replace an evaluation
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = out.parent / f"{TMP_PREFIX}{out.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        built = ArtifactStore(tmp_root).build(SPEC, config, upstream_fingerprints(config, generate),
                                              lambda tmp: _build(config, generate, tmp, data_dir), force=True)
        if out.exists():
            trash = out.parent / f"{TRASH_PREFIX}{out.name}-{uuid.uuid4().hex[:6]}"
            out.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        built.dir.rename(out)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return load_ref(out, stage=SPEC.name).model_copy(update={"cached": False})
