"""``tomcap sweep-guidance``: caption with several CFG scales, score them together, plot the trade-off."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
from pathlib import Path

from ..artifacts import load_ref
from ..errors import ConfigError
from .common import add_stage_args, load_config
from .generate_cmd import add_artifact_args, resolve_artifacts

DEFAULT_SCALES = "0,1,1.5,2,3,4"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep-guidance", help="caption with several CFG scales, evaluate, plot the Pareto front")
    add_stage_args(p)
    add_artifact_args(p)
    p.add_argument("--images", type=Path, required=True, help="'embed_images' artifact folder of the test images")
    p.add_argument("--scales", default=DEFAULT_SCALES, help="comma-separated guidance scales (>= 0)")
    p.add_argument("--out", type=Path, default=None, help="also copy the Pareto plot PNG here")
    p.set_defaults(func=run)


def parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--scales '{text}' is not a comma-separated list of numbers",
                          fix="e.g. --scales 0,1,2,3") from None
    if not scales or min(scales) < 0:
        raise ConfigError(f"--scales '{text}' needs at least one scale, all >= 0", fix="e.g. --scales 0,1,2,3")
    return scales


def run(args: argparse.Namespace) -> int:
    import shutil

    from ..generate.sweep import PLOT_FILE, SweepConfig, run_guidance_sweep

    sweep = SweepConfig(scales=parse_scales(args.scales))
    cfg, data_dir = load_config(args)
    train, index = resolve_artifacts(args, data_dir)
    ev, ref = run_guidance_sweep(sweep, cfg.generate, cfg.evaluate, data_dir, train=train, index=index,
                                 images=load_ref(args.images, "embed_images"))
    if args.out:
        shutil.copyfile(ref.file(PLOT_FILE), args.out)
    info = ref.manifest().info
    y = info["y_metric"]
    print(f"{'scale':>6} {sweep.x_metric:>8} {y:>10}  pareto")
    for row in info["table"]:
        print(f"{row['scale']:6g} {row[sweep.x_metric]:8.4f} {row[y]:10.4f}  {'*' if row['pareto'] else ''}")
    print(f"evaluation: {ev.path}\nplot: {ref.dir / PLOT_FILE}")
    return 0
