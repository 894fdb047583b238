"""Task runners for the scale-out flows: Prefect's thread pool, or Dask (a LocalCluster, or any
Dask scheduler address for users who outgrow one machine); and the demo's process pool."""
from __future__ import annotations

import os

from tomcap.settings import RunnerConfig
from tomcap.threads import THREAD_ENV_VARS, limit_threads


def worker_threads(workers: int, cpus: int | None = None) -> int:
    """Math-library threads per LocalCluster worker process: the cores shared out, at least one.

    Each worker process would otherwise start one torch/BLAS thread per core, and two workers on two
    cores would run four threads that wait on each other."""
    return max(1, (cpus or os.cpu_count() or 1) // max(1, workers))


def task_runner(cfg: RunnerConfig):
    """The Prefect task runner for ``cfg``."""
    if cfg.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    from prefect_dask import DaskTaskRunner

    if cfg.address is not None:
        return DaskTaskRunner(address=cfg.address)
    kwargs = {"n_workers": cfg.workers, "threads_per_worker": 1, "processes": cfg.processes,
              "dashboard_address": None}
    if cfg.processes:
        threads = str(worker_threads(cfg.workers))
        kwargs["env"] = {v: os.environ.get(v, threads) for v in THREAD_ENV_VARS}
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=kwargs)


PR_SET_PDEATHSIG = 1
"""prctl option: the signal a process gets when its parent dies (linux/prctl.h)."""


def core_share(slot: int, workers: int, cpus: list[int]) -> list[int]:
    """The cores pool worker number ``slot`` of ``workers`` runs on: an equal, disjoint share while there are
    enough cores, else one core, round robin."""
    if workers >= len(cpus):
        return [cpus[slot % len(cpus)]]
    share = len(cpus) // workers
    return cpus[(slot % workers) * share:(slot % workers + 1) * share]


def _die_with_parent() -> None:
    """Linux: the kernel ends this worker when the demo process dies. An orphaned worker would go on
    training into the work folder that a rerun (which resumes from the last checkpoint) uses."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _init_worker(workers: int) -> None:
    """Pool initializer: pin the worker to its core share. Without it every worker's torch, and every
    evaluation's METEOR, would start one thread per core of the machine: two workers on two cores ran
    four busy threads, and a captioning task beside a training took 6x its time alone."""
    import multiprocessing

    _die_with_parent()
    if not hasattr(os, "sched_setaffinity"):
        return
    # The pool numbers its worker processes 1, 2, ... (a replaced worker gets the next number).
    identity = multiprocessing.current_process()._identity
    slot = identity[-1] - 1 if identity else 0
    cores = core_share(slot, workers, sorted(os.sched_getaffinity(0)))
    os.sched_setaffinity(0, cores)
    limit_threads(len(cores))


def share_api_with_workers() -> None:
    """Export this process's Prefect API address for spawned workers. Under ``tomcap demo``'s temporary
    server no setting names it, and each worker would start a server of its own (and record its task
    runs there, out of the UI's sight)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        with get_client(sync_client=True) as client:
            os.environ["PREFECT_API_URL"] = str(client.api_url)


def process_runner(workers: int):
    """A Prefect process pool of ``workers``, each pinned to its share of this machine's cores; call it
    inside a flow run (the workers report to its API)."""
    from prefect.task_runners import ProcessPoolTaskRunner

    share_api_with_workers()
    return ProcessPoolTaskRunner(max_workers=workers, initializer=_init_worker, initargs=(workers,))
