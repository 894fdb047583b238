"""The offline demo flow: world -> the pipeline for every variant (shared stages once) -> one report."""
from __future__ import annotations

from prefect import flow

from flows.pipeline import run_stages
from tasks.stages import demo_report_task, publish, world_task
from tomcap.artifacts import ArtifactRef
from tomcap.demo.splits import split_pipeline_config
from tomcap.demo.variants import demo_variants
from tomcap.demo.wiring import demo_pipeline_config
from tomcap.pipeline import reusable
from tomcap.settings import PipelineConfig


@flow(name="tomcap-demo")
def demo(config: PipelineConfig, data_dir: str | None = None) -> ArtifactRef:
    """Generate the world, run the pipeline for each variant, report."""
    dd = str(config.resolved_data_dir(data_dir))
    world = world_task(config.world, dd)
    unpaired = world_task(config.demo.unpaired_world, dd)
    cfg = demo_pipeline_config(config, world, unpaired)
    refs = run_stages(cfg, dd, "gap")
    evaluations, generations = {}, {}
    for name, variant in demo_variants(cfg).items():
        for split in config.demo.splits:  # trained once; captioned and scored on every split
            scfg = split_pipeline_config(variant, world, split)
            done = run_stages(scfg, dd, "evaluate", reusable(cfg, refs, scfg))
            refs.update(reusable(scfg, done, cfg))  # what the next variants may share
            evaluations[f"{split}/{name}"], generations[f"{split}/{name}"] = done["evaluate"], done["generate"]
    for split in config.demo.splits if config.demo.baselines else ():
        scfg = split_pipeline_config(cfg, world, split)
        done = run_stages(scfg, dd, "evaluate_nearest", reusable(cfg, refs, scfg))
        evaluations[f"{split}/nearest_caption"] = done["evaluate_nearest"]
        generations[f"{split}/nearest_caption"] = done["nearest_caption"]
    report = demo_report_task(config.demo.report, dd, world=world, gap=refs["gap"], evaluations=evaluations,
                              generations=generations)
    publish("demo_report", report)
    return report
