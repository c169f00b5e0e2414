"""The break-even search on cases whose crossing is known in closed form."""

from __future__ import annotations

import math

import pytest

from studies.crossing import crossing


def link_bound_speedup(digital_s: float, rest_s: float, link_s: float):
    """Digital time over (the rest + a link phase that shrinks as 1 / scale): reaches ``r`` at
    ``scale = link_s / (digital_s / r - rest_s)``."""
    return lambda scale: (digital_s / (rest_s + link_s / scale), "link")


@pytest.mark.parametrize("target", [1.0, 2.0, 5.0])
def test_bisection_finds_the_closed_form_crossing_from_either_side(target):
    f = link_bound_speedup(10.0, 1.0, 90.0)
    exact = 90.0 / (10.0 / target - 1.0)
    up = crossing(f, target, published=1.0, best_value=1e6, rel_tol=1e-6)
    assert up.reachable and up.value == pytest.approx(exact, rel=2e-6) and f(up.value)[0] >= target
    # a knob whose best value is low: the time constant multiplies the slow phase
    g = lambda tau: (10.0 / (1.0 + 90.0 * tau), "analog")  # noqa: E731
    down = crossing(g, target, published=1.0, best_value=1e-9, rel_tol=1e-6)
    assert down.value == pytest.approx(1.0 / exact, rel=2e-6) and g(down.value)[0] >= target


def test_never_with_its_reason_and_integer_knobs():
    f = link_bound_speedup(10.0, 1.0, 90.0)  # saturates at 10x as the link vanishes
    never = crossing(f, 20.0, published=1.0, best_value=1e6)
    assert not never.reachable and never.value is None and "saturates at 10x" in never.limit and "link" in never.limit
    by_bound = crossing(f, 2.0, published=1.0, best_value=1e6, bound=1.5)
    assert not by_bound.reachable and by_bound.limit == "bound: no device beats 1.5x" and by_bound.evaluations == 0
    assert crossing(f, 0.05, published=1.0, best_value=1e6).value == 1.0  # reached as published
    chips = lambda n: (10.0 / (1.0 + 90.0 / n), "analog")  # noqa: E731 - crossing at n = 90 / (10 / 2 - 1) = 22.5
    found = crossing(chips, 2.0, published=1.0, best_value=4096.0, integer=True)
    assert found.value == 23.0
    with pytest.raises(ValueError, match="target"):
        crossing(f, math.nan, published=1.0, best_value=2.0)


def test_a_scan_finds_a_crossing_inside_a_peaked_range():
    # more chips help until one shared link saturates: the speedup peaks at 64 chips
    peaked = lambda n: (min(n / 16.0, 64.0 / n * 4.0), "link" if n > 64 else "analog")  # noqa: E731
    assert peaked(64.0)[0] == 4.0 and peaked(4096.0)[0] < 1.0
    blind = crossing(peaked, 2.0, published=1.0, best_value=4096.0, integer=True)
    assert not blind.reachable and "saturates" in blind.limit  # the best end alone misses the peak
    found = crossing(peaked, 2.0, published=1.0, best_value=4096.0, integer=True, scan=6)
    assert found.reachable and found.value == 32.0 and peaked(found.value)[0] >= 2.0
    never = crossing(peaked, 5.0, published=1.0, best_value=4096.0, integer=True, scan=6)
    assert not never.reachable and never.limit.startswith("peaks at 4x at 64")
