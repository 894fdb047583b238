"""METEOR's full paraphrase table in the form the jar reads fastest.

The jar reads its table (``data/paraphrase-en.gz``: 62 MB, 272 MB of text) through a
``GZIPInputStream`` at every start, and inflating it is ~3 s of a ~10 s load. A copy of the same
bytes written as a "stored" gzip (deflate level 0, no compression) reads at memory speed, and the
jar takes it with ``-a``: the same lines, so the same scores (the MAGIC and slice tests compare
every number with stock pycocoevalcap). The copy lives in our per-user cache folder (never inside
the installed pycocoevalcap), named after the original's size so that another pycocoevalcap release
gets its own copy; ``make install`` writes it (:func:`write_stored_copy`), and an evaluation that
finds none writes it in the background for the next one. Written to a temp name and renamed: a copy
that exists is whole.
"""
from __future__ import annotations

import gzip
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from ..constants import CACHE_DIR_ENV, DEFAULT_CACHE_DIR
from .java import package_dir

log = logging.getLogger(__name__)

METEOR_JAR = "meteor-1.5.jar"
TABLE = Path("data") / "paraphrase-en.gz"
"""The table pycocoevalcap ships beside ``meteor-1.5.jar`` (and the jar's default)."""
STORED_LEVEL = 0
COPY_CHUNK = 1 << 22


def original_table() -> Path:
    return package_dir("meteor") / TABLE


def cache_folder() -> Path:
    """Where the stored copy goes: ``$TOMCAP_CACHE_DIR/meteor`` (default ``~/.cache/tomcap/meteor``)."""
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR) / "meteor"


def stored_copy_path() -> Path:
    orig = original_table()
    return cache_folder() / f"{orig.name.removesuffix('.gz')}.{orig.stat().st_size}.stored.gz"


def stored_copy() -> Path | None:
    """The stored copy of the full table, if one was written."""
    p = stored_copy_path()
    return p if p.is_file() else None


def write_stored_copy() -> Path:
    """Write the stored copy (~2.5 s, 272 MB) unless it exists; returns its path."""
    target = stored_copy_path()
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}-{target.name}")
    try:
        with gzip.open(original_table(), "rb") as src, gzip.open(tmp, "wb", compresslevel=STORED_LEVEL) as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class StoredCopyBuild:
    """:func:`write_stored_copy` in a background thread; a failure (read-only install, full disk)
    only costs later runs the faster load, so it is logged, not raised."""

    def __init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="meteor-table-copy")
        self._thread.start()

    def _run(self) -> None:
        try:
            path = write_stored_copy()
            log.info("wrote a stored copy of METEOR's paraphrase table (loads ~3 s faster): %s", path)
        except OSError as err:
            log.warning("could not write a stored copy of METEOR's paraphrase table (%s); METEOR keeps "
                        "loading the compressed one", err)

    def wait(self) -> None:
        self._thread.join()
