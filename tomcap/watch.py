"""Watching a folder for caption files that land or change (no Prefect here: callers emit events).

A file counts once it is *settled*: its size and mtime are the same on two consecutive polls, so a
file still being copied in is not reported half-written. Hidden files and ``*.part``/``*.tmp`` are
ignored, as copy tools use them for in-flight writes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import file_sha256
from .errors import InputDataError

IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload")
CORPUS_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".txt", ".parquet")


@dataclass
class CorpusWatcher:
    """Reports each new or changed settled corpus file of ``directory`` once per content."""

    directory: Path
    suffixes: tuple[str, ...] = CORPUS_SUFFIXES
    _pending: dict[Path, tuple[int, int]] = field(default_factory=dict)
    _reported: dict[Path, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        if not self.directory.is_dir():
            raise InputDataError("not a directory", path=self.directory, fix="pass the folder where corpus files land")

    def _candidates(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir()
                      if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in self.suffixes
                      and not p.name.endswith(IGNORED_SUFFIXES))

    def poll(self) -> list[tuple[Path, str]]:
        """(path, content sha256) of files that settled with new content since the last poll."""
        ready = []
        for path in self._candidates():
            st = path.stat()
            sig = (st.st_size, st.st_mtime_ns)
            if self._pending.get(path) != sig:
                self._pending[path] = sig  # seen changing: wait one more poll
                continue
            digest = file_sha256(path)
            if self._reported.get(path) != digest:
                self._reported[path] = digest
                ready.append((path, digest))
        return ready
