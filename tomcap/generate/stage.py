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
from tqdm.auto import tqdm

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec, file_sha256
from ..embed.store import EmbeddingSet
from ..errors import ArtifactError, InputDataError
from ..index import Datastore
from ..model import load_adaptor
from .captioner import caption_batch
from .config import GenerateConfig
from .guidance import LM

log = logging.getLogger(__name__)

SPEC = StageSpec(name="generate", version="1", modules=("tomcap.generate",))
RESULTS_FILE = "results.json"
RETRIEVED_FILE = "retrieved.json"


def upstream_fingerprints(config: GenerateConfig, train: ArtifactRef, index: ArtifactRef,
                          images: ArtifactRef) -> dict[str, str]:
    up = {"train": train.fingerprint, "index": index.fingerprint, "images": images.fingerprint}
    if config.annotations is not None:
        up["annotations"] = file_sha256(_existing(config.annotations))[:16]
    return up


def _existing(path: Path) -> Path:
    if not Path(path).is_file():
        raise InputDataError("annotation file not found", path=path, fix="set generate.annotations to a COCO annotation file")
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


def check_same_clip(train: ArtifactRef, store: Datastore, images: EmbeddingSet) -> None:
    """Refuse a checkpoint, datastore and images embedded with different CLIP models."""
    check_same_clip_fingerprints(train, store, images.model_fingerprint)


def check_same_clip_fingerprints(train: ArtifactRef, store: Datastore, clip_fingerprint: str) -> None:
    trained = train.manifest().info.get("clip_model_fingerprint")
    found = {"checkpoint": trained, "datastore": store.model_fingerprint, "images": clip_fingerprint}
    if len(set(found.values())) != 1:
        raise ArtifactError(
            f"CLIP models differ: {found}", path=train.dir,
            fix="embed the datastore, the images and the training corpus with the same CLIP model and weights")


def _region_embeddings(config: GenerateConfig, images: EmbeddingSet, emb: np.ndarray) -> np.ndarray:
    """Re-embed each image's grid crops with the same CLIP and aggregate them (MacCap)."""
    from PIL import Image

    from ..embed.config import ImageEmbedConfig
    from ..embed.images import encode_images
    from ..embed.stage import clip_for
    from .regions import aggregate_regions, grid_crops

    img_cfg = ImageEmbedConfig.model_validate(images.ref.manifest().config)
    if img_cfg.images is None:
        raise ArtifactError("the image-embedding artifact has no image folder", path=images.ref.dir,
                            fix="embed images from a folder to use region aggregation")
    files = [Path(img_cfg.images) / f for f in images.ids["file"].to_list()[: len(emb)]]
    crops = [c for f in files for c in grid_crops(Image.open(f).convert("RGB"), config.regions.grid)]
    crop_emb = encode_images(clip_for(img_cfg), crops, progress=False).embeddings
    return aggregate_regions(emb, crop_emb.reshape(len(files), config.regions.grid ** 2, -1),
                             config.regions.global_weight, config.regions.temperature)


def _build(config: GenerateConfig, train: ArtifactRef, index: ArtifactRef, images: ArtifactRef, tmp: Path) -> BuildOutput:
    store, imgs = Datastore.open(index), EmbeddingSet.open(images)
    check_same_clip(train, store, imgs)
    model = load_adaptor(train.dir)
    train_cfg = train.manifest().config
    k = config.k if config.k is not None else int(model.config.k)
    use_prompt = k > 0 and bool(train_cfg.get("retrieval_prompt", True))
    use_cross = k > 0 and bool(train_cfg.get("retrieval_cross", True))
    base_lm = None
    if LM in config.decode.guidance().roles:
        from ..model.adaptor import load_decoder
        base_lm = load_decoder(model.config.decoder_source).eval()
    ids = imgs.id_list() if config.annotations is None else np.array(
        coco_ids_by_file(config.annotations, imgs.ids["file"].to_list()))
    emb = np.asarray(imgs.array(), np.float32)
    if config.max_images is not None:
        ids, emb = ids[: config.max_images], emb[: config.max_images]
    if config.regions.enabled:
        emb = _region_embeddings(config, imgs, emb)
    results, retrieved = [], []
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(ids), config.batch_size), desc="captioning", unit="batch", disable=None):
        q = emb[start:start + config.batch_size]
        rows = store.search(q, k).rows if k > 0 else np.zeros((len(q), 0), np.int64)
        texts = [store.texts(r) for r in rows] if k > 0 else [[] for _ in q]
        caps = caption_batch(model, q, texts if use_prompt else [[] for _ in q],
                             store.embeddings(rows) if use_cross else None, config.decode, base_lm=base_lm)
        for i, cap in enumerate(caps):
            image_id = ids[start + i]
            results.append({"image_id": image_id.item() if hasattr(image_id, "item") else image_id, "caption": cap.text})
            retrieved.append({"image_id": results[-1]["image_id"], "retrieved": texts[i], "candidates": cap.candidates})
    seconds = time.perf_counter() - t0
    (tmp / RESULTS_FILE).write_text(json.dumps(results, indent=1), encoding="utf-8")
    (tmp / RETRIEVED_FILE).write_text(json.dumps(retrieved, indent=1), encoding="utf-8")
    info = {"k": k, "retrieval_prompt": use_prompt, "retrieval_cross": use_cross, "seconds": round(seconds, 3),
            "images_per_s": round(len(results) / max(seconds, 1e-9), 3), "clip_model_fingerprint": store.model_fingerprint}
    return BuildOutput(rows={"images": len(results)}, info=info)


def run_generate(config: GenerateConfig, data_dir: Path | str, *, train: ArtifactRef, index: ArtifactRef,
                 images: ArtifactRef, force: bool = False) -> ArtifactRef:
    """Build (or reuse) the generation artifact (captions for every image of ``images``)."""
    upstream = upstream_fingerprints(config, train, index, images)
    return ArtifactStore(data_dir).build(SPEC, config, upstream, lambda tmp: _build(config, train, index, images, tmp),
                                         force=force)
