"""Task runners for the scale-out flows: Prefect's thread pool, or Dask (a LocalCluster, or any
Dask scheduler address for users who outgrow one machine)."""
from __future__ import annotations

import os

from tomcap.settings import RunnerConfig

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


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
