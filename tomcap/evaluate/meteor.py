"""METEOR 1.5 through warm ``meteor-1.5.jar -stdio`` processes.

The jar is the one pycocoevalcap ships and runs with the same arguments, and we send it the same
``SCORE``/``EVAL`` lines as ``pycocoevalcap.meteor.Meteor``, so the numbers are the toolkit's.
What differs is plumbing:

- processes start as soon as an evaluation starts (loading the paraphrase table takes ~7 s), so
  tokenisation, BLEU, ROUGE-L and CIDEr run in Python while they load;
- ``SCORE`` lines go out in chunks to whichever process is free, several processes side by side,
  and a process may join late (one on a paraphrase table filtered to the references, see
  ``paraphrase``): a segment's statistics depend on that segment only, so any process may score it;
- one pool serves every results file of a sweep, and the statistics of a (hypothesis, references)
  pair already scored are reused (they depend on nothing else);
- JVM flags suit each job (they change speed only; Java arithmetic is deterministic).
"""
from __future__ import annotations

import logging
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import TomcapError
from .java import java_executable, package_dir
from .meteor_table import METEOR_JAR, stored_copy

log = logging.getLogger(__name__)

METEOR_HEAP = "2G"
"""Heap of the stock wrapper (``-Xmx2G``); the full paraphrase table needs about 1.5 GB."""
METEOR_ARGS = ("-", "-", "-stdio", "-l", "en", "-norm")
FULL_TABLE_JVM = ("-XX:+UseParallelGC", "-XX:MaxTenuringThreshold=0")
"""Loading the full table is ~8 s of one thread parsing 16M lines into long-lived objects: the
throughput collector on a heap fixed at its maximum (``-Xms``, added below), promoting survivors
at once instead of copying them between survivor spaces, halves the GC pauses of the default G1
setup (load + scoring of 5000 images: ~16 s instead of ~19 s on 2 cores)."""
FILTERED_TABLE_JVM = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
"""With a small table the run is all scoring: one GC thread and the quick C1 compiler only leave the
second core to a second process (C2 and G1 threads cost ~2x the CPU; two G1 processes on two cores
were no faster than one)."""
CHUNK_LINES = 64
"""SCORE lines handed to a process at a time (~0.1 s of its work; the replies fit in a pipe buffer)."""
FULL_TABLE = Path("<full paraphrase table>")
"""What a ``MeteorPool`` ``later`` callable returns to start its process on the full table after all (a
filter that failed must not leave a one-process pool without a scorer)."""


def _score_line(hypothesis: str, references: Sequence[str]) -> str:
    # Exactly pycocoevalcap.meteor.Meteor._stat's line.
    hypothesis = hypothesis.replace("|||", "").replace("  ", " ")
    return " ||| ".join(("SCORE", " ||| ".join(references), hypothesis))


class MeteorProcess:
    """One running METEOR scorer on the full paraphrase table, or on ``paraphrase`` (a filtered copy)."""

    def __init__(self, paraphrase: Path | None = None, heap: str = METEOR_HEAP):
        jar_dir = package_dir("meteor")
        self._stderr = tempfile.TemporaryFile()
        if paraphrase is None:
            full = stored_copy()  # the same table, faster to read (meteor_table.py)
            jvm, extra = (*FULL_TABLE_JVM, f"-Xms{heap}"), ([] if full is None else ["-a", str(full)])
        else:
            # absolute: the jar runs in its own folder, where a relative --data-dir's table is not
            jvm, extra = FILTERED_TABLE_JVM, ["-a", str(Path(paraphrase).resolve())]
        cmd = [java_executable(), *jvm, "-jar", f"-Xmx{heap}", METEOR_JAR, *METEOR_ARGS, *extra]
        self._proc = subprocess.Popen(cmd, cwd=jar_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr)
        self._lock = threading.Lock()
        log.debug("started METEOR (pid %d, table %s)", self._proc.pid, paraphrase or "full")

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

    def exchange(self, lines: Sequence[str], n_replies: int) -> list[str]:
        """Send ``lines``, return the next ``n_replies`` reply lines (written while they are read)."""
        with self._lock:
            errors: list[BaseException] = []
            writer = threading.Thread(target=self._write_all, args=(lines, errors), daemon=True)
            writer.start()
            try:
                replies = [self._readline() for _ in range(n_replies)]
            finally:
                writer.join()
            return replies

    def eval_stats(self, stats: Sequence[str]) -> tuple[float, list[float]]:
        """The jar's EVAL of a list of SCORE statistics: (corpus score, per-segment scores)."""
        replies = self.exchange(["EVAL ||| " + " ||| ".join(stats)], len(stats) + 1)
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


MAX_AUTO_WORKERS = 2
"""Each process holds a table (~1.5 GB full, ~0.3 GB filtered); past two, scoring is rarely the
bottleneck of one evaluation."""


