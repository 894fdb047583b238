"""Prefect UI artifacts built from stage manifests (presentation only; no computation)."""
from __future__ import annotations

from prefect.artifacts import create_table_artifact

from tomcap.artifacts import ArtifactRef


def publish_corpus_stats(ref: ArtifactRef) -> None:
    """Rows in/out and drop reasons per source, as the 'tomcap-corpus-stats' table."""
    per_source = ref.manifest().rows.get("per_source", {})
    table = [{"source": name, **counts} for name, counts in per_source.items()]
    create_table_artifact(key="tomcap-corpus-stats", table=table,
                          description=f"Corpus artifact {ref.path} ({'cached' if ref.cached else 'built'})")
