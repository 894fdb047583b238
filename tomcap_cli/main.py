"""Entry point of the installed ``tomcap``: the library's parser plus the Prefect commands."""
from __future__ import annotations

import sys
from collections.abc import Sequence

from tomcap.cli.main import COMMAND_MODULES as LIBRARY_MODULES
from tomcap.cli.main import main as library_main

PREFECT_COMMAND_MODULES = ("tomcap_cli.corpus_cmd", "tomcap_cli.pipeline_cmd", "tomcap_cli.demo_cmd",
                           "tomcap_cli.watch_cmd")
"""``tomcap_cli.corpus_cmd`` replaces the library's ``corpus`` (it adds ``--emit-event``)."""
COMMAND_MODULES = tuple(m for m in LIBRARY_MODULES if m != "tomcap.cli.corpus_cmd") + PREFECT_COMMAND_MODULES


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code (0 ok, 2 user error, 1 unexpected error)."""
    return library_main(argv, modules=COMMAND_MODULES)


def entry() -> None:
    sys.exit(main())
