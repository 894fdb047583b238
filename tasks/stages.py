"""One Prefect task per stage of ``tomcap.pipeline`` (and the demo's), each a thin wrapper of one library call.

Every task gets the content-addressed cache policy of its stage (``tasks/cache.py``), persisted
results (a small ``ArtifactRef``), retries and a run name with its artifact key (``train-1cecc7eb``).
The flows publish each stage's UI artifact from its manifest (``publish``), so a Cached task shows
it too. Tasks pass refs (path + fingerprint), never tensors or frames.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

from prefect import Task, task

from tomcap.artifacts import ArtifactRef
from tomcap.demo.report import run_demo_report
from tomcap.pipeline import STAGES
from tomcap.train.config import TrainConfig
from tomcap.world.stage import run_world

from .cache import stage_cache_key, stage_policy
from .reporting import (TrainingProgress, publish_corpus_stats, publish_demo_report, publish_gap_report,
                        publish_index_info, publish_metrics, publish_samples, publish_training_curve)

TASK_RETRIES = 1
RETRY_DELAY_S = 5
RUN_NAME_KEY_CHARS = 8


def _run_name(stage_module: str, name: str) -> Callable[[], str]:
    """``<stage>-<first characters of its artifact key>``: the run a user opens names the folder it wrote."""

    def run_name() -> str:
        from prefect.runtime import task_run

        try:
            _, key, _ = stage_cache_key(stage_module, dict(task_run.parameters))
        except Exception:  # a name is a convenience: the task itself reports a bad input
            return name
        return f"{name}-{key[:RUN_NAME_KEY_CHARS]}"

    return run_name


def _task(stage_module: str, fn: Callable[..., ArtifactRef]) -> Task:
    name = importlib.import_module(stage_module).SPEC.name
    return task(fn, name=name, task_run_name=_run_name(stage_module, name), cache_policy=stage_policy(stage_module),
                persist_result=True, retries=TASK_RETRIES, retry_delay_seconds=RETRY_DELAY_S)


def stage_task(stage_module: str, run_fn: Callable[..., ArtifactRef]) -> Task:
    """Wrap ``run_fn(config, data_dir, **refs)`` of ``stage_module`` as a cached Prefect task."""

    @functools.wraps(run_fn)
    def call(*args, **kwargs) -> ArtifactRef:
        return run_fn(*args, **kwargs)

    return _task(stage_module, call)


def _train(config: TrainConfig, data_dir: str, *, corpus: ArtifactRef, embed: ArtifactRef,
           gap: ArtifactRef | None = None, index: ArtifactRef | None = None,
           image_embed: ArtifactRef | None = None) -> ArtifactRef:
    """Train the adaptor, reporting progress (0-100) to the Prefect UI."""
    from tomcap.train.stage import run_train

    return run_train(config, data_dir, corpus=corpus, embed=embed, gap=gap, index=index, image_embed=image_embed,
                     progress=TrainingProgress(config.steps))


PUBLISHERS: dict[str, Callable[[ArtifactRef], None]] = {
    "corpus": publish_corpus_stats, "gap": publish_gap_report, "index": publish_index_info,
    "train": publish_training_curve, "generate": publish_samples, "evaluate": publish_metrics,
    "demo_report": publish_demo_report,
}
"""UI artifact of each stage that has one (by stage name)."""


def publish(stage_name: str, ref: ArtifactRef) -> None:
    """Publish the stage's UI artifact into the calling flow run (built or cached alike)."""
    if stage_name in PUBLISHERS:
        PUBLISHERS[stage_name](ref)


def _pipeline_tasks() -> dict[str, Task]:
    """Stage name -> task; stages that share a module and function (the image sets) share one task."""
    by_function: dict[tuple[str, str], Task] = {}
    out: dict[str, Task] = {}
    for st in STAGES:
        if st.name == "train":
            out[st.name] = _task(st.module, _train)
            continue
        fn = (st.module, st.run)
        if fn not in by_function:
            by_function[fn] = stage_task(st.module, st.function())
        out[st.name] = by_function[fn]
    return out


STAGE_TASKS = _pipeline_tasks()
world_task = stage_task("tomcap.world.stage", run_world)
demo_report_task = stage_task("tomcap.demo.report", run_demo_report)
