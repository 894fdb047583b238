"""COCO-like captions for scenes (templates + synonyms) and the inverse: a caption attribute parser.

Every caption names each object's size, colour and shape (through a synonym) and either its grid
position or, for some two-object scenes, the true spatial relation between the two objects.
``parse_caption`` maps any caption (generated, or written by a captioner) back to canonical
attribute words, which is how generated captions are scored for attribute accuracy.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from .scenes import BACKGROUNDS, COLORS, COLS, ROWS, SHAPES, SIZES, Scene, SceneObject

SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
COLOR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in COLORS} | {"purple": ("purple", "violet")}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {s: (s,) for s in SHAPES} | {
    "circle": ("circle", "disk"), "diamond": ("diamond", "rhombus"), "cross": ("cross", "plus sign")}
BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {b: (b,) for b in BACKGROUNDS} | {"gray": ("gray", "grey")}
POSITION_PHRASES: dict[tuple[int, int], tuple[str, ...]] = {
    (0, 0): ("in the top left corner", "in the upper left corner", "at the top left"),
    (0, 1): ("at the top center", "in the top middle", "at the top of the image"),
    (0, 2): ("in the top right corner", "in the upper right corner", "at the top right"),
    (1, 0): ("on the left side", "in the middle left", "at the center left"),
    (1, 1): ("in the center", "in the middle of the image", "at the center of the picture"),
    (1, 2): ("on the right side", "in the middle right", "at the center right"),
    (2, 0): ("in the bottom left corner", "in the lower left corner", "at the bottom left"),
    (2, 1): ("at the bottom center", "in the bottom middle", "at the bottom of the image"),
    (2, 2): ("in the bottom right corner", "in the lower right corner", "at the bottom right"),
}
"""Prepositional phrases per grid cell (row, col); the parser matches them without the preposition."""
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left of": ("to the left of",), "right of": ("to the right of",),
    "above": ("above",), "below": ("below", "under"),
}
COUNT_WORDS = {2: "two", 3: "three"}

SINGLE_TEMPLATES: tuple[str, ...] = (
    "{o} {p}",
    "there is {o} {p}",
    "{o} {p} on a {bg} background",
    "a picture of {o} {p}",
    "{o} on a {bg} background, {p}",
    "a {bg} image with {o} {p}",
    "a simple drawing of {o} {p}",
)
MULTI_TEMPLATES: tuple[str, ...] = (
    "{list}",
    "there are {n} shapes: {list}",
    "{list} on a {bg} background",
    "a {bg} picture showing {list}",
    "{n} shapes on a {bg} background: {list}",
    "an image with {list}",
)
RELATION_TEMPLATES: tuple[str, ...] = (
    "{a} {rel} {b}",
    "{a} {rel} {b} on a {bg} background",
    "a picture of {a} {rel} {b}",
)
MAX_TRIES = 200
"""Draws before giving up on finding another distinct caption (the template space is far larger)."""


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _object_phrase(obj: SceneObject, rng: np.random.Generator) -> str:
    size = SIZE_WORDS[obj.size][rng.integers(len(SIZE_WORDS[obj.size]))]
    color = COLOR_WORDS[obj.color][rng.integers(len(COLOR_WORDS[obj.color]))]
    shape = SHAPE_WORDS[obj.shape][rng.integers(len(SHAPE_WORDS[obj.shape]))]
    return _article(f"{size} {color} {shape}")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[rng.integers(len(options))]


def true_relations(a: SceneObject, b: SceneObject) -> list[str]:
    """Canonical relations that hold from ``a`` to ``b`` (``left of``, ``above``, ...)."""
    rels = []
    if a.col != b.col:
        rels.append("left of" if a.col < b.col else "right of")
    if a.row != b.row:
        rels.append("above" if a.row < b.row else "below")
    return rels


def _one_caption(scene: Scene, rng: np.random.Generator, relational: bool) -> str:
    bg = _pick(rng, BACKGROUND_WORDS[scene.background])
    objs = list(scene.objects)
    if len(objs) == 1:
        o = objs[0]
        return _pick(rng, SINGLE_TEMPLATES).format(
            o=_object_phrase(o, rng), p=_pick(rng, POSITION_PHRASES[(o.row, o.col)]), bg=bg)
    order = rng.permutation(len(objs))
    if relational and len(objs) == 2:
        a, b = objs[order[0]], objs[order[1]]
        rel = _pick(rng, tuple(true_relations(a, b)))
        return _pick(rng, RELATION_TEMPLATES).format(
            a=_object_phrase(a, rng), b=_object_phrase(b, rng), rel=_pick(rng, RELATION_PHRASES[rel]), bg=bg)
    parts = [f"{_object_phrase(objs[i], rng)} {_pick(rng, POSITION_PHRASES[(objs[i].row, objs[i].col)])}"
             for i in order]
    listing = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return _pick(rng, MULTI_TEMPLATES).format(list=listing, n=COUNT_WORDS[len(objs)], bg=bg)


def scene_captions(scene: Scene, n: int = 5, seed: int = 0, relation_share: float = 0.4) -> list[str]:
    """``n`` distinct captions of a scene; deterministic in (scene id, seed).

    For a two-object scene, with probability ``relation_share`` two of the captions describe the
    spatial relation (left of / above) instead of grid positions.
    """
    rng = np.random.default_rng([seed, zlib.crc32(scene.scene_id.encode("utf-8"))])
    n_rel = 2 if len(scene.objects) == 2 and rng.random() < relation_share else 0
    out: list[str] = []
    for i in range(MAX_TRIES):
        cap = _one_caption(scene, rng, relational=len(out) < n_rel)
        if cap not in out:
            out.append(cap)
            if len(out) == n:
                return out
    raise RuntimeError(f"could only write {len(out)} distinct captions for scene {scene.scene_id} "
                       f"after {MAX_TRIES} draws")


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class CaptionAttributes:
    """Canonical attribute words found in a caption (unknown words are ignored)."""

    colors: frozenset[str]
    shapes: frozenset[str]
    sizes: frozenset[str]
    positions: frozenset[str]
    relations: frozenset[str]
    background: str | None

    def words(self) -> set[str]:
        """All canonical attribute words, position names included (e.g. ``{'red', 'circle', 'top left'}``)."""
        return set(self.colors | self.shapes | self.sizes | self.positions | self.relations)


def _phrase_table() -> list[tuple[str, str, str]]:
    """(surface phrase, kind, canonical value), longest phrase first so ``top center`` wins over ``center``."""
    rows: list[tuple[str, str, str]] = []
    for kind, table in (("size", SIZE_WORDS), ("color", COLOR_WORDS), ("shape", SHAPE_WORDS),
                        ("relation", RELATION_PHRASES)):
        for canon, words in table.items():
            rows += [(w, kind, canon) for w in words]
    for (r, c), phrases in POSITION_PHRASES.items():
        for p in phrases:
            rows.append((p.split(" ", 1)[1], "position", f"{ROWS[r]} {COLS[c]}"))  # drop the preposition
    return sorted(rows, key=lambda t: -len(t[0]))


_TABLE = _phrase_table()
_PATTERN = re.compile(r"\b(" + "|".join(re.escape(p) for p, _, _ in _TABLE) + r")s?\b")
_LOOKUP = {p: (k, v) for p, k, v in _TABLE}
_BG_PATTERN = re.compile(r"\b(" + "|".join(w for ws in BACKGROUND_WORDS.values() for w in ws)
                         + r")\s+(?:background|image|picture)\b")
_BG_CANON = {w: b for b, ws in BACKGROUND_WORDS.items() for w in ws}


def parse_caption(text: str) -> CaptionAttributes:
    """Canonical colours, shapes, sizes, grid positions, relations and background named in ``text``."""
    low = " ".join(text.lower().split())
    found: dict[str, set[str]] = {"size": set(), "color": set(), "shape": set(), "position": set(), "relation": set()}
    for m in _PATTERN.finditer(low):
        kind, canon = _LOOKUP[m.group(1)]
        found[kind].add(canon)
    bg = _BG_PATTERN.search(low)
    return CaptionAttributes(
        colors=frozenset(found["color"]), shapes=frozenset(found["shape"]), sizes=frozenset(found["size"]),
        positions=frozenset(found["position"]), relations=frozenset(found["relation"]),
        background=_BG_CANON[bg.group(1)] if bg else None,
    )


def scene_attributes(scene: Scene) -> CaptionAttributes:
    """The attributes a perfect caption of ``scene`` would name (positions as canonical cell names)."""
    return CaptionAttributes(
        colors=frozenset(o.color for o in scene.objects), shapes=frozenset(o.shape for o in scene.objects),
        sizes=frozenset(o.size for o in scene.objects), positions=frozenset(o.position for o in scene.objects),
        relations=frozenset(), background=scene.background,
    )


def entity_vocabulary() -> dict[str, list[str]]:
    """Every (colour, shape) object as an entity ``"<colour> <shape>"``, named by any colour word followed by any
    shape word (held-out pairs included: they are entities the corpus never names)."""
    return {f"{c} {s}": [f"{cw} {sw}" for cw in COLOR_WORDS[c] for sw in SHAPE_WORDS[s]]
            for c in COLORS for s in SHAPES}


def canonical_caption(size: str, color: str, shape: str, row: int, col: int) -> str:
    """The first-choice wording of a single object (used for zero-shot class prompts)."""
    return f"{_article(f'{size} {color} {shape}')} {POSITION_PHRASES[(row, col)][0]}"


assert set(SIZE_WORDS) == set(SIZES) and set(COLOR_WORDS) == set(COLORS) and set(SHAPE_WORDS) == set(SHAPES)
