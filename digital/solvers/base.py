"""The one interface through which second-order training does its linear algebra.

A backend provides damped solves ``(A + damping I) X = B`` and damped inversions
``(A + damping I)^-1`` of a symmetric positive semi-definite ``A`` (``d x d``), and optionally an
eigendecomposition. Results carry :class:`SolverDiagnostics`: wall time, the analog time a
thermodynamic device would spend, iterations, and the relative residual, which is computed only
when read so that diagnostics cost nothing on the hot path.

Tensors stay where they are: a backend returns its result on the device and in the dtype of the
right-hand side (``solve``) or the matrix (``inverse``).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from thermo.backends import all_finite
from thermo.errors import NonFiniteInputError, NotSymmetricError, ShapeMismatchError, UnsupportedInputError
from thermo.validation import refuse_unsupported

from ..errors import UnsupportedOperationError

MatVec = Callable[[Tensor], Tensor]
"""A symmetric operator given by its product with a ``(d, k)`` block (matrix-free backends)."""


@dataclass
class SolverDiagnostics:
    """What one call cost and how far to trust it.

    ``wall_time_s`` is host time in seconds (including the simulation, for ``thermo``);
    ``analog_time_s`` the time the analog device would spend (zero for digital backends).
    """

    backend: str
    wall_time_s: float
    analog_time_s: float = 0.0
    iterations: int | None = None
    estimated_rel_error: float | None = None
    """The backend's own estimate of the relative error of its result, when it has one."""
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    _residual_fn: Callable[[], float] | None = field(default=None, repr=False)
    _residual: float | None = field(default=None, repr=False)

    @property
    def residual(self) -> float | None:
        """Relative residual ``||(A + damping I) X - B||_F / ||B||_F`` of a solve (for an
        inversion, ``||(A + damping I) X - I||_F / sqrt(d)``); computed on first access."""
        if self._residual is None and self._residual_fn is not None:
            self._residual = float(self._residual_fn())
            self._residual_fn = None  # drop the references to the operands
        return self._residual


@dataclass
class SolveOutput:
    x: Tensor
    """``(A + damping I)^-1 B``: same shape, dtype and device as ``B``."""
    diagnostics: SolverDiagnostics
    state: Any = None
    """Backend state to warm-start the next solve (the analog node voltages for ``thermo``)."""


@dataclass
class InverseOutput:
    inverse: Tensor
    """``(A + damping I)^-1`` (symmetric ``d x d``), same dtype and device as ``A``."""
    diagnostics: SolverDiagnostics


