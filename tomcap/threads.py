"""The thread budget of one worker process, for every math library in it that keeps a thread pool.

Deliberately light (no torch import): the demo's pool initializer calls it before any task runs."""
from __future__ import annotations

import os
import sys

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(n: int) -> None:
    """Cap this process's math libraries at ``n`` threads each.

    The environment covers libraries loaded later (torch, FAISS's OpenMP BLAS read it once, at load);
    threadpoolctl covers those already loaded. numpy's OpenBLAS is loaded as soon as anything imports
    numpy, sized for every core, and its idle threads spin: two training workers on two cores each
    burned ~0.6 of a core that way (train-step throughput of the pair -20%, benchmarks/train_step.py)."""
    from threadpoolctl import threadpool_limits

    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    threadpool_limits(limits=n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
