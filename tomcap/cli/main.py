"""Entry point: builds the parser from the subcommand modules and turns errors into exit codes."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from ..errors import TomcapError

COMMAND_MODULES = (
    "tomcap.cli.corpus_cmd",
    "tomcap.cli.run_cmd",
    "tomcap.cli.world_cmd",
    "tomcap.cli.evaluate_cmd",
    "tomcap.cli.train_cmd",
    "tomcap.cli.generate_cmd",
    "tomcap.cli.sweep_cmd",
    "tomcap.cli.embed_cmd",
    "tomcap.cli.gap_cmd",
    "tomcap.cli.index_cmd",
    "tomcap.cli.verify_cmd",
    "tomcap.cli.models_cmd",
)
"""The library's commands (no Prefect). Each module has ``register(subparsers)``, which adds its
subcommand(s) with ``func=run``; modules import heavy code only inside ``run`` (``tomcap --help``
stays fast). The installed ``tomcap`` (``tomcap_cli``) adds the Prefect-orchestrating commands."""


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tomcap", description="Text-only image captioning pipeline (TOMCap).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None, modules: Sequence[str] = COMMAND_MODULES) -> int:
    """Run one command; returns the process exit code (0 ok, 2 user error, 1 unexpected error)."""
    parser = build_parser(modules)
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "json", False):
        # Progress bars (tqdm, with ETA) show on a terminal only; with --json the output is for programs.
        os.environ["TQDM_DISABLE"] = "1"
    try:
        return int(args.func(args) or 0)
    except TomcapError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())
