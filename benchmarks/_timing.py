"""Shared timing helper for the benchmark scripts (median of repeats after a warm-up)."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, pause_s: float = 0.3) -> float:
    """Median wall time of ``fn()`` in seconds.

    Sleeps ``pause_s`` before each timed call: numba, torch and OpenBLAS each keep a thread pool
    whose idle threads spin for a while after use, and on a 2-core machine a contender timed
    right after another one would otherwise pay for the other's spinning threads.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        time.sleep(pause_s)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
