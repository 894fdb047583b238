"""Guidance sweeps: the Pareto front of a reference-based vs a reference-free metric over γ.

The CFG captioning paper (arXiv 2307.16686) shows guidance trading reference similarity (BLEU,
CIDEr) for image specificity (CLIPScore, recall@1); the plot shows where each γ lands.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec
from ..config import StageConfig
from ..evaluate.config import EvaluateConfig
from ..evaluate.stage import run_evaluate
from .config import GenerateConfig
from .stage import run_generate


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


# -- the sweep as a stage: evaluation of every scale -> Pareto plot + table ----------------------------
SPEC = StageSpec(name="guidance_sweep", version="1", modules=("tomcap.generate.sweep",))
PLOT_FILE, TABLE_FILE = "pareto.png", "sweep.json"


class SweepConfig(StageConfig):
    scales: tuple[float, ...] = Field(default=(0.0, 1.0, 1.5, 2.0, 3.0, 4.0), description="CFG scales (>= 0)")
    x_metric: str = "CIDEr"
    y_metric: str = Field(default="CLIPScore",
                          description="falls back to Bleu_4 when the evaluation has no CLIP metrics")


def with_guidance(config: GenerateConfig, scale: float) -> GenerateConfig:
    """``config`` decoding with CFG scale ``scale``."""
    return config.model_copy(update={"decode": config.decode.model_copy(update={"guidance_scale": scale})})


def sweep_metrics(evaluation: ArtifactRef) -> list[dict]:
    """Metrics per results file of an evaluation, in the order the files were given."""
    files = evaluation.manifest().files
    if "sweep.json" in files:
        return [r["metrics"] for r in json.loads(evaluation.file("sweep.json").read_text()).values()]
    return [json.loads(evaluation.file("metrics.json").read_text())]


def upstream_fingerprints(config: SweepConfig, evaluation: ArtifactRef) -> dict[str, str]:
    return {"evaluate": evaluation.fingerprint}


def run_sweep_report(config: SweepConfig, data_dir: Path | str, *, evaluation: ArtifactRef,
                     force: bool = False) -> ArtifactRef:
    """Pareto plot and table of a sweep evaluation (results given in ``config.scales`` order)."""

    def build(tmp: Path) -> BuildOutput:
        metrics = sweep_metrics(evaluation)
        y_name = config.y_metric if all(config.y_metric in m for m in metrics) else "Bleu_4"
        xs = [float(m.get(config.x_metric, 0.0)) for m in metrics]
        ys = [float(m.get(y_name, 0.0)) for m in metrics]
        plot_pareto(config.scales, xs, ys, config.x_metric, y_name, tmp / PLOT_FILE)
        front = pareto_front(xs, ys)
        rows = [{"scale": s, config.x_metric: x, y_name: y, "pareto": i in front}
                for i, (s, x, y) in enumerate(zip(config.scales, xs, ys))]
        (tmp / TABLE_FILE).write_text(json.dumps(rows, indent=1), encoding="utf-8")
        return BuildOutput(rows={"scales": len(rows)}, info={"table": rows, "y_metric": y_name})

    return ArtifactStore(data_dir).build(SPEC, config, upstream_fingerprints(config, evaluation), build,
                                         force=force)


def run_guidance_sweep(config: SweepConfig, generate: GenerateConfig, evaluate: EvaluateConfig, data_dir: Path | str,
                       *, train: ArtifactRef, index: ArtifactRef,
                       images: ArtifactRef) -> tuple[ArtifactRef, ArtifactRef]:
    """One generation per scale (each cached), one evaluation of them all, the Pareto report:
    returns (evaluation, sweep report)."""
    gens = [run_generate(with_guidance(generate, s), data_dir, train=train, index=index, images=images)
            for s in config.scales]
    evaluation = run_evaluate(evaluate.model_copy(update={"results": [g.dir for g in gens]}), data_dir)
    return evaluation, run_sweep_report(config, data_dir, evaluation=evaluation)
