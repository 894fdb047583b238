"""Task runners for the scale-out flows: Prefect's thread pool, or Dask (a LocalCluster, or any
Dask scheduler address for users who outgrow one machine)."""
from __future__ import annotations

from tomcap.settings import RunnerConfig

def task_runner(cfg: RunnerConfig):
    """The Prefect task runner for ``cfg``."""
    if cfg.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    from prefect_dask import DaskTaskRunner

    if cfg.address is not None:
        return DaskTaskRunner(address=cfg.address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": cfg.workers, "threads_per_worker": 1,
                                          "processes": cfg.processes, "dashboard_address": None})
