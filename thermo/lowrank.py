"""Exact, fast propagation of the Ornstein-Uhlenbeck process of thermodynamic natural-gradient
descent when its matrix is low rank plus damping.

The process, with time ``t`` in units of the device time constant ``tau`` (so ``A`` is
dimensionless)::

    dx = -(A x - g) dt + sqrt(2 kappa) dW,      A = U U^T + lam I,

with ``U`` of shape ``(N, r)`` (``N`` parameters, ``r = b * d_z`` much smaller), ``lam > 0`` the
damping, ``g`` the gradient ``(N,)``, ``kappa >= 0`` the noise strength (a variance rate: the
stationary law is ``N(A^-1 g, kappa A^-1)``). ``U`` need not exist as a matrix: it is given by
two products ``apply_u: (r, k) -> (N, k)`` and ``apply_ut: (N, k) -> (r, k)`` and the ``r x r``
Gram matrix ``K = U^T U`` (:class:`LowRankCurvature`). Optionally the curvature carries a
symmetric ``r x r`` core ``S``: ``A = U S U^T + lam I`` (still rank ``r`` plus damping; ``S`` may
be indefinite). That is the form of the quantized TNGD device, whose arrays hold ``J_f`` and
``H_L`` separately (:func:`thermo.lowrank_device.program_arrays`).

Eigen path (:class:`LowRankOU`)
-------------------------------
``K = Q diag(s) Q^T`` (one ``eigh``, ``O(r^3)``); modes with ``s <= tol * max(s)`` are dropped
(rank deficiency). ``V = U Q diag(s^-1/2)`` has orthonormal columns spanning ``range(U)``, on which
``A`` has the eigenvalues ``s + lam``; on the orthogonal complement ``A = lam I``. Hence, for any
function ``f``::

    f(A) v = f(lam) v + V diag(f(s + lam) - f(lam)) V^T v,
    V^T v = diag(s^-1/2) Q^T apply_ut(v),      V c = apply_u(Q diag(s^-1/2) c),

one ``apply_ut`` and one ``apply_u`` per application, every vector of a step batched as columns of
one pair of passes. With a core ``S``, ``V^T A V = lam I + C`` with
``C = diag(s^1/2) Q^T S Q diag(s^1/2)``; a second ``eigh``, ``C = P diag(c) P^T``, rotates ``V``
to ``V P`` and the eigenvalues on ``range(U)`` become ``c + lam`` (they must stay > 0: a core
can make ``A`` indefinite). ``A`` has at most ``r + 1`` distinct eigenvalues, so all per-mode
coefficient work is ``O(r)`` (host, float64) and the products cost ``O(N r)``.

Laws used (``mu`` an eigenvalue of ``A``, every mode a scalar OU):

* mean ``E x(t) = exp(-A t) x0 + phi_t(A) g`` with ``phi_t(mu) = (1 - exp(-mu t)) / mu``
  (evaluated with ``expm1``; ``-> t`` as ``mu t -> 0``), which equals
  ``x* + exp(-A t)(x0 - x*)``, ``x* = A^-1 g``, without the cancellation;
* state ``x(t) ~ N(mean, C(t))``, ``C(t) = kappa A^-1 (I - exp(-2 A t)) = c_t(A)``,
  ``c_t(mu) = 2 kappa phi_t(2 mu)``; a draw is ``mean + sqrt(c_t)(A) z``, ``z ~ N(0, I_N)``;
* readout (see :meth:`LowRankOU.readout`): ``n`` samples every ``h`` ending at ``t``, averaged,
  drawn jointly with ``x(t)`` from the per-mode closed-form 2-D Gaussian law.

Krylov path (:class:`KrylovOU`, :func:`lanczos_apply`)
------------------------------------------------------
When ``r`` is too large for ``eigh``: ``f(A) v ~= |v| Q_m f(T_m) e_1`` from ``m`` Lanczos steps
with full reorthogonalization, ``A`` given only by its matvec (a GGN-vector product). Since ``A``
has at most ``r + 1`` distinct eigenvalues, ``m >= r + 1`` steps are exact up to rounding.

Reference path (:func:`euler_maruyama`)
--------------------------------------
Euler-Maruyama over many paths: the check of the exact laws and the documented reference for
non-idealities that break linearity (clipping, drift), which neither exact path can model.

All tensors are ``torch`` tensors; vectors are ``(N,)`` or ``(N, k)`` (``k`` independent columns,
e.g. chains), and a ``(N,)`` input broadcasts against ``(N, k)`` ones.

What the eigen and Krylov paths represent (:data:`MODELS`, :mod:`thermo.capabilities`): linear
overdamped dynamics with a static symmetric ``A = U S U^T + lam I``, so quantized arrays through
the core ``S`` (the coupling DAC of :func:`thermo.lowrank_device.program_arrays`, either
rounding), nothing that breaks linearity, symmetry, the low-rank structure (an elementwise
mismatch of ``A``) or the first-order dynamics (underdamped nodes). The converters around the
run are the device's (:data:`thermo.lowrank_device.MODELS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .backends import all_finite
from .capabilities import Nonideality
from .errors import (
    InputError,
    NonFiniteInputError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    ShapeMismatchError,
)
from .exact import compose, power
from .krylov import GramLanczos
from .validation import asymmetry

Tensor = torch.Tensor

MODELS: frozenset[Nonideality] = frozenset({Nonideality.COUPLING_QUANTIZATION})
"""The non-idealities the eigen and Krylov propagations represent exactly (module docstring)."""
#: A table of per-eigenvalue coefficients: float64 eigenvalues ``(m,)`` -> float64 ``(m, p)``.
CoefficientTable = Callable[[np.ndarray], np.ndarray]
#: ``terms[o]`` lists the ``(input index, table column)`` pairs summed into output ``o``.
Terms = Sequence[Sequence[tuple[int, int]]]
#: How :class:`LowRankOU` applies the Gram's matrix functions (its docstring).
Propagator = Literal["auto", "eigh", "krylov"]
PROPAGATORS: tuple[str, ...] = ("auto", "eigh", "krylov")
#: Below this rank ``auto`` always takes ``eigh`` (microseconds there).
MIN_KRYLOV_RANK = 64
#: Block Lanczos steps run before the first check, whose largest Ritz value estimates ``||S K||``
#: (the top of the digits CNN's Gram spectrum is resolved to 4 digits after 4 steps).
PROBE_STEPS = 4
#: Where the first convergence check goes, as a fraction of the predicted steps
#: (:meth:`LowRankOU._first_check`). Over TNGD steps 10-150 on the digits CNN: 0.5 took 23.4
#: block steps a step and a second check in 91% of them, 0.55 23.7 and 60%, 0.6 24.8 and 10%,
#: 0.65 26.8 and none; a check (one ``eigh`` of the projection, about 0.38 ms within the step at
#: ``m = 75``) costs about 7 block steps (50 us each at ``r = 576``, ``k = 3``). With the two
#: alternated step by step over 220 TNGD steps, 0.55 and 0.6 took the same device time (5.84 and
#: 5.80 ms a step on moving batches, 6.62 and 6.74 ms on one repeated batch).
FIRST_CHECK_FRACTION = 0.55
#: A check reads the change ``|z_s - z_(s-1)|`` of the Krylov coefficients from ``z_s`` alone, as
#: the norm of its rows on the newest block times this margin (one ``eigh`` of the projection
#: instead of three). Zero-padded, ``z_(s-1)`` has no rows there, so the rows are a lower bound of
#: the change; the rest of it, the earlier rows' correction, is a few per cent once the Ritz values
#: have settled. Over 345 checks whose change was 0.1-10 tolerances (the Krylov, low-rank and TNGD
#: tests and 150 TNGD steps of the digits CNN), the change was 1.00-1.46 times those rows (median
#: 1.03, 99% below 1.13), so the margin covers every one; it costs about half a block step.
CHANGE_MARGIN = 1.5

__all__ = [
    "PROPAGATORS",
    "KrylovOU",
    "LowRankCurvature",
    "LowRankOU",
    "euler_maruyama",
    "lanczos_apply",
    "readout_coefficients",
]


# ------------------------------------------------------------------------------------------------
# scalar (per-eigenvalue) laws, host float64
def _phi(mu: np.ndarray, s: float) -> np.ndarray:
    """``(1 - exp(-mu s)) / mu``, stable for ``mu s -> 0`` (-> ``s``) and any sign of ``mu``."""
    x = mu * s
    small = x == 0
    return s * np.where(small, 1.0, -np.expm1(-x) / np.where(small, 1.0, x))


def _mean_table(t: float) -> CoefficientTable:
    """Columns: ``exp(-mu t)`` (on ``x0``), ``phi_t(mu)`` (on ``g``)."""
    return lambda mu: np.stack([np.exp(-mu * t), _phi(mu, t)], axis=1)


def _sample_table(t: float, kappa: float) -> CoefficientTable:
    """Columns: the two mean columns and ``sqrt(c_t(mu))`` (on ``z``)."""

    def table(mu: np.ndarray) -> np.ndarray:
        c = 2.0 * kappa * _phi(2.0 * mu, t)
        return np.stack([np.exp(-mu * t), _phi(mu, t), np.sqrt(np.clip(c, 0.0, None))], axis=1)

    return table


def _covariance_table(t: float, kappa: float) -> CoefficientTable:
    """Column: ``c_t(mu) = kappa (1 - exp(-2 mu t)) / mu``."""
    return lambda mu: (2.0 * kappa * _phi(2.0 * mu, t))[:, None]


def _accumulating_step(mu: np.ndarray, h: float, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-mode affine Gaussian map of ``(x, S, g)`` over a time ``h``, then ``S += x``.

    ``x' = exp(-mu h) x + phi_h(mu) g + e``, ``e ~ N(0, 2 kappa phi_h(2 mu))``; ``g`` is carried
    as a constant component so the drive needs no fixed point (no cancellation for small ``mu``).
    Every entry of both matrices is non-negative, so compositions and powers lose no digits.
    """
    rho, ph, q = np.exp(-mu * h), _phi(mu, h), 2.0 * kappa * _phi(2.0 * mu, h)
    f = np.zeros((mu.size, 3, 3))
    f[:, 0, 0] = f[:, 1, 0] = rho
    f[:, 0, 2] = f[:, 1, 2] = ph
    f[:, 1, 1] = f[:, 2, 2] = 1.0
    cov = np.zeros((mu.size, 3, 3))
    cov[:, :2, :2] = q[:, None, None]
    return f, cov