def auto_meteor_workers(cpus: int | None = None) -> int:
    """Default number of METEOR processes: one per core, at most ``MAX_AUTO_WORKERS``."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKERS, cpus))


class _Batch:
    """Chunks of one ``score`` call in flight: replies as they come, the first error, completion."""

    def __init__(self, n_chunks: int):
        self.pending = n_chunks
        self.replies: dict[str, str] = {}
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        if n_chunks == 0:
            self.done.set()

    def finish(self, lines: Sequence[str], replies: Sequence[str]) -> None:
        with self._lock:
            self.replies.update(zip(lines, replies))
            self.pending -= 1
            if self.pending == 0:
                self.done.set()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self.error = self.error or error
            self.done.set()


_STOP = object()


class MeteorPool:
    """METEOR processes that take SCORE lines ``CHUNK_LINES`` at a time from one queue.

    ``now``: tables of processes started at once (None: the full table). ``later``: callables, each
    run in its own thread, that return the table of one more process (None: it never starts;
    ``FULL_TABLE``: the full table), e.g. waiting for a filtered table; such a process joins the
    scoring when it is up. The EVAL that turns statistics into scores runs in the first live process
    that answered.
    """

    def __init__(self, now: Sequence[Path | None] = (None,), later: Sequence[Callable[[], Path | None]] = ()):
        if not now and not later:
            raise ValueError("a METEOR pool needs at least one process")
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closing = False
        self._started: list[MeteorProcess] = []
        self._ready: list[MeteorProcess] = []  # in the order they answered their first chunk
        self._dead: list[MeteorProcess] = []
        self._live = len(now) + len(later)
        self._batch: _Batch | None = None
        self._last_error: BaseException | None = None
        self._stats_cache: dict[str, str] = {}
        self._threads: list[threading.Thread] = []
        try:
            for table in now:
                self._started.append(MeteorProcess(paraphrase=table))
        except BaseException:
            self.close()
            raise
        for proc in list(self._started):
            self._spawn(lambda proc=proc: proc)
        for source in later:
            self._spawn(lambda source=source: self._start_late(source))

    def __enter__(self) -> "MeteorPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def n_started(self) -> int:
        with self._lock:
            return len(self._started)

    def stop_joining(self) -> None:
        """Processes that have not started by now never will (the scoring is over)."""
        with self._lock:
            self._closing = True

    def _spawn(self, get_proc: Callable[[], MeteorProcess | None]) -> None:
        t = threading.Thread(target=self._work, args=(get_proc,), daemon=True, name="meteor-worker")
        self._threads.append(t)
        t.start()

    def _start_late(self, source: Callable[[], Path | None]) -> MeteorProcess | None:
        table = source()
        with self._lock:
            if table is None or self._closing:
                return None
            proc = MeteorProcess(paraphrase=None if table == FULL_TABLE else table)
            self._started.append(proc)
            return proc

    def _work(self, get_proc: Callable[[], MeteorProcess | None]) -> None:
        try:
            proc = get_proc()
            while proc is not None:
                job = self._jobs.get()
                if job is _STOP:
                    return
                batch, lines = job
                if batch.error is not None:
                    continue
                try:
                    replies = proc.exchange(lines, len(lines))
                    with self._lock:
                        if proc not in self._ready:
                            self._ready.append(proc)
                    batch.finish(lines, replies)
                except BaseException as err:  # this process is gone: another one takes its chunk
                    with self._lock:
                        self._dead.append(proc)
                    if not self._closing:
                        log.warning("a METEOR process stopped; %d left: %s", self._live - 1, err)
                    self._last_error = err
                    self._jobs.put(job)
                    return
        except BaseException as err:  # the late start failed
            log.warning("a METEOR process could not join the pool: %s", err)
        finally:
            self._worker_gone()

    def _worker_gone(self) -> None:
        with self._lock:
            self._live -= 1
            batch, orphaned = self._batch, self._live == 0
        if orphaned and batch is not None and not self._closing:
            batch.fail(self._no_process_error())

    def _no_process_error(self) -> BaseException:
        """Why no process is left: the last one's own error when there was one."""
        return self._last_error or TomcapError("no METEOR process is left to score",
                                               fix="check `java -version` and free memory")

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[str]:
        """SCORE statistics per (hypothesis, references) pair, computed by whichever process is free."""
        lines = [_score_line(h, r) for h, r in zip(hypotheses, references, strict=True)]
        todo = [line for line in dict.fromkeys(lines) if line not in self._stats_cache]
        chunks = [todo[i:i + CHUNK_LINES] for i in range(0, len(todo), CHUNK_LINES)]
        batch = _Batch(len(chunks))
        with self._lock:
            if self._live == 0:
                raise self._no_process_error()
            self._batch = batch
        for chunk in chunks:
            self._jobs.put((batch, chunk))
        batch.done.wait()
        if batch.error is not None:
            raise batch.error
        self._stats_cache.update(batch.replies)
        return [self._stats_cache[line] for line in lines]

    def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
        """Corpus METEOR and per-image scores, as ``pycocoevalcap.meteor.Meteor.compute_score``.

        hypotheses: N tokenised captions; references: N lists of tokenised references.
        """
        if not hypotheses:
            raise ValueError("METEOR needs at least one hypothesis")
        stats = self.stats(hypotheses, references)
        while True:  # the EVAL goes to a live process; if it dies meanwhile, to the next one
            with self._lock:
                alive = [p for p in dict.fromkeys(self._ready + self._started) if p not in self._dead]
            if not alive:
                raise self._no_process_error()
            try:
                return alive[0].eval_stats(stats)
            except TomcapError as err:
                with self._lock:
                    self._dead.append(alive[0])
                self._last_error = err

    def close(self) -> None:
        with self._lock:
            self._closing = True  # from here on no late process starts (see _start_late)
            started = list(self._started)
        for _ in self._threads:
            self._jobs.put(_STOP)
        for p in started:
            p.close()  # a worker blocked on a reply gets EOF and ends
        for t in self._threads:
            t.join()
