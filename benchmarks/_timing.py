"""Shared timing helper for the benchmark scripts (median of repeats after a warm-up)."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def sample_times(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, pause_s: float = 0.3) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn()`` in seconds, after ``warmup`` untimed calls.

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
    return times


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, pause_s: float = 0.3) -> float:
    """Median of :func:`sample_times` (seconds)."""
    return statistics.median(sample_times(fn, repeats, warmup, pause_s))
