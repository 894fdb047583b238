"""Attribute accuracy: references score 1, wrong colours/shapes lower it, unknown ids are an error."""
from __future__ import annotations

import json

import pytest

from tomcap.demo.attributes import attribute_accuracy
from tomcap.errors import InputDataError
from tomcap.world import COLORS, WorldConfig, generate_world


def test_references_are_perfect_and_swaps_are_not(tmp_path):
    paths = generate_world(tmp_path / "w", WorldConfig(n_train_scenes=5, n_test_images=6, seed=1))
    coco = json.loads(paths.test_annotations.read_text())
    refs = [{"image_id": a["image_id"], "caption": a["caption"]} for a in coco["annotations"]]
    acc = attribute_accuracy(refs, paths.test_scenes)
    assert acc == {"color_acc": 1.0, "shape_acc": 1.0, "attr_acc": 1.0}
    scenes = [json.loads(line) for line in paths.test_scenes.read_text().splitlines()]
    wrong = []
    for s in scenes:
        colors = {o["color"] for o in s["objects"]}
        bad = next(c for c in COLORS if c not in colors)
        wrong.append({"image_id": s["image_id"], "caption": f"a {bad} {s['objects'][0]['shape']}"})
    acc = attribute_accuracy(wrong, paths.test_scenes)
    assert acc["color_acc"] == 0.0 and acc["shape_acc"] == 1.0
    assert attribute_accuracy([{"image_id": 0, "caption": "something"}], paths.test_scenes)["attr_acc"] == 0.0
    with pytest.raises(InputDataError, match="not in the world"):
        attribute_accuracy([{"image_id": 999, "caption": "x"}], paths.test_scenes)