def readout_coefficients(mu: np.ndarray, t: float, n: int, h: float, kappa: float) -> np.ndarray:
    """Per-mode coefficients of the joint law of (readout average, final state), shape ``(m, 7)``.

    For a scalar OU ``dx = -(mu x - g) dt + sqrt(2 kappa) dW`` started at ``x0`` at time 0, with
    ``n`` samples at ``t_j = t - (n - 1 - j) h`` (``j = 0..n-1``) averaged into ``a`` and the state
    ``f = x(t)``::

        f = F00 x0 + F02 g + L_ff z1
        a = (F10 x0 + F12 g) / n + L_af z1 + L_aa z2,      z1, z2 ~ N(0, 1) independent,

    where ``F`` is the mean map of ``(x, S, g)`` (``S`` the running sum of the samples) composed of
    one step of length ``t_0 = t - (n-1) h`` (which takes the first sample) and ``n - 1`` steps of
    ``h`` (by repeated squaring, ``O(log n)``), and ``[[L_ff, 0], [L_af, L_aa]]`` is the Cholesky
    factor of the 2x2 covariance ``[[Q00, Q01/n], [Q01/n, Q11/n^2]]`` of ``(f, a)``.

    Columns: ``F00, F02, F10/n, F12/n, L_ff, L_af, L_aa``.
    """
    mu = np.asarray(mu, dtype=np.float64)
    t0 = max(t - (n - 1) * h, 0.0)
    f, q = compose(
        _accumulating_step(mu, t0, kappa),
        power(_accumulating_step(mu, h, kappa), n - 1),
    )
    s_ff, s_fa, s_aa = q[:, 0, 0], q[:, 0, 1] / n, q[:, 1, 1] / n**2
    l_ff = np.sqrt(np.clip(s_ff, 0.0, None))
    pos = l_ff > 0
    l_af = np.where(pos, s_fa / np.where(pos, l_ff, 1.0), 0.0)
    l_aa = np.sqrt(np.clip(s_aa - l_af**2, 0.0, None))
    return np.stack(
        [f[:, 0, 0], f[:, 0, 2], f[:, 1, 0] / n, f[:, 1, 2] / n, l_ff, l_af, l_aa],
        axis=1,
    )


# ------------------------------------------------------------------------------------------------
# input checks
def _check_time(t: float, name: str = "t") -> float:
    t = float(t)
    if not math.isfinite(t) or t < 0:
        raise InputError(f"{name} must be a finite time >= 0 (units of tau), got {t}")
    return t


def _check_kappa(kappa: float) -> float:
    kappa = float(kappa)
    if not math.isfinite(kappa) or kappa < 0:
        raise InputError(f"kappa (noise variance rate) must be finite and >= 0, got {kappa}")
    return kappa


def _check_readout(t: float, n_samples: int, interval: float) -> tuple[int, float]:
    if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
        raise InputError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    n_samples = int(n_samples)
    interval = float(interval)
    if not math.isfinite(interval) or interval < 0 or (n_samples > 1 and interval == 0):
        raise InputError(f"interval must be finite and > 0 (units of tau) when n_samples > 1, got {interval}")
    window = (n_samples - 1) * interval
    if window > t * (1 + 1e-12):
        raise InputError(
            f"the readout window (n_samples - 1) * interval = {window:g} exceeds t = {t:g}: the first "
            "sample would precede the start"
        )
    return n_samples, interval


