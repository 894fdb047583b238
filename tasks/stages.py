"""One Prefect task per pipeline stage, each a thin wrapper of one library call.

Every task gets the content-addressed cache policy of its stage (``tasks/cache.py``), persisted
results (a small ``ArtifactRef``), retries, a run name, and publishes its UI artifact from the
stage's manifest. Tasks pass refs (path + fingerprint), never tensors or frames.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

from prefect import Task, task

from tomcap.artifacts import ArtifactRef
from tomcap.corpus import run_corpus
from tomcap.evaluate.stage import run_evaluate

from .cache import stage_policy
from .reporting import publish_corpus_stats, publish_metrics

TASK_RETRIES = 1
RETRY_DELAY_S = 5


def stage_task(stage_module: str, run_fn: Callable[..., ArtifactRef],
               publish: Callable[[ArtifactRef], None] | None = None) -> Task:
    """Wrap ``run_fn(config, data_dir, **refs)`` of ``stage_module`` as a cached Prefect task."""
    name = importlib.import_module(stage_module).SPEC.name

    @functools.wraps(run_fn)
    def call(*args, **kwargs) -> ArtifactRef:
        ref = run_fn(*args, **kwargs)
        if publish is not None:
            publish(ref)
        return ref

    return task(call, name=name, task_run_name=name, cache_policy=stage_policy(stage_module), persist_result=True,
                retries=TASK_RETRIES, retry_delay_seconds=RETRY_DELAY_S)


corpus_task = stage_task("tomcap.corpus", run_corpus, publish_corpus_stats)
evaluate_task = stage_task("tomcap.evaluate.stage", run_evaluate, publish_metrics)
