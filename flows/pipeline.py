"""The TOMCap pipeline as Prefect flows: the stage graph of ``tomcap.pipeline``, each stage a cached task.

- ``tomcap_pipeline``: every stage up to the evaluation (``tomcap pipeline``)
- the deployments (``flows/deployments.py``) and the demo walk the same graph with ``run_stages``
"""
from __future__ import annotations

from typing import Any

from prefect import flow

from flows.embed import embed_mapped
from flows.runners import task_runner
from tasks.stages import STAGE_TASKS, publish
from tomcap.artifacts import ArtifactRef
from tomcap.pipeline import Stage, run_until
from tomcap.settings import PipelineConfig


def run_task(stage: Stage, config: PipelineConfig, data_dir: str, inputs: dict[str, Any], force: bool) -> ArtifactRef:
    """How the flows run one stage of the graph: its Prefect task (the text embedding, when
    ``embed.map_rows`` is set, as row-range tasks on the configured runner), then its UI artifact."""
    if stage.name == "embed" and config.embed.map_rows:
        ref = embed_mapped.with_options(task_runner=task_runner(config.runner))(config, data_dir, inputs["corpus"])
    else:
        ref = STAGE_TASKS[stage.name](stage.config(config), data_dir, **inputs)
    publish(stage.name, ref)
    return ref


def run_stages(config: PipelineConfig, data_dir: str | None, target: str,
               given: dict[str, ArtifactRef] | None = None) -> dict[str, ArtifactRef]:
    """``tomcap.pipeline.run_until`` with Prefect tasks, inside the calling flow."""
    return run_until(config, config.resolved_data_dir(data_dir), target, given, call=run_task)


@flow(name="tomcap-pipeline")
def tomcap_pipeline(config: PipelineConfig, data_dir: str | None = None) -> ArtifactRef:
    """The whole pipeline: corpus -> embeddings -> gap -> datastore -> training -> captions -> metrics."""
    return run_stages(config, data_dir, "evaluate")["evaluate"]
