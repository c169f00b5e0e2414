"""The exact reference backend: torch.linalg Cholesky (float64 retry) and eigh, on whatever
device the tensors live on (this is the GPU reference path when they are on a GPU)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from thermo.errors import NotPositiveDefiniteError

from .base import LinearSolver, SolverDiagnostics, add_damping
from .registry import register_solver


@register_solver
class ExactSolver(LinearSolver):
    """Direct solves and inversions by Cholesky factorization.

    A factorization that fails in the working precision (a damped factor that is only
    numerically semi-definite in float32) is retried in float64 and the result cast back; the
    retry is recorded in the diagnostics' notes. A matrix still indefinite in float64 raises
    :class:`~thermo.errors.NotPositiveDefiniteError`.
    """

    name = "exact"
    supports_eigh = True

    def _cholesky(self, A: Tensor, damping: float) -> tuple[Tensor, tuple[str, ...]]:
        L, info = torch.linalg.cholesky_ex(add_damping(A, damping))
        if not bool(info):  # one host sync, needed to know whether to retry
            return L, ()
        if A.dtype != torch.float64:
            L64, info64 = torch.linalg.cholesky_ex(add_damping(A.double(), damping))
            if not bool(info64):
                return L64, (f"Cholesky failed in {A.dtype}; retried in float64",)
        raise NotPositiveDefiniteError(
            f"A + {damping:g} I is not positive definite (Cholesky failed at leading minor {int(info)}); "
            "increase the damping"
        )

    def _solve(self, A: Tensor, B: Tensor, damping: float, x0: Any) -> tuple[Tensor, SolverDiagnostics, Any]:
        L, notes = self._cholesky(A, damping)
        rhs = B if B.dtype == L.dtype else B.to(L.dtype)  # the float64 retry
        x = torch.cholesky_solve(rhs[:, None] if B.ndim == 1 else rhs, L)
        x = x[:, 0] if B.ndim == 1 else x
        if x.dtype != B.dtype:
            x = x.to(B.dtype)
        return x, SolverDiagnostics(self.name, 0.0, notes=notes), None

    def _inverse(self, A: Tensor, damping: float) -> tuple[Tensor, SolverDiagnostics]:
        L, notes = self._cholesky(A, damping)
        inv = torch.cholesky_inverse(L)
        if inv.dtype != A.dtype:
            inv = inv.to(A.dtype)
        return inv, SolverDiagnostics(self.name, 0.0, notes=notes)

    def eigh(self, A: Tensor) -> tuple[Tensor, Tensor]:
        try:
            return torch.linalg.eigh(A)
        except torch.linalg.LinAlgError:  # ill-conditioned in float32: retry in float64
            evals, evecs = torch.linalg.eigh(A.double())
            return evals.to(A.dtype), evecs.to(A.dtype)
