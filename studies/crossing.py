"""Where a monotone speedup reaches a target: the search the break-even frontier is built on.

A knob of the device (time constant, link bandwidth, chips, bits, planned error) moves the
projected speedup one way: :func:`crossing` finds, between the published value and the knob's
best physical value, the value at which the speedup first reaches a target, by bisection in
log space, or says why it never does (the Amdahl bound is below the target, or the speedup
saturates before the end of the knob's range because another resource rules).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

Best = Literal["low", "high"]


@dataclass(frozen=True)
class Crossing:
    """The knob value at which the target is reached (``None`` when it never is) and why not."""

    value: float | None
    reachable: bool
    limit: str = ""
    """Empty when reachable; else the bound, or the speedup and bottleneck at the best value."""
    evaluations: int = 0


def crossing(
    speedup: Callable[[float], tuple[float, str]],
    target: float,
    published: float,
    best_value: float,
    *,
    bound: float = math.inf,
    rel_tol: float = 1e-3,
    max_evaluations: int = 60,
    integer: bool = False,
    scan: int = 0,
) -> Crossing:
    """The first knob value between ``published`` and ``best_value`` at which ``speedup(value)``
    (a speedup and the name of the resource that bounds it) reaches ``target``.

    Without ``scan``, ``speedup`` must not decrease as the value moves from ``published`` to
    ``best_value`` (either direction). With ``scan = k``, ``k`` values geometric from
    ``published`` to ``best_value`` are tried first and the search brackets the first one that
    reaches the target: a knob whose speedup peaks inside its range (more chips that end up
    waiting on one shared link) is searched correctly as long as the peak is that wide. The
    search brackets the crossing in log space until the bracket's ratio is within ``1 + rel_tol``
    (``integer``: until it holds consecutive integers) and returns the end that reaches the
    target. ``bound`` (Amdahl) below ``target`` answers "never" without a projection.
    """
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target must be a finite number > 0, got {target!r}")
    if not (published > 0 and best_value > 0):
        raise ValueError(f"knob values must be > 0 (the search is in log space), got {published!r} and {best_value!r}")
    if bound < target:
        return Crossing(None, False, f"bound: no device beats {bound:.3g}x")
    evaluations = 0

    def reaches(value: float) -> tuple[bool, float, str]:
        nonlocal evaluations
        evaluations += 1
        s, resource = speedup(value)
        return s >= target, s, resource

    ok, s0, _ = reaches(published)
    if ok:
        return Crossing(published, True, "", evaluations)
    grid = [float(v) for v in np.geomspace(published, best_value, scan + 1)[1:]] if scan > 0 else [best_value]
    if integer:
        grid = list(dict.fromkeys(float(round(v)) for v in grid))
    lo, hi = published, None
    peak = (s0, published, "")
    for value in grid:
        ok, s, resource = reaches(value)
        if s >= peak[0]:  # ties go to the value further along the knob
            peak = (s, value, resource)
        if ok:
            hi = value
            break
        lo = value
    if hi is None:
        word = "saturates" if peak[1] == grid[-1] else "peaks"
        return Crossing(None, False, f"{word} at {peak[0]:.3g}x at {peak[1]:g} ({peak[2]} bound)", evaluations)
    # lo misses the target, hi reaches it
    while evaluations < max_evaluations:
        if integer and abs(hi - lo) <= 1:
            break
        if not integer and max(lo, hi) / min(lo, hi) <= 1 + rel_tol:
            break
        mid = math.sqrt(lo * hi)
        if integer:  # a whole value strictly inside the bracket (its ends are more than 1 apart)
            mid = float(min(max(round(mid), min(lo, hi) + 1), max(lo, hi) - 1))
        ok, _, _ = reaches(mid)
        if ok:
            hi = mid
        else:
            lo = mid
    return Crossing(hi, True, "", evaluations)
