"""The summary artifact of a deployment's own flow run: what it produced, built or cached, and its metrics.

A user who opens the run sees this first (stage artifacts are published beside it by the flows, for
cached stages too); full precision stays in the artifacts' files.
"""
from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tomcap.artifacts import ArtifactRef
from tomcap.report_md import md_table

from .models import aliases_markdown
from .reporting import metrics_table

SUMMARY_KEY = "tomcap-run-summary"
COMPARISON_KEY = "tomcap-datastore-comparison"


def run_summary_markdown(kind: str, refs: dict[str, ArtifactRef], model: dict | None = None) -> str:
    """Markdown: the model version and its promotion, the metrics of the evaluation, then one row per
    stage artifact of the run."""
    lines = [f"# tomcap {kind}", ""]
    if model is not None:
        verdict = "promoted to champion" if model["promoted"] else "not promoted"
        aliases = aliases_markdown(model["aliases"])
        lines += [f"Model version **{model['version']}**: {verdict} ({model['reason']}). Aliases: {aliases}", ""]
    if "evaluate" in refs:
        lines += ["## Metrics", "", md_table(metrics_table(refs["evaluate"])), ""]
    corpus = refs.get("corpus")
    if corpus is not None:
        lines += [f"Corpus fingerprint: `{corpus.fingerprint}`", ""]
    rows = [{"stage": name, "state": "cached" if ref.cached else "built", "key": ref.key, "folder": ref.path}
            for name, ref in refs.items()]
    lines += ["## Artifacts", "", md_table(rows, ["stage", "state", "key", "folder"])]
    return "\n".join(lines)


def publish_run_summary(kind: str, refs: dict[str, ArtifactRef], model: dict | None = None) -> None:
    create_markdown_artifact(key=SUMMARY_KEY, markdown=run_summary_markdown(kind, refs, model),
                             description=f"tomcap {kind}: metrics and the artifacts of this run")


def datastore_comparison_rows(evaluations: dict[str, ArtifactRef]) -> list[dict]:
    """One row per datastore: its name, the evaluation folder and its metrics (rounded for reading)."""
    rows = []
    for name, ev in evaluations.items():
        [metrics] = metrics_table(ev)
        metrics.pop("results", None)
        rows.append({"datastore": name, **metrics, "evaluation": ev.path})
    return rows


def publish_datastore_comparison(evaluations: dict[str, ArtifactRef]) -> None:
    create_table_artifact(key=COMPARISON_KEY, table=datastore_comparison_rows(evaluations),
                          description="one checkpoint, several datastores: metrics per datastore")
