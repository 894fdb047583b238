"""Seeded sampling of scenes: 1-3 objects with shape, colour, size and a cell of a 3x3 grid.

A scene is plain data (no pixels); ``render.py`` draws it and ``captions.py`` describes it. The
attribute vocabularies below are the single source of truth for rendering, captions, parsing and
zero-shot probes.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (35, 70, 225),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 180),
    "orange": (250, 140, 20),
    "pink": (250, 130, 200),
    "brown": (130, 80, 35),
}
"""Object colours (RGB). Chosen to stay distinct from every background below."""
SIZES: tuple[str, ...] = ("small", "large")
ROWS: tuple[str, ...] = ("top", "middle", "bottom")
COLS: tuple[str, ...] = ("left", "center", "right")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "black": (15, 15, 15),
    "white": (240, 240, 240),
}
GRID = len(ROWS)
"""The image is split into GRID x GRID cells; an object sits in one cell."""


@dataclass(frozen=True)
class SceneObject:
    """One object: attribute names plus its cell (row, col) and a small sub-cell jitter in [-1, 1]."""

    shape: str
    color: str
    size: str
    row: int
    col: int
    jitter: tuple[float, float] = (0.0, 0.0)

    @property
    def position(self) -> str:
        """Canonical position name, e.g. ``top left`` or ``middle center``."""
        return f"{ROWS[self.row]} {COLS[self.col]}"

    def key(self) -> tuple[str, str, str, int, int]:
        return (self.shape, self.color, self.size, self.row, self.col)


@dataclass(frozen=True)
class Scene:
    """A scene: background plus objects in distinct cells, in row-major cell order."""

    scene_id: str
    background: str
    objects: tuple[SceneObject, ...]

    def key(self) -> tuple:
        """Canonical attribute key (jitter ignored): two scenes with the same key look the same to a captioner."""
        return (self.background, tuple(o.key() for o in self.objects))


def sample_object(rng: np.random.Generator, row: int, col: int) -> SceneObject:
    """Uniform shape, colour and size for an object placed in cell (row, col)."""
    return SceneObject(
        shape=SHAPES[rng.integers(len(SHAPES))],
        color=list(COLORS)[rng.integers(len(COLORS))],
        size=SIZES[rng.integers(len(SIZES))],
        row=row,
        col=col,
        jitter=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
    )


def sample_scene(rng: np.random.Generator, scene_id: str, max_objects: int = 3,
                 single_object_share: float = 0.4) -> Scene:
    """Draw one scene; objects occupy distinct cells and never share (colour, shape) so captions stay unambiguous."""
    if max_objects <= 1 or rng.random() < single_object_share:
        n = 1
    else:
        n = int(rng.integers(2, max_objects + 1))
    cells = rng.choice(GRID * GRID, size=n, replace=False)
    objects: list[SceneObject] = []
    for cell in sorted(int(c) for c in cells):
        obj = sample_object(rng, cell // GRID, cell % GRID)
        while any((o.color, o.shape) == (obj.color, obj.shape) for o in objects):
            obj = sample_object(rng, cell // GRID, cell % GRID)
        objects.append(obj)
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    return Scene(scene_id=scene_id, background=background, objects=tuple(objects))


def scene_stream(seed: int, stream: str, n: int, max_objects: int = 3,
                 single_object_share: float = 0.4) -> list[Scene]:
    """``n`` scenes of a named stream (``train``, ``test``, ...): same seed and stream -> same scenes.

    Each stream gets its own generator (seeded from the root seed and the stream name), so the
    train and test scenes do not depend on each other's sizes.
    """
    rng = np.random.default_rng([seed, _stream_code(stream)])
    return [sample_scene(rng, f"{stream}-{i:07d}", max_objects, single_object_share) for i in range(n)]


def _stream_code(stream: str) -> int:
    # A stable integer from the whole name (Python's hash() is salted per process).
    return int.from_bytes(hashlib.sha256(stream.encode("utf-8")).digest()[:8], "little")


MUTABLE_ATTRIBUTES = ("shape", "color", "size", "position")
MUTATIONS = (*MUTABLE_ATTRIBUTES, "swap")
"""A 5-weight mix also draws ``swap`` twins: two objects exchange colours (same bag of words, other binding)."""


def _swap_partners(objs: list[SceneObject], i: int) -> list[int]:
    """Objects whose colour can be exchanged with object ``i``'s: other colour and shape (else the
    twin would say the same words), and no third object already holding a resulting pair."""
    o = objs[i]
    out = []
    for j, p in enumerate(objs):
        if j == i or p.color == o.color or p.shape == o.shape:
            continue
        rest = {(q.color, q.shape) for k, q in enumerate(objs) if k not in (i, j)}
        if (p.color, o.shape) not in rest and (o.color, p.shape) not in rest:
            out.append(j)
    return out


def mutate_scene(scene: Scene, rng: np.random.Generator, scene_id: str,
                 weights: tuple[float, ...] | None = None) -> Scene:
    """A hard negative of ``scene``: one attribute of one object changed (shape, colour, size or cell).

    The twin keeps everything else, so a contrastive batch holding both forces the model to tell
    exactly that attribute apart. Colour/shape changes keep (colour, shape) pairs unique.
    ``weights``: probabilities of changing each of ``MUTABLE_ATTRIBUTES`` (default uniform), or of each
    of ``MUTATIONS`` when five are given.
    """
    objs = list(scene.objects)
    i = int(rng.integers(len(objs)))
    o = objs[i]
    if weights is None:
        attr = MUTABLE_ATTRIBUTES[rng.integers(len(MUTABLE_ATTRIBUTES))]
    else:
        names = MUTATIONS[:len(weights)]
        attr = names[int(rng.choice(len(names), p=np.asarray(weights) / sum(weights)))]
    if attr == "swap":
        partners = _swap_partners(objs, i)
        if partners:
            j = partners[int(rng.integers(len(partners)))]
            p = objs[j]
            objs[i] = SceneObject(o.shape, p.color, o.size, o.row, o.col, o.jitter)
            objs[j] = SceneObject(p.shape, o.color, p.size, p.row, p.col, p.jitter)
            return Scene(scene_id=scene_id, background=scene.background, objects=tuple(objs))
        attr = "color"  # one object, or every exchange would repeat a (colour, shape) pair
    taken_cells = {(p.row, p.col) for p in objs}
    taken_pairs = {(p.color, p.shape) for j, p in enumerate(objs) if j != i}
    if attr == "position" and len(taken_cells) < GRID * GRID:
        free = [c for c in range(GRID * GRID) if divmod(c, GRID) not in taken_cells]
        row, col = divmod(free[rng.integers(len(free))], GRID)
        new = SceneObject(o.shape, o.color, o.size, row, col, o.jitter)
    elif attr == "size":
        new = SceneObject(o.shape, o.color, SIZES[1 - SIZES.index(o.size)], o.row, o.col, o.jitter)
    elif attr == "color":
        options = [c for c in COLORS if c != o.color and (c, o.shape) not in taken_pairs]
        new = SceneObject(o.shape, options[rng.integers(len(options))], o.size, o.row, o.col, o.jitter)
    else:
        options = [s for s in SHAPES if s != o.shape and (o.color, s) not in taken_pairs]
        new = SceneObject(options[rng.integers(len(options))], o.color, o.size, o.row, o.col, o.jitter)
    objs[i] = new
    # keep the row-major object order that captions and keys rely on
    objs.sort(key=lambda p: (p.row, p.col))
    return Scene(scene_id=scene_id, background=scene.background, objects=tuple(objs))
