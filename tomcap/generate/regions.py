"""MacCap subregion feature aggregation.

The image is cut into a grid of crops; each crop is encoded with CLIP, crops are weighted by how
similar they are to the whole image (softmax over cosine / temperature, so off-object background
crops count less), and the weighted crop mean is blended with the global embedding.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def grid_crops(image: Image.Image, grid: int) -> list[Image.Image]:
    """``grid``×``grid`` non-overlapping crops, row-major."""
    w, h = image.size
    xs = np.linspace(0, w, grid + 1).round().astype(int)
    ys = np.linspace(0, h, grid + 1).round().astype(int)
    return [image.crop((xs[c], ys[r], xs[c + 1], ys[r + 1])) for r in range(grid) for c in range(grid)]


def aggregate_regions(global_emb: np.ndarray, crop_emb: np.ndarray, global_weight: float,
                      temperature: float) -> np.ndarray:
    """Aggregate (B, D) global and (B, R, D) crop embeddings (L2-normalised) into (B, D), re-normalised."""
    sim = np.einsum("bd,brd->br", global_emb, crop_emb) / temperature
    w = np.exp(sim - sim.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    regional = np.einsum("br,brd->bd", w, crop_emb)
    out = global_weight * global_emb + (1.0 - global_weight) * regional
    return out / np.linalg.norm(out, axis=1, keepdims=True)
