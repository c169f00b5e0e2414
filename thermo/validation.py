"""Checks of user inputs: shapes, finiteness, symmetry and definiteness, with errors that say
what is wrong and by how much."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .errors import (
    NonFiniteInputError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    ShapeMismatchError,
)


def to_host(x: object, name: str) -> np.ndarray:
    """A float64 host copy of ``x`` (numpy array, torch tensor or nested list)."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    try:
        return np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeMismatchError(f"{name} is not a numeric array: {exc}") from None


def check_finite(x: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NonFiniteInputError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf), first at index {where}"
        )


def check_square(a: np.ndarray, name: str = "A") -> None:
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ShapeMismatchError(f"{name} must be a non-empty square matrix, got shape {a.shape}")


def check_symmetric(a: np.ndarray, rtol: float, name: str = "A") -> None:
    """Symmetry up to ``rtol`` relative to the largest entry."""
    scale = float(np.abs(a).max())
    asym = float(np.abs(a - a.T).max())
    if asym > rtol * scale:
        i, j = np.unravel_index(int(np.argmax(np.abs(a - a.T))), a.shape)
        raise NotSymmetricError(
            f"{name} is not symmetric: |{name}[{i},{j}] - {name}[{j},{i}]| = {asym:.3e} exceeds "
            f"{rtol:g} x max|{name}| = {rtol * scale:.3e}"
        )


def check_positive_definite(a: np.ndarray, name: str = "A") -> None:
    """Cholesky test (``O(d^3/3)``); on failure report the smallest eigenvalue."""
    if float(np.abs(a).max()) == 0.0:
        raise NotPositiveDefiniteError(f"{name} is the zero matrix")
    try:
        scipy.linalg.cholesky(a, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        lam_min = float(scipy.linalg.eigvalsh(a, subset_by_index=[0, 0], check_finite=False)[0])
        raise NotPositiveDefiniteError(
            f"{name} is not positive definite (smallest eigenvalue {lam_min:.3e}): the Langevin "
            "dynamics would diverge; add damping (A + lambda I) or fix the matrix"
        ) from None


def check_system(a: np.ndarray, b: np.ndarray | None, rtol: float) -> None:
    """All checks of a symmetric positive definite system ``A x = b``."""
    check_square(a)
    check_finite(a, "A")
    check_symmetric(a, rtol)
    if b is not None:
        if b.ndim not in (1, 2) or b.shape[0] != a.shape[0]:
            raise ShapeMismatchError(
                f"b must have shape ({a.shape[0]},) or ({a.shape[0]}, k) to match A {a.shape}, got {b.shape}"
            )
        check_finite(b, "b")
    check_positive_definite(a)
