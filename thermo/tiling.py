"""Matrices larger than the chip: block Gauss-Seidel with analog block solves.

An ``n_units``-unit chip holds one ``n x n`` block. For a symmetric positive definite ``A`` split
into blocks ``A_IJ``, a sweep updates each block of the solution in turn,
``x_I <- A_II^-1 (b_I - sum_{J != I} A_IJ x_J)``, the block solve on the chip (warm-started
from the previous iterate, reprogrammed with ``A_II``) and the off-diagonal products on the host.
Block Gauss-Seidel converges for every SPD matrix; its rate is set by the coupling between
blocks. Sweeps stop when the relative change falls below the target accuracy or after
``max_sweeps``. Diagonal blocks are dealt to the chips in turn (``chip_index = I mod n_chips``),
so each block sees the mismatch pattern of the chip that holds it. Inversion solves
``A X = I`` with the ``d`` columns as parallel chains.

The reported ``estimated_rel_error`` is the host's a-posteriori bound: with the residual
``r = A x - b`` the error is ``A^-1 r``, so ``|x - x*| <= |r| / lambda_min(A)`` (per column; for
the inverse ``|X - A^-1|_F <= |A X - I|_F / lambda_min``), relative to ``|x|``. Deterministic,
so it holds with probability one; ``lambda_min`` costs one partial eigendecomposition.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg


def block_slices(d: int, n_units: int) -> list[slice]:
    """Contiguous blocks of at most ``n_units`` rows covering ``range(d)``."""
    return [slice(start, min(d, start + n_units)) for start in range(0, d, n_units)]


BlockSolve = Callable[[np.ndarray, np.ndarray, np.ndarray, int], tuple[np.ndarray, "np.ndarray | None", Any]]
"""``(A_II, rhs, x0_I, chip_index) -> (x_I, stderr_I or None, diagnostics)``: one analog block solve
on chip ``chip_index`` (the diagnostics carry ``analog_time_tau`` and ``notes``)."""


def tiled_solve(
    block_solve: BlockSolve,
    a: np.ndarray,
    b: np.ndarray,
    x0: np.ndarray | None,
    *,
    n_units: int,
    n_chips: int,
    tau_s: float,
    target_rel_error: float,
    max_sweeps: int = 100,
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Block Gauss-Seidel for ``a x = b`` (``b`` ``(d, c)``) with ``block_solve`` on each diagonal
    block of at most ``n_units`` rows, dealt to ``n_chips`` chips in turn. Returns the solution
    ``(d, c)``, the per-entry standard errors of the last block solves and the diagnostics of
    the last block solve updated with the whole run's analog time, tile count and a-posteriori
    error bounds."""
    blocks = block_slices(a.shape[0], n_units)
    x = np.zeros_like(b) if x0 is None else x0.copy()
    analog_tau = 0.0
    diag_last = None
    stderr = np.zeros_like(b)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        change = 0.0
        for index, rows in enumerate(blocks):
            rhs = b[rows] - a[rows] @ x + a[rows, rows] @ x[rows]
            if not rhs.any():
                xi = np.zeros_like(rhs)  # zero right-hand side: the host knows the answer
                change += float(np.sum(x[rows] ** 2))
                x[rows] = xi
                continue
            xi, err, diag_last = block_solve(a[rows, rows], rhs, x[rows], index % n_chips)
            change += float(np.sum((xi - x[rows]) ** 2))
            x[rows] = xi
            if err is not None:
                stderr[rows] = err
            analog_tau += diag_last.analog_time_tau
        if math.sqrt(change) <= target_rel_error * max(float(np.linalg.norm(x)), 1e-300):
            break
    assert diag_last is not None
    r = a @ x - b
    residual = float(np.linalg.norm(r) / max(np.linalg.norm(b), 1e-300))
    bounds = error_bounds(a, r, x)
    notes = diag_last.notes + (
        f"tiled into {len(blocks)} diagonal blocks of <= {n_units} units; block Gauss-Seidel "
        f"took {sweeps} sweeps; digital relative residual {residual:.2e}",
    )
    diag = dataclasses.replace(
        diag_last,
        analog_time_tau=analog_tau,
        analog_time_s=analog_tau * tau_s,
        n_tiles=len(blocks) ** 2,
        estimated_rel_error=float(bounds.max()),
        error_bound_per_rhs=bounds,
        device_time=None,
        notes=notes,
    )
    return x, stderr, diag


def tiled_inverse(block_solve: BlockSolve, a: np.ndarray, **plan: Any) -> tuple[np.ndarray, Any]:
    """``a^-1`` as a tiled solve of the ``d`` identity columns (``plan``: :func:`tiled_solve`'s
    keywords), symmetrized, with the Frobenius a-posteriori bound in its diagnostics."""
    d = a.shape[0]  # the memory plan (ThermodynamicSolver.inverse) has counted the d chains
    inv, _, diag = tiled_solve(block_solve, a, np.eye(d), None, **plan)
    inv = 0.5 * (inv + inv.T)
    r = a @ inv
    r[np.diag_indices_from(r)] -= 1.0
    e = float(np.linalg.norm(r)) / _lambda_min(a)  # |X - A^-1|_F <= |A X - I|_F / lambda_min
    margin = float(np.linalg.norm(inv)) - e
    bound = e / margin if margin > 0 else math.inf
    return inv, dataclasses.replace(diag, estimated_rel_error=bound, error_bound_per_rhs=None)


def _lambda_min(a: np.ndarray) -> float:
    """Smallest eigenvalue of the SPD ``a`` (validated positive definite by the solver)."""
    return float(scipy.linalg.eigvalsh(a, subset_by_index=[0, 0], check_finite=False)[0])


def error_bounds(a: np.ndarray, residual: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per column a bound on the relative error ``|x - x*| / |x*|``: ``x - x* = A^-1 r`` gives
    ``|x - x*| <= e = |r| / lambda_min(A)`` and ``|x*| >= |x| - e``, so ``e / (|x| - e)``
    (infinite when ``e >= |x|``). Shapes: ``residual`` and ``x`` ``(d, c)``, result ``(c,)``."""
    e = np.linalg.norm(residual, axis=0) / _lambda_min(a)
    margin = np.linalg.norm(x, axis=0) - e
    return np.where(margin > 0, e / np.where(margin > 0, margin, 1.0), np.inf)
