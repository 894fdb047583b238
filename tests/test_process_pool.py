"""The demo's process pool: each worker pinned to its own core share, math libraries told so, and ended
by the kernel when the process that started it dies."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect import flow, task

ROOT = Path(__file__).resolve().parents[1]


@task
def where() -> tuple[list[int], str | None, int, dict[str, int]]:
    import time

    import numpy  # noqa: F401  (loaded before the pool initializer ran, as the demo's stage modules load it)
    from threadpoolctl import threadpool_info

    time.sleep(1.0)  # both workers busy at once, so the two calls cannot share one
    pools = {f"{p['internal_api']} {p['filepath']}": p["num_threads"] for p in threadpool_info()}
    return sorted(os.sched_getaffinity(0)), os.environ.get("OMP_NUM_THREADS"), os.getpid(), pools


@flow
def two_calls() -> list[tuple[list[int], str | None, int, dict[str, int]]]:
    futures = [where.submit() for _ in range(2)]
    return [f.result() for f in futures]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and two cores")
@pytest.mark.prefect
def test_pool_workers_run_on_disjoint_cores(prefect_harness):
    from flows.runners import process_runner

    out = two_calls.with_options(task_runner=process_runner(2))()
    (cores_a, threads_a, pid_a, pools_a), (cores_b, threads_b, pid_b, pools_b) = out
    assert pid_a != pid_b and pid_a != os.getpid()
    assert cores_a and cores_b and not set(cores_a) & set(cores_b)
    assert threads_a == str(len(cores_a)) and threads_b == str(len(cores_b))
    # numpy's OpenBLAS was loaded before the initializer: its pool, sized for every core, spun beside the
    # other worker's training until threadpoolctl resized it.
    assert any("openblas" in name for name in pools_a), pools_a
    assert pools_a == {name: len(cores_a) for name in pools_a}
    assert pools_b == {name: len(cores_b) for name in pools_b}


SCRIPT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from flows.runners import _init_worker

def pid_then_sleep(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(1,))
    pool.submit(pid_then_sleep, sys.argv[1])
    time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_pool_worker_dies_with_a_killed_parent(tmp_path):
    script, pid_file = tmp_path / "parent.py", tmp_path / "worker.pid"
    script.write_text(SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 20
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the pool worker outlived its killed parent"
    finally:
        parent.kill()
        if pid_file.is_file() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait (init here) is pending
