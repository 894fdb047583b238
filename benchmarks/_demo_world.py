"""The demo's world and wired pipeline config, built by the library stages (no Prefect), for the benchmarks
that re-run parts of the demo (tune_decoding, train_steps_curve, demo_seeds)."""
from __future__ import annotations

from pathlib import Path


def wired_demo(config: Path, data_dir: str):
    """(world artifact, ``config``'s pipeline config wired to it) - what flows/demo.py builds before its variants."""
    from tomcap.demo.wiring import demo_pipeline_config
    from tomcap.settings import load_pipeline_config
    from tomcap.world.stage import run_world

    base = load_pipeline_config(config)
    world = run_world(base.world, data_dir)
    return world, demo_pipeline_config(base, world, run_world(base.demo.unpaired_world, data_dir))
