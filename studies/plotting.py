"""What every study figure must get right, as code: log axes for values spanning decades, axis
labels with units, markers inside their panel.

:func:`scale_for` picks an axis scale from the values drawn on it; :func:`figure_problems` lists
what a finished Matplotlib figure gets wrong (the studies' tests assert it is empty).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

DECADE = 10.0
"""Values whose largest over smallest positive value exceeds this ratio are drawn on a log axis."""

_UNIT = re.compile(r"\([^()]+\)\s*$|\[[^\[\]]+\]\s*$")


def spans_decades(values: Iterable[float]) -> bool:
    """True when the finite values are all positive and their max / min exceeds :data:`DECADE`."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(float(v))], dtype=float)
    return bool(x.size and x.min() > 0 and x.max() / x.min() > DECADE)


def scale_for(values: Iterable[float]) -> str:
    """``"log"`` for positive values spanning more than a decade, ``"symlog"`` when a zero sits
    among positive values that span more than a decade, else ``"linear"``."""
    x = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if spans_decades(x):
        return "log"
    if x and min(x) == 0 and spans_decades(v for v in x if v > 0):
        return "symlog"
    return "linear"


def set_scale(ax: Any, axis: str, values: Iterable[float], allow_symlog: bool = False) -> str:
    """Set the ``"x"`` or ``"y"`` scale of ``ax`` from the values drawn along it (:func:`scale_for`):
    log across decades; with ``allow_symlog``, symlog (linear below the smallest positive value)
    when a zero sits among values spanning decades; else linear. Returns the scale set."""
    x = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    scale = scale_for(x)
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    if scale == "symlog" and allow_symlog:
        setter("symlog", linthresh=min(v for v in x if v > 0))
        return scale
    scale = "log" if scale == "log" else "linear"
    setter(scale)
    return scale


def has_unit(label: str) -> bool:
    """A label ends with its unit in parentheses or brackets: ``"time (s)"``, ``"loss [nats]"``."""
    return bool(_UNIT.search(label or ""))


def _data_of(ax: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (x, y) data of the lines and scatter collections drawn in data coordinates of ``ax``
    (reference lines such as ``axhline`` live in axes coordinates and are skipped)."""
    out = []
    for line in ax.get_lines():
        if line.get_transform() != ax.transData:
            continue
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        out.append((x, y))
    for coll in ax.collections:
        offsets = np.asarray(coll.get_offsets(), dtype=float)
        if offsets.size and coll.get_offset_transform() == ax.transData:
            out.append((offsets[:, 0], offsets[:, 1]))
    return out


def figure_problems(fig: Any) -> list[str]:
    """What ``fig`` gets wrong, one line per problem (empty: nothing):

    - an axis without a label, or whose label does not end with a unit ``(...)``;
    - a linear axis whose positive values span more than a decade (a fraction axis, labelled
      ``(fraction)`` and holding values in [0, 1], is read linearly and exempt);
    - a point drawn outside its panel's limits.
    Panels with nothing drawn (a legend holder) are skipped."""
    problems = []
    for i, ax in enumerate(fig.axes):
        data = _data_of(ax)
        if not data:
            continue
        title = ax.get_title() or f"panel {i}"
        for name, label, scale, values, limits in (
            ("x", ax.get_xlabel(), ax.get_xscale(), np.concatenate([d[0] for d in data]), ax.get_xlim()),
            ("y", ax.get_ylabel(), ax.get_yscale(), np.concatenate([d[1] for d in data]), ax.get_ylim()),
        ):
            if not label and name == "y" and _shares_y_with_labelled(fig, ax):
                label = "(shared)"
            elif not label:
                problems.append(f"{title}: the {name} axis has no label")
            elif not has_unit(label):
                problems.append(f"{title}: the {name} label {label!r} names no unit")
            finite = values[np.isfinite(values)]
            fraction = "fraction" in label and finite.size and finite.min() >= 0 and finite.max() <= 1
            if scale == "linear" and spans_decades(finite) and not fraction:
                problems.append(f"{title}: the {name} axis is linear but its values span "
                                f"{finite.min():.3g}..{finite.max():.3g}")
            low, high = min(limits), max(limits)
            slack = 1e-9 * max(abs(low), abs(high), 1e-300)
            outside = finite[(finite < low - slack) | (finite > high + slack)]
            if outside.size:
                problems.append(f"{title}: {outside.size} point(s) lie outside the {name} limits {low:.3g}..{high:.3g}")
    return problems


def _shares_y_with_labelled(fig: Any, ax: Any) -> bool:
    siblings = ax.get_shared_y_axes().get_siblings(ax)
    return any(other is not ax and other.get_ylabel() and has_unit(other.get_ylabel()) for other in siblings)