class LinearSolver(ABC):
    """A backend. Subclasses set ``name`` and implement :meth:`_solve` and :meth:`_inverse`;
    input checks, timing and diagnostics live here so every backend reports alike."""

    name: ClassVar[str] = "abstract"
    supports_eigh: ClassVar[bool] = False
    supports_operator: ClassVar[bool] = False
    """Whether ``A`` may be a :data:`MatVec` instead of a dense matrix."""

    def __init__(self, check_inputs: bool = True, symmetry_rtol: float = 1e-6) -> None:
        self.check_inputs = check_inputs
        self.symmetry_rtol = symmetry_rtol

    # -- public API ------------------------------------------------------------------------
    def solve(self, A: Tensor | MatVec, B: Tensor, damping: float = 0.0, *, x0: Any = None) -> SolveOutput:
        """Solve ``(A + damping I) X = B`` for ``B`` of shape ``(d,)`` or ``(d, k)``.

        ``x0`` warm-starts iterative and analog backends (a tensor like ``B`` or a previous
        ``SolveOutput.state``); exact backends ignore it.
        """
        _check_tensor(B, "B")
        _check_damping(damping)
        if x0 is not None and isinstance(x0, Tensor):
            _check_tensor(x0, "x0")
        if isinstance(A, Tensor):
            _check_tensor(A, "A")
            if self.check_inputs:
                self._check_matrix(A, B)
            if A.shape[-1] != B.shape[0]:
                raise ShapeMismatchError(f"A is {tuple(A.shape)} but B has {B.shape[0]} rows: expected {A.shape[0]}")
        elif not callable(A):  # neither a tensor nor a matrix-free operator: say how to convert
            _check_tensor(A, "A")
        elif not self.supports_operator:
            raise UnsupportedOperationError(
                f"the {self.name!r} backend needs A as a dense tensor; matrix-free operators need 'cg'"
            )
        if B.ndim not in (1, 2):
            raise ShapeMismatchError(f"B must be (d,) or (d, k), got shape {tuple(B.shape)}")
        start = time.perf_counter()
        x, diag, state = self._solve(A, B, float(damping), x0)
        diag.wall_time_s = time.perf_counter() - start
        diag._residual_fn = _solve_residual(A, B, float(damping), x)
        return SolveOutput(x, diag, state)

    def inverse(self, A: Tensor, damping: float = 0.0) -> InverseOutput:
        """Invert ``A + damping I`` for symmetric positive semi-definite ``A`` (``d x d``)."""
        _check_tensor(A, "A")
        _check_damping(damping)
        if self.check_inputs:
            self._check_matrix(A)
        start = time.perf_counter()
        inv, diag = self._inverse(A, float(damping))
        diag.wall_time_s = time.perf_counter() - start
        diag._residual_fn = _inverse_residual(A, float(damping), inv)
        return InverseOutput(inv, diag)

    def eigh(self, A: Tensor) -> tuple[Tensor, Tensor]:
        """Eigenvalues (ascending, ``(d,)``) and eigenvectors (columns, ``(d, d)``) of symmetric
        ``A``; only backends with ``supports_eigh``."""
        raise UnsupportedOperationError(
            f"the {self.name!r} backend has no eigendecomposition (eigenbasis damping needs 'exact')"
        )

    def state_dict(self) -> dict[str, Any]:
        """Random state a checkpoint needs so a resumed run continues identically (none for
        deterministic backends)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"the {self.name!r} backend keeps no state, got keys {sorted(state)}")

    # -- backend hooks ---------------------------------------------------------------------
    @abstractmethod
    def _solve(
        self, A: Tensor | MatVec, B: Tensor, damping: float, x0: Any
    ) -> tuple[Tensor, SolverDiagnostics, Any]: ...

    @abstractmethod
    def _inverse(self, A: Tensor, damping: float) -> tuple[Tensor, SolverDiagnostics]: ...

    # -- helpers ---------------------------------------------------------------------------
    def _check_matrix(self, A: Tensor, B: Tensor | None = None) -> None:
        """Square, finite and symmetric ``A`` (and finite ``B``), exactly, on ``A``'s device and
        with one host synchronization.

        Symmetry is the exact relative Frobenius asymmetry ``||A - A^T||_F / ||A||_F``, every
        pair of entries compared (``O(d^2)``, against the ``O(d^3)`` factorization that
        follows), in row blocks of :data:`SYMMETRY_BLOCK_ELEMENTS` entries so no second
        ``d x d`` array is formed for large ``d``. A product with a fixed probe vector, used
        before, misses every skew part that annihilates the probe. NaN and infinity in ``A``
        make the norms non-finite, so the same reductions test finiteness; only an error pays
        for locating it.
        """
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ShapeMismatchError(f"A must be a square (d, d) matrix, got shape {tuple(A.shape)}")
        d = A.shape[0]
        rows = max(1, SYMMETRY_BLOCK_ELEMENTS // max(d, 1))
        if rows >= d:
            asym_sq = torch.linalg.vector_norm(A - A.mT).square()
        else:
            asym_sq = sum(
                torch.linalg.vector_norm(A[i : i + rows] - A[:, i : i + rows].mT).square() for i in range(0, d, rows)
            )
        reductions = [asym_sq, torch.linalg.vector_norm(A)]
        if B is not None:
            reductions.append(B.abs().amax().to(A.dtype))
        asym_sq, norm, *b_max = torch.stack(reductions).tolist()
        asym = math.sqrt(asym_sq) if math.isfinite(asym_sq) and asym_sq >= 0 else math.nan
        if not (math.isfinite(norm) and math.isfinite(asym)):
            _check_finite(A, "A")
        if b_max and not math.isfinite(b_max[0]):
            _check_finite(B, "B")
        # rounding is not asymmetry: a product computed in two orders differs by a few eps
        rtol = max(self.symmetry_rtol, 64 * torch.finfo(A.dtype).eps)
        if asym > rtol * norm:
            raise NotSymmetricError(
                f"A is not symmetric: ||A - A^T||_F / ||A||_F = {asym / max(norm, 1e-300):.3g} exceeds the "
                f"tolerance {rtol:.3g}; pass (A + A.mT) / 2 if the asymmetry is rounding"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


SYMMETRY_BLOCK_ELEMENTS = 1 << 24
"""Above this many entries the symmetry check compares ``A`` with ``A^T`` in row blocks."""


def _check_tensor(t: object, name: str) -> None:
    """A dense real floating tensor: anything else gets :class:`UnsupportedInputError` naming the fix."""
    if not isinstance(t, Tensor):
        hint = ".toarray() then torch.as_tensor" if type(t).__module__.startswith("scipy") else "torch.as_tensor(...)"
        raise UnsupportedInputError(f"{name} must be a torch.Tensor, got {type(t).__name__}: convert it with {hint}")
    refuse_unsupported(t, name)  # sparse, complex and boolean tensors: thermo's checks, on the device
    if not t.is_floating_point():
        raise UnsupportedInputError(f"{name} has dtype {t.dtype}; the solvers need a floating tensor: pass {name}.double()")


def _check_damping(damping: float) -> None:
    if not (isinstance(damping, (int, float)) and math.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")


def _check_finite(t: Tensor, name: str) -> None:
    if not all_finite(t):
        bad = int((~torch.isfinite(t)).sum())
        raise NonFiniteInputError(f"{name} contains {bad} NaN or infinite entries")


def apply(A: Tensor | MatVec, X: Tensor) -> Tensor:
    """``A @ X`` for a dense matrix or a matrix-free operator."""
    return A @ X if isinstance(A, Tensor) else A(X)


def _solve_residual(A: Tensor | MatVec, B: Tensor, damping: float, x: Tensor) -> Callable[[], float]:
    def residual() -> float:
        B2, x2 = (B[:, None], x[:, None]) if B.ndim == 1 else (B, x)
        r = apply(A, x2.to(B2.dtype)) + damping * x2 - B2
        return float(torch.linalg.norm(r) / torch.linalg.norm(B2).clamp_min(torch.finfo(B2.dtype).tiny))

    return residual


def _inverse_residual(A: Tensor, damping: float, inv: Tensor) -> Callable[[], float]:
    def residual() -> float:
        eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
        r = A @ inv.to(A.dtype) + damping * inv.to(A.dtype) - eye
        return float(torch.linalg.norm(r) / math.sqrt(A.shape[0]))

    return residual


def add_damping(A: Tensor, damping: float) -> Tensor:
    """``A + damping I`` (a new tensor; ``A`` is untouched)."""
    if damping == 0:
        return A
    return A + damping * torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