def _as_columns(x: object, n: int, name: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``x`` as an ``(n, k)`` tensor of ``dtype`` (``(n,)`` becomes one column), checked."""
    t = torch.as_tensor(x, dtype=dtype, device=device)
    if t.ndim not in (1, 2) or t.shape[0] != n:
        raise ShapeMismatchError(f"{name} must have shape ({n},) or ({n}, k), got {tuple(t.shape)}")
    if not all_finite(t):
        raise NonFiniteInputError(f"{name} contains non-finite values (NaN or inf)")
    return t[:, None] if t.ndim == 1 else t


def _width(*columns: Tensor) -> int:
    widths = {c.shape[1] for c in columns} - {1}
    if len(widths) > 1:
        raise ShapeMismatchError(f"column counts do not broadcast: {sorted(c.shape[1] for c in columns)}")
    return widths.pop() if widths else 1


def _default_tol(dtype: torch.dtype) -> float:
    return 1e-12 if dtype == torch.float64 else 1e-6


def _check_core(core: object, gram: Tensor) -> Tensor:
    """The core ``S`` as a symmetric ``(r, r)`` tensor of the Gram's dtype and device, checked."""
    s = torch.as_tensor(core).to(dtype=gram.dtype, device=gram.device)
    r = gram.shape[0]
    if tuple(s.shape) != (r, r):
        raise ShapeMismatchError(f"core must have the Gram's shape ({r}, {r}), got {tuple(s.shape)}")
    return _symmetrized(s, "core", "core", "S")


def _symmetrized(m: Tensor, name: str, label: str, symbol: str) -> Tensor:
    """``(m + m^T) / 2`` of a square ``m`` checked finite and symmetric to ``1e-8`` (float64)
    or ``1e-4`` (otherwise) of ``max |m|`` (a copy of ``m`` when it is exactly symmetric, as
    the GGN Grams are). An ``aminmax`` reduction checks finiteness (NaN and inf propagate
    through it: an elementwise ``isfinite`` pass costs ten times more here); the symmetry, on
    the host, :func:`thermo.validation.asymmetry`, elsewhere ``aminmax(m - m^T)``."""
    if not m.numel():
        return m
    lo, hi = torch.aminmax(m)
    scale = max(-float(lo), float(hi))
    if not math.isfinite(scale):
        raise NonFiniteInputError(f"{name} contains non-finite values (NaN or inf)")
    if m.device.type == "cpu" and m.dtype in (torch.float32, torch.float64):
        asym = asymmetry(m.detach().numpy())
    else:
        dlo, dhi = torch.aminmax(m - m.T)
        asym = max(-float(dlo), float(dhi))
    rtol = 1e-8 if m.dtype == torch.float64 else 1e-4
    if asym > rtol * scale:
        raise NotSymmetricError(
            f"{label} is not symmetric: max |{symbol} - {symbol}^T| = {asym:.3e} exceeds {rtol:g} x max|{symbol}|"
        )
    return m.clone() if asym == 0 else torch.add(m, m.T).mul_(0.5)


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LowRankCurvature:
    """``A = U U^T + damping I`` given by products with ``U`` (no ``(N, r)`` matrix needed).

    ``apply_u``: ``(r, k) -> (N, k)``; ``apply_ut``: ``(N, k) -> (r, k)``; ``gram``: ``U^T U``,
    ``(r, r)`` symmetric PSD (its dtype and device are the working ones); ``damping``: ``lam > 0``
    (dimensionless, like ``A``: ``A`` is in units of ``1/tau``); ``n``: ``N``; ``core``: ``None``
    (``A = U U^T + lam I``) or a symmetric ``(r, r)`` ``S`` with ``A = U S U^T + lam I``.
    The consistency of ``gram`` with the products is the caller's (``from_matrix`` guarantees it).
    """

    apply_u: Callable[[Tensor], Tensor]
    apply_ut: Callable[[Tensor], Tensor]
    gram: Tensor
    damping: float
    n: int
    core: Tensor | None = None

    def __post_init__(self) -> None:
        gram = self.gram
        if not isinstance(gram, torch.Tensor):
            gram = torch.as_tensor(gram, dtype=torch.float64)
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
            raise ShapeMismatchError(f"gram must be a square (r, r) matrix, got shape {tuple(gram.shape)}")
        if not gram.is_floating_point():
            gram = gram.to(torch.float64)
        gram = _symmetrized(gram, "gram", "gram (U^T U)", "K")
        object.__setattr__(self, "gram", gram)
        if self.core is not None:
            object.__setattr__(self, "core", _check_core(self.core, gram))
        damping = float(self.damping)
        if not math.isfinite(damping) or damping <= 0:
            raise NotPositiveDefiniteError(
                f"damping must be finite and > 0, got {damping}: A = U U^T + damping I is singular on "
                "the complement of range(U) and the dynamics would not relax"
            )
        object.__setattr__(self, "damping", damping)
        if isinstance(self.n, bool) or int(self.n) != self.n or self.n < 1:
            raise ShapeMismatchError(f"n (the dimension N) must be a positive integer, got {self.n!r}")
        object.__setattr__(self, "n", int(self.n))

    @classmethod
    def from_matrix(cls, u: object, damping: float, core: object | None = None) -> LowRankCurvature:
        """From a dense ``U`` of shape ``(N, r)`` (tests and small problems), optionally with a
        core ``S`` ``(r, r)``."""
        mat = torch.as_tensor(u)
        if not mat.is_floating_point():
            mat = mat.to(torch.float64)
        if mat.ndim != 2:
            raise ShapeMismatchError(f"U must be a matrix of shape (N, r), got shape {tuple(mat.shape)}")
        if not all_finite(mat):
            raise NonFiniteInputError("U contains non-finite values (NaN or inf)")
        core_t = None if core is None else torch.as_tensor(core, dtype=mat.dtype, device=mat.device)
        return cls(lambda c: mat @ c, lambda v: mat.T @ v, mat.T @ mat, damping, mat.shape[0], core_t)

    @property
    def rank(self) -> int:
        """``r``, the number of columns of ``U`` (not the numerical rank)."""
        return self.gram.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.gram.dtype

    @property
    def device(self) -> torch.device:
        return self.gram.device

    def u(self, c: Tensor) -> Tensor:
        """``U c`` with a shape check, ``(r, k) -> (N, k)``."""
        out = self.apply_u(c)
        if tuple(out.shape) != (self.n, c.shape[1]):
            raise ShapeMismatchError(f"apply_u returned shape {tuple(out.shape)}, expected {(self.n, c.shape[1])}")
        return out

    def ut(self, v: Tensor) -> Tensor:
        """``U^T v`` with a shape check, ``(N, k) -> (r, k)``."""
        out = self.apply_ut(v)
        if tuple(out.shape) != (self.rank, v.shape[1]):
            raise ShapeMismatchError(f"apply_ut returned shape {tuple(out.shape)}, expected {(self.rank, v.shape[1])}")
        return out

    def matvec(self, v: Tensor) -> Tensor:
        """``A v = U (S (U^T v)) + damping v`` (``S = I`` without a core) for ``v`` of shape
        ``(N,)`` or ``(N, k)``."""
        cols = v[:, None] if v.ndim == 1 else v
        low = self.ut(cols)
        if self.core is not None:
            low = self.core @ low
        out = self.u(low) + self.damping * cols
        return out[:, 0] if v.ndim == 1 else out

    def dense(self) -> Tensor:
        """The dense ``(N, N)`` matrix ``A`` (small ``N`` only: ``N`` products)."""
        return self.matvec(torch.eye(self.n, dtype=self.dtype, device=self.device))


# ------------------------------------------------------------------------------------------------
class _OUBase:
    """Operations shared by the eigen and Krylov paths, written against ``_apply_table``."""

    n: int
    kappa: float
    dtype: torch.dtype
    device: torch.device

    def _apply_table(
        self, inputs: list[Tensor], table: CoefficientTable, terms: Terms, horizon: float | None = None
    ) -> list[Tensor]:
        """``terms[o]``: output ``o`` is the sum over ``(i, c)`` of ``table[:, c](A) inputs[i]``.
        ``horizon``: the longest time (tau) in the table's functions (``None``: unknown), which
        sets how stiff they are (the propagator's cost rule reads it)."""
        raise NotImplementedError

    # --- helpers ------------------------------------------------------------------------------------
    def _cols(self, x: object, name: str) -> Tensor:
        return _as_columns(x, self.n, name, self.dtype, self.device)

    def _normal(self, k: int, generator: torch.Generator | None) -> Tensor:
        return torch.randn((self.n, k), generator=generator, dtype=self.dtype, device=self.device)

    @staticmethod
    def _shape(out: Tensor, *raw: object) -> Tensor:
        return out[:, 0] if all(torch.as_tensor(r).ndim == 1 for r in raw) else out

    # --- public operations --------------------------------------------------------------------------
    def apply_function(self, f: Callable[[np.ndarray], np.ndarray], v: object) -> Tensor:
        """``f(A) v``; ``f`` maps a float64 array of eigenvalues to values of the same shape.

        ``v``: ``(N,)`` or ``(N, k)``; returns the same shape.
        """
        cols = self._cols(v, "v")
        table = lambda mu: np.asarray(f(mu), dtype=np.float64).reshape(-1, 1)
        (out,) = self._apply_table([cols], table, [[(0, 0)]])
        return self._shape(out, v)

    def mean(self, x0: object, g: object, t: float) -> Tensor:
        """``E x(t) = exp(-A t) x0 + phi_t(A) g`` (= ``x* + exp(-At)(x0 - x*)``), ``t`` in tau.

        ``x0, g``: ``(N,)`` or ``(N, k)`` (broadcast); ``t = 0`` returns ``x0``, ``t -> inf`` the
        natural-gradient step ``A^-1 g``. One ``apply_ut`` pass (2 columns) and one ``apply_u``.
        """
        t = _check_time(t)
        x, gc = self._cols(x0, "x0"), self._cols(g, "g")
        _width(x, gc)
        (out,) = self._apply_table([x, gc], _mean_table(t), [[(0, 0), (1, 1)]], t)
        return self._shape(out, x0, g)

    def sample(self, x0: object, g: object, t: float, generator: torch.Generator | None = None) -> Tensor:
        """Exact draw of ``x(t) ~ N(mean, C(t))`` given ``x(0) = x0``: ``mean + sqrt(c_t)(A) z``.

        ``z ~ N(0, I_N)`` from ``generator`` (one column per column of the broadcast inputs); with
        ``kappa == 0`` or ``t == 0`` nothing is drawn and the mean is returned.
        """
        t = _check_time(t)
        x, gc = self._cols(x0, "x0"), self._cols(g, "g")
        k = _width(x, gc)
        if self.kappa == 0 or t == 0:
            (out,) = self._apply_table([x, gc], _mean_table(t), [[(0, 0), (1, 1)]], t)
        else:
            z = self._normal(k, generator)
            (out,) = self._apply_table([x, gc, z], _sample_table(t, self.kappa), [[(0, 0), (1, 1), (2, 2)]], t)
        return self._shape(out, x0, g)

    def readout(
        self,
        x0: object,
        g: object,
        t: float,
        n_samples: int,
        interval: float,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Exact joint draw of the readout average and the final state ``x(t)``.

        The readout averages ``n_samples`` samples of ``x`` taken every ``interval`` (tau), at
        ``t - (n-1) interval, ..., t`` (requires ``(n-1) interval <= t``); the final state is the
        start of the warm-started next step. Returns ``(average, final)``, each of the broadcast
        shape of ``x0, g``. Per mode, the law is the 2-D Gaussian of
        :func:`readout_coefficients`, drawn from two independent ``N(0, I_N)`` vectors with
        per-mode 2x2 Cholesky factors; everything in one ``apply_ut`` (4 columns) and one
        ``apply_u`` (2 columns) pass. ``n_samples == 1`` returns the final state twice (a copy as average).
        """
        t = _check_time(t)
        n, h = _check_readout(t, n_samples, interval)
        if n == 1:
            final = self.sample(x0, g, t, generator)
            return final.clone(), final
        x, gc = self._cols(x0, "x0"), self._cols(g, "g")
        k = _width(x, gc)
        table = lambda mu: readout_coefficients(mu, t, n, h, self.kappa)
        if self.kappa == 0:
            final, avg = self._apply_table([x, gc], table, [[(0, 0), (1, 1)], [(0, 2), (1, 3)]], t)
        else:
            z1, z2 = self._normal(k, generator), self._normal(k, generator)
            final, avg = self._apply_table(
                [x, gc, z1, z2],
                table,
                [[(0, 0), (1, 1), (2, 4)], [(0, 2), (1, 3), (2, 5), (3, 6)]],
                t,
            )
        return self._shape(avg, x0, g), self._shape(final, x0, g)

    def covariance_apply(self, t: float, v: object) -> Tensor:
        """``C(t) v = kappa A^-1 (I - exp(-2 A t)) v``; ``v`` ``(N,)`` or ``(N, k)``."""
        t = _check_time(t)
        cols = self._cols(v, "v")
        (out,) = self._apply_table([cols], _covariance_table(t, self.kappa), [[(0, 0)]], t)
        return self._shape(out, v)

    def dense_covariance(self, t: float) -> Tensor:
        """``C(t)`` as a dense symmetric ``(N, N)`` matrix (small ``N`` only)."""
        c = self.covariance_apply(t, torch.eye(self.n, dtype=self.dtype, device=self.device))
        return 0.5 * (c + c.T)


def _eigh(gram: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh``, retried in float64 when the divide-and-conquer driver fails to
    converge in a lower precision (it does on some float32 Grams with clustered eigenvalues)."""
    try:
        return torch.linalg.eigh(gram)
    except torch.linalg.LinAlgError:
        if gram.dtype == torch.float64:
            raise
        s, q = torch.linalg.eigh(gram.to(torch.float64))
        return s.to(gram.dtype), q.to(gram.dtype)


class LowRankOU(_OUBase):
    """Exact OU propagation for ``A = U U^T + lam I`` (or ``U S U^T + lam I`` with a core) through
    the ``r x r`` Gram ``K = U^T U``: by its eigendecomposition (and the core's in that basis), or
    by block Lanczos on ``K`` (:mod:`thermo.krylov`) to a stated tolerance.

    ``kappa >= 0``: noise variance rate (stationary covariance ``kappa A^-1``). ``tol``: modes with
    ``s <= tol * max(s)`` are treated as part of the null space of ``U`` (default ``1e-12`` in
    float64, ``1e-6`` otherwise); their eigenvalues ``lam + s`` are then replaced by ``lam``. The
    eigendecomposition runs at most once, in the dtype and on the device of ``curvature.gram``.

    ``propagator`` (:data:`PROPAGATORS`): ``eigh`` (the reference: one ``eigh`` at construction),
    ``krylov`` (block Lanczos per application, never an ``eigh``) or ``auto`` (the cost rule of
    :meth:`krylov_budget`, per application: Krylov while it is predicted cheaper than one
    ``eigh``, which is then computed and kept for the rest of this upload). ``krylov_tol``: the
    Krylov stopping tolerance, relative to the parameter-space norm of each output column
    (default ``1e-12`` for a float64 Gram, ``1e-6`` otherwise; the Lanczos runs in float64 either
    way). With the Krylov propagator, a draw applies the noise's matrix functions
    (``sqrt(c_t)(A) z``, the readout's per-mode Cholesky factors) to the Gaussian blocks through
    the same Krylov basis as the mean, so its law is the exact one to ``krylov_tol``.
    """

    def __init__(
        self,
        curvature: LowRankCurvature,
        kappa: float,
        *,
        tol: float | None = None,
        propagator: Propagator = "auto",
        krylov_tol: float | None = None,
    ) -> None:
        self.curvature = curvature
        self.kappa = _check_kappa(kappa)
        self.n = curvature.n
        self.dtype, self.device = curvature.dtype, curvature.device
        self.damping = curvature.damping
        self.tol = _default_tol(self.dtype) if tol is None else float(tol)
        if not (self.tol >= 0 and math.isfinite(self.tol)):
            raise InputError(f"tol must be finite and >= 0, got {tol}")
        if propagator not in PROPAGATORS:
            raise InputError(f"propagator must be one of {', '.join(PROPAGATORS)}, got {propagator!r}")
        self.propagator = propagator
        default_ktol = 1e-12 if self.dtype == torch.float64 else 1e-6
        self.krylov_tol = default_ktol if krylov_tol is None else float(krylov_tol)
        if not (self.krylov_tol > 0 and math.isfinite(self.krylov_tol)):
            raise InputError(f"krylov_tol must be finite and > 0, got {krylov_tol}")
        self._decomposed = False
        self._gram_np: np.ndarray | None = None
        self._core64: np.ndarray | None = None
        self._gram_norm_bound: float | None = None
        #: how the last application was propagated: ``eigh`` or ``krylov (m block steps, basis b)``
        self.last_propagation = ""
        if propagator == "eigh" or (propagator == "auto" and not self._krylov_eligible()):
            self._decompose()

    # --- eigen path ---------------------------------------------------------------------------------
    def _decompose(self) -> None:
        """The eigendecomposition of the Gram (and of the core in its basis), once."""
        if self._decomposed:
            return
        curvature = self.curvature
        r = curvature.rank
        if r == 0:
            s, q = torch.zeros(0, dtype=self.dtype, device=self.device), curvature.gram
        else:
            s, q = _eigh(curvature.gram)
        smax = float(s.max()) if r else 0.0
        smin = float(s.min()) if r else 0.0
        floor = 100 * max(self.tol, torch.finfo(self.dtype).eps) * max(smax, 0.0)
        if smin < -floor or (smax <= 0 and smin < 0):
            raise NotPositiveDefiniteError(
                f"gram has eigenvalue {smin:.3e} < 0 (largest {smax:.3e}): it is not a Gram matrix U^T U"
            )
        keep = s > self.tol * smax if smax > 0 else torch.zeros_like(s, dtype=torch.bool)
        s = s[keep]
        scaled_q = q[:, keep] * s.rsqrt()
        if curvature.core is not None and s.numel():
            # V^T (U S U^T) V = diag(s^1/2) Q^T S Q diag(s^1/2) = C = P diag(c) P^T: rotate V to V P
            root = s.sqrt()
            qk = q[:, keep]
            c_mat = root[:, None] * (qk.T @ curvature.core @ qk) * root[None, :]
            s, p = _eigh(0.5 * (c_mat + c_mat.T))
            scaled_q = scaled_q @ p
            _check_realized(float(s.min()) + self.damping)
        self._scaled_q, self._s = scaled_q, s
        self._mu = s.detach().cpu().to(torch.float64).numpy() + self.damping
        self._decomposed = True

    @property
    def scaled_q(self) -> Tensor:
        """``Q diag(s^-1/2)`` on the kept modes, ``(r, q)``: ``V = U @ scaled_q`` (times ``P``
        with a core). Computes the eigendecomposition if it has not run."""
        self._decompose()
        return self._scaled_q

    @property
    def s(self) -> Tensor:
        """Eigenvalues of ``U U^T`` (``U S U^T`` with a core) on the kept modes of ``range(U)``
        (computes the eigendecomposition if it has not run)."""
        self._decompose()
        return self._s

    @property
    def decomposed(self) -> bool:
        """Whether the eigendecomposition has run (on this upload)."""
        return self._decomposed

    @property
    def eigenvalues(self) -> Tensor:
        """Eigenvalues ``s + lam`` of ``A`` on ``range(U)`` (ascending, kept modes); on the
        orthogonal complement ``A = lam I``."""
        return self.s + self.damping

    @property
    def numerical_rank(self) -> int:
        """The number of kept modes of ``U`` (computes the eigendecomposition if it has not run)."""
        return int(self.s.numel())

    def _apply_eigen(self, inputs: list[Tensor], table: CoefficientTable, terms: Terms) -> list[Tensor]:
        self._decompose()
        self.last_propagation = "eigh"
        mus = np.concatenate([[self.damping], self._mu])
        coef = np.asarray(table(mus), dtype=np.float64)
        base = coef[0]
        directs = [sum(float(base[c]) * inputs[i] for i, c in out) for out in terms]
        if self.numerical_rank == 0:
            return directs
        diff = torch.as_tensor(coef[1:] - base, dtype=self.dtype, device=self.device)
        widths = [x.shape[1] for x in inputs]
        y = self._scaled_q.T @ self.curvature.ut(torch.cat(inputs, dim=1))
        ys = torch.split(y, widths, dim=1)
        lows = [sum(diff[:, c : c + 1] * ys[i] for i, c in out) for out in terms]
        low_widths = [low.shape[1] for low in lows]
        lifted = self.curvature.u(self._scaled_q @ torch.cat(lows, dim=1))
        return [d + up for d, up in zip(directs, torch.split(lifted, low_widths, dim=1))]

    # --- propagator choice ----------------------------------------------------------------------------
    def _krylov_eligible(self) -> bool:
        """``auto`` considers Krylov at all: ``r >= MIN_KRYLOV_RANK`` (below, an ``eigh`` costs
        less than the Lanczos loop's per-step overhead) and no core (the realized-array path,
        whose step is dominated by forming ``J_f``, keeps the reference ``eigh``)."""
        return self.curvature.rank >= MIN_KRYLOV_RANK and self.curvature.core is None

    def _gram_bound(self) -> float:
        """``min(trace K, max row sum |K|)``, an upper bound of ``||K||_2``; cached."""
        if self._gram_norm_bound is None:
            gram = self.curvature.gram
            self._gram_norm_bound = 0.0 if not gram.numel() else min(
                float(torch.diagonal(gram).clamp(min=0).sum()), float(gram.abs().sum(1).max())
            )
        return self._gram_norm_bound

    def _gram_floor(self) -> float:
        """``max_i K_ii``, a lower bound of ``||K||_2`` (``K_ii = e_i^T K e_i``)."""
        gram = self.curvature.gram
        return float(torch.diagonal(gram).max()) if gram.numel() else 0.0

    def krylov_budget(self, k: int, horizon: float | None) -> int | None:
        """The most block Lanczos steps to run for ``k`` vectors, or ``None`` to use ``eigh``.

        ``eigh``: the propagator says so, or the decomposition exists (it is then free). ``krylov``:
        no budget short of the full space (``r`` steps). ``auto``: the cost rule. An ``eigh`` costs
        about as much as a Lanczos whose basis fills half of ``r`` (the reorthogonalization and
        the projection grow as ``(m k)^2 r`` and ``(m k)^3``), so the budget is ``r / (2 k)``
        steps. Krylov is tried unless the steps predicted from a lower bound of ``||K||_2``
        (:meth:`predicted_steps` with ``max_i K_ii``) already exceed it; the Lanczos run falls
        back to ``eigh`` when the prediction from its own estimate of ``||K||_2`` (the largest
        Ritz value after :data:`PROBE_STEPS` steps) exceeds it, or when it has not converged
        within it. So large ``k`` (many chains) or a stiff ``t L`` (e.g. ``t = 1e4`` on a Gram
        of norm 1) take the ``eigh``.
        """
        r = self.curvature.rank
        if self._decomposed or self.propagator == "eigh" or r == 0:
            return None
        if self.propagator == "krylov":
            return r
        if not self._krylov_eligible():
            return None
        budget = r // (2 * max(k, 1))
        if budget < 2:
            return None
        predicted = self.predicted_steps(horizon, self._gram_floor())
        if predicted is not None and predicted > budget:
            return None
        return budget

    def predicted_steps(self, horizon: float | None, radius: float) -> float | None:
        """``sqrt(2 horizon L) + 8`` block steps, the Lanczos rate for ``exp(-2 t x)`` on
        ``[0, L]``, ``L = radius`` (an estimate of ``||S K||``); ``None`` for an unknown
        horizon. A bound for the worst spectrum: GGN Grams converge sooner (the digits CNN's
        TNGD step, ``t = 50``, in 0.50-0.67 of it with ``L = ||K||_2``, over 300 training
        steps)."""
        if horizon is None:
            return None
        return math.sqrt(2.0 * horizon * max(float(radius), 0.0)) + 8

    def _apply_table(
        self, inputs: list[Tensor], table: CoefficientTable, terms: Terms, horizon: float | None = None
    ) -> list[Tensor]:
        budget = self.krylov_budget(sum(x.shape[1] for x in inputs), horizon)
        if budget is not None:
            out = self._apply_krylov(inputs, table, terms, budget, horizon)
            if out is not None:
                return out
        return self._apply_eigen(inputs, table, terms)

    # --- Krylov path on the Gram --------------------------------------------------------------------
    def _gram_host(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The Gram and the core as host arrays, once per upload: a host float32 Gram as it is
        (a view; :class:`~thermo.krylov.GramLanczos` accumulates its products in float64),
        anything else, and the core, in float64."""
        if self._gram_np is None:
            gram = self.curvature.gram.detach()
            self._gram_np = gram.numpy() if gram.device.type == "cpu" and gram.dtype == torch.float32 else _host64(gram)
            core = self.curvature.core
            self._core64 = None if core is None else _host64(core)
        return self._gram_np, self._core64

    def _first_check(self, lanczos: GramLanczos, horizon: float | None, max_steps: int) -> int | None:
        """The block steps of the first convergence check, or ``None``: ``auto``'s prediction
        exceeds the budget ``max_steps`` (the caller falls back to ``eigh``).

        :data:`FIRST_CHECK_FRACTION` (0.55) of :meth:`predicted_steps` with ``L`` the largest
        Ritz value after :data:`PROBE_STEPS` steps (run here), where GGN Grams converge (0.50-0.67
        of it on the digits CNN): a check (one ``eigh`` of the projection) costs a few
        block steps, and one before convergence only measures the rate. A Ritz value is at most
        ``||S K||`` and reaches it within a few steps when the top of the spectrum stands apart,
        as in GGN spectra; the ``O(r^2)`` bound :meth:`_gram_bound` over-estimates the digits CNN's
        ``||K||_2`` 2-3x as it trains, which put the check up to 11 steps (a third of the run)
        past convergence within 60 training steps. An unknown horizon checks after 3 steps."""
        if horizon is None:
            return 3
        lanczos.extend(min(PROBE_STEPS, max_steps))
        if lanczos.applied == lanczos.size:  # invariant, or the capacity is reached: check now
            return lanczos.steps
        theta = float(lanczos.projection()[0].max(initial=0.0))
        predicted = self.predicted_steps(horizon, theta)
        assert predicted is not None
        if self.propagator == "auto" and predicted > max_steps:
            return None
        return max(3, lanczos.steps, math.ceil(FIRST_CHECK_FRACTION * predicted))

    def _apply_krylov(
        self, inputs: list[Tensor], table: CoefficientTable, terms: Terms, max_steps: int, horizon: float | None
    ) -> list[Tensor] | None:
        """The table by block Lanczos on the Gram (:class:`thermo.krylov.GramLanczos`).

        Every output column is ``D + U Q z`` with ``D = sum f_c(lam) x_i`` (exact) and ``z`` the
        Krylov coefficients of ``sum h_c(B) W0_i``, ``h_c(x) = (f_c(lam + x) - f_c(lam)) / x``.
        The parameter-space norm of the correction is ``|z|`` (``U Q`` has orthonormal columns),
        so the stopping rule is in the norm of the result.

        A check after ``s`` block steps reads the changes of the coefficients over the last
        steps from ``z_s`` alone (one ``eigh`` of the projection ``T``): ``e1 = max |z_s -
        z_(s-1)| / (krylov_tol |D + U Q z_s|)`` over the output columns, taken as
        :data:`CHANGE_MARGIN` times the norm of ``z_s``'s rows on the newest block, estimates,
        in units of the tolerance, the error of ``z_(s-1)``, and ``e2`` (``z_(s-1) - z_(s-2)``,
        from the rows on the block before it) that of ``z_(s-2)``. ``e1 <= 1`` stops (the usual
        heuristic: ``z_s`` is better than ``z_(s-1)``). While the changes fall, ``rho = e1 / e2`` is the
        error's factor per step, and the geometric tail ``e1 rho / (1 - rho)`` bounds the
        error of ``z_s`` once ``rho <= 1/2``: ``<= 1`` stops one step earlier (Lanczos converges
        superlinearly, so the last step's rate over-estimates the next ones'). Otherwise the
        next check goes where that rate predicts an error ``<= 1`` (at least 1 and at most
        ``max(2, s / 2)`` steps on; ``max(2, s / 8)`` while the changes do not fall; the first
        at :meth:`_first_check`, from ``horizon``): the block steps between checks run in one
        compiled call, and a check (an ``eigh`` of the projection) costs several steps,
        so it pays to check once, near convergence. Returns ``None`` when ``max_steps`` pass without
        convergence, or when the first check's prediction exceeds them (the caller falls back
        to ``eigh``)."""
        curv = self.curvature
        lam = self.damping
        widths = [x.shape[1] for x in inputs]
        offsets = np.concatenate([[0], np.cumsum(widths)])
        base = np.asarray(table(np.array([lam])), dtype=np.float64)[0]
        directs = [sum(float(base[c]) * inputs[i] for i, c in out) for out in terms]
        gram, core = self._gram_host()
        y = _host64(curv.ut(torch.cat(inputs, dim=1)))  # (r, k)
        start = y if core is None else core @ y
        # the direct parts in r-space (U^T D) and their norms, for the norm of each output
        ud = [sum(float(base[c]) * y[:, offsets[i] : offsets[i + 1]] for i, c in out) for out in terms]
        d_norm2 = [_host64(torch.linalg.vector_norm(d.to(torch.float64), dim=0)) ** 2 for d in directs]
        capacity = min(curv.rank, (max_steps + 1) * y.shape[1])
        lanczos = GramLanczos(gram, start, core, capacity=capacity, rank_floor=self.tol * self._gram_bound())
        if lanczos.size == 0:  # every input is in the null space of U (or zero)
            self.last_propagation = "krylov (0 block steps, basis 0)"
            return directs
        floor = 1e3 * float(np.finfo(np.float64).eps)

        def coefficients() -> list[np.ndarray]:
            """``z`` of every output on the projection of the basis so far, ``(m, w)`` each."""
            ritz, rot, coords = lanczos.projection()
            if core is not None and ritz.size:
                _check_realized(float(ritz.min()) + lam)
            # |x| below the floor: the first-order value h(floor) (the divided difference would cancel)
            small = floor * max(float(np.abs(ritz).max(initial=0.0)), 1e-300)
            step = np.where(np.abs(ritz) > small, ritz, small)
            values = np.asarray(table(np.concatenate([[lam], lam + step])), dtype=np.float64)
            h = (values[1:] - values[0]) / step[:, None]  # divided differences, (m, p)
            rotated = rot.T @ coords  # (m, k)
            return [
                rot @ sum(h[:, c : c + 1] * rotated[:, offsets[i] : offsets[i + 1]] for i, c in out)
                for out in terms
            ]

        check_at = self._first_check(lanczos, horizon, max_steps)
        if check_at is None:
            return None
        while True:
            lanczos.extend(max(0, min(check_at, max_steps) - lanczos.steps))
            steps = lanczos.steps
            done = lanczos.applied == lanczos.size  # invariant, or the capacity is reached
            zs = coefficients()
            converged = lanczos.invariant
            rate, error_now = None, math.inf  # the error's factor per step; the error of z_s (tolerance units)
            if not converged and steps >= 1:
                basis_ud = [lanczos.basis_rows @ u for u in ud]  # Q^T U^T D, (m, w)
                scales = []  # |D + U Q z_s| per output column, floored against cancellation
                for z, dn2, qud in zip(zs, d_norm2, basis_ud):
                    out_norm2 = dn2 + 2.0 * np.sum(qud * z, axis=0) + np.sum(z**2, axis=0)
                    term_scale = np.sqrt(dn2) + np.linalg.norm(z, axis=0)
                    scale = np.maximum(np.sqrt(np.clip(out_norm2, 0.0, None)), 1e-3 * term_scale)
                    scales.append(self.krylov_tol * np.maximum(scale, 1e-300))
                newest = lanczos.applied_after(steps - 1)  # z_s's rows on the newest block start here
                e1 = CHANGE_MARGIN * _largest_rows(zs, newest, None, scales)
                converged = e1 <= 1.0
                if not converged and steps >= 2:
                    e2 = CHANGE_MARGIN * _largest_rows(zs, lanczos.applied_after(steps - 2), newest, scales)
                    if 0.0 < e1 < e2:
                        rate = e1 / e2
                        error_now = e1 * rate
                        converged = rate <= 0.5 and error_now / (1.0 - rate) <= 1.0
            if converged:
                break
            if done and (lanczos.invariant or lanczos.size >= curv.rank):
                break  # every direction of the space is in the basis: exact up to rounding
            if done or steps >= max_steps:  # the budget (or the capacity it sized) is spent
                return None
            most = max(2, steps // 2)
            if rate is not None:
                ahead = math.ceil(math.log(error_now) / -math.log(rate)) if error_now > 1.0 else 1
                gap = min(max(ahead, 1), most)
            else:
                gap = max(2, steps // 8)
            check_at = steps + gap
        self.last_propagation = f"krylov ({lanczos.steps} block steps, basis {lanczos.applied})"
        low = lanczos.basis_rows.T @ np.concatenate(zs, axis=1)  # (r, sum of output widths)
        low = torch.as_tensor(low, dtype=self.dtype, device=self.device)
        lifted = curv.u(low)
        low_widths = [z.shape[1] for z in zs]
        return [d + up for d, up in zip(directs, torch.split(lifted, low_widths, dim=1))]


def _largest_rows(z: list[np.ndarray], lo: int, hi: int | None, scales: list[np.ndarray]) -> float:
    """The largest ``|z[lo:hi]| / scale`` over the output columns: per output, the norm of the
    Krylov coefficients ``(m, w)`` on the basis rows ``[lo, hi)`` against a scale ``(w,)`` per column."""
    return max((float((np.linalg.norm(zo[lo:hi], axis=0) / sc).max(initial=0.0)) for zo, sc in zip(z, scales)),
               default=0.0)


def _host64(x: Tensor) -> np.ndarray:
    """A tensor as a host float64 array (from a host float32 one by NumPy's conversion, which
    takes half of torch's time on a 576 x 576 Gram)."""
    x = x.detach()
    if x.device.type == "cpu" and x.dtype == torch.float32:
        return x.numpy().astype(np.float64)
    return x.to("cpu", torch.float64).numpy()


def _check_realized(lowest: float) -> None:
    """Refuse a realized ``U S U^T + damping I`` with an eigenvalue ``lowest <= 0``."""
    if not lowest > 0:
        raise NotPositiveDefiniteError(
            f"the realized matrix U S U^T + damping I has eigenvalue {lowest:.3e} <= 0: the programmed "
            "curvature (e.g. its quantized arrays) lost definiteness; use more coupling bits (bits_A) "
            "or more damping"
        )


# ------------------------------------------------------------------------------------------------
# Krylov path
def _lanczos_table(
    matvec: Callable[[Tensor], Tensor],
    x: Tensor,
    table: CoefficientTable,
    needed: Sequence[Sequence[int]],
    max_steps: int,
    tol: float | None,
) -> Tensor:
    """``table[:, c](A) x[:, j]`` for every column ``j`` and table column ``c``: ``(N, k, p)``.

    Lanczos with full reorthogonalization (classical Gram-Schmidt, twice), all columns in lock
    step (one batched ``matvec`` of the active columns per step). Column ``j`` stops at
    ``max_steps`` (capped at ``N``), at breakdown (an invariant subspace: the result is then exact
    up to rounding), or, with ``tol``, once the relative change of its Lanczos coefficients
    ``f(T_m) e_1`` between consecutive steps, for the table columns ``needed[j]``, is ``<= tol``.
    """
    n, k = x.shape
    eps = torch.finfo(x.dtype).eps
    steps = min(int(max_steps), n)
    norms = torch.linalg.vector_norm(x, dim=0)
    norms_h = norms.detach().cpu().to(torch.float64).numpy()
    basis = torch.zeros((steps, n, k), dtype=x.dtype, device=x.device)  # Lanczos vectors
    basis[0] = x / torch.where(norms > 0, norms, torch.ones_like(norms))
    alphas: list[np.ndarray] = []
    betas: list[np.ndarray] = []
    done = norms_h == 0
    size = np.zeros(k, dtype=int)
    prev: list[np.ndarray | None] = [None] * k
    final: list[np.ndarray | None] = [None] * k
    anorm = np.zeros(k)
    for j in range(steps):
        active = np.flatnonzero(~done)
        if active.size == 0:
            break
        idx = torch.as_tensor(active, device=x.device)
        w = torch.zeros_like(x)
        w[:, idx] = matvec(basis[j][:, idx])
        alpha = (basis[j] * w).sum(0)
        w = w - alpha * basis[j]
        if j > 0:
            w = w - torch.as_tensor(betas[-1], dtype=x.dtype, device=x.device) * basis[j - 1]
        stacked = basis[: j + 1]
        for _ in range(2):
            w = w - torch.einsum("jnk,jk->nk", stacked, torch.einsum("jnk,nk->jk", stacked, w))
        beta = torch.linalg.vector_norm(w, dim=0)
        alphas.append(alpha.detach().cpu().to(torch.float64).numpy())
        beta_h = beta.detach().cpu().to(torch.float64).numpy()
        anorm = np.maximum(anorm, np.maximum(np.abs(alphas[-1]), beta_h))
        a_arr, b_arr = np.array(alphas), np.array(betas) if betas else np.zeros((0, k))
        for col in active:
            tri = np.diag(a_arr[:, col])
            if j > 0:
                off = b_arr[:, col]
                tri += np.diag(off, 1) + np.diag(off, -1)
            theta, s = np.linalg.eigh(tri)
            coef = s @ (np.asarray(table(theta), dtype=np.float64) * s[0][:, None])  # f(T) e_1, (j+1, p)
            breakdown = beta_h[col] <= 100 * math.sqrt(n) * eps * anorm[col]
            converged = False
            if tol is not None and prev[col] is not None and len(needed[col]):
                sel = list(needed[col])
                new = coef[:, sel]
                old = np.vstack([prev[col][:, sel], np.zeros((1, len(sel)))])
                converged = bool(np.linalg.norm(new - old) <= tol * np.linalg.norm(new))
            prev[col] = coef
            if breakdown or converged or j + 1 == steps:
                done[col], size[col], final[col] = True, j + 1, coef
        betas.append(beta_h)
        if j + 1 < steps:
            nxt = w / torch.where(beta > 0, beta, torch.ones_like(beta))
            nxt[
                :,
                torch.as_tensor(np.flatnonzero(done), device=x.device, dtype=torch.long),
            ] = 0
            basis[j + 1] = nxt
    p = np.asarray(table(np.ones(1))).shape[1]
    out = torch.zeros((n, k, p), dtype=x.dtype, device=x.device)
    for col in range(k):
        if final[col] is None:
            continue
        c = torch.as_tensor(final[col] * norms_h[col], dtype=x.dtype, device=x.device)
        out[:, col, :] = basis[: size[col], :, col].T @ c  # (N, m) @ (m, p)
    return out


def lanczos_apply(
    matvec: Callable[[Tensor], Tensor],
    v: Tensor,
    f: Callable[[np.ndarray], np.ndarray],
    m: int = 40,
    *,
    tol: float | None = None,
) -> Tensor:
    """``f(A) v ~= |v| Q_m f(T_m) e_1`` for symmetric ``A`` given by ``matvec`` (``(N, k) -> (N, k)``).

    ``v``: ``(N,)`` or ``(N, k)`` (columns run in lock step, each with its own Krylov space);
    ``f`` maps a float64 array of Ritz values to values of the same shape. ``m``: the number of
    Lanczos steps (full reorthogonalization; memory ``O(N m k)``), capped at ``N``. Stopping: a
    column stops after ``m`` steps, at breakdown (invariant subspace, exact result), or, when
    ``tol`` is given, once the relative change of ``f(T_j) e_1`` between consecutive steps is
    ``<= tol`` (a heuristic: it can stop early on a plateau; ``tol=None`` runs the ``m`` steps).
    For ``A = U U^T + lam I`` (at most ``r + 1`` distinct eigenvalues) ``m >= r + 1`` is exact.
    """
    cols = v[:, None] if v.ndim == 1 else v
    if cols.ndim != 2:
        raise ShapeMismatchError(f"v must have shape (N,) or (N, k), got {tuple(v.shape)}")
    if isinstance(m, bool) or int(m) != m or m < 1:
        raise InputError(f"m (Lanczos steps) must be an integer >= 1, got {m!r}")
    table = lambda mu: np.asarray(f(mu), dtype=np.float64).reshape(-1, 1)
    out = _lanczos_table(matvec, cols, table, [[0]] * cols.shape[1], int(m), tol)[:, :, 0]
    return out[:, 0] if v.ndim == 1 else out


class KrylovOU(_OUBase):
    """The operations of :class:`LowRankOU` on Lanczos approximations of the matrix functions.

    For ``A`` given only by ``matvec`` (``(N, k) -> (N, k)``, e.g. ``U (U^T v) + lam v`` with
    ``U`` a GGN factor too wide for ``eigh``). ``n``: ``N``; ``kappa``: as in :class:`LowRankOU`;
    ``max_steps`` and ``tol``: the stopping rules of :func:`lanczos_apply` (default: stop when
    the coefficients change by less than ``1e-10`` relative, float64, ``1e-5`` otherwise, or after
    ``max_steps``). Each input vector (``x0``, ``g``, noise) gets its own Krylov space; all run in
    lock step, so a draw costs at most ``max_steps`` batched matvecs. Drawn noise is exact in law
    only to the accuracy of the Lanczos approximation of ``sqrt(c_t)(A) z``.
    """

    def __init__(
        self,
        matvec: Callable[[Tensor], Tensor],
        n: int,
        kappa: float,
        *,
        max_steps: int = 40,
        tol: float | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ShapeMismatchError(f"n (the dimension N) must be a positive integer, got {n!r}")
        if isinstance(max_steps, bool) or int(max_steps) != max_steps or max_steps < 1:
            raise InputError(f"max_steps must be an integer >= 1, got {max_steps!r}")
        self.matvec = matvec
        self.n = int(n)
        self.kappa = _check_kappa(kappa)
        self.max_steps = int(max_steps)
        self.dtype, self.device = dtype, torch.device(device)
        self.tol = (1e-10 if dtype == torch.float64 else 1e-5) if tol is None else float(tol)

    @classmethod
    def from_curvature(cls, curvature: LowRankCurvature, kappa: float, **kwargs: object) -> KrylovOU:
        """From a :class:`LowRankCurvature`, using its matvec (no ``eigh`` of the Gram matrix)."""
        kwargs.setdefault("dtype", curvature.dtype)
        kwargs.setdefault("device", curvature.device)
        return cls(curvature.matvec, curvature.n, kappa, **kwargs)  # type: ignore[arg-type]

    def _apply_table(
        self, inputs: list[Tensor], table: CoefficientTable, terms: Terms, horizon: float | None = None
    ) -> list[Tensor]:
        widths = [x.shape[1] for x in inputs]
        needed_by_input: list[set[int]] = [set() for _ in inputs]
        for out in terms:
            for i, c in out:
                needed_by_input[i].add(c)
        needed = [sorted(needed_by_input[i]) for i, w in enumerate(widths) for _ in range(w)]
        res = _lanczos_table(
            self.matvec,
            torch.cat(inputs, dim=1),
            table,
            needed,
            self.max_steps,
            self.tol,
        )
        parts = torch.split(res, widths, dim=1)
        return [sum(parts[i][:, :, c] for i, c in out) for out in terms]


# ------------------------------------------------------------------------------------------------
def euler_maruyama(
    matvec: Callable[[Tensor], Tensor],
    x0: object,
    g: object,
    t: float,
    dt: float,
    kappa: float,
    n_paths: int,
    generator: torch.Generator | None = None,
    *,
    n_samples: int | None = None,
    interval: float | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Reference integrator: ``x <- x - dt (A x - g) + sqrt(2 kappa dt) xi`` over ``n_paths`` paths.

    ``matvec``: ``(N, k) -> (N, k)``; ``x0, g``: ``(N,)`` (shared by all paths) or
    ``(N, n_paths)``; ``t, dt`` in tau (the step is ``t / ceil(t / dt)``). Returns the final states
    ``(N, n_paths)``; with ``n_samples`` and ``interval`` also the readout average over samples at
    ``t - (n-1) interval, ..., t`` (each snapped to the nearest grid time: an ``O(dt)`` error), as
    ``(average, final)``. Biases: ``O(dt)`` (per mode the stationary variance is
    ``kappa / (mu (1 - mu dt / 2))``); stable for ``dt < 2 / lambda_max(A)``. This is the path to
    extend for non-idealities that break linearity (rails, drift), which the exact paths omit.
    """
    t, kappa = _check_time(t), _check_kappa(kappa)
    dt = float(dt)
    if not math.isfinite(dt) or dt <= 0:
        raise InputError(f"dt must be finite and > 0, got {dt}")
    if isinstance(n_paths, bool) or int(n_paths) != n_paths or n_paths < 1:
        raise InputError(f"n_paths must be an integer >= 1, got {n_paths!r}")
    g_t = torch.as_tensor(g)
    dtype = g_t.dtype if g_t.is_floating_point() else torch.float64
    n = g_t.shape[0] if g_t.ndim else 0
    x = _as_columns(x0, n, "x0", dtype, g_t.device)
    gc = _as_columns(g_t, n, "g", dtype, g_t.device)
    for name, c in (("x0", x), ("g", gc)):
        if c.shape[1] not in (1, n_paths):
            raise ShapeMismatchError(f"{name} must have 1 or n_paths = {n_paths} columns, got {c.shape[1]}")
    steps = max(1, math.ceil(t / dt - 1e-9)) if t > 0 else 0
    h = t / steps if steps else 0.0
    x = x.expand(n, n_paths).clone()
    sample_at: set[int] = set()
    if n_samples is not None:
        ns, iv = _check_readout(t, n_samples, 0.0 if interval is None else interval)
        sample_at_list = [round((t - (ns - 1 - j) * iv) / h) if steps else 0 for j in range(ns)]
        if len(set(sample_at_list)) != ns:
            raise InputError(f"dt = {dt:g} is too coarse to resolve readout samples every {iv:g}")
        sample_at = set(sample_at_list)
        total = torch.zeros_like(x)
        if 0 in sample_at:
            total += x
    noise = math.sqrt(2.0 * kappa * h)
    for step in range(1, steps + 1):
        x = x - h * (matvec(x) - gc)
        if noise > 0:
            x = x + noise * torch.randn(x.shape, generator=generator, dtype=dtype, device=x.device)
        if step in sample_at:
            total += x
    if n_samples is None:
        return x
    return total / len(sample_at), x
