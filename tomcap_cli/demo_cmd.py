"""``tomcap demo``: the offline main job, run as Prefect flows on an ephemeral local server.

Generates the embedded world, runs the whole pipeline on the shipped tiny CLIP and GPT-2 for
text-only TOMCap, its ablations and the paired oracle, and prints the comparison table. A second
run is served from cache.
"""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
import json
import time
from pathlib import Path

from tomcap.constants import DEMO_CONFIG_FILE

from .common import prefect_defaults


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the offline demo (world, all variants, report) as Prefect flows")
    p.add_argument("--config", type=Path, default=DEMO_CONFIG_FILE, help="demo pipeline YAML")
    p.add_argument("--data-dir", type=Path, default=None, help="artifact root (default: ./data or $TOMCAP_DATA_DIR)")
    p.add_argument("--json", action="store_true", help="print the path of the report's metrics.json last")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tomcap.clip import resolve_pretrained
    from tomcap.model.adaptor import load_tokenizer
    from tomcap.settings import load_pipeline_config

    cfg = load_pipeline_config(args.config)
    # Fail before starting Prefect if the shipped models are missing (clear error naming the file).

    resolve_pretrained(cfg.embed.model, cfg.embed.pretrained)
    load_tokenizer(cfg.train.model.decoder_source)
    prefect_defaults()
    from flows.demo import demo  # Prefect is imported only by commands that orchestrate

    t0 = time.perf_counter()
    report = demo(cfg, str(cfg.resolved_data_dir(args.data_dir)))
    print((Path(report.path) / "report.md").read_text(encoding="utf-8"))
    print(f"demo finished in {time.perf_counter() - t0:.1f}s; report: {report.path}")
    if args.json:
        print(json.dumps({"metrics": str(Path(report.path) / "metrics.json")}))
    return 0
