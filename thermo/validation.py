"""Checks of user inputs: types, shapes, finiteness, symmetry and definiteness, with errors that
say what is wrong, by how much, and how to fix it.

One set of checks serves every public entry point that takes a matrix (the solver's ``solve``
and ``inverse``, :func:`thermo.exact.sample_ou`): :func:`to_host` refuses what would otherwise
be silently converted (complex values truncated to their real part, sparse matrices, matrix-free
operators, object, string and boolean arrays), :func:`check_system` checks a symmetric positive
definite system, :func:`check_times`, :func:`check_kT` and :func:`check_count` the scalars.
"""

from __future__ import annotations

import math
import numbers

import numba
import numpy as np
import scipy.linalg

from .errors import (
    InputError,
    NonFiniteInputError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    ShapeMismatchError,
    UnsupportedInputError,
)

SYMMETRY_TILE = 32
"""The exact symmetry check compares ``A`` with ``A^T`` in tiles of this many entries a side
(8 KB of float64 each: a tile and its mirror stay in the L1 cache)."""

COMPLEX_FIX = (
    "pass x.real if the imaginary part is rounding, or a real symmetric embedding "
    "[[Re, -Im], [Im, Re]] of a Hermitian system otherwise"
)


def _type_name(x: object) -> str:
    t = type(x)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__


def refuse_unsupported(x: object, name: str) -> None:
    """Raise :class:`UnsupportedInputError` for an input type that a float conversion would
    mangle or refuse obscurely: sparse, matrix-free, complex, object, string or boolean."""
    try:  # first: a tensor (the digital solvers' hot path) needs no other test
        import torch

        if isinstance(x, torch.Tensor):
            if x.layout != torch.strided:
                raise UnsupportedInputError(
                    f"{name} is a sparse torch tensor (layout {x.layout}): pass {name}.to_dense()"
                )
            if x.is_complex():
                raise UnsupportedInputError(f"{name} is a complex tensor ({x.dtype}): {COMPLEX_FIX}")
            if x.dtype == torch.bool:
                raise UnsupportedInputError(f"{name} is a boolean tensor: pass {name}.double() if 0/1 is meant")
            return
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    try:
        import scipy.sparse
        import scipy.sparse.linalg

        if scipy.sparse.issparse(x):
            raise UnsupportedInputError(
                f"{name} is a scipy.sparse matrix ({_type_name(x)}): the simulator programs a dense "
                f"chip; pass {name}.toarray()"
            )
        if isinstance(x, scipy.sparse.linalg.LinearOperator):
            raise UnsupportedInputError(
                f"{name} is a scipy LinearOperator: the chip is programmed with every coupling, so "
                f"it needs a dense matrix; form it ({name} @ np.eye(d)) or, matrix-free, use the "
                "digital 'cg' solver or thermo.lowrank's krylov path (A = U U^T + damping I)"
            )
    except ImportError:  # pragma: no cover - scipy is a core dependency
        pass
    if isinstance(x, (bool, np.bool_)):
        raise UnsupportedInputError(f"{name} is a boolean ({x!r}), not a number: pass a float")
    if isinstance(x, (str, bytes)):
        raise UnsupportedInputError(f"{name} is a string ({x!r:.40}), not a numeric array: pass numbers")
    if isinstance(x, numbers.Complex) and not isinstance(x, numbers.Real):
        raise UnsupportedInputError(f"{name} is complex ({x!r}): {COMPLEX_FIX}")


def to_host(x: object, name: str) -> np.ndarray:
    """A float64 host copy of ``x`` (numpy array, torch tensor, nested list or number).

    Refuses, with :class:`UnsupportedInputError`, every input that ``np.array(x, float64)``
    would silently change or obscurely reject: complex (numpy complex dtypes, Python complex,
    torch complex; the real part would be kept with only a ``ComplexWarning``), sparse
    (``scipy.sparse``, torch sparse layouts), ``scipy.sparse.linalg.LinearOperator``, and object,
    string and boolean arrays.
    """
    refuse_unsupported(x, name)
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as exc:  # ragged nested lists
            raise ShapeMismatchError(f"{name} is not a numeric array ({exc}): pass a rectangular array") from None
    kind = x.dtype.kind
    if kind == "c":
        raise UnsupportedInputError(f"{name} has the complex dtype {x.dtype}: {COMPLEX_FIX}")
    if kind == "b":
        raise UnsupportedInputError(f"{name} is a boolean array: pass {name}.astype(float) if 0/1 is meant")
    if kind in "USa":
        raise UnsupportedInputError(f"{name} is an array of strings ({x.dtype}): pass numbers")
    if kind == "O":
        for item in x.flat:  # find the culprit: complex, sparse or a non-number inside
            refuse_unsupported(item, f"an entry of {name}")
            if not isinstance(item, numbers.Real):
                raise UnsupportedInputError(
                    f"{name} is an object array holding {_type_name(item)}: pass a numeric (float) array"
                )
    if kind in "mM" or kind == "V":
        raise UnsupportedInputError(f"{name} has the non-numeric dtype {x.dtype}: pass a float array")
    return np.array(x, dtype=np.float64)


def check_finite(x: np.ndarray, name: str, fix: str = "remove them or add damping upstream") -> None:
    """No NaN or infinity in ``x``; the error names the count, the first index and ``fix``."""
    bad = ~np.isfinite(x)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NonFiniteInputError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf), first at index {where}: {fix}"
        )


