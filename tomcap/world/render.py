"""Draw scenes as small RGB images with PIL (about 1 ms per 64x64 image, no network, no GPU)."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .scenes import BACKGROUNDS, COLORS, GRID, Scene, SceneObject

SUPERSAMPLE = 2
"""Draw at this multiple of the target size, then box-downsample: cheap anti-aliasing for tiny shapes."""
SIZE_RADIUS = {"small": 0.26, "large": 0.46}
"""Object radius as a fraction of a grid cell's side (large objects nearly fill their cell)."""
JITTER_FRACTION = 0.5
"""How much of the free space around an object in its cell the position jitter may use."""
STAR_INNER = 0.45
CROSS_ARM = 0.36


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of a polygon shape centred at (cx, cy) with circumradius r (y grows downwards)."""
    if shape == "square":
        h = r / math.sqrt(2) * 1.15  # a slightly larger square looks as big as the circle
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * 0.15 - r * math.sin(a))
                for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * STAR_INNER
            a = math.pi / 2 + k * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy - rad * math.sin(a)))
        return pts
    if shape == "cross":
        a, b = r * CROSS_ARM, r
        return [(cx - a, cy - b), (cx + a, cy - b), (cx + a, cy - a), (cx + b, cy - a), (cx + b, cy + a),
                (cx + a, cy + a), (cx + a, cy + b), (cx - a, cy + b), (cx - a, cy + a), (cx - b, cy + a),
                (cx - b, cy - a), (cx - a, cy - a)]
    raise ValueError(f"unknown polygon shape {shape!r}")


def object_geometry(obj: SceneObject, image_size: int) -> tuple[float, float, float]:
    """Centre (x, y) and radius in pixels of an object in an image of side ``image_size``."""
    cell = image_size / GRID
    r = SIZE_RADIUS[obj.size] * cell
    free = cell / 2 - r
    cx = (obj.col + 0.5) * cell + obj.jitter[0] * free * JITTER_FRACTION
    cy = (obj.row + 0.5) * cell + obj.jitter[1] * free * JITTER_FRACTION
    return cx, cy, r


def render_scene(scene: Scene, image_size: int = 64) -> Image.Image:
    """The scene as an RGB PIL image of ``image_size`` x ``image_size`` pixels."""
    big = image_size * SUPERSAMPLE
    img = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        cx, cy, r = (v * SUPERSAMPLE for v in object_geometry(obj, image_size))
        fill = COLORS[obj.color]
        if obj.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_polygon(obj.shape, cx, cy, r), fill=fill)
    return img.resize((image_size, image_size), Image.Resampling.BOX)


def render_batch(scenes: list[Scene], image_size: int = 64) -> np.ndarray:
    """Scenes as a uint8 array of shape [N, image_size, image_size, 3]."""
    out = np.empty((len(scenes), image_size, image_size, 3), dtype=np.uint8)
    for i, s in enumerate(scenes):
        out[i] = np.asarray(render_scene(s, image_size))
    return out
