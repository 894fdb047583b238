"""Write a world to disk: caption-only train corpus (JSONL) + held-out test split (PNG + COCO JSON)."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .captions import entity_vocabulary, scene_captions
from .config import WorldConfig
from .render import render_scene
from .scenes import Scene
from .splits import EVAL_SPLITS, TEST_STREAM, TRAIN_STREAM, heldout_pairs, split_scenes, train_scenes

log = logging.getLogger(__name__)

CORPUS_FILE = "world_captions_train.jsonl"
ANNOTATIONS_PATTERN = "world_captions_{split}.json"
SCENES_PATTERN = "world_scenes_{split}.jsonl"
IMAGES_PATTERN = "{split}_images"
TEST_ANNOTATIONS_FILE = ANNOTATIONS_PATTERN.format(split=TEST_STREAM)
TEST_SCENES_FILE = SCENES_PATTERN.format(split=TEST_STREAM)
TEST_IMAGES_SUBDIR = IMAGES_PATTERN.format(split=TEST_STREAM)
TRAIN_IMAGES_SUBDIR = "train_images"
INFO_FILE = "world_info.json"
ENTITIES_FILE = "world_entities.json"
"""The entity vocabulary of the world's captions (``train.model.entities.vocabulary``)."""


@dataclass(frozen=True)
class SplitPaths:
    """One evaluation split: COCO annotations, its image folder and the true attributes per image."""

    annotations: Path
    images_dir: Path
    scenes: Path


@dataclass(frozen=True)
class WorldPaths:
    """Files of a generated world.

    ``corpus_file``: JSONL, one ``{"caption", "image_id", "split"}`` per line (the corpus stage's
    ``jsonl`` format; ``image_id`` is the train scene id, no image is kept). ``test_annotations``:
    COCO caption JSON (``images`` with ``file_name``, ``annotations`` with 5 captions per image),
    images under ``test_images_dir``. ``test_scenes``: JSONL with the true attributes per test image.
    """

    root: Path
    corpus_file: Path
    test_annotations: Path
    test_images_dir: Path
    test_scenes: Path
    info: Path
    train_images_dir: Path
    entities: Path

    def split(self, name: str) -> SplitPaths:
        """Files of evaluation split ``name`` (``val``, ``test`` or ``novel``)."""
        if name not in EVAL_SPLITS:
            raise ConfigError(f"unknown world split {name!r}", fix=f"use one of {', '.join(EVAL_SPLITS)}")
        return SplitPaths(annotations=self.root / ANNOTATIONS_PATTERN.format(split=name),
                          images_dir=self.root / IMAGES_PATTERN.format(split=name),
                          scenes=self.root / SCENES_PATTERN.format(split=name))


def world_paths(out_dir: Path) -> WorldPaths:
    out = Path(out_dir)
    return WorldPaths(root=out, corpus_file=out / CORPUS_FILE, test_annotations=out / TEST_ANNOTATIONS_FILE,
                      test_images_dir=out / TEST_IMAGES_SUBDIR, test_scenes=out / TEST_SCENES_FILE,
                      info=out / INFO_FILE, train_images_dir=out / TRAIN_IMAGES_SUBDIR, entities=out / ENTITIES_FILE)


def scene_record(scene: Scene) -> dict:
    """JSON-able true attributes of a scene (what a perfect caption names)."""
    return {"scene_id": scene.scene_id, "background": scene.background,
            "objects": [{"shape": o.shape, "color": o.color, "size": o.size, "position": o.position,
                         "row": o.row, "col": o.col} for o in scene.objects]}


def generate_world(out_dir: Path, config: WorldConfig | None = None) -> WorldPaths:
    """Write the corpus and the evaluation splits of ``config`` into ``out_dir`` (existing world files are replaced)."""
    world = config or WorldConfig()
    paths = world_paths(out_dir)
    if paths.root.exists() and not paths.root.is_dir():
        raise ConfigError("output path exists and is not a folder", path=paths.root, fix="pass a folder path to --out")
    paths.test_images_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    test = split_scenes(world, TEST_STREAM)
    train = train_scenes(world)
    n_captions = 0
    if world.render_train_images:
        paths.train_images_dir.mkdir(parents=True, exist_ok=True)
    with paths.corpus_file.open("w", encoding="utf-8") as f:
        for s in train:
            if world.render_train_images:
                render_scene(s, world.image_size).save(paths.train_images_dir / f"{s.scene_id}.png", optimize=False)
            for c in scene_captions(s, world.captions_per_image, world.seed, world.relation_share):
                f.write(json.dumps({"caption": c, "image_id": s.scene_id, "split": TRAIN_STREAM}) + "\n")
                n_captions += 1
    counts = {}
    for split in EVAL_SPLITS:
        scenes = test if split == TEST_STREAM else split_scenes(world, split)
        if scenes or split == TEST_STREAM:
            counts[split] = _write_split(paths.split(split), scenes, world, split)
    info = {"world_config": world.model_dump(mode="json"), "n_train_scenes": len(train),
            "n_train_dropped_as_eval_duplicates_or_heldout_pairs": world.n_train_scenes - len(train),
            "n_train_captions": n_captions, "n_test_images": counts[TEST_STREAM][0],
            "n_test_captions": counts[TEST_STREAM][1], "splits": {k: {"images": v[0], "captions": v[1]}
                                                               for k, v in counts.items()},
            "heldout_pairs": sorted(f"{c} {s}" for c, s in heldout_pairs(world)),
            "seconds": round(time.time() - t0, 2), "streams": {"train": TRAIN_STREAM, **{k: k for k in counts}}}
    paths.info.write_text(json.dumps(info, indent=2), encoding="utf-8")
    paths.entities.write_text(json.dumps(entity_vocabulary(), indent=1), encoding="utf-8")
    log.info("world written to %s: %d train captions, eval splits %s", paths.root, n_captions, counts)
    return paths


def _write_split(sp: SplitPaths, scenes: list[Scene], world: WorldConfig, split: str) -> tuple[int, int]:
    """PNG per scene, COCO annotations and the scene truth of one evaluation split; (images, captions)."""
    sp.images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    with sp.scenes.open("w", encoding="utf-8") as f:
        for s in scenes:
            # The image id is the scene's index in its stream, the number its file name ends with (an
            # evaluation finds images by that number); a split with held-out pairs skips some indices.
            image_id = int(s.scene_id.rsplit("-", 1)[1])
            name = f"{s.scene_id}.png"
            render_scene(s, world.image_size).save(sp.images_dir / name, optimize=False)
            images.append({"id": image_id, "file_name": name, "width": world.image_size,
                           "height": world.image_size, "scene_id": s.scene_id})
            for c in scene_captions(s, world.captions_per_image, world.seed, world.relation_share):
                annotations.append({"id": len(annotations), "image_id": image_id, "caption": c})
            f.write(json.dumps(scene_record(s) | {"image_id": image_id}) + "\n")
    coco = {"info": {"description": f"tomcap embedded world, held-out {split} split",
                     "world_config": world.model_dump(mode="json")},
            "images": images, "annotations": annotations, "type": "captions", "licenses": []}
    sp.annotations.write_text(json.dumps(coco), encoding="utf-8")
    return len(images), len(annotations)
