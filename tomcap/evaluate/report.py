"""Files of an evaluation: ``metrics.json``, ``per_image.parquet`` and ``report.md`` per results file,
plus, for a sweep, a summary table over all of them."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .coco_metrics import METRIC_NAMES, SPICE
METRICS_FILE = "metrics.json"
PER_IMAGE_FILE = "per_image.parquet"
REPORT_FILE = "report.md"
SWEEP_FILE = "sweep.json"
RANK_METRIC = "CIDEr"
"""Per-image metric that orders the best/worst samples of the report."""
SHOWN_DIGITS = 3


@dataclass
class RunResult:
    """Everything written for one results file."""

    name: str
    source: str
    keys: list[str]
    captions: list[str]
    refs: list[list[str]]
    metrics: dict[str, Any]  # flat scores + bleu_stats + n_images
    per_image: dict[str, np.ndarray]  # metric -> (N,)
    timings: dict[str, float] = field(default_factory=dict)


def _fmt(v: Any) -> str:
    return f"{v:.{SHOWN_DIGITS}f}" if isinstance(v, float) and math.isfinite(v) else str(v)


def score_names(metrics: Mapping[str, Any]) -> list[str]:
    """Scalar score keys: the COCO ones in the toolkit's order, then the others in their order."""
    first = [k for k in (*METRIC_NAMES, SPICE) if isinstance(metrics.get(k), float)]
    return first + [k for k, v in metrics.items() if isinstance(v, float) and k not in first]


def write_run(run: RunResult, folder: Path, samples: int) -> None:
    """metrics.json, per_image.parquet and report.md of one results file into ``folder``."""
    import polars as pl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / METRICS_FILE, "w", encoding="utf-8") as f:
        json.dump(run.metrics, f, indent=2)
        f.write("\n")
    columns: dict[str, Any] = {"image_id": run.keys, "caption": run.captions}
    columns.update({k: np.asarray(v, dtype=np.float64) for k, v in run.per_image.items()})
    pl.DataFrame(columns).write_parquet(folder / PER_IMAGE_FILE)
    (folder / REPORT_FILE).write_text(run_markdown(run, samples), encoding="utf-8")


def metrics_table(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Markdown table: one row per (name, metrics), one column per score."""
    names: list[str] = []
    for _, m in rows:
        names += [k for k in score_names(m) if k not in names]
    lines = ["| results | images | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for label, m in rows:
        cells = [_fmt(m.get(k, "")) for k in names]
        lines.append(f"| {label} | {m.get('n_images', '')} | " + " | ".join(cells) + " |")
    return lines


def run_markdown(run: RunResult, samples: int) -> str:
    """A metrics table and the best/worst captions (by CIDEr) with their references."""
    lines = [f"# Evaluation of {run.name}", "", f"Results: `{run.source}`", ""]
    lines += metrics_table([(run.name, run.metrics)])
    stats = run.metrics.get("bleu_stats")
    if stats:
        lines += ["", f"BLEU stats: testlen {stats['testlen']}, reflen {stats['reflen']}, "
                      f"guess {stats['guess']}, correct {stats['correct']}"]
    if "SPICE" not in run.metrics:
        lines += ["", "SPICE: not computed (switched off, or the Stanford CoreNLP jars it needs are not installed)."]
    rank = run.per_image.get(RANK_METRIC)
    if rank is not None and samples > 0:
        order = np.argsort(-np.asarray(rank), kind="stable")
        for title, idx in (("Best", order[:samples]), ("Worst", order[::-1][:samples])):
            lines += ["", f"## {title} {len(idx)} captions by {RANK_METRIC}", ""]
            for i in idx.tolist():
                lines.append(f"- **{run.keys[i]}** ({RANK_METRIC} {_fmt(float(rank[i]))}): {run.captions[i]}")
                lines += [f"  - ref: {r}" for r in run.refs[i]]
    return "\n".join(lines) + "\n"


def sweep_markdown(runs: Sequence[RunResult], folders: Sequence[str]) -> str:
    lines = ["# Evaluation sweep", "", f"{len(runs)} results files scored against the same references.", ""]
    lines += metrics_table([(f"[{r.name}]({d}/{REPORT_FILE})", r.metrics) for r, d in zip(runs, folders)])
    return "\n".join(lines) + "\n"


def write_sweep(runs: Sequence[RunResult], root: Path, samples: int) -> list[str]:
    """One sub-folder per results file plus sweep.json and a summary report.md; returns the folders."""
    folders = [f"{i:02d}-{_safe(r.name)}" for i, r in enumerate(runs)]
    for run, d in zip(runs, folders):
        write_run(run, root / d, samples)
    summary = {d: {"name": r.name, "source": r.source, "metrics": r.metrics} for r, d in zip(runs, folders)}
    with open(root / SWEEP_FILE, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    (root / REPORT_FILE).write_text(sweep_markdown(runs, folders), encoding="utf-8")
    return folders


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "results"
