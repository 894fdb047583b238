"""The world's scene streams: held-out test split and the train split disjoint from it by scene key."""
from __future__ import annotations

from .config import WorldConfig
from .scenes import Scene, scene_stream

TRAIN_STREAM = "train"
TEST_STREAM = "test"


def test_scenes(world: WorldConfig, n: int | None = None) -> list[Scene]:
    """The first ``n`` (default all) scenes of the world's held-out test split."""
    return scene_stream(world.seed, TEST_STREAM, n or world.n_test_images, world.max_objects,
                        world.single_object_share)


def test_keys(world: WorldConfig) -> set:
    """Attribute keys of all test scenes: any train scene with one of these keys is skipped."""
    return {s.key() for s in test_scenes(world)}


def train_scenes(world: WorldConfig, excluded: set | None = None) -> list[Scene]:
    """Train scenes of the caption-only corpus, minus scenes whose attribute key is in the test split."""
    excluded = test_keys(world) if excluded is None else excluded
    return [s for s in scene_stream(world.seed, TRAIN_STREAM, world.n_train_scenes, world.max_objects,
                                    world.single_object_share) if s.key() not in excluded]
