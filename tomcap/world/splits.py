"""The world's scene streams: train (caption-only corpus), validation, test and novel-composition test.

Evaluation splits are disjoint from each other and from train by scene key. With
``heldout_pairs > 0`` a seeded set of colour-shape pairs never occurs in the train corpus, the
validation split or the test split; the ``novel`` split holds only scenes that contain one of them
(NoCaps-like: a captioner cannot copy a retrieved caption there, it has to compose).
"""
from __future__ import annotations

import numpy as np

from .config import WorldConfig
from .scenes import COLORS, SHAPES, Scene, scene_stream

TRAIN_STREAM = "train"
VAL_STREAM = "val"
TEST_STREAM = "test"
NOVEL_STREAM = "novel"
EVAL_SPLITS = (VAL_STREAM, TEST_STREAM, NOVEL_STREAM)
"""Splits written with images + references (``generate_world``); names double as stream names."""
_PAIRS_STREAM = "heldout-pairs"
_DRAW_FACTOR = 2


def heldout_pairs(world: WorldConfig) -> frozenset[tuple[str, str]]:
    """(colour, shape) pairs kept out of the corpus: at most one per shape and per colour, so every
    colour and every shape still occurs in training, only these combinations do not."""
    if world.heldout_pairs == 0:
        return frozenset()
    rng = np.random.default_rng([world.seed, int.from_bytes(_PAIRS_STREAM.encode(), "little") % 2 ** 32])
    shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))]
    colors = [list(COLORS)[i] for i in rng.permutation(len(COLORS))]
    return frozenset(zip(colors[: world.heldout_pairs], shapes[: world.heldout_pairs]))


def has_pair(scene: Scene, pairs: frozenset[tuple[str, str]]) -> bool:
    return any((o.color, o.shape) in pairs for o in scene.objects)


def _filtered(world: WorldConfig, stream: str, n: int, keep) -> list[Scene]:
    """The first ``n`` scenes of ``stream`` that ``keep`` accepts (a stream's prefix never changes)."""
    draw = n
    while True:
        scenes = [s for s in scene_stream(world.seed, stream, draw, world.max_objects, world.single_object_share)
                  if keep(s)]
        if len(scenes) >= n or draw > 1000 * max(n, 1):
            return scenes[:n]
        draw = draw * _DRAW_FACTOR + 16


def split_size(world: WorldConfig, split: str) -> int:
    return {VAL_STREAM: world.n_val_images, TEST_STREAM: world.n_test_images, NOVEL_STREAM: world.n_novel_images}[split]


def split_scenes(world: WorldConfig, split: str, n: int | None = None) -> list[Scene]:
    """The first ``n`` (default: the configured size) scenes of an evaluation split."""
    n = split_size(world, split) if n is None else n
    pairs = heldout_pairs(world)
    if split == TEST_STREAM:
        return _filtered(world, TEST_STREAM, n, lambda s: not has_pair(s, pairs))
    if split == VAL_STREAM:
        taken = {s.key() for s in split_scenes(world, TEST_STREAM)}
        return _filtered(world, VAL_STREAM, n, lambda s: not has_pair(s, pairs) and s.key() not in taken)
    if split == NOVEL_STREAM:
        if not pairs:
            return []
        return _filtered(world, NOVEL_STREAM, n, lambda s: has_pair(s, pairs))
    raise ValueError(f"unknown world split {split!r}; use one of {EVAL_SPLITS}")


def test_scenes(world: WorldConfig, n: int | None = None) -> list[Scene]:
    """The first ``n`` (default all) scenes of the world's held-out test split."""
    return split_scenes(world, TEST_STREAM, n or world.n_test_images)


def val_scenes(world: WorldConfig, n: int | None = None) -> list[Scene]:
    """The first ``n`` (default all) scenes of the validation split (every tuning choice is made here)."""
    return split_scenes(world, VAL_STREAM, n or world.n_val_images)


def test_keys(world: WorldConfig) -> set:
    """Attribute keys of every evaluation scene (validation, test, novel): train scenes with one are skipped."""
    return {s.key() for split in EVAL_SPLITS if split_size(world, split) for s in split_scenes(world, split)}


def train_scenes(world: WorldConfig, excluded: set | None = None) -> list[Scene]:
    """Train scenes of the caption-only corpus, minus evaluation scene keys and held-out colour-shape pairs."""
    excluded = test_keys(world) if excluded is None else excluded
    pairs = heldout_pairs(world)
    return [s for s in scene_stream(world.seed, TRAIN_STREAM, world.n_train_scenes, world.max_objects,
                                    world.single_object_share) if s.key() not in excluded and not has_pair(s, pairs)]
