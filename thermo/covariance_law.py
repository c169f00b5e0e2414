"""The inverse's covariance readout drawn from its law instead of sampling its path.

The device inverts ``A_hat`` by averaging ``S = (1/N) sum_i x_i x_i^T`` over ``N`` readings taken
every ``h`` (tau) after a burn-in of ``B`` sample intervals from zero volts (``b = 0``). For
overdamped, linear, symmetric realized dynamics (what :mod:`thermo.exact` integrates) the modes
``y = V^T x`` of ``A_hat = V diag(lam) V^T`` are independent AR(1) chains: with
``rho_j = exp(-lam_j h)``, ``s_j = kT / lam_j`` and readings at steps ``t = B + 1, ..., B + N``,

    ``C_j(t, t') = Cov(y_j(t), y_j(t')) = s_j rho_j^|t - t'| (1 - rho_j^(2 min(t, t')))``

(the start at zero included exactly). ``S' = V^T S V`` then has, exactly (Isserlis' theorem):

* ``E S'_jj = m_j = s_j (1 - rho_j^(2B) (1/N) sum_t rho_j^(2t))`` and ``E S'_jk = 0`` (``j != k``);
* ``Var S'_jk = D_jk`` and ``Var S'_jj = 2 D_jj`` with ``D_jk = (1/N^2) sum_{t,t'} C_j C_k``;
* distinct entries uncorrelated (every cross moment has a mode appearing an odd number of times,
  or factors into independent modes).

``N^2 D_jk = s_j s_k sum_q a_q F(c, e_q)`` expands ``(1 - rho_j^(2m))(1 - rho_k^(2m))`` into four
geometric terms (``c = (lam_j + lam_k) h``; ``e_q`` in ``0, 2 lam_j h, 2 lam_k h, 2c``, weights
``1, -rho_j^(2B), -rho_k^(2B), (rho_j rho_k)^(2B)``), each the finite double sum
``F(c, e) = sum_{i,l=1}^N e^(-c|i-l|) e^(-e min(i,l))`` in closed form (:func:`_pair_sum`).
Cost ``O(d^2)`` whatever ``N``.

The draw (:func:`draw_second_moment`): Gaussian off-diagonals of variance ``D_jk``, a Gamma of
mean ``m_j`` and variance ``2 D_jj`` on the diagonal (positive, and the exact law of ``S'_jj`` for
independent samples, ``s chi2_N / N``), rotated once, ``S = V S' V^T``: two GEMMs.

**Where it is accurate** (:func:`accuracy_refusal`). The law matches every entry's first two
moments and the entries' correlations exactly; it leaves out their dependence beyond
correlation and their higher cumulants, whose weight is set by the effective sample count
``nu_j = 2 m_j^2 / Var S'_jj`` (``N / coth(lam_j h)`` in stationarity; smallest at the slowest
mode). (1) Dependence: ``S'_jk`` and ``S'_jl`` share ``y_j``, so ``Cov(S'_jk^2, S'_jl^2) =
s_j^2 s_k s_l 2 / nu_j^3``-like terms, ``~d^3`` of them, add ``2 d / nu`` to the relative variance
of any quadratic functional (the squared Frobenius error: 1.16-1.20 measured against Wishart
samples where 1.2 is predicted; ``tests/thermo/test_covariance_law.py`` checks it on the path), and move the extreme eigenvalues of ``S'`` by
``O(d / nu)`` (Marchenko-Pastur against the semicircle of independent entries). (2) Per entry:
off-diagonal excess kurtosis ``6 / nu``; the diagonal's skewness, ``2 sqrt(2/nu)`` for the
Gamma, is up to 1.5x that for strongly correlated readings. So the law is used only when
``nu_min >= max(LAW_MIN_EFFECTIVE_SAMPLES, LAW_EFFECTIVE_SAMPLES_PER_UNIT * d)``: the spread of
the squared Frobenius error is then right to 10% (its standard deviation to 5%), the skewness
of a diagonal entry to 0.1, and ``S'`` stays positive definite (standardized entries of variance
at most ``1 / nu_min``: its spectrum lies within ``1 +- 2 sqrt(d / nu_min) = 1 +- 0.45``). A
plan at a relative target ``eps`` has ``nu ~ d / eps^2``: every target below about 0.2 is inside.
Below it the path sampler, which stays the reference, runs.

Quantized readings (under the dither condition of :func:`thermo.readout.readout_law_refusal`)
add ``e`` independent of ``x``, white in time and across units (:class:`~thermo.readout.QuantizationNoise`):
``S_q = S + X + E_q`` with ``X = (1/N) sum (x e^T + e x^T)`` and ``E_q = (1/N) sum e e^T``. In the
eigenbasis ``X'`` has ``Var X'_jk = delta^2 (m_j + m_k) / N`` and ``Var X'_jj = 4 delta^2 m_j / N``
(``delta^2 = E e^2``), uncorrelated with ``S'`` and between entries; ``E_q`` in the units' basis
has mean ``delta^2 I`` (the bias), ``Var = delta^4 / N`` off the diagonal and ``Var(e^2) / N`` on it,
uncorrelated. Both are added to the draw (``X'`` into the eigenbasis variances, ``E_q`` after the
rotation), so every entry's mean and variance in the units' basis stay exact.

Underdamped (two-dimensional) modes are not covered: the path is sampled for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from .backends import Array, ArrayBackend, RandomSource
from .readout import QuantizationNoise

LAW_MIN_EFFECTIVE_SAMPLES = 200.0
"""Fewest effective samples of the slowest mode for the law, whatever ``d`` (per-entry shape)."""

LAW_EFFECTIVE_SAMPLES_PER_UNIT = 20.0
"""Effective samples of the slowest mode per unit ``d`` for the law (the dependence between entries)."""


# ------------------------------------------------------------------------------------------------
# finite geometric sums (rates >= 0; every exponent kept <= 0, so nothing overflows). Scalar
# kernels compiled as ufuncs: elementwise on arrays, and callable per pair from the compiled
# loop of :func:`_variance_matrix` (the d (d + 1) / 2 pairs in one pass, no temporaries). No
# signatures: each compiles (or loads from the cache) at its first call, not at import, where
# the eager float64 loops added 0.14 s to every ``import thermo``.
_NEGLIGIBLE = 1e-18  # a start-up weight rho^(2B) below this leaves no trace in float64
_UFUNC = dict(cache=True, nopython=True)


@numba.vectorize(**_UFUNC)
def _geo(rate: float, count: float) -> float:
    """``sum_{m=1}^{count} exp(-rate m)`` for ``rate > 0`` (``count`` may be 0)."""
    return math.exp(-rate) * math.expm1(-rate * count) / math.expm1(-rate)


@numba.vectorize(**_UFUNC)
def _geo0(rate: float, count: float) -> float:
    """:func:`_geo` for ``rate >= 0`` (``count`` where the rate is 0)."""
    return _geo(rate, count) if rate > 0 else count


@numba.njit(cache=True)
def _stationary_from(decay: float, step_m1: float, window_m1: float, n: float) -> float:
    """``F(c, 0)`` (:func:`_stationary_pair_sum`) from ``decay = exp(-c)``, ``step_m1 =
    expm1(-c)`` and ``window_m1 = expm1(-c (n - 1))``: ``2 / expm1(c) = -2 decay / step_m1``
    and ``geo(c, n - 1) = decay window_m1 / step_m1``."""
    return n - 2.0 * decay / step_m1 * ((n - 1.0) - decay * window_m1 / step_m1)


@numba.njit(cache=True)
def _expm1_sum(x: float, y: float) -> float:
    """``expm1(u + v)`` from ``x = expm1(u)`` and ``y = expm1(v)``: ``x + y + x y``, without
    cancellation for arguments of one sign (all of them here are <= 0)."""
    return x + y + x * y


@numba.vectorize(**_UFUNC)
def _stationary_pair_sum(c: float, n: float) -> float:
    """``F(c, 0) = sum_{i,l=1}^n exp(-c |i - l|) = n + 2 / expm1(c) (n - 1 - geo(c, n - 1))``."""
    return _stationary_from(math.exp(-c), math.expm1(-c), math.expm1(-c * (n - 1.0)), n)


@numba.njit(cache=True)
def _pair_sum_from(geo_n: float, geo_n1: float, two_over: float, tail: float, geo0_diff: float) -> float:
    """``F(c, e)`` (:func:`_pair_sum`) from ``geo(e, n)``, ``geo(e, n - 1)``, ``2 / expm1(c)``,
    ``exp(-min(e, c) n)`` and ``geo0(|e - c|, n - 1)``."""
    return geo_n + two_over * (geo_n1 - tail * geo0_diff)


@numba.vectorize(**_UFUNC)
def _pair_sum(c: float, e: float, n: float) -> float:
    """``F(c, e) = sum_{i,l=1}^n exp(-c |i - l|) exp(-e min(i, l))`` for ``c, e > 0``.

    The diagonal gives ``geo(e, n)``; the pairs with ``min = m`` and lag ``1..n-m`` give
    ``2 sum_{m<n} e^{-e m} e^{-c} (1 - e^{-c (n - m)}) / (1 - e^{-c})``, i.e.
    ``2 / expm1(c) (geo(e, n - 1) - T)`` with ``T = sum_{m=1}^{n-1} e^{-e m - c (n - m)}
    = e^{-min(e, c) n} geo(|e - c|, n - 1)`` (the larger decay factored out: ``T`` is symmetric
    under ``m -> n - m``). The bracket cancels when ``c n`` is small (a window shorter than the
    correlation time: outside where the law is used)."""
    return _pair_sum_from(_geo(e, n), _geo(e, n - 1.0), 2.0 / math.expm1(c), math.exp(-min(e, c) * n),
                          _geo0(abs(e - c), n - 1.0))


@numba.njit(cache=True)
def _variance_matrix(s: np.ndarray, a: np.ndarray, n_burn: int, n: float) -> np.ndarray:
    """``D_jk = (s_j s_k / N^2) sum_{t,t'} C_j C_k / (s_j s_k)`` over the window (module
    docstring) for every mode pair, ``(d, d)`` (``a_j = lam_j h``): the pairs ``j <= k``
    computed, mirrored. Everything a pair needs is composed from per-mode exponentials
    (``exp(-c) = exp(-a_j) exp(-a_k)`` for ``c = a_j + a_k``, :func:`_expm1_sum` for the
    ``expm1``), but for ``geo0(|a_j - a_k|, n - 1)``, which a difference would cancel: so a pair
    costs a few flops, and two transcendental calls where the start-up terms (weighted
    ``rho^(2B)``, formed only where that weight is not negligible) enter."""
    d = s.size
    out = np.empty((d, d))
    scale = 1.0 / (n * n)
    decay, step_m1, window_m1 = np.exp(-a), np.expm1(-a), np.expm1(-a * (n - 1.0))
    start, end = np.exp(-2.0 * a * n_burn), np.exp(-a * n)
    # per mode, for the start-up terms: geo(2 a, n), geo(2 a, n - 1), and the parts of geo(2 c, .)
    geo2_n, geo2_n1 = _geo(2.0 * a, n), _geo(2.0 * a, n - 1.0)
    decay2, step2_m1 = np.exp(-2.0 * a), np.expm1(-2.0 * a)
    span2_m1, window2_m1 = np.expm1(-2.0 * a * n), np.expm1(-2.0 * a * (n - 1.0))
    for j in range(d):
        for k in range(j, d):
            c_decay = decay[j] * decay[k]
            c_step_m1 = _expm1_sum(step_m1[j], step_m1[k])
            c_window_m1 = _expm1_sum(window_m1[j], window_m1[k])
            total = _stationary_from(c_decay, c_step_m1, c_window_m1, n)
            w_j, w_k = start[j], start[k]
            if w_j > _NEGLIGIBLE or w_k > _NEGLIGIBLE:
                two_over = -2.0 * c_decay / c_step_m1  # 2 / expm1(c)
                diff = _geo0(abs(a[j] - a[k]), n - 1.0)  # geo0(|e - c|, n - 1) for e = 2 a_j and 2 a_k
                slow = max(end[j], end[k])  # exp(-min(a_j, a_k) n)
                if w_j > _NEGLIGIBLE:
                    total -= w_j * _pair_sum_from(geo2_n[j], geo2_n1[j], two_over, end[j] * slow, diff)
                if w_k > _NEGLIGIBLE:
                    total -= w_k * _pair_sum_from(geo2_n[k], geo2_n1[k], two_over, end[k] * slow, diff)
                if w_j > _NEGLIGIBLE and w_k > _NEGLIGIBLE:  # e = 2 c: |e - c| = c, min(e, c) = c
                    cc_decay, cc_step_m1 = decay2[j] * decay2[k], _expm1_sum(step2_m1[j], step2_m1[k])
                    geo_n = cc_decay * _expm1_sum(span2_m1[j], span2_m1[k]) / cc_step_m1
                    geo_n1 = cc_decay * _expm1_sum(window2_m1[j], window2_m1[k]) / cc_step_m1
                    geo_c = c_decay * c_window_m1 / c_step_m1  # geo(c, n - 1)
                    total += w_j * w_k * _pair_sum_from(geo_n, geo_n1, two_over, end[j] * end[k], geo_c)
            value = s[j] * s[k] * total * scale
            out[j, k] = value
            out[k, j] = value
    return out


# ------------------------------------------------------------------------------------------------
def diagonal_moments(
    eigenvalues: np.ndarray, kT: float, h: float, n_burn: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``E S'_jj`` (V^2) and ``Var S'_jj`` (V^4), each ``(d,)``, for readings every ``h`` (tau)
    after ``n_burn`` intervals from zero volts (thermal part only)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    s = kT / lam
    a = lam * h
    mean = s * (1.0 - np.exp(-2.0 * a * n_burn) * _geo(2.0 * a, n) / n)
    w = np.exp(-2.0 * a * n_burn)
    c, nf = 2.0 * a, float(n)
    total = _stationary_pair_sum(c, nf) - 2.0 * w * _pair_sum(c, c, nf) + w * w * _pair_sum(c, 2.0 * c, nf)
    var = 2.0 * s * s * total / nf**2
    return mean, var


def effective_samples(eigenvalues: np.ndarray, kT: float, h: float, n_burn: int, n: int) -> np.ndarray:
    """``nu_j = 2 (E S'_jj)^2 / Var S'_jj`` per mode, ``(d,)``: the number of independent
    readings that would give the diagonal entry its variance (``N / coth(lam_j h)`` in stationarity)."""
    mean, var = diagonal_moments(eigenvalues, kT, h, n_burn, n)
    return 2.0 * mean * mean / var


def accuracy_threshold(d: int) -> float:
    """Fewest effective samples of the slowest mode at which the law stands for the path (module
    docstring): ``max(LAW_MIN_EFFECTIVE_SAMPLES, LAW_EFFECTIVE_SAMPLES_PER_UNIT * d)``."""
    return max(LAW_MIN_EFFECTIVE_SAMPLES, LAW_EFFECTIVE_SAMPLES_PER_UNIT * d)


def accuracy_refusal(eigenvalues: np.ndarray, kT: float, h: float, n_burn: int, n: int) -> str | None:
    """Why the law does not stand for the path at this plan (``None`` when it does)."""
    nu = float(np.min(effective_samples(eigenvalues, kT, h, n_burn, n)))
    need = accuracy_threshold(np.asarray(eigenvalues).size)
    if nu >= need:
        return None
    return (f"the slowest mode has {nu:.3g} effective samples, below the covariance law's "
            f"{need:.3g} (max({LAW_MIN_EFFECTIVE_SAMPLES:g}, {LAW_EFFECTIVE_SAMPLES_PER_UNIT:g} d))")


@dataclass(frozen=True)
class CovarianceLaw:
    """The first two moments of the eigenbasis estimator ``S'`` (module docstring), readings
    included: ``mean (d,)`` is ``E S'_jj`` (V^2, the thermal part: the quantization bias is
    added in the units' basis); ``variance (d, d)`` is ``Var S'_jk`` (V^4, diagonal ``Var S'_jj``);
    ``quantization`` the readout's noise model (None for an ideal ADC) and ``n_samples`` ``N``."""

    mean: np.ndarray
    variance: np.ndarray
    n_samples: int
    quantization: QuantizationNoise | None = None


def covariance_law(
    eigenvalues: np.ndarray,
    kT: float,
    h: float,
    n_burn: int,
    n: int,
    quantization: QuantizationNoise | None = None,
) -> CovarianceLaw:
    """The law of ``S'`` for the overdamped modes ``eigenvalues`` (``(d,)``, of ``A_hat``), noise
    ``kT`` (V^2), readings every ``h`` (tau) after ``n_burn`` intervals from zero volts, ``n``
    readings, optionally quantized. ``O(d^2)`` time (the ``d (d + 1) / 2`` pairs ``j <= k``, one
    compiled pass: 2.3 ms at d = 513, the digits CNN's largest K-FAC factor, where NumPy row
    blocks took 11 ms)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    d = lam.size
    s, a, nf = kT / lam, lam * h, float(n)
    mean = diagonal_moments(lam, kT, h, n_burn, n)[0]
    variance = _variance_matrix(s, a, int(n_burn), nf)  # Var S'_jk = D_jk off the diagonal
    np.fill_diagonal(variance, 2.0 * np.diagonal(variance))
    if quantization is not None and quantization.variance > 0:  # the cross term X' (docstring)
        delta2 = quantization.variance
        variance += delta2 * (mean[:, None] + mean[None, :]) / nf
        variance[np.diag_indices(d)] += 2.0 * delta2 * mean / nf  # 4 delta^2 m_j / N in all
    return CovarianceLaw(mean, variance, n, quantization)


def _gamma_draws(mean: np.ndarray, variance: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Gamma variates of the given mean and variance by inversion of ``uniform`` (``(d,)``)."""
    from scipy.special import gammaincinv

    shape = mean * mean / variance
    u = np.clip(uniform, 1e-300, 1.0 - 1e-16)
    return gammaincinv(shape, u) * (variance / mean)


def draw_second_moment(
    law: CovarianceLaw, eigenvectors: Array, backend: ArrayBackend, rng: RandomSource, dtype: str
) -> Array:
    """One draw of ``S = V S' V^T`` (V^2, ``(d, d)`` on ``backend``), plus ``E_q`` when quantized.

    ``S'``: ``W = Z + Z^T`` of a standard normal ``Z`` gives independent ``N(0, 2)`` off-diagonal
    pairs, scaled to ``sqrt(Var S'_jk / 2)``; the diagonal is replaced by Gamma draws. Costs
    ``d^2`` normals (twice when quantized), ``d`` inversions of the Gamma law and two GEMMs.
    """
    d = law.mean.size
    off_std = np.sqrt(law.variance / 2.0)
    np.fill_diagonal(off_std, 0.0)
    z = rng.normal((d, d), dtype)
    w = z + z.T
    gamma = _gamma_draws(law.mean, np.diagonal(law.variance).copy(), backend.to_numpy(rng.uniform((d,), "float64")))
    eye = backend.eye(d, dtype)
    modes = w * backend.asarray(off_std, dtype) + eye * backend.asarray(gamma[None, :], dtype)
    second = backend.matmul(eigenvectors, backend.matmul(eigenvectors, modes).T)  # V (V S')^T = V S' V^T
    q = law.quantization
    if q is not None and q.variance > 0:  # E_q in the units' basis: off-diagonal delta^4 / N, diagonal Var(e^2) / N
        zq = rng.normal((d, d), dtype)
        wq = zq + zq.T
        off = q.variance / math.sqrt(2.0 * law.n_samples)
        diag = math.sqrt(q.square_variance / law.n_samples) / 2.0
        second = second + wq * off + eye * (wq * (diag - off) + q.variance)
    return 0.5 * (second + second.T)


def law_bytes(d: int, itemsize: int) -> int:
    """Peak bytes of one law draw on a ``d x d`` matrix: the host's variance matrix and its
    square roots (float64), and on the backend the normals, their symmetrization, the eigenbasis
    draw and the rotation (four ``d x d``)."""
    return int(8 * 2 * d * d + itemsize * 6 * d * d)
