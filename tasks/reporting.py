"""Prefect UI artifacts built from stage manifests (presentation only; no computation)."""
from __future__ import annotations

import json

from prefect.artifacts import create_table_artifact

from tomcap.artifacts import ArtifactRef


def _describe(ref: ArtifactRef) -> str:
    return f"{ref.stage} artifact {ref.path} ({'cached' if ref.cached else 'built'})"


def publish_corpus_stats(ref: ArtifactRef) -> None:
    """Rows in/out and drop reasons per source, as the 'tomcap-corpus-stats' table."""
    per_source = ref.manifest().rows.get("per_source", {})
    table = [{"source": name, **counts} for name, counts in per_source.items()]
    create_table_artifact(key="tomcap-corpus-stats", table=table, description=_describe(ref))


def publish_metrics(ref: ArtifactRef) -> None:
    """Scalar metrics of an evaluation artifact, as the 'tomcap-eval-metrics' table."""
    files = ref.manifest().files
    if "metrics.json" in files:
        runs = {"results": json.loads(ref.file("metrics.json").read_text())}
    else:  # a sweep: one entry per results file
        runs = {v["name"]: v["metrics"] for v in json.loads(ref.file("sweep.json").read_text()).values()}
    table = [{"results": name, **{k: v for k, v in m.items() if isinstance(v, (int, float))}} for name, m in runs.items()]
    create_table_artifact(key="tomcap-eval-metrics", table=table, description=_describe(ref))
