"""``tomcap pipeline``: the whole pipeline as Prefect flows (``tomcap run`` is the same graph without Prefect)."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
from pathlib import Path
from typing import get_args

from tomcap.errors import ConfigError
from tomcap.settings import RunnerKind

from .common import prefect_defaults


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("pipeline", help="run the whole pipeline as Prefect flows (every stage up to the evaluation)")
    r.add_argument("--config", type=Path, required=True)
    r.add_argument("--data-dir", type=Path, default=None)
    r.add_argument("--runner", choices=get_args(RunnerKind), default=None,
                   help="task runner of the scale-out tasks (embedding row ranges; see embed.map_rows)")
    r.add_argument("--dask-address", default=None, help="Dask scheduler address (default: a LocalCluster)")
    r.add_argument("--workers", type=int, default=None, help="LocalCluster workers / threads")
    r.add_argument("--map-rows", type=int, default=None, help="embed the corpus in tasks of this many rows")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tomcap.settings import load_pipeline_config

    cfg = load_pipeline_config(args.config)
    runner = {"kind": args.runner, "address": args.dask_address, "workers": args.workers}
    if args.dask_address is not None and args.runner is None:
        runner["kind"] = "dask"
    runner = {k: v for k, v in runner.items() if v is not None}
    embed = {"map_rows": args.map_rows} if args.map_rows is not None else {}
    if runner.get("kind") == "dask" and not (args.map_rows or cfg.embed.map_rows):
        raise ConfigError("--runner dask maps the embedding over row ranges, but embed.map_rows is not set",
                          fix="pass --map-rows N (or set embed.map_rows in the config)")
    cfg = cfg.model_copy(update={"runner": cfg.runner.model_copy(update=runner),
                                 "embed": cfg.embed.model_copy(update=embed)})
    prefect_defaults()
    from flows.pipeline import tomcap_pipeline

    ref = tomcap_pipeline(cfg, str(cfg.resolved_data_dir(args.data_dir)))
    print(f"evaluation: {ref.path}")
    return 0
