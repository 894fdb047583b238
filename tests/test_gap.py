"""Gap stage on synthetic Gaussian embedding artifacts with known mean/std; report; bad input."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tomcap import gapmath
from tomcap.artifacts import ArtifactStore, BuildOutput, StageSpec
from tomcap.cli.main import main
from tomcap.config import StageConfig
from tomcap.embed.store import IDS_FILE, write_shards
from tomcap.errors import ArtifactError, InputDataError
from tomcap.gap import GapConfig, run_gap

D = 8


class _Fake(StageConfig):
    tag: str


def _artifact(data, stage, arr, ids, fp, image_ids=None, tag="a"):
    """An 'embed'/'embed_images' artifact holding arr (N, D) float32, built like the real stages lay it out."""
    def build(tmp):
        shards = write_shards(arr, tmp, "float32", 1000)
        col = {"embed": "caption_id", "embed_images": "image_id"}[stage]
        frame = {col: ids}
        if stage == "embed":
            frame["image_id"] = image_ids if image_ids is not None else [None] * len(ids)
        pl.DataFrame(frame, schema={k: pl.String for k in frame}).write_parquet(tmp / IDS_FILE[stage])
        return BuildOutput(rows={"rows": len(ids)}, info={"dim": D, "model_fingerprint": fp, "dtype": "float32",
                                                          "shards": shards})

    return ArtifactStore(data).build(StageSpec(stage, "test"), _Fake(tag=tag), {}, build)


@pytest.fixture
def synthetic(tmp_path):
    rng = np.random.default_rng(0)
    mu_t, sig_t = rng.normal(0, 0.3, D), rng.uniform(0.05, 0.2, D)
    mu_i, sig_i = rng.normal(0, 0.3, D), rng.uniform(0.05, 0.2, D)
    n, m = 3000, 2500
    txt = (rng.standard_normal((n, D)) * sig_t + mu_t).astype(np.float32)
    img = (rng.standard_normal((m, D)) * sig_i + mu_i).astype(np.float32)
    data = tmp_path / "data"
    text = _artifact(data, "embed", txt, [f"c{i}" for i in range(n)], "M@w", image_ids=[str(i % 500) for i in range(n)])
    images = _artifact(data, "embed_images", img, [f"u{i}" for i in range(m)], "M@w")
    # Paired images: image j is the mean caption of image id j plus known noise.
    noise = rng.uniform(0.01, 0.05, D)
    paired_img = np.stack([txt[np.arange(n) % 500 == j].mean(0) for j in range(500)]) + rng.standard_normal((500,
                                                                                                             D)) * noise
    paired = _artifact(data, "embed_images", paired_img.astype(np.float32), [str(j) for j in range(500)], "M@w",
                       tag="p")
    return data, text, images, paired, (mu_t, sig_t, mu_i, sig_i)


def test_gap_stage_recovers_known_gaussians(synthetic):
    data, text, images, _, (mu_t, sig_t, mu_i, sig_i) = synthetic
    ref = run_gap(GapConfig(renormalize=False), data, text=text, images=images)
    s = gapmath.load_stats(ref.dir)
    np.testing.assert_allclose(s.mu_t, mu_t, atol=0.015)
    np.testing.assert_allclose(s.sigma_i, sig_i, rtol=0.06)
    assert s.model_fingerprint == "M@w" and s.n_text == 3000 and s.n_image == 2500
    info = ref.manifest().info
    assert info["before"]["centroid_gap"] > 0.3 and info["after"]["centroid_gap"] < 0.02
    assert info["after"]["distribution_gap"] < 0.2 * info["before"]["distribution_gap"]
    report = (ref.dir / "report.md").read_text()
    assert "centroid gap" in report and (ref.dir / "per_dim_means_stds.png").stat().st_size > 1000
    assert info["noise_std_source"] == "config"
    assert run_gap(GapConfig(renormalize=False), data, text=text, images=images).cached


def test_gap_stage_paired_noise(synthetic):
    data, text, images, paired, _ = synthetic
    ref = run_gap(GapConfig(), data, text=text, images=images, paired=paired)
    info = ref.manifest().info
    assert info["noise_std_source"] == "paired" and ref.manifest().rows["paired_rows"] == 3000
    assert "paired_cosine" in info and (ref.dir / "paired_cosine.png").is_file()


def test_mismatched_models_and_empty_set(synthetic, capsys):
    data, text, images, _, _ = synthetic
    other = _artifact(data, "embed_images", np.ones((4, D), np.float32), list("abcd"), "OTHER@w", tag="o")
    with pytest.raises(ArtifactError, match="same CLIP model"):
        run_gap(GapConfig(), data, text=text, images=other)
    empty = _artifact(data, "embed_images", np.zeros((0, D), np.float32), [], "M@w", tag="e")
    with pytest.raises(InputDataError, match="empty"):
        run_gap(GapConfig(), data, text=text, images=empty)
    assert not (data / "artifacts" / "gap").exists() or not list((data / "artifacts" / "gap").iterdir())
    code = main(["gap", "--text", str(text.dir), "--images", str(other.dir), "--data-dir", str(data)])
    assert code == 2 and "same CLIP model" in capsys.readouterr().err
    assert main(["gap", "--text", str(text.dir), "--images", str(images.dir), "--data-dir", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["stage"] == "gap"
