"""Generation stage: image embeddings + datastore + trained adaptor -> captions (COCO results format).

Writes ``results.json`` ([{"image_id", "caption"}], what the evaluation stage reads) and
``retrieved.json`` (per image: the retrieved captions with scores, and every decoded candidate).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec, input_sha256
from ..constants import FINGERPRINT_CHARS
from ..embed.config import ImageEmbedConfig
from ..embed.store import EmbeddingSet
from ..errors import ArtifactError, InputDataError
from .config import GenerateConfig
from .session import CaptionSession, region_embeddings

log = logging.getLogger(__name__)

SPEC = StageSpec(name="generate", version="1", modules=("tomcap.generate",))
RESULTS_FILE = "results.json"
RETRIEVED_FILE = "retrieved.json"


def upstream_fingerprints(config: GenerateConfig, train: ArtifactRef, index: ArtifactRef,
                          images: ArtifactRef) -> dict[str, str]:
    up = {"train": train.fingerprint, "index": index.fingerprint, "images": images.fingerprint}
    if config.annotations is not None:
        up["annotations"] = input_sha256(_existing(config.annotations))[:FINGERPRINT_CHARS]
    return up


def _existing(path: Path) -> Path:
    if not Path(path).is_file():
        raise InputDataError("annotation file not found", path=path,
                             fix="set generate.annotations to a COCO annotation file")
    return Path(path)


def coco_ids_by_file(annotations: Path, files: list[str]) -> list[int]:
    """COCO image id of each image file (matched by file name); a file the annotations lack is an error."""
    data = json.loads(_existing(annotations).read_text(encoding="utf-8"))
    by_name = {Path(im["file_name"]).name: im["id"] for im in data.get("images", [])}
    missing = [f for f in files if Path(f).name not in by_name]
    if missing:
        raise InputDataError(f"{len(missing)} image(s) are not in the annotations' 'images', e.g. {missing[0]}",
                             path=annotations, fix="caption the images the annotation file describes")
    return [by_name[Path(f).name] for f in files]


def images_to_caption(imgs: EmbeddingSet, annotations: Path | None,
                      max_images: int | None) -> tuple[list, np.ndarray, list[str]]:
    """(image ids as JSON values, float32 embeddings, image files) of the first ``max_images`` images of an
    image-embedding artifact; the ids are the annotations' COCO ids when an annotation file is given."""
    files = imgs.ids["file"].to_list()
    ids = imgs.id_list() if annotations is None else np.array(coco_ids_by_file(annotations, files))
    n = len(ids) if max_images is None else max_images
    return [i.item() if hasattr(i, "item") else i for i in ids[:n]], np.asarray(imgs.array(), np.float32)[:n], files[:n]


def write_captions(tmp: Path, results: list[dict], retrieved: list[dict]) -> None:
    """``results.json`` (COCO results, what evaluation reads) and ``retrieved.json`` of a captions artifact."""
    (tmp / RESULTS_FILE).write_text(json.dumps(results, indent=1), encoding="utf-8")
    (tmp / RETRIEVED_FILE).write_text(json.dumps(retrieved, indent=1), encoding="utf-8")


def _build(config: GenerateConfig, train: ArtifactRef, index: ArtifactRef, images: ArtifactRef,
           tmp: Path) -> BuildOutput:
    imgs = EmbeddingSet.open(images)
    clip_cfg = ImageEmbedConfig.model_validate(imgs.ref.manifest().config)
    session = CaptionSession.open(config, train, index, clip_cfg, imgs.model_fingerprint)
    ids, emb, files = images_to_caption(imgs, config.annotations, config.max_images)
    if config.regions.enabled:
        if clip_cfg.images is None:
            raise ArtifactError("the image-embedding artifact has no image folder", path=images.dir,
                                fix="embed images from a folder to use region aggregation")
        emb = region_embeddings(config, clip_cfg, [Path(clip_cfg.images) / f for f in files], emb)
    t0 = time.perf_counter()
    caps, texts = session.caption_all(emb)
    seconds = time.perf_counter() - t0
    results, retrieved = [], []
    for image_id, cap, ret in zip(ids, caps, texts):
        results.append({"image_id": image_id, "caption": cap.text})
        retrieved.append({"image_id": image_id, "retrieved": ret, "candidates": cap.candidates}
                         | ({"entities": cap.entities} if cap.entities is not None else {}))
    write_captions(tmp, results, retrieved)
    info = {"k": session.k, "retrieval_prompt": session.use_prompt, "retrieval_cross": session.use_cross,
            "seconds": round(seconds, 3), "images_per_s": round(len(results) / max(seconds, 1e-9), 3),
            "clip_model_fingerprint": session.store.model_fingerprint}
    return BuildOutput(rows={"images": len(results)}, info=info)


def run_generate(config: GenerateConfig, data_dir: Path | str, *, train: ArtifactRef, index: ArtifactRef,
                 images: ArtifactRef, force: bool = False) -> ArtifactRef:
    """Build (or reuse) the generation artifact (captions for every image of ``images``)."""
    upstream = upstream_fingerprints(config, train, index, images)
    return ArtifactStore(data_dir).build(SPEC, config, upstream, lambda tmp: _build(config, train, index, images, tmp),
                                         force=force)
