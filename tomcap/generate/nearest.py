"""The ``nearest_caption`` baseline: each image's top-1 caption from the datastore, no model at all.

The honest floor of a retrieval-augmented captioner: the image embedding queries the same
datastore the captioner retrieves from, and the nearest caption is the output. Writes
``results.json`` (COCO results, what the evaluation stage reads) like the generation stage, and
``retrieved.json`` with each caption's inner product.
"""
from __future__ import annotations

from pathlib import Path


from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec, input_sha256
from ..constants import FINGERPRINT_CHARS
from ..embed.store import EmbeddingSet
from ..errors import ArtifactError
from ..index import Datastore
from .config import NearestConfig
from .stage import _existing, images_to_caption, write_captions

SPEC = StageSpec(name="nearest_caption", version="1", modules=("tomcap.generate.nearest",))


def upstream_fingerprints(config: NearestConfig, index: ArtifactRef, images: ArtifactRef) -> dict[str, str]:
    up = {"index": index.fingerprint, "images": images.fingerprint}
    if config.annotations is not None:
        up["annotations"] = input_sha256(_existing(config.annotations))[:FINGERPRINT_CHARS]
    return up


def _build(config: NearestConfig, index: ArtifactRef, images: ArtifactRef, tmp: Path) -> BuildOutput:
    store, imgs = Datastore.open(index), EmbeddingSet.open(images)
    if store.model_fingerprint != imgs.model_fingerprint:
        raise ArtifactError(f"CLIP models differ: datastore {store.model_fingerprint}, images "
                            f"{imgs.model_fingerprint}", path=images.dir,
                            fix="embed the images with the CLIP model the datastore was built with")
    ids, emb, _ = images_to_caption(imgs, config.annotations, config.max_images)
    results, retrieved = [], []
    for start in range(0, len(ids), config.batch_size):
        found = store.search(emb[start:start + config.batch_size], 1)
        for i, (text, score) in enumerate(zip(store.texts(found.rows[:, 0]), found.scores[:, 0].tolist())):
            image_id = ids[start + i]
            results.append({"image_id": image_id, "caption": text or ""})
            retrieved.append({"image_id": image_id, "retrieved": [text], "score": round(float(score), 6)})
    write_captions(tmp, results, retrieved)
    return BuildOutput(rows={"images": len(results)}, info={"k": 1, "clip_model_fingerprint": store.model_fingerprint})


def run_nearest(config: NearestConfig, data_dir: Path | str, *, index: ArtifactRef, images: ArtifactRef,
                force: bool = False) -> ArtifactRef:
    """Build (or reuse) the baseline's results artifact for every image of ``images``."""
    upstream = upstream_fingerprints(config, index, images)
    return ArtifactStore(data_dir).build(SPEC, config, upstream, lambda tmp: _build(config, index, images, tmp),
                                         force=force)
