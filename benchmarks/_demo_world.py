"""The demo's world and wired pipeline config, built by the library stages (no Prefect), for the benchmarks
that re-run parts of the demo (tune_decoding, train_steps_curve, demo_seeds)."""
from __future__ import annotations

import argparse
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def demo_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every demo-rerunning benchmark takes: --config, --root (data dir, reused between runs), --out."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--config", type=Path, default=DEMO_CONFIG)
    ap.add_argument("--root", type=Path, required=True, help="data dir (reused between runs)")
    ap.add_argument("--out", type=Path, required=True)
    return ap


def wired_demo(config: Path, data_dir: str):
    """(world artifact, ``config``'s pipeline config wired to it) - what flows/demo.py builds before its variants."""
    from tomcap.demo.wiring import demo_pipeline_config
    from tomcap.settings import load_pipeline_config
    from tomcap.world.stage import run_world

    base = load_pipeline_config(config)
    world = run_world(base.world, data_dir)
    return world, demo_pipeline_config(base, world, run_world(base.demo.unpaired_world, data_dir))
