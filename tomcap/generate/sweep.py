"""Guidance sweeps: the Pareto front of a reference-based vs a reference-free metric over γ.

The CFG captioning paper (arXiv 2307.16686) shows guidance trading reference similarity (BLEU,
CIDEr) for image specificity (CLIPScore, recall@1); the plot shows where each γ lands.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of points not dominated by another (higher is better on both axes), sorted by x."""
    idx = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        dominated = any(xj >= x and yj >= y and (xj > x or yj > y) for j, (xj, yj) in enumerate(zip(xs, ys)) if j != i)
        if not dominated:
            idx.append(i)
    return sorted(idx, key=lambda i: xs[i])


def plot_pareto(scales: Sequence[float], xs: Sequence[float], ys: Sequence[float], x_name: str, y_name: str,
                out: Path) -> Path:
    """Scatter of (x, y) per guidance scale, front highlighted; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front(xs, ys)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    ax.scatter(xs, ys, color="tab:blue")
    ax.plot([xs[i] for i in front], [ys[i] for i in front], color="tab:orange", label="Pareto front")
    for s, x, y in zip(scales, xs, ys):
        ax.annotate(f"γ={s:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title("Classifier-free guidance sweep")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
