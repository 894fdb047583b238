"""METEOR 1.5 through one warm ``meteor-1.5.jar -stdio`` process.

The jar is the one pycocoevalcap ships and runs with the same arguments, and we send it the same
``SCORE``/``EVAL`` lines as ``pycocoevalcap.meteor.Meteor``, so the numbers are the toolkit's.
What differs is plumbing:

- the process starts as soon as an evaluation starts (loading its paraphrase table takes ~9 s),
  so tokenisation, BLEU, ROUGE-L and CIDEr run in Python while it loads;
- ``SCORE`` lines are streamed by a writer thread while the replies are read, instead of one
  round trip per image;
- one process serves every results file of a sweep, and the statistics of a (hypothesis,
  references) pair already scored are reused (they depend on nothing else).
"""
from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from ..errors import TomcapError
from .java import JVM_QUICK, java_executable, package_dir

log = logging.getLogger(__name__)

METEOR_JAR = "meteor-1.5.jar"
METEOR_HEAP = "2G"
"""Heap of the stock wrapper (``-Xmx2G``); the paraphrase table needs about 1.5 GB."""
METEOR_ARGS = ("-", "-", "-stdio", "-l", "en", "-norm")
METEOR_JVM_OPTIONS: tuple[str, ...] = JVM_QUICK


def _score_line(hypothesis: str, references: Sequence[str]) -> str:
    # Exactly pycocoevalcap.meteor.Meteor._stat's line.
    hypothesis = hypothesis.replace("|||", "").replace("  ", " ")
    return " ||| ".join(("SCORE", " ||| ".join(references), hypothesis))


class MeteorProcess:
    """A running METEOR scorer. Use as a context manager, or call :meth:`close`."""

    def __init__(self, heap: str = METEOR_HEAP, jvm_options: Sequence[str] = METEOR_JVM_OPTIONS,
                 paraphrase: Path | None = None):
        jar_dir = package_dir("meteor")
        self._stderr = tempfile.TemporaryFile()
        # paraphrase: a filtered copy of the jar's table (see paraphrase.py); same scores, faster load
        extra = ["-a", str(paraphrase)] if paraphrase is not None else []
        cmd = [java_executable(), *jvm_options, "-jar", f"-Xmx{heap}", METEOR_JAR, *METEOR_ARGS, *extra]
        self._proc = subprocess.Popen(cmd, cwd=jar_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr)
        self._lock = threading.Lock()
        self._stats_cache: dict[str, str] = {}
        log.debug("started METEOR (pid %d) in %s", self._proc.pid, jar_dir)

    def __enter__(self) -> "MeteorProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _died(self) -> TomcapError:
        self._proc.poll()
        self._stderr.seek(0)
        tail = self._stderr.read().decode(errors="replace").strip()[-800:]
        return TomcapError(f"the METEOR process stopped (exit {self._proc.returncode}): {tail or 'no message'}",
                           fix=f"check `java -version` and that {METEOR_HEAP} of memory is free for {METEOR_JAR}")

    def _readline(self) -> str:
        line = self._proc.stdout.readline()
        if not line:
            raise self._died()
        return line.decode().strip()

    def _write_all(self, lines: Sequence[str], errors: list[BaseException]) -> None:
        try:
            for line in lines:
                self._proc.stdin.write(f"{line}\n".encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as err:  # the reader reports the process' own message
            errors.append(err)

    def _stream(self, lines: Sequence[str], n_replies: int) -> list[str]:
        errors: list[BaseException] = []
        writer = threading.Thread(target=self._write_all, args=(lines, errors), daemon=True)
        writer.start()
        try:
            replies = [self._readline() for _ in range(n_replies)]
        finally:
            writer.join()
        return replies

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[str]:
        """METEOR sufficient statistics per (hypothesis, references) pair (the jar's SCORE reply)."""
        lines = [_score_line(h, r) for h, r in zip(hypotheses, references, strict=True)]
        todo = list(dict.fromkeys(line for line in lines if line not in self._stats_cache))
        with self._lock:
            if todo:
                for line, reply in zip(todo, self._stream(todo, len(todo))):
                    self._stats_cache[line] = reply
        return [self._stats_cache[line] for line in lines]

    def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
        """Corpus METEOR and per-image scores, as ``pycocoevalcap.meteor.Meteor.compute_score``.

        hypotheses: N tokenised captions; references: N lists of tokenised references.
        """
        if not hypotheses:
            raise ValueError("METEOR needs at least one hypothesis")
        return self.eval_stats(self.stats(hypotheses, references))

    def eval_stats(self, stats: Sequence[str]) -> tuple[float, list[float]]:
        """The jar's EVAL of a list of SCORE statistics: (corpus score, per-segment scores)."""
        eval_line = "EVAL ||| " + " ||| ".join(stats)
        with self._lock:
            replies = self._stream([eval_line], len(stats) + 1)
        return float(replies[-1]), [float(r) for r in replies[:-1]]

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            self._proc.kill()
        self._proc.wait()
        self._stderr.close()

SWEEP_WORKERS = 2
PARALLEL_LOAD_CPUS = 4
"""Two processes pay a second table load (~10 CPU-s with the full table, ~1 with a filtered one):
worth it for a sweep (scoring dominates), with a filtered table, or for one file when there are
cores to load both full tables side by side with the Python metrics."""


def auto_meteor_workers(n_files: int, filtered_table: bool = False, cpus: int | None = None) -> int:
    """Default number of METEOR processes for ``n_files`` results files on ``cpus`` cores."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cpus >= PARALLEL_LOAD_CPUS or (cpus >= SWEEP_WORKERS and (n_files > 1 or filtered_table)):
        return SWEEP_WORKERS
    return 1


class MeteorPool:
    """``workers`` METEOR processes that split the SCORE lines between them.

    SCORE statistics of a segment depend on that segment only, so any process may compute them;
    the EVAL (which turns statistics into scores) runs in the first. With two cores, two
    processes load their tables side by side and then halve the scoring time.
    """

    def __init__(self, workers: int = 1, heap: str = METEOR_HEAP, jvm_options: Sequence[str] = METEOR_JVM_OPTIONS,
                 paraphrase: Path | None = None):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.procs: list[MeteorProcess] = []
        try:
            for _ in range(workers):
                self.procs.append(MeteorProcess(heap=heap, jvm_options=jvm_options, paraphrase=paraphrase))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "MeteorPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
        """Corpus METEOR and per-image scores, as ``pycocoevalcap.meteor.Meteor.compute_score``."""
        if not hypotheses:
            raise ValueError("METEOR needs at least one hypothesis")
        n = len(hypotheses)
        k = len(self.procs)
        bounds = [n * i // k for i in range(k + 1)]
        chunks: list[list[str]] = [[] for _ in range(k)]

        def run(i: int) -> None:
            lo, hi = bounds[i], bounds[i + 1]
            chunks[i] = self.procs[i].stats(hypotheses[lo:hi], references[lo:hi]) if hi > lo else []

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, k)]
        for t in threads:
            t.start()
        run(0)
        for t in threads:
            t.join()
        stats = [s for chunk in chunks for s in chunk]
        if len(stats) != n:
            raise TomcapError("a METEOR worker stopped before scoring its share",
                              fix="rerun with meteor_workers=1 and check `java -version` and free memory")
        return self.procs[0].eval_stats(stats)

    def close(self) -> None:
        for p in self.procs:
            p.close()
