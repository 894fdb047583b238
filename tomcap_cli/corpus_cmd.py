"""``tomcap corpus [--emit-event]``: the library's corpus command, optionally announcing each source
to Prefect (a ``tomcap.corpus.updated`` event triggers the 'retrain' deployment)."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
from pathlib import Path

from tomcap.cli import corpus_cmd


def register(sub: argparse._SubParsersAction) -> None:
    p = corpus_cmd.add_corpus_parser(sub)
    p.add_argument("--emit-event", action="store_true",
                   help="emit a tomcap.corpus.updated Prefect event per source (triggers the 'retrain' deployment)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    code = corpus_cmd.run(args)
    if args.emit_event:
        from tasks.events import emit_corpus_updated  # Prefect only when asked to talk to it
        from tomcap.artifacts import file_sha256

        sources, _ = corpus_cmd.corpus_section(args)
        for src in sources.sources:
            emit_corpus_updated(Path(src.path), file_sha256(Path(src.path)))
    return code
