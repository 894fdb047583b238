"""Model versions in the flows: register what a retrain produced, run the promotion gate, tell the UI.

The registry is the library's (``tomcap.registry``); this task only calls it, publishes the
champion-vs-challenger table on the run and emits ``tomcap.model.promoted`` / ``tomcap.model.rejected``.
"""
from __future__ import annotations

from dataclasses import asdict

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from tomcap.artifacts import ArtifactRef
from tomcap.registry import PromotionConfig, Registry, comparison_table
from tomcap.report_md import md_table

PROMOTION_KEY = "tomcap-model-promotion"


def aliases_markdown(aliases: dict[str, str]) -> str:
    return ", ".join(f"`{a}` -> {n}" for a, n in sorted(aliases.items()))


def promotion_markdown(version: str, decision, rows: list[dict], aliases: dict[str, str]) -> str:
    verdict = "promoted to **champion**" if decision.promote else "stays a **challenger**"
    against = decision.against or "no champion yet"
    return "\n".join([f"# Model {version}: {verdict}", "", f"Against: {against}. Gate: {decision.reason}.", "",
                      md_table(rows, ["metric", "champion", "challenger", "delta"]), "",
                      "Aliases: " + aliases_markdown(aliases)])


@task(name="register_model", task_run_name="register_model")
def register_model(data_dir: str, refs: dict[str, ArtifactRef], policy: PromotionConfig) -> dict:
    """Register the retrain's checkpoint + datastore + evaluation as a version and propose it as champion."""
    registry = Registry(data_dir)
    version = registry.register(checkpoint=refs["train"], datastore=refs["index"], evaluation=refs["evaluate"])
    decision = registry.propose(version.name, policy)
    # The champion the gate compared with under the registry lock (another retrain may have moved it meanwhile).
    before = registry.get(decision.against).metrics if decision.against else None
    aliases = registry.state().aliases
    create_markdown_artifact(key=PROMOTION_KEY, markdown=promotion_markdown(
        version.name, decision, comparison_table(version.metrics, before), aliases),
        description=f"model {version.name}: champion vs challenger")
    emit_event(event=decision.event, resource={"prefect.resource.id": f"tomcap.model.{version.name}",
                                               "prefect.resource.name": version.name},
               payload={"version": version.name, **asdict(decision)})
    return {"version": version.name, "promoted": decision.promote, "reason": decision.reason, "aliases": aliases}
