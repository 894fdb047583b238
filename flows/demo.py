"""The offline demo flow: world -> shared stages -> every variant's graph on a process pool -> one report."""
from __future__ import annotations

from prefect import flow

from flows.pipeline import run_stages
from flows.runners import process_runner
from flows.variants import run_variants
from tasks.stages import demo_report_task, publish, world_task
from tomcap.artifacts import ArtifactRef
from tomcap.demo.variants import demo_variants
from tomcap.demo.wiring import demo_pipeline_config
from tomcap.settings import PipelineConfig


@flow(name="tomcap-demo")
def demo(config: PipelineConfig, data_dir: str | None = None) -> ArtifactRef:
    """Generate the world, build the shared stages, train, caption and score every variant on every split
    (``demo.workers`` tasks at a time), report."""
    dd = str(config.resolved_data_dir(data_dir))
    world = world_task(config.world, dd)
    unpaired = world_task(config.demo.unpaired_world, dd)
    cfg = demo_pipeline_config(config, world, unpaired)
    shared = run_stages(cfg, dd, "gap")
    evaluations, generations = run_variants.with_options(task_runner=process_runner(config.demo.workers))(
        cfg, demo_variants(cfg), world, config.demo.splits, bool(config.demo.baselines), shared, dd)
    report = demo_report_task(config.demo.report, dd, world=world, gap=shared["gap"], evaluations=evaluations,
                              generations=generations)
    publish("demo_report", report)
    return report
