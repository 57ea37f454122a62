"""PostgreSQL for the tests: the throwaway cluster (bench.postgres) and a bounded wait."""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.postgres import available, running_cluster

__all__ = ["available", "running_cluster", "wait_until"]


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return False
