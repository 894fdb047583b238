"""MacCap pieces: rerank picks the best-scoring candidate; region aggregation weights relevant crops."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tomcap.generate.consensus import consensus_scores
from tomcap.generate.regions import aggregate_regions, grid_crops
from tomcap.generate.rerank import pick_best, rerank_scores


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_rerank_picks_highest_score():
    rng = np.random.default_rng(0)
    img = _unit(rng.normal(size=(3, 8)))
    cands = _unit(rng.normal(size=(3, 5, 8)))
    cands[1, 3] = img[1]  # a perfect match for image 1
    loglik = rng.normal(size=(3, 5)) - 5
    lengths = rng.integers(3, 9, size=(3, 5))
    scores = rerank_scores(img, cands, loglik, lengths, likelihood_weight=0.1)
    expected = np.array([[img[b] @ cands[b, n] + 0.1 * loglik[b, n] / lengths[b,
                                                                              n] for n in range(5)] for b in range(3)])
    assert np.allclose(scores, expected)
    best = pick_best(scores)
    assert best[1] == 3 and all(scores[b, best[b]] == scores[b].max() for b in range(3))
    # With a huge likelihood weight the most likely candidate wins instead.
    assert (pick_best(rerank_scores(img, cands, loglik, lengths, 1e6)) == (loglik / lengths).argmax(1)).all()
    with pytest.raises(ValueError, match="shapes"):
        rerank_scores(img, cands[:, :, :4], loglik, lengths, 0.1)


def test_grid_crops_cover_the_image():
    image = Image.new("RGB", (65, 64))
    crops = grid_crops(image, 3)
    assert len(crops) == 9 and sum(c.size[0] for c in crops[:3]) == 65 and sum(c.size[1] for c in crops[::3]) == 64


def test_region_aggregation_prefers_crops_like_the_image():
    g = _unit(np.array([[1.0, 0.0, 0.0]]))
    crops = _unit(np.array([[[1.0, 0.2, 0.0], [0.0, 0.0, 1.0]]]))
    sharp = aggregate_regions(g, crops, global_weight=0.0, temperature=0.01)
    assert np.allclose(sharp, crops[:, 0], atol=1e-3)
    assert np.allclose(aggregate_regions(g, crops, global_weight=1.0, temperature=0.1), g)
    blend = aggregate_regions(g, crops, global_weight=0.5, temperature=1.0)
    assert np.isclose(np.linalg.norm(blend), 1.0) and blend[0, 2] > 0


def test_consensus_scores_prefer_the_neighbours_wording():
    refs = ["a red cube on the left", "a red cube in the left corner", "a small red cube on the left"]
    scores = consensus_scores(["a red cube on the left", "on the left a cube that is red", "two blue balls"], refs)
    assert scores.shape == (3,) and scores[0] > scores[1] > scores[2]
    assert consensus_scores(["x y z w"], ["x y z w"])[0] == pytest.approx(1.0)
    assert consensus_scores(["x y"], ["x y"])[0] == pytest.approx(0.5)  # as CIDEr: no 3- or 4-grams score 0
    assert consensus_scores(["two blue balls"], ["a red cube"])[0] == 0.0
    assert (consensus_scores(["a", "b"], []) == 0).all() and (consensus_scores(["a"], [None]) == 0).all()
