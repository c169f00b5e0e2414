"""Batched conjugate gradients: every column of a ``(d, k)`` right-hand side is its own CG run,
advanced together with one block product per iteration. ``A`` may be a dense matrix or a
matrix-free operator (a Fisher/GGN-vector product), which is what NGD-CG needs."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from thermo.errors import InputError, NotPositiveDefiniteError, UnsupportedInputError

from .base import LinearSolver, MatVec, SolverDiagnostics, apply
from .registry import register_solver


class SolverWarning(UserWarning):
    """An iterative solve stopped before reaching its tolerance."""


@register_solver
class ConjugateGradientSolver(LinearSolver):
    """Conjugate gradients on ``(A + damping I) X = B``.

    Stops when every column's residual is below ``rtol`` times its right-hand side's norm or
    after ``max_iter`` iterations (default ``2 d``); an unconverged solve warns
    (:class:`SolverWarning`) and reports its residual as ``estimated_rel_error``.
    ``preconditioner="jacobi"`` divides by the diagonal (dense ``A`` only).
    """

    name = "cg"
    supports_operator = True

    def __init__(
        self,
        rtol: float = 1e-6,
        max_iter: int | None = None,
        preconditioner: str | None = None,
        warn_unconverged: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 < rtol < 1:
            raise InputError(f"cg rtol must be in (0, 1), got {rtol!r}")
        if max_iter is not None and max_iter < 1:
            raise InputError(f"cg max_iter must be >= 1, got {max_iter!r}")
        if preconditioner not in (None, "jacobi"):
            raise InputError(f"cg preconditioner must be None or 'jacobi', got {preconditioner!r}")
        self.rtol, self.max_iter, self.preconditioner = rtol, max_iter, preconditioner
        self.warn_unconverged = warn_unconverged

    def _solve(self, A: Tensor | MatVec, B: Tensor, damping: float, x0: Any) -> tuple[Tensor, SolverDiagnostics, Any]:
        vector = B.ndim == 1
        b = B[:, None] if vector else B
        if x0 is not None:
            if not isinstance(x0, Tensor):
                raise UnsupportedInputError(
                    f"cg's x0 must be a torch.Tensor like B (or a previous SolveOutput.state), got {type(x0).__name__}"
                )
            x0 = x0[:, None] if x0.ndim == 1 else x0
            if x0.shape != b.shape:
                raise InputError(f"x0 has shape {tuple(x0.shape)}, expected {tuple(b.shape)}")
        x, iters, rel = self._cg(A, b, damping, x0)
        diag = SolverDiagnostics(self.name, 0.0, iterations=iters, estimated_rel_error=rel)
        x = x[:, 0] if vector else x
        return x, diag, x

    def _inverse(self, A: Tensor, damping: float) -> tuple[Tensor, SolverDiagnostics]:
        eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
        x, iters, rel = self._cg(A, eye, damping, None)
        return 0.5 * (x + x.mT), SolverDiagnostics(self.name, 0.0, iterations=iters, estimated_rel_error=rel)

    def _cg(self, A: Tensor | MatVec, b: Tensor, damping: float, x0: Tensor | None) -> tuple[Tensor, int, float]:
        d = b.shape[0]
        max_iter = self.max_iter if self.max_iter is not None else 2 * d

        def op(v: Tensor) -> Tensor:
            return apply(A, v) + damping * v

        if self.preconditioner == "jacobi":
            if not isinstance(A, Tensor):
                raise InputError("the jacobi preconditioner needs a dense A")
            inv_diag = 1.0 / (torch.diagonal(A) + damping).clamp_min(torch.finfo(A.dtype).tiny)[:, None]
        else:
            inv_diag = None
        x = torch.zeros_like(b) if x0 is None else x0.to(b.dtype).clone()
        r = b - op(x) if x0 is not None else b.clone()
        b_norm = torch.linalg.vector_norm(b, dim=0).clamp_min(torch.finfo(b.dtype).tiny)
        z = r * inv_diag if inv_diag is not None else r
        p = z.clone()
        rz = (r * z).sum(0)
        it = 0
        rel = torch.linalg.vector_norm(r, dim=0) / b_norm
        while it < max_iter and bool((rel > self.rtol).any()):
            Ap = op(p)
            pAp = (p * Ap).sum(0)
            active = rel > self.rtol
            if bool((pAp[active] <= 0).any()):
                raise NotPositiveDefiniteError(
                    f"A + {damping:g} I is not positive definite: CG met p^T A p <= 0 at iteration {it}"
                )
            # converged columns keep alpha = 0 so they stop moving
            alpha = torch.where(active, rz / pAp.where(pAp > 0, torch.ones_like(pAp)), torch.zeros_like(rz))
            x = x + alpha * p
            r = r - alpha * Ap
            z = r * inv_diag if inv_diag is not None else r
            rz_new = (r * z).sum(0)
            beta = rz_new / rz.where(rz != 0, torch.ones_like(rz))
            p = z + beta * p
            rz = rz_new
            rel = torch.linalg.vector_norm(r, dim=0) / b_norm
            it += 1
        worst = float(rel.max())
        if worst > self.rtol and self.warn_unconverged:
            warnings.warn(
                f"CG stopped after {it} iterations with relative residual {worst:.3g} > rtol {self.rtol:g}",
                SolverWarning,
                stacklevel=4,
            )
        return x, it, worst
