"""Gap maths on synthetic Gaussians with known mean and std."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tomcap import gapmath
from tomcap.errors import InputDataError

D = 16


def _gauss(rng, n, mu, sigma):
    return (rng.standard_normal((n, D)) * sigma + mu).astype(np.float32)


@pytest.fixture
def known():
    rng = np.random.default_rng(0)
    mu_t, sig_t = rng.normal(0, 0.3, D), rng.uniform(0.05, 0.2, D)
    mu_i, sig_i = rng.normal(0, 0.3, D), rng.uniform(0.05, 0.2, D)
    txt = _gauss(rng, 40000, mu_t, sig_t)
    img = _gauss(rng, 30000, mu_i, sig_i)
    return txt, img, (mu_t, sig_t, mu_i, sig_i)


def test_estimates_match_known_parameters(known):
    txt, img, (mu_t, sig_t, mu_i, sig_i) = known
    s = gapmath.estimate_stats(txt, img)
    np.testing.assert_allclose(s.mu_t, mu_t, atol=0.01)
    np.testing.assert_allclose(s.sigma_t, sig_t, rtol=0.03)
    np.testing.assert_allclose(s.mu_i, mu_i, atol=0.01)
    np.testing.assert_allclose(s.sigma_i, sig_i, rtol=0.03)
    assert s.n_text == 40000 and s.n_image == 30000 and s.n_paired == 0
    np.testing.assert_allclose(s.noise_std, gapmath.DEFAULT_NOISE_STD)


def test_corrected_text_matches_image_distribution(known):
    txt, img, (_, _, mu_i, sig_i) = known
    s = gapmath.estimate_stats(txt, img)
    corr = gapmath.correct_text(txt, s, renormalize=False)
    np.testing.assert_allclose(corr.mean(0), mu_i, atol=0.01)
    np.testing.assert_allclose(corr.std(0), sig_i, rtol=0.03)
    before = gapmath.centroid_gap(img, txt)
    assert before > 0.5 and gapmath.centroid_gap(img, corr) < 0.02
    assert gapmath.frechet_distance_centered(img, corr) < 0.05 * gapmath.frechet_distance_centered(img, txt)


def test_torch_and_numpy_agree(known):
    txt, img, _ = known
    s = gapmath.estimate_stats(txt, img)
    a = gapmath.correct_text(txt[:100], s)
    b = gapmath.correct_text(torch.from_numpy(txt[:100]), s)
    assert isinstance(b, torch.Tensor) and b.dtype == torch.float32
    np.testing.assert_allclose(a, b.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_paired_noise_and_cosine():
    rng = np.random.default_rng(1)
    t = rng.standard_normal((20000, D)).astype(np.float32)
    noise = rng.uniform(0.1, 0.3, D)
    i = t + rng.standard_normal((20000, D)).astype(np.float32) * noise
    s = gapmath.estimate_stats(t, i, paired_text=t, paired_image=i)
    np.testing.assert_allclose(s.noise_std, noise, rtol=0.03)
    assert s.n_paired == 20000
    assert gapmath.mean_paired_cosine(t, t) == pytest.approx(1.0)
    assert gapmath.mean_paired_cosine(t, -t) == pytest.approx(-1.0)


def test_frechet_identity_and_known_value():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50000, 4))
    assert gapmath.frechet_distance_centered(x, x) == pytest.approx(0.0, abs=1e-8)
    # C_T = 4 C_I exactly: tr(C + 4C - 2*2C) = tr(C).
    assert gapmath.frechet_distance_centered(x, 2 * x + 5) == pytest.approx(float(np.trace(np.cov(x.T, bias=True))),
                                                                            rel=1e-6)


def test_save_load_roundtrip(tmp_path, known):
    txt, img, _ = known
    s = gapmath.estimate_stats(txt[:100], img[:100], meta={"model_fingerprint": "m@x"})
    names = gapmath.save_stats(s, tmp_path)
    assert sorted(names) == sorted([gapmath.STATS_TENSORS, gapmath.STATS_JSON])
    r = gapmath.load_stats(tmp_path)
    for k in gapmath.STAT_FIELDS:
        np.testing.assert_array_equal(getattr(r, k), getattr(s, k))
    assert r.model_fingerprint == "m@x" and r.n_text == 100


def test_empty_and_mismatched_inputs():
    with pytest.raises(InputDataError, match="empty"):
        gapmath.estimate_stats(np.zeros((0, D), np.float32), np.ones((3, D), np.float32))
    with pytest.raises(InputDataError, match="same CLIP model"):
        gapmath.estimate_stats(np.ones((3, D)), np.ones((3, D + 1)))
    s = gapmath.estimate_stats(np.random.rand(5, D), np.random.rand(5, D))
    with pytest.raises(InputDataError, match="dim"):
        gapmath.correct_text(np.ones((2, D + 2), np.float32), s)


def test_saved_stats_bytes_do_not_depend_on_the_process(tmp_path):
    """safetensors orders metadata keys by hash map: the file must still be byte-stable across processes."""
    import subprocess
    import sys

    script = ("import sys, numpy as np; from tomcap.gapmath import GaussianStats, save_stats; "
              "v = np.arange(4, dtype=np.float32); "
              "save_stats(GaussianStats(mu_i=v, mu_t=v, sigma_i=v, sigma_t=v, noise_std=v, n_text=1, n_image=1), "
              "sys.argv[1])")
    digests = set()
    for i in range(4):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / str(i))], check=True,
                       env={**__import__("os").environ, "PYTHONHASHSEED": str(i)})
        digests.add((tmp_path / str(i) / "stats.safetensors").read_bytes())
    assert len(digests) == 1
