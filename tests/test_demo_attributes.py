"""Attribute scores: references score 1, wrong colours/shapes lower them, naming one of three objects is not
a perfect recall or count, unknown ids are an error."""
from __future__ import annotations

import json

import pytest

from tomcap.demo.attributes import SCORES, attribute_accuracy, caption_scores, named_objects
from tomcap.errors import InputDataError
from tomcap.world import COLORS, WorldConfig, generate_world


def test_references_are_perfect_and_swaps_are_not(tmp_path):
    paths = generate_world(tmp_path / "w", WorldConfig(n_train_scenes=5, n_test_images=6, seed=1))
    coco = json.loads(paths.test_annotations.read_text())
    refs = [{"image_id": a["image_id"], "caption": a["caption"]} for a in coco["annotations"]]
    acc = attribute_accuracy(refs, paths.test_scenes)
    assert acc == {k: 1.0 for k in SCORES}
    scenes = [json.loads(line) for line in paths.test_scenes.read_text().splitlines()]
    wrong = []
    for s in scenes:
        colors = {o["color"] for o in s["objects"]}
        bad = next(c for c in COLORS if c not in colors)
        wrong.append({"image_id": s["image_id"], "caption": f"a {bad} {s['objects'][0]['shape']}"})
    acc = attribute_accuracy(wrong, paths.test_scenes)
    assert acc["color_acc"] == 0.0 and acc["shape_acc"] == 1.0
    assert acc["attr_f1"] == 0.0 and acc["obj_recall"] == 0.0
    assert attribute_accuracy([{"image_id": 0, "caption": "something"}], paths.test_scenes)["attr_acc"] == 0.0
    with pytest.raises(InputDataError, match="not in the world"):
        attribute_accuracy([{"image_id": 999, "caption": "x"}], paths.test_scenes)


def test_one_of_three_objects_is_full_precision_but_not_recall_or_count():
    truth = {"colors": {"red", "blue", "green"}, "shapes": {"circle", "star", "cross"},
             "objects": [("red", "circle"), ("blue", "star"), ("green", "cross")]}
    s = caption_scores("a large red circle in the center", truth)
    assert s["color_acc"] == s["shape_acc"] == s["obj_precision"] == 1.0
    assert s["obj_recall"] == pytest.approx(1 / 3) and s["attr_f1"] == pytest.approx(0.5) and s["count_acc"] == 0.0
    # colours and shapes all present but bound to the wrong objects: precision of values 1, objects 0
    swapped = caption_scores("a red star, a blue cross and a green circle", truth)
    assert swapped["attr_acc"] == 1.0 and swapped["attr_f1"] == 0.0 and swapped["count_acc"] == 1.0
    # one-to-one: naming the same object twice matches it once
    twice = caption_scores("a red circle and a red circle and a blue star", truth)
    assert twice["obj_precision"] == pytest.approx(2 / 3) and twice["obj_recall"] == pytest.approx(2 / 3)


def test_named_objects_reads_synonyms():
    assert named_objects("A tiny Violet disk above a big orange plus sign") == [("purple", "circle"),
                                                                                 ("orange", "cross")]
