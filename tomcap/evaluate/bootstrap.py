"""Percentile bootstrap intervals over test images, seeded and paired across metrics and variants.

Every metric and every variant of one report is resampled with the same image draws (images
matched by id), so an interval of a difference between two variants is the paired one. CIDEr-D
of a corpus is the mean of its per-image scores (fixed reference IDF), so resampling per-image
values gives the corpus score's interval.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95


def resample_indices(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(resamples, n) indices drawn with replacement: the same for every metric of a seed and size."""
    if n < 1:
        raise ValueError("no images to resample")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    return np.random.default_rng([seed, n]).integers(0, n, size=(resamples, n))


def interval(values: Sequence[float] | np.ndarray, draws: np.ndarray,
             level: float = DEFAULT_LEVEL) -> dict[str, float]:
    """{'mean', 'lo', 'hi'}: the mean of ``values`` and the percentile interval of the resampled means."""
    v = np.asarray(values, dtype=np.float64)
    means = v[draws].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi)}


def aligned(per_image: Mapping[str, Mapping[int, float]], order: Sequence[int]) -> dict[str, np.ndarray]:
    """metric -> values in ``order`` (image ids); an id missing from a metric is an error."""
    out = {}
    for name, by_id in per_image.items():
        missing = [i for i in order if i not in by_id]
        if missing:
            raise ValueError(f"metric {name} has no value for {len(missing)} images (e.g. {missing[0]})")
        out[name] = np.array([by_id[i] for i in order], dtype=np.float64)
    return out


def intervals(per_image: Mapping[str, np.ndarray], resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
              level: float = DEFAULT_LEVEL) -> dict[str, dict[str, float]]:
    """metric -> interval, all metrics of the same images (same length, same order) on the same draws."""
    lengths = {len(v) for v in per_image.values()}
    if len(lengths) != 1:
        raise ValueError(f"per-image metrics have different lengths {sorted(lengths)}")
    draws = resample_indices(lengths.pop(), resamples, seed)
    return {k: interval(v, draws, level) for k, v in per_image.items()}


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                      level: float = DEFAULT_LEVEL) -> dict[str, float]:
    """Interval of mean(a) - mean(b) over the same images (a[i], b[i] score image i)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {a.shape} vs {b.shape}")
    return interval(a - b, resample_indices(len(a), resamples, seed), level)


def separated(x: Mapping[str, float], y: Mapping[str, float]) -> bool:
    """True when two intervals do not overlap."""
    return x["lo"] > y["hi"] or y["lo"] > x["hi"]
