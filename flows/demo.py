"""The offline demo flow: world -> pipeline for every variant -> one comparison report."""
from __future__ import annotations

from prefect import flow

from flows.pipeline import evaluate, prepare, train
from tasks.stages import demo_report_task, world_task
from tomcap.artifacts import ArtifactRef
from tomcap.demo.variants import demo_variants
from tomcap.demo.wiring import demo_pipeline_config
from tomcap.settings import PipelineConfig


@flow(name="tomcap-demo")
def demo(config: PipelineConfig, data_dir: str | None = None) -> ArtifactRef:
    """Generate the world, run the pipeline for each variant (shared stages once), report."""
    dd = str(config.resolved_data_dir(data_dir))
    world = world_task(config.world, dd)
    unpaired = world_task(config.demo.unpaired_world, dd)
    cfg = demo_pipeline_config(config, world, unpaired)
    refs = prepare(cfg, dd)
    variants = demo_variants(cfg)
    evaluations, generations = {}, {}
    for name in config.demo.variants:
        variant = variants[name]
        checkpoint = train(variant, refs["corpus"], refs["embed"], refs["gap"], refs["index"], dd)
        out = evaluate(variant, checkpoint.path, refs["index"].path, dd)
        evaluations[name], generations[name] = out["evaluate"], out["generate"]
    return demo_report_task(config.demo.report, dd, world=world, gap=refs["gap"], evaluations=evaluations,
                            generations=generations)
