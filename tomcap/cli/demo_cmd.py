"""``tomcap demo``: the offline main job, run as Prefect flows on an ephemeral local server.

So far it runs the corpus stage on the COCO Karpathy test captions beside the checkout; the
later stages join it as they land (see the pipeline issue).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..constants import DEMO_CORPUS_FILE
from ..corpus import CorpusConfig, SourceConfig
from ..errors import InputDataError
from ..settings import PipelineConfig
from .common import report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the offline demo pipeline (Prefect flows, local ephemeral server)")
    p.add_argument("--data-dir", type=Path, default=None, help="artifact root (default: ./data or $TOMCAP_DATA_DIR)")
    p.add_argument("--json", action="store_true", help="print the final artifact manifest as JSON on the last line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not DEMO_CORPUS_FILE.is_file():
        raise InputDataError("demo captions not found", path=DEMO_CORPUS_FILE,
                             fix="keep the shared data folder beside the checkout (../shared/data/captions)")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from flows.corpus import corpus_flow  # Prefect is imported only by commands that orchestrate

    cfg = PipelineConfig(corpus=CorpusConfig(sources=[SourceConfig(path=DEMO_CORPUS_FILE)]))
    ref = corpus_flow(cfg, str(cfg.resolved_data_dir(args.data_dir)))
    report(ref, args)
    return 0
