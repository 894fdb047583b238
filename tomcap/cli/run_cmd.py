"""``tomcap run``: the stage graph (``tomcap.pipeline``) up to a stage, in this process, without Prefect.

``tomcap pipeline`` runs the same graph as Prefect flows; both produce the same artifacts (same keys)."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse

from ..pipeline import STAGE_NAMES
from .common import add_stage_args, load_config, report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the pipeline up to a stage without Prefect (cached stages are reused)")
    add_stage_args(p)
    p.add_argument("--until", choices=STAGE_NAMES, default="evaluate", help="last stage to run (default: evaluate)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import run_until

    cfg, data_dir = load_config(args)
    refs = run_until(cfg, data_dir, args.until, force={args.until} if args.force else set())
    for name, ref in refs.items():
        if name != args.until:
            print(f"{name}: {'cached' if ref.cached else 'built'} {ref.path}")
    report(refs[args.until], args)
    return 0
