"""Bootstrap intervals: seeded, cover the mean, shrink with more images, paired across metrics."""
from __future__ import annotations

import numpy as np
import pytest

from tomcap.evaluate.bootstrap import aligned, intervals, paired_difference, resample_indices, separated


def test_seeded_and_covering():
    rng = np.random.default_rng(1)
    v = rng.random(400)
    a = intervals({"x": v}, resamples=1000, seed=3)["x"]
    assert a == intervals({"x": v}, resamples=1000, seed=3)["x"]
    assert a["lo"] < v.mean() < a["hi"]
    # the percentile interval of a mean is about +-1.96 standard errors
    half = (a["hi"] - a["lo"]) / 2
    assert half == pytest.approx(1.96 * v.std() / np.sqrt(len(v)), rel=0.15)
    wide = intervals({"x": v[:40]}, resamples=1000, seed=3)["x"]
    assert wide["hi"] - wide["lo"] > 2 * (a["hi"] - a["lo"])


def test_paired_difference_sees_what_overlapping_intervals_hide():
    rng = np.random.default_rng(0)
    base = rng.random(300)
    better = base + 0.02  # every image a little better
    ia, ib = intervals({"a": better, "b": base}).values()
    assert not separated(ia, ib)
    d = paired_difference(better, base)
    assert d["lo"] > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="no images"):
        resample_indices(0)
    with pytest.raises(ValueError, match="different lengths"):
        intervals({"a": np.ones(3), "b": np.ones(4)})
    with pytest.raises(ValueError, match="no value"):
        aligned({"a": {1: 0.5}}, [1, 2])
