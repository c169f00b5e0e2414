"""Confidence intervals over seeds, shared by the studies."""

from __future__ import annotations

import math

import numpy as np


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (NaN for one value)."""
    # scipy.stats is imported when an interval is computed: at module level it would add about
    # 0.35 s to every `tcd` command (even --help), which imports every study
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2 or not np.isfinite(x).all():  # one value, or a failed run (infinite loss): no interval
        return float(x.mean()), math.nan
    return float(x.mean()), float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
