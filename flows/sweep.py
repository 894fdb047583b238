"""Guidance sweep flow: one generation per CFG scale (cached), one evaluation, the Pareto plot."""
from __future__ import annotations

from prefect import flow

from tasks.stages import embed_images_task, evaluate_task, generate_task, sweep_report_task
from tomcap.artifacts import ArtifactRef, load_ref
from tomcap.generate.sweep import SweepConfig, with_guidance
from tomcap.settings import PipelineConfig


@flow(name="tomcap-sweep-guidance")
def sweep_guidance(config: PipelineConfig, checkpoint: str, index: str, sweep: SweepConfig = SweepConfig(),
                   data_dir: str | None = None) -> ArtifactRef:
    dd = str(config.resolved_data_dir(data_dir))
    images = embed_images_task(config.test_images, dd)
    train, store = load_ref(checkpoint, "train"), load_ref(index, "index")
    gens = [generate_task(with_guidance(config.generate, s), dd, train=train, index=store, images=images)
            for s in sweep.scales]
    evaluation = evaluate_task(config.evaluate.model_copy(update={"results": [g.dir for g in gens]}), dd)
    return sweep_report_task(sweep, dd, evaluation=evaluation)
