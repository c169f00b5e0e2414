"""Shared timing helper for the benchmark scripts (median of repeats after a warm-up)."""

from __future__ import annotations

import statistics
from typing import Callable

from cosim.roofline import wall_times


def sample_times(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, pause_s: float = 0.3) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn()`` in seconds, after ``warmup`` untimed calls, with
    a pause before each (:func:`cosim.roofline.wall_times`): numba, torch and OpenBLAS each keep a
    thread pool whose idle threads spin for a while after use, and on a 2-core machine a
    contender timed right after another one would otherwise pay for the other's spinning threads.
    """
    return wall_times(fn, repeats, warmup, pause_s)


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, pause_s: float = 0.3) -> float:
    """Median of :func:`sample_times` (seconds)."""
    return statistics.median(sample_times(fn, repeats, warmup, pause_s))
