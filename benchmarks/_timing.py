"""Shared timing helpers of the benchmark scripts: pinned thread pools, and timings with spread.

Call :func:`pin_threads` first thing in a script, before numpy, torch or numba are imported:
the thread counts of OpenMP, OpenBLAS, MKL and numba are read from the environment when those
libraries load. On a small shared machine an unpinned pool oversubscribes the cores (torch with
two threads on two busy cores turned a 1.4 ms K-FAC step into 440 ms).

Every timing goes through :func:`cosim.roofline.measure_stable` (or :func:`cosim.roofline.timing_of`
for times taken in an interleaved loop) and is kept, so that :func:`print_spreads` can list the
median and spread of each before the script's ``headline:``; a timing whose spread stays above
the tolerance, or taken while the machine is busy, raises a ``MeasurementWarning``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

TOLERANCE = 0.1
"""The spread ``(p90 - p10) / median`` a benchmark timing is repeated down to."""

_TIMINGS: dict[str, Any] = {}


def pin_threads(default: int = 1) -> int:
    """Pin every thread pool to ``--threads`` (from ``sys.argv``; ``default`` without it) with
    :func:`studies.sweep.pin_threads` (the one that sweep workers use: the environment variables
    first, then the pools of the libraries already loaded) and return that count."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--threads", type=int, default=None)
    given = parser.parse_known_args(sys.argv[1:])[0].threads
    threads = default if given is None else given
    if threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {threads}")
    from studies.sweep import pin_threads as pin  # imports no numerical library itself

    pin(threads)
    return threads


def time_it(fn: Callable[[], object], what: str, repeats: int = 5, warmup: int = 1, pause_s: float = 0.3,
            max_repeats: int | None = None, tolerance: float = TOLERANCE) -> Any:
    """:class:`cosim.roofline.Timing` of ``fn()``: at least ``repeats`` timed calls after
    ``warmup`` untimed ones, up to ``max_repeats`` (default ``3 * repeats``) until the spread is
    within ``tolerance``, with ``pause_s`` of sleep before each (numba, torch and OpenBLAS each
    keep a pool whose idle threads spin for a while after use: a contender timed right after
    another would pay for them). Kept under ``what`` for :func:`print_spreads`."""
    from cosim.roofline import measure_stable

    timing = measure_stable(fn, what, tolerance=tolerance, min_repeats=repeats,
                            max_repeats=max_repeats or 3 * repeats, budget_s=60.0, warmup=warmup, pause_s=pause_s)
    _TIMINGS[what] = timing
    return timing


def record(what: str, times: list[float], tolerance: float = TOLERANCE) -> Any:
    """The :class:`cosim.roofline.Timing` of ``times`` taken by the script's own loop (an
    interleaved comparison), kept under ``what`` for :func:`print_spreads`."""
    from cosim.roofline import timing_of

    timing = timing_of(times, what, tolerance=tolerance, stacklevel=3)
    _TIMINGS[what] = timing
    return timing


def interleaved_times(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, pause_s: float = 0.2,
    after: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Every wall time (s) of each ``fn``, the contenders alternating in every round (the order
    rotating), so that slow drift of a shared machine cancels in their ratios, and round ``i``'s
    times can be paired. Sleeps ``pause_s`` before each timed call (see :func:`time_it`: idle
    pool threads spin); ``after(name)`` runs after each call, untimed."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            time.sleep(pause_s)
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
            if after is not None:
                after(name)
    return times


def sample_times(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, pause_s: float = 0.3,
                 what: str | None = None) -> list[float]:
    """Every time (s) of :func:`time_it` of ``fn``."""
    return list(time_it(fn, what or getattr(fn, "__name__", "fn"), repeats, warmup, pause_s).times_s)


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, pause_s: float = 0.3,
                what: str | None = None) -> float:
    """Median (s) of :func:`time_it` of ``fn``."""
    return time_it(fn, what or getattr(fn, "__name__", "fn"), repeats, warmup, pause_s).median_s


def print_spreads(threads: int | None = None) -> None:
    """One line per timing kept: median, spread and repeats, and whether it can be trusted."""
    if not _TIMINGS:
        return
    first = next(iter(_TIMINGS.values()))
    load = "unknown" if first.load is None else f"{first.load:.1f}"
    pinned = "" if threads is None else f", {threads} thread{'s' if threads > 1 else ''} per pool"
    print(f"timings (median, spread = (p90 - p10) / median; load {load} on {first.cores} cores{pinned}):")
    for what, timing in _TIMINGS.items():
        flag = "" if timing.reliable else "  <- unreliable: rerun on an idle machine"
        print(f"  {what:<48} {timing.describe()}{flag}")
