"""Attribute scores of generated captions on a world evaluation split.

Two kinds of score per image, averaged over images:

- ``color_acc`` / ``shape_acc`` (precision of the named values, kept for comparison with earlier
  reports): the share of colours (shapes) a caption names that are really in the scene, 0 for a
  caption that names none. A caption naming one of three objects scores 1.0 here.
- Object-level scores that such a caption cannot game: the (colour, shape) objects a caption names
  are matched one-to-one to the scene's objects. ``obj_precision`` = matched / named,
  ``obj_recall`` = matched / objects in the scene, ``attr_f1`` their harmonic mean (0 when nothing
  matches), ``count_acc`` = 1 if the caption names as many objects as the scene holds.

A reference caption scores 1.0 on all of them by construction.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import InputDataError
from ..world.captions import COLOR_WORDS, SHAPE_WORDS, parse_caption

ATTRIBUTES = ("colors", "shapes")
SCORES = ("color_acc", "shape_acc", "attr_acc", "obj_precision", "obj_recall", "attr_f1", "count_acc")
"""Per-image scores (their means are the reported values)."""

_COLOR = {w: c for c, ws in COLOR_WORDS.items() for w in ws}
_SHAPE = {w: s for s, ws in SHAPE_WORDS.items() for w in ws}
_OBJECT = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _COLOR), key=len, reverse=True)) + r")\s+("
                     + "|".join(sorted(map(re.escape, _SHAPE), key=len, reverse=True)) + r")s?\b")


def named_objects(text: str) -> list[tuple[str, str]]:
    """(colour, shape) of every object phrase in ``text``, in order, repeats kept (``a red circle`` ...)."""
    low = " ".join(text.lower().split())
    return [(_COLOR[m.group(1)], _SHAPE[m.group(2)]) for m in _OBJECT.finditer(low)]


def _precision(named: frozenset[str], true: set[str]) -> float:
    return len(named & true) / len(named) if named else 0.0


def load_scene_truth(scenes_file: Path) -> dict[int, dict[str, set[str]]]:
    """image id -> {'colors', 'shapes', 'objects' (colour, shape) pairs} from a world split's scene JSONL."""
    truth = {}
    for line in Path(scenes_file).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        truth[int(rec["image_id"])] = {"colors": {o["color"] for o in rec["objects"]},
                                       "shapes": {o["shape"] for o in rec["objects"]},
                                       "objects": [(o["color"], o["shape"]) for o in rec["objects"]]}
    return truth


def names_exactly(caption: str, color: str, shape: str) -> bool:
    """The caption names this colour and this shape and no other (synonyms count): the single-object check."""
    parsed = parse_caption(caption)
    return parsed.colors == {color} and parsed.shapes == {shape}


def caption_scores(caption: str, truth: dict) -> dict[str, float]:
    """Every score of :data:`SCORES` for one caption against one scene's truth."""
    parsed = parse_caption(caption)
    out = {"color_acc": _precision(parsed.colors, truth["colors"]),
           "shape_acc": _precision(parsed.shapes, truth["shapes"])}
    out["attr_acc"] = (out["color_acc"] + out["shape_acc"]) / 2
    named = named_objects(caption)
    matched = sum((Counter(named) & Counter(truth["objects"])).values())  # one-to-one: multiset intersection
    p = matched / len(named) if named else 0.0
    r = matched / len(truth["objects"])
    out.update(obj_precision=p, obj_recall=r, attr_f1=2 * p * r / (p + r) if matched else 0.0,
               count_acc=float(len(named) == len(truth["objects"])))
    return out


def attribute_scores(results: list[dict], scenes_file: Path) -> tuple[list[int], dict[str, np.ndarray]]:
    """(image ids, score -> per-image values (N,)) of COCO-format results against the scene truth."""
    truth = load_scene_truth(scenes_file)
    ids, rows = [], []
    for r in results:
        image_id = int(r["image_id"])
        if image_id not in truth:
            raise InputDataError(f"image id {image_id} is not in the world's test scenes", path=scenes_file,
                                 fix="evaluate results of the world split this file describes")
        ids.append(image_id)
        rows.append(caption_scores(r["caption"], truth[image_id]))
    return ids, {k: np.array([row[k] for row in rows], dtype=np.float64) for k in SCORES}


def attribute_accuracy(results: list[dict], scenes_file: Path) -> dict[str, float]:
    """Mean of every score of :data:`SCORES` (``color_acc``, ..., ``attr_f1``, ``count_acc``) over the results."""
    _, per = attribute_scores(results, scenes_file)
    return {k: float(v.mean()) if len(v) else 0.0 for k, v in per.items()}
