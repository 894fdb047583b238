"""A per-reference-set copy of METEOR's paraphrase table, so that the jar loads in ~1 s, not ~7 s.

METEOR only ever uses a paraphrase pair when one of its phrases occurs in a reference. Its
authors ship ``FilterParaphrase`` in the jar to cut the table down to the pairs that can match a
given reference set; the jar then takes the small table with ``-a`` and returns the same
scores (checked bit for bit against stock on the MAGIC file by the tests and the benchmark).
Filtering reads the whole table (~10 CPU-s, more than loading it costs the jar), so a run never
waits for it before scoring: one METEOR process starts on the full table at once and, when the
copy is worth building, the filter runs beside it; processes on the filtered copy join the
scoring when it is ready (``meteor.MeteorPool``), and the copy is kept for later runs against
the same references (the next checkpoint, the next variant), which start in ~1 s.

When it is worth building: on two cores the filter slows a one-file run by ~5 s (it competes
with the loading process; ~17 s -> ~21 s on the 5000-image MAGIC file, benchmarks/evaluate.py), so a reference
set evaluated once, one file, never pays for it; it is built the second time a reference set is
seen (a ``seen-<key>`` marker records the first), and at once for a sweep of several files,
where the second process repays the filter within the run. Copies are keyed by the raw
references and the table/jar identity, written to a temp name and renamed, so concurrent runs
never see a partial file.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from .java import java_executable, package_dir
from .meteor_table import METEOR_JAR, TABLE, original_table, stored_copy

log = logging.getLogger(__name__)

FILTER_CLASS = "FilterParaphrase"
FILTER_HEAP = "2G"
FILTER_JVM = ("-XX:+UseSerialGC",)
"""The filter streams the table and keeps only a phrase trie: one GC thread leaves the other core
to the METEOR process loading beside it (~10 s and ~0.3 GB; the default G1 took ~1 GB, no faster)."""
CACHE_VERSION = "1"
"""Bump when the way copies are made changes; old copies are then ignored."""


def _table_identity() -> str:
    jar_dir = package_dir("meteor")
    parts = []
    for f in (jar_dir / METEOR_JAR, jar_dir / TABLE):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}")
    return ";".join(parts)


def cache_key(raw_refs: Iterable[str]) -> str:
    """Key of the reference set (raw captions; their tokenisation is a function of them)."""
    h = hashlib.sha256(f"{CACHE_VERSION};{_table_identity()}\n".encode())
    for s in sorted(set(raw_refs)):
        h.update(s.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


class ParaphraseCache:
    """Filtered paraphrase tables in ``folder``, one per reference set."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"paraphrase-{key}.gz"

    def lookup(self, key: str) -> Path | None:
        p = self.path(key)
        return p if p.is_file() and p.stat().st_size > 0 else None

    def seen(self, key: str) -> bool:
        """Was this reference set evaluated before (with or without building its table)?"""
        return (self.folder / f"seen-{key}").is_file()

    def mark_seen(self, key: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"seen-{key}").touch()

    def start_build(self, key: str, tokenized_refs: Sequence[str]) -> "FilterBuild":
        """Start filtering the table to ``tokenized_refs`` (the lines METEOR will see) in the background."""
        return FilterBuild(self.path(key), tokenized_refs)


class FilterBuild:
    """A running ``FilterParaphrase``; :meth:`wait` renames its output into place when it succeeds."""

    def __init__(self, target: Path, tokenized_refs: Sequence[str]):
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._tmp_out = target.with_name(f".tmp-{tag}-{target.name}")
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
            f.write("\n".join(tokenized_refs) + "\n")
            self._refs_file = Path(f.name)
        jar_dir = package_dir("meteor")
        cmd = [java_executable(), *FILTER_JVM, f"-Xmx{FILTER_HEAP}", "-cp", str(jar_dir / METEOR_JAR), FILTER_CLASS,
               str(stored_copy() or original_table()), str(self._tmp_out), str(self._refs_file)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._done = self._cancelled = False
        self._result: Path | None = None
        self._lock = threading.Lock()  # several pool workers wait for the same build

    def wait(self) -> Path | None:
        """Wait for the filter; returns the table's path, or None (with a warning) if it failed or
        was cancelled."""
        with self._lock:
            if not self._done:
                self._done = True
                self._result = self._finish()
            return self._result

    def _finish(self) -> Path | None:
        try:
            _, err = self._proc.communicate()
            if self._proc.returncode == 0 and self._tmp_out.is_file():
                os.replace(self._tmp_out, self.target)
                log.info("cached a filtered METEOR paraphrase table: %s", self.target)
                return self.target
            if self._cancelled:
                return None
            log.warning("could not cache a filtered METEOR paraphrase table (exit %s): %s; later runs load the "
                        "full table", self._proc.returncode, err.decode(errors="replace").strip()[-300:])
            return None
        finally:
            self._refs_file.unlink(missing_ok=True)
            self._tmp_out.unlink(missing_ok=True)

    def cancel(self) -> None:
        """Stop the filter (waiters get None); a finished build keeps its table."""
        if self._proc.poll() is None:
            self._cancelled = True
            self._proc.kill()
        self.wait()

