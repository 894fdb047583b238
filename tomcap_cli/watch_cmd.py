"""``tomcap watch DIR``: emit a tomcap.corpus.updated Prefect event when a corpus file lands."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
import time
from pathlib import Path

from tomcap.watch import CorpusWatcher

DEFAULT_INTERVAL_S = 5.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="emit a Prefect event when a corpus file lands in DIR (triggers 'retrain')")
    p.add_argument("directory", type=Path)
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S, help="seconds between polls")
    p.add_argument("--max-events", type=int, default=None, help="stop after this many events")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tasks.events import emit_corpus_updated  # Prefect only for commands that talk to it

    watcher = CorpusWatcher(args.directory)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    emitted = 0
    while deadline is None or time.monotonic() < deadline:
        for path, digest in watcher.poll():
            emit_corpus_updated(path, digest)
            emitted += 1
            print(f"event tomcap.corpus.updated: {path}", flush=True)
            if args.max_events is not None and emitted >= args.max_events:
                return 0
        time.sleep(args.interval)
    return 0
