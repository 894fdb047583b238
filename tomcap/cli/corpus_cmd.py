"""``tomcap corpus``: caption files -> filtered Parquet artifact."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
from pathlib import Path

from ..config import validate_config
from ..corpus.config import FORMATS, CorpusConfig, SourceConfig
from .common import add_stage_args, load_config, report


def add_corpus_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("corpus", help="filter caption files into a Parquet corpus artifact")
    add_stage_args(p)
    p.add_argument("--source", type=Path, action="append", default=[],
                   help="caption file to add as a source (repeatable; format auto-detected)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="format of the --source files")
    p.set_defaults(func=run)
    return p


register = add_corpus_parser


def corpus_config_with_sources(cfg: CorpusConfig, paths: list[Path], fmt: str) -> CorpusConfig:
    """The config's corpus section plus the command line's --source files."""
    if not paths:
        return cfg
    extra = [SourceConfig(path=p.resolve(), format=fmt) for p in paths]
    data = cfg.model_dump()
    data["sources"] = [s.model_dump() for s in cfg.sources] + [s.model_dump() for s in extra]
    return validate_config(CorpusConfig, data, source="--source")


def corpus_section(args: argparse.Namespace) -> tuple[CorpusConfig, Path]:
    """The corpus config the command line asks for, and the data dir."""
    cfg, data_dir = load_config(args)
    return corpus_config_with_sources(cfg.corpus, args.source, args.format), data_dir


def run(args: argparse.Namespace) -> int:
    from ..corpus.stage import run_corpus  # polars: only when the command runs

    corpus_cfg, data_dir = corpus_section(args)
    ref = run_corpus(corpus_cfg, data_dir, force=args.force)
    per_source = ref.manifest().rows.get("per_source", {})
    lines = [f"{name}: {c['rows_in']} in -> {c['rows_out']} out" for name, c in per_source.items()]
    report(ref, args, lines)
    return 0