def check_square(a: np.ndarray, name: str = "A") -> None:
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ShapeMismatchError(f"{name} must be a non-empty square (d, d) matrix, got shape {a.shape}")


@numba.njit(cache=True)
def _asymmetry(a: np.ndarray, tile: int) -> float:
    n = a.shape[0]
    worst, total = 0.0, 0.0
    for i0 in range(0, n, tile):
        for j0 in range(i0, n, tile):
            for j in range(j0, min(j0 + tile, n)):
                for i in range(i0, min(i0 + tile, j)):
                    v = abs(a[i, j] - a[j, i])
                    worst = max(worst, v)
                    total += v  # a NaN, which max() passes over, propagates here
    return worst if total == total else math.inf


@numba.njit(cache=True)
def _first_pair_at(a: np.ndarray, value: float) -> tuple[int, int]:
    n = a.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            v = abs(a[i, j] - a[j, i])
            if v >= value or v != v:
                return i, j
    return 0, 0


def asymmetry(a: np.ndarray) -> float:
    """``max_ij |a_ij - a_ji|`` of a square array, exactly: every pair compared once, tile by
    tile (a tile and its mirror stay in cache), no ``d x d`` temporary; NaN counts as ``inf``.

    ``O(d^2)``: negligible beside the ``O(d^3)`` factorization or simulation that follows. On a
    576 x 576 float32 Gram, 0.3 ms against 0.4 ms for torch's ``aminmax(m - m.T)`` (the
    transposed read costs the most either way) and 0.6 ms for the former NumPy row blocks (at
    d = 2048 in float64: 14 ms against 243 ms).
    """
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return float(_asymmetry(a, SYMMETRY_TILE))


def max_asymmetry(a: np.ndarray) -> tuple[float, tuple[int, int]]:
    """:func:`asymmetry` and where it is (``i < j``; the first such pair in row order)."""
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    worst = float(_asymmetry(a, SYMMETRY_TILE))
    i, j = _first_pair_at(a, worst) if worst > 0 else (0, 0)
    return worst, (int(i), int(j))


def check_symmetric(a: np.ndarray, rtol: float, name: str = "A") -> None:
    """Exact symmetry up to ``rtol`` relative to the largest entry (every pair compared)."""
    scale = float(np.abs(a).max())
    asym, (i, j) = max_asymmetry(a)
    if asym > rtol * scale:
        raise NotSymmetricError(
            f"{name} is not symmetric: |{name}[{i},{j}] - {name}[{j},{i}]| = {asym:.3e} exceeds "
            f"{rtol:g} x max|{name}| = {rtol * scale:.3e}; pass (A + A.T) / 2 if the asymmetry is rounding"
        )


def check_positive_definite(a: np.ndarray, name: str = "A") -> None:
    """Cholesky test (``O(d^3/3)``); on failure report the smallest eigenvalue."""
    if float(np.abs(a).max()) == 0.0:
        raise NotPositiveDefiniteError(f"{name} is the zero matrix: add damping (A + lambda I)")
    try:
        scipy.linalg.cholesky(a, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        lam_min = float(scipy.linalg.eigvalsh(a, subset_by_index=[0, 0], check_finite=False)[0])
        raise NotPositiveDefiniteError(
            f"{name} is not positive definite (smallest eigenvalue {lam_min:.3e}): the Langevin "
            "dynamics would diverge; add damping (A + lambda I) or fix the matrix"
        ) from None


def check_rhs(b: np.ndarray, d: int, name: str = "b", *, allow_matrix: bool = True) -> None:
    """``b`` of shape ``(d,)`` (or ``(d, k)`` with ``allow_matrix``), finite."""
    ok = b.ndim == 1 or (allow_matrix and b.ndim == 2)
    if not ok or b.shape[0] != d or b.size == 0:
        shapes = f"({d},) or ({d}, k)" if allow_matrix else f"({d},)"
        raise ShapeMismatchError(f"{name} must have shape {shapes} to match A ({d}, {d}), got {b.shape}")
    check_finite(b, name)


def check_system(a: np.ndarray, b: np.ndarray | None, rtol: float) -> None:
    """All checks of a symmetric positive definite system ``A x = b``."""
    check_square(a)
    check_finite(a, "A")
    check_symmetric(a, rtol)
    if b is not None:
        check_rhs(b, a.shape[0])
    check_positive_definite(a)


def check_times(times: object, name: str = "times") -> np.ndarray:
    """Sample times: a finite, 1-D, non-empty, strictly increasing float array (tau)."""
    t = to_host(times, name)
    if t.ndim != 1 or t.size == 0:
        raise ShapeMismatchError(f"{name} must be a non-empty 1-D array of times, got shape {t.shape}")
    check_finite(t, name, fix="give finite sample times (tau)")
    steps = np.diff(t)
    if steps.size and not steps.min() > 0:
        k = int(np.argmin(steps))
        raise InputError(
            f"{name} must be strictly increasing: {name}[{k + 1}] = {t[k + 1]!r} <= {name}[{k}] = {t[k]!r}; "
            "sort them and drop repeats"
        )
    return t


def check_kT(kT: object, name: str = "kT") -> float:
    """A noise energy (V^2): a finite real number > 0."""
    refuse_unsupported(kT, name)
    try:
        value = float(kT)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a finite number > 0 (V^2), got {kT!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a finite number > 0 (V^2), got {kT!r}")
    return value


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """A count: an integer (not a bool) ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
