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
from tomcap.demo.report import run_demo_report
from tomcap.embed import run_embed, run_embed_images
from tomcap.evaluate.stage import run_evaluate
from tomcap.gap import run_gap
from tomcap.generate.stage import run_generate
from tomcap.generate.sweep import run_sweep_report
from tomcap.index import run_index
from tomcap.train.config import TrainConfig
from tomcap.train.stage import run_train
from tomcap.world.stage import run_world

from .cache import stage_policy
from .reporting import (TrainingProgress, publish_corpus_stats, publish_demo_report, publish_gap_report,
                        publish_index_info, publish_metrics, publish_samples, publish_sweep, publish_training_curve)

TASK_RETRIES = 1
RETRY_DELAY_S = 5


def _task(stage_module: str, fn: Callable[..., ArtifactRef]) -> Task:
    name = importlib.import_module(stage_module).SPEC.name
    return task(fn, name=name, task_run_name=name, cache_policy=stage_policy(stage_module), persist_result=True,
                retries=TASK_RETRIES, retry_delay_seconds=RETRY_DELAY_S)


def stage_task(stage_module: str, run_fn: Callable[..., ArtifactRef],
               publish: Callable[[ArtifactRef], None] | None = None) -> Task:
    """Wrap ``run_fn(config, data_dir, **refs)`` of ``stage_module`` as a cached Prefect task."""

    @functools.wraps(run_fn)
    def call(*args, **kwargs) -> ArtifactRef:
        ref = run_fn(*args, **kwargs)
        if publish is not None:
            publish(ref)
        return ref

    return _task(stage_module, call)


def _train(config: TrainConfig, data_dir: str, *, corpus: ArtifactRef, embed: ArtifactRef,
           gap: ArtifactRef | None = None, index: ArtifactRef | None = None,
           image_embed: ArtifactRef | None = None) -> ArtifactRef:
    """Train the adaptor, reporting progress (0-100) to the Prefect UI."""
    ref = run_train(config, data_dir, corpus=corpus, embed=embed, gap=gap, index=index, image_embed=image_embed,
                    progress=TrainingProgress(config.steps))
    publish_training_curve(ref)
    return ref


world_task = stage_task("tomcap.world.stage", run_world)
corpus_task = stage_task("tomcap.corpus", run_corpus, publish_corpus_stats)
embed_task = stage_task("tomcap.embed.stage", run_embed)
embed_images_task = stage_task("tomcap.embed.image_stage", run_embed_images)
gap_task = stage_task("tomcap.gap", run_gap, publish_gap_report)
index_task = stage_task("tomcap.index.stage", run_index, publish_index_info)
train_task = _task("tomcap.train.stage", _train)
generate_task = stage_task("tomcap.generate.stage", run_generate, publish_samples)
evaluate_task = stage_task("tomcap.evaluate.stage", run_evaluate, publish_metrics)
demo_report_task = stage_task("tomcap.demo.report", run_demo_report, publish_demo_report)
sweep_report_task = stage_task("tomcap.generate.sweep", run_sweep_report, publish_sweep)
