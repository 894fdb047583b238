"""Attribute accuracy of generated captions on the world test split.

For each image, the colours (shapes) a caption names are compared with the colours (shapes) of the
scene's objects: accuracy is the share of named values that are really there, 0 for a caption
that names none. Averaged over images. A reference caption scores 1.0 by construction.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputDataError
from ..world.captions import parse_caption

ATTRIBUTES = ("colors", "shapes")


def _precision(named: frozenset[str], true: set[str]) -> float:
    return len(named & true) / len(named) if named else 0.0


def load_scene_truth(scenes_file: Path) -> dict[int, dict[str, set[str]]]:
    """image id -> {'colors': {...}, 'shapes': {...}} from the world's test-scene JSONL."""
    truth = {}
    for line in Path(scenes_file).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        truth[int(rec["image_id"])] = {"colors": {o["color"] for o in rec["objects"]},
                                       "shapes": {o["shape"] for o in rec["objects"]}}
    return truth


def attribute_accuracy(results: list[dict], scenes_file: Path) -> dict[str, float]:
    """{'color_acc', 'shape_acc', 'attr_acc'} of COCO-format results against the scene truth."""
    truth = load_scene_truth(scenes_file)
    scores = {a: [] for a in ATTRIBUTES}
    for r in results:
        image_id = int(r["image_id"])
        if image_id not in truth:
            raise InputDataError(f"image id {image_id} is not in the world's test scenes", path=scenes_file,
                                 fix="evaluate results of the world test split this file describes")
        parsed = parse_caption(r["caption"])
        for a in ATTRIBUTES:
            scores[a].append(_precision(getattr(parsed, a), truth[image_id][a]))
    out = {"color_acc": sum(scores["colors"]) / max(len(results), 1),
           "shape_acc": sum(scores["shapes"]) / max(len(results), 1)}
    out["attr_acc"] = (out["color_acc"] + out["shape_acc"]) / 2
    return out
