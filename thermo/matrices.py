"""Test problems: random symmetric positive definite matrices with a prescribed spectrum."""

from __future__ import annotations

import numpy as np

from .errors import InputError


def random_spd(d: int, condition_number: float, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """A ``d x d`` SPD matrix ``Q diag(lam) Q^T`` with ``Q`` Haar-random and eigenvalues spaced
    geometrically from ``scale / condition_number`` to ``scale`` (so its condition number is
    exactly ``condition_number``)."""
    if d < 1 or not condition_number >= 1:
        raise InputError(f"need d >= 1 and condition_number >= 1, got d={d}, condition_number={condition_number}")
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q *= np.sign(np.diag(r))  # Haar measure
    lam = scale * np.geomspace(1.0 / condition_number, 1.0, d)
    a = (q * lam) @ q.T
    return 0.5 * (a + a.T)
