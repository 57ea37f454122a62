"""The service keeps BLAS to the calling thread: its preprocess pool is the parallelism."""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits


def cpu_s_beside(work) -> tuple[float, float]:
    """(CPU seconds of this thread, CPU seconds of every other thread) while ``work`` runs."""
    process, thread = time.process_time(), time.thread_time()
    work()
    mine = time.thread_time() - thread
    return mine, time.process_time() - process - mine


def test_a_started_service_runs_blas_products_in_the_calling_thread(make_client):
    matrix = np.random.default_rng(0).random((600, 600))

    def products() -> None:
        for _ in range(20):
            matrix @ matrix

    # BLAS threads are process-wide: set two, as a 2-core machine starts, whatever ran before.
    threadpool_limits(limits=2, user_api="blas")
    make_client(model_backend="null")
    mine, beside = cpu_s_beside(products)
    assert beside < 0.25 * mine  # two BLAS threads: about as much beside as in this one
