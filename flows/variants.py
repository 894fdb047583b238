"""The demo's variants as one task graph on a process pool: every training, captioning and scoring run is
submitted at once and runs when its inputs are ready, ``demo.workers`` at a time.

The world decoder's training step is compute-bound on one core (``train.threads: 1``), so the variants
train side by side, one per core, and a finished variant is captioned beside the next one's training.
Processes, not threads: the training loop seeds torch's global RNG per step, which threads would share.
The pool (``flows.runners.process_runner``) pins each worker to its own core share.
"""
from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.futures import PrefectFuture

from tasks.stages import STAGE_TASKS, publish
from tomcap.artifacts import ArtifactRef
from tomcap.demo.splits import split_pipeline_config
from tomcap.pipeline import Stage, reusable, run_until
from tomcap.settings import PipelineConfig


def submit_task(stage: Stage, config: PipelineConfig, data_dir: str, inputs: dict[str, Any],
                force: bool) -> PrefectFuture:
    """A ``run_until`` call that submits the stage's task (its inputs may be futures) and returns its future."""
    return STAGE_TASKS[stage.name].submit(stage.config(config), data_dir, **inputs)


@flow(name="tomcap-demo-variants")
def run_variants(base: PipelineConfig, variants: dict[str, PipelineConfig], world: ArtifactRef,
                 splits: tuple[str, ...], baselines: bool, shared: dict[str, ArtifactRef], data_dir: str
                 ) -> tuple[dict[str, ArtifactRef], dict[str, ArtifactRef]]:
    """(evaluations, generations) by ``split/variant``, nearest_caption rows included when ``baselines``.
    Stages two variants compute identically are submitted once. Run it with
    ``.with_options(task_runner=process_runner(n))``."""
    refs: dict[str, Any] = dict(shared)
    runs: list[dict[str, Any]] = []
    rows: dict[str, tuple[Any, Any]] = {}  # split/row -> (evaluation, captions), futures or given refs
    # Trainings first: the pool takes ready tasks in submission order, and they are the long ones.
    trained = {}
    for name, variant in variants.items():
        trained[name] = run_until(variant, data_dir, "train", reusable(base, refs, variant), call=submit_task)
        refs.update(reusable(variant, trained[name], base))
        runs.append(trained[name])
    for name, variant in variants.items():
        for split in splits:
            scfg = split_pipeline_config(variant, world, split)
            given = {**reusable(base, refs, scfg), **reusable(variant, trained[name], scfg)}
            run = run_until(scfg, data_dir, "evaluate", given, call=submit_task)
            refs.update(reusable(scfg, run, base))
            runs.append(run)
            rows[f"{split}/{name}"] = (run["evaluate"], run["generate"])
    for split in splits if baselines else ():
        scfg = split_pipeline_config(base, world, split)
        # This run also holds the refs it was given (a variant's generate and evaluate among them).
        run = run_until(scfg, data_dir, "evaluate_nearest", reusable(base, refs, scfg), call=submit_task)
        runs.append(run)
        rows[f"{split}/nearest_caption"] = (run["evaluate_nearest"], run["nearest_caption"])
    _publish(runs)
    evaluations = {key: _value(ev) for key, (ev, _) in rows.items()}
    generations = {key: _value(gen) for key, (_, gen) in rows.items()}
    return evaluations, generations


def _value(ref: ArtifactRef | PrefectFuture) -> ArtifactRef:
    return ref.result() if isinstance(ref, PrefectFuture) else ref


def _publish(runs: list[dict[str, Any]]) -> None:
    """Each submitted stage's UI artifact, once, in the order the stages were submitted."""
    seen: set[int] = set()
    for run in runs:
        for stage_name, future in run.items():
            if isinstance(future, PrefectFuture) and id(future) not in seen:
                seen.add(id(future))
                publish(stage_name, future.result())
