"""``tomcap corpus``: caption files -> filtered Parquet artifact."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import validate_config
from ..artifacts import file_sha256
from ..corpus import CorpusConfig, SourceConfig, run_corpus
from ..corpus.config import FORMATS
from .common import add_stage_args, load_config, report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="filter caption files into a Parquet corpus artifact")
    add_stage_args(p)
    p.add_argument("--source", type=Path, action="append", default=[],
                   help="caption file to add as a source (repeatable; format auto-detected)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="format of the --source files")
    p.add_argument("--emit-event", action="store_true",
                   help="emit a tomcap.corpus.updated Prefect event per source (triggers the 'retrain' deployment)")
    p.set_defaults(func=run)


def corpus_config_with_sources(cfg: CorpusConfig, paths: list[Path], fmt: str) -> CorpusConfig:
    """The config's corpus section plus the command line's --source files."""
    if not paths:
        return cfg
    extra = [SourceConfig(path=p.resolve(), format=fmt) for p in paths]
    data = cfg.model_dump()
    data["sources"] = [s.model_dump() for s in cfg.sources] + [s.model_dump() for s in extra]
    return validate_config(CorpusConfig, data, source="--source")


def run(args: argparse.Namespace) -> int:
    cfg, data_dir = load_config(args)
    corpus_cfg = corpus_config_with_sources(cfg.corpus, args.source, args.format)
    ref = run_corpus(corpus_cfg, data_dir, force=args.force)
    per_source = ref.manifest().rows.get("per_source", {})
    lines = [f"{name}: {c['rows_in']} in -> {c['rows_out']} out" for name, c in per_source.items()]
    if args.emit_event:
        from tasks.events import emit_corpus_updated  # Prefect only when asked to talk to it

        for src in corpus_cfg.sources:
            emit_corpus_updated(Path(src.path), file_sha256(Path(src.path)))
    report(ref, args, lines)
    return 0
