"""Prefect UI artifacts built from stage manifests (presentation only; no computation)."""
from __future__ import annotations

import json
from typing import Any

from prefect.artifacts import (create_markdown_artifact, create_progress_artifact, create_table_artifact,
                               update_progress_artifact)

from tomcap.artifacts import ArtifactRef

SAMPLE_CAPTIONS = 10
PROGRESS_EVERY_STEPS = 10


def _describe(ref: ArtifactRef) -> str:
    return f"{ref.stage} artifact {ref.path} ({'cached' if ref.cached else 'built'})"


def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def publish_corpus_stats(ref: ArtifactRef) -> None:
    """Rows in/out and drop reasons per source, as the 'tomcap-corpus-stats' table."""
    per_source = ref.manifest().rows.get("per_source", {})
    table = [{"source": name, **counts} for name, counts in per_source.items()]
    create_table_artifact(key="tomcap-corpus-stats", table=table, description=_describe(ref))


def publish_gap_report(ref: ArtifactRef) -> None:
    """The gap stage's report.md plus where its histogram PNGs are."""
    report = ref.file("report.md").read_text(encoding="utf-8")
    pngs = "\n".join(f"- `{ref.dir / f}`" for f in ref.manifest().files if f.endswith(".png"))
    create_markdown_artifact(key="tomcap-gap-report", markdown=f"{report}\n\n**Histograms**\n\n{pngs}\n",
                             description=_describe(ref))


def publish_index_info(ref: ArtifactRef) -> None:
    m = ref.manifest()
    create_table_artifact(key="tomcap-index-info", table=[_scalars({**m.rows, **m.info})], description=_describe(ref))


class TrainingProgress:
    """Training progress callback: a Prefect progress artifact (0-100) updated every few steps."""

    def __init__(self, steps: int):
        self.steps = steps
        self.artifact_id = None

    def __call__(self, event: dict[str, Any]) -> None:
        step = int(event.get("step", 0))
        if step % PROGRESS_EVERY_STEPS and step != self.steps:
            return
        pct = 100.0 * step / max(self.steps, 1)
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(progress=pct, key="tomcap-train-progress",
                                                        description="adaptor training")
        else:
            update_progress_artifact(self.artifact_id, progress=pct)


def publish_training_curve(ref: ArtifactRef) -> None:
    """Validation-loss curve of a train artifact, as the 'tomcap-training-curve' table."""
    info = ref.manifest().info
    table = [{"step": step, "val_loss": loss} for step, loss in info.get("val_losses", [])]
    create_table_artifact(key="tomcap-training-curve", table=table, description=_describe(ref))


def publish_samples(ref: ArtifactRef) -> None:
    """A few generated captions with their retrieved neighbours, as markdown."""
    rows = json.loads(ref.file("retrieved.json").read_text(encoding="utf-8"))[:SAMPLE_CAPTIONS]
    caps = {r["image_id"]: r["caption"] for r in json.loads(ref.file("results.json").read_text(encoding="utf-8"))}
    lines = ["| image | caption | retrieved |", "|---|---|---|"]
    lines += [f"| {r['image_id']} | {caps.get(r['image_id'], '')} | {'<br>'.join(r['retrieved'])} |" for r in rows]
    create_markdown_artifact(key="tomcap-sample-captions", markdown="\n".join(lines), description=_describe(ref))


def publish_metrics(ref: ArtifactRef) -> None:
    """Scalar metrics of an evaluation artifact, as the 'tomcap-eval-metrics' table."""
    files = ref.manifest().files
    if "metrics.json" in files:
        runs = {"results": json.loads(ref.file("metrics.json").read_text())}
    else:  # a sweep: one entry per results file
        runs = {v["name"]: v["metrics"] for v in json.loads(ref.file("sweep.json").read_text()).values()}
    table = [{"results": name, **{k: v for k, v in m.items() if isinstance(v, (int, float))}} for name, m in runs.items()]
    create_table_artifact(key="tomcap-eval-metrics", table=table, description=_describe(ref))


def publish_demo_report(ref: ArtifactRef) -> None:
    """The demo's comparison table (report.md) as the 'tomcap-demo-report' markdown artifact."""
    create_markdown_artifact(key="tomcap-demo-report", markdown=ref.file("report.md").read_text(encoding="utf-8"),
                             description=_describe(ref))


def publish_sweep(ref: ArtifactRef) -> None:
    """The guidance sweep's table and where its Pareto plot is, as 'tomcap-guidance-sweep'."""
    info = ref.manifest().info
    rows = info["table"]
    cols = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    create_markdown_artifact(key="tomcap-guidance-sweep", description=_describe(ref),
                             markdown="\n".join(lines) + f"\n\nPareto plot: `{ref.dir / 'pareto.png'}`\n")
