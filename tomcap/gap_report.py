"""Markdown report and PNG histograms of the gap stage (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .gapmath import GaussianStats

MEANS_STDS_PNG = "per_dim_means_stds.png"
PAIRED_COSINE_PNG = "paired_cosine.png"
REPORT_MD = "report.md"
HIST_BINS = 50


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_means_stds(path: Path, stats: GaussianStats, corrected: np.ndarray) -> None:
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    series = {"text": (stats.mu_t, stats.sigma_t), "image": (stats.mu_i, stats.sigma_i),
              "corrected text": (corrected.mean(0), corrected.std(0))}
    for name, (mu, sd) in series.items():
        axes[0].hist(mu, bins=HIST_BINS, alpha=0.5, label=name)
        axes[1].hist(sd, bins=HIST_BINS, alpha=0.5, label=name)
    axes[0].set_title("per-dimension means")
    axes[1].set_title("per-dimension stds")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_cosines(path: Path, cos: dict[str, np.ndarray]) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, v in cos.items():
        ax.hist(v, bins=HIST_BINS, alpha=0.5, label=f"{name} correction (mean {v.mean():.3f})")
    ax.set_title("cosine of paired image/text embeddings")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(folder: Path, stats: GaussianStats, info: dict, txt: np.ndarray, img: np.ndarray,
                 corrected: np.ndarray, cos: dict[str, np.ndarray] | None) -> list[str]:
    """Write report.md and the PNGs into folder; returns their names."""
    files = [MEANS_STDS_PNG, REPORT_MD]
    _plot_means_stds(folder / MEANS_STDS_PNG, stats, corrected)
    b, a = info["before"], info["after"]
    lines = [
        "# Modality gap report", "",
        f"Model: `{info['model_fingerprint']}`, dim {stats.dim}; "
        f"{stats.n_text} text and {stats.n_image} image embeddings "
        f"({stats.n_paired} paired). Figures on samples of {len(txt)} text / {len(img)} image rows.", "",
        "| | centroid gap ‖μ_I − μ_T‖ | distribution gap (centred Fréchet) |", "|---|---|---|",
        f"| before correction | {b['centroid_gap']:.4f} | {b['distribution_gap']:.4f} |",
        f"| after correction | {a['centroid_gap']:.4f} | {a['distribution_gap']:.4f} |", "",
        f"Noise std ({info['noise_std_source']}): mean {stats.noise_std.mean():.4f}, "
        f"min {stats.noise_std.min():.4f}, max {stats.noise_std.max():.4f}.", "",
        f"![per-dimension means and stds]({MEANS_STDS_PNG})", ""]
    if cos is not None:
        _plot_cosines(folder / PAIRED_COSINE_PNG, cos)
        files.append(PAIRED_COSINE_PNG)
        lines += [f"Mean paired cosine: {info['paired_cosine']['before']:.4f} before, "
                  f"{info['paired_cosine']['after']:.4f} after correction.", "",
                  f"![paired cosines]({PAIRED_COSINE_PNG})", ""]
    else:
        lines += ["No paired set given: no paired-cosine histogram.", ""]
    (folder / REPORT_MD).write_text("\n".join(lines), encoding="utf-8")
    return files
