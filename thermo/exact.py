"""Exact simulation of the linear Langevin dynamics in the eigenbasis of a symmetric ``A_hat``.

With ``A_hat = V diag(lam) V^T`` and ``y = V^T x`` the dynamics split into ``d`` independent
scalar (overdamped) or two-dimensional (underdamped: position and velocity) Ornstein-Uhlenbeck
processes, in units of ``tau``:

* overdamped:  ``du = -lam u dt + sqrt(2 kT) dW``, ``u = y - mu`` with ``mu = V^T b_hat / lam``;
* underdamped: ``du = w dt``, ``m dw = -lam u dt - w dt + sqrt(2 kT) dW``.

For either, a step of length ``h`` is an affine Gaussian map ``z -> Phi z + N(0, Q)`` with
``Q = S_inf - Phi S_inf Phi^T`` and stationary covariance ``S_inf = diag(kT/lam[, kT/m])``, exact
for any ``h``. Everything here is exact in law; no time discretization error is made.

Window averages of a regularly sampled readout are drawn from their closed-form law: the map is
augmented with an accumulator of the position and raised to the ``N``-th power by repeated
squaring (``O(d log N)``), so the time-averaged solution costs ``O(d^2)`` whatever the window.

What a run through this integrator represents (:data:`MODELS`, read by the solver's routing,
:mod:`thermo.capabilities`): any static symmetric realized matrix, so the coupling DAC (either
rounding) and symmetric mismatch, which :mod:`thermo.program` applies before the
eigendecomposition; the quantized input; ADC rounding and the rails on the readout, applied to
the samples rotated back to ``x`` (:mod:`thermo.readout`); both regimes. Not: a non-symmetric
matrix (asymmetric mismatch), couplings that change during the run (drift) or rails inside the
dynamics (non-linear): no eigenbasis diagonalizes those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numba
import numpy as np

from .backends import Array, ArrayBackend, RandomSource
from .capabilities import Nonideality
from .errors import InputError, NotPositiveDefiniteError
from .memory import check_memory
from .validation import check_count, check_kT, check_rhs, check_system, check_times, to_host

MODELS: frozenset[Nonideality] = frozenset({
    Nonideality.COUPLING_QUANTIZATION,
    Nonideality.INPUT_QUANTIZATION,
    Nonideality.ADC_QUANTIZATION,
    Nonideality.STOCHASTIC_ROUNDING,
    Nonideality.READOUT_CLIPPING,
    Nonideality.SYMMETRIC_MISMATCH,
    Nonideality.UNDERDAMPED,
})
"""The non-idealities a run through the eigenbasis integrator represents exactly (module docstring)."""

# ------------------------------------------------------------------------------------------------
# per-mode transition laws (host, float64: the coefficients need the precision, they are O(d))
def mode_transition(lam: np.ndarray, h: float, kT: float, mass: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact one-step law of every mode over a time ``h`` (units of tau).

    Returns ``Phi`` and ``Q`` of shape ``(d, k, k)`` with ``k = 1`` (overdamped, ``mass == 0``)
    or ``k = 2`` (underdamped: position, velocity).
    """
    lam = np.asarray(lam, dtype=np.float64)
    if mass == 0:
        rho = np.exp(-lam * h)
        q = -kT / lam * np.expm1(-2.0 * lam * h)
        return rho[:, None, None], q[:, None, None]
    phi = underdamped_propagator(lam, h, mass)
    s_inf = np.zeros((lam.size, 2, 2))
    s_inf[:, 0, 0] = kT / lam
    s_inf[:, 1, 1] = kT / mass
    q = s_inf - phi @ s_inf @ np.swapaxes(phi, 1, 2)
    q = 0.5 * (q + np.swapaxes(q, 1, 2))
    return phi, q


def underdamped_propagator(lam: np.ndarray, h: float, mass: float) -> np.ndarray:
    """``exp(F h)`` for ``F = [[0, 1], [-lam/m, -1/m]]``, per mode, shape ``(d, 2, 2)``.

    Uses ``exp(F h) = e^{s h} [cosh(q h) I + sinh(q h)/q (F - s I)]`` with ``s = -1/(2m)`` and
    ``q^2 = s^2 - lam/m``; complex ``q`` covers the oscillating (underdamped) modes and a series
    covers critical damping (``q -> 0``).
    """
    s = -0.5 / mass
    q = np.sqrt((s * s - lam / mass).astype(np.complex128))
    z = q * h
    small = np.abs(z) < 1e-4
    cosh = np.where(small, 1 + z * z / 2, np.cosh(np.where(small, 1.0, z))).real
    sinhc = np.where(small, 1 + z * z / 6, np.sinh(np.where(small, 1.0, z)) / np.where(small, 1.0, z))
    sinh_over_q = (h * sinhc).real
    decay = np.exp(s * h)
    phi = np.empty((lam.size, 2, 2))
    phi[:, 0, 0] = decay * (cosh - s * sinh_over_q)
    phi[:, 0, 1] = decay * sinh_over_q
    phi[:, 1, 0] = decay * sinh_over_q * (-lam / mass)
    phi[:, 1, 1] = decay * (cosh + (-1.0 / mass - s) * sinh_over_q)
    return phi


def compose(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Affine Gaussian maps applied one after the other: ``second o first``."""
    f1, q1 = first
    f2, q2 = second
    q = f2 @ q1 @ np.swapaxes(f2, 1, 2) + q2
    return f2 @ f1, 0.5 * (q + np.swapaxes(q, 1, 2))


def power(step: tuple[np.ndarray, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The map applied ``n`` times, by repeated squaring (all powers of one map commute)."""
    f, q = step
    d, k, _ = f.shape
    result = (np.broadcast_to(np.eye(k), (d, k, k)).copy(), np.zeros((d, k, k)))
    base = step
    while n:
        if n & 1:
            result = compose(result, base)
        n >>= 1
        if n:
            base = compose(base, base)
    return result


def with_accumulator(step: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Augment a per-mode step with a running sum of the position after each step.

    State ``(z, S)`` with ``z' = Phi z + e`` and ``S' = S + z'_0``: shapes ``(d, k+1, k+1)``.
    """
    phi, q = step
    d, k, _ = phi.shape
    f = np.zeros((d, k + 1, k + 1))
    f[:, :k, :k] = phi
    f[:, k, :k] = phi[:, 0, :]
    f[:, k, k] = 1.0
    qa = np.zeros((d, k + 1, k + 1))
    qa[:, :k, :k] = q
    qa[:, k, :k] = q[:, 0, :]
    qa[:, :k, k] = q[:, :, 0]
    qa[:, k, k] = q[:, 0, 0]
    return f, qa


def psd_sqrt(q: np.ndarray) -> np.ndarray:
    """Symmetric square roots of a stack of small PSD matrices (robust to singular ones)."""
    w, u = np.linalg.eigh(q)
    return (u * np.sqrt(np.clip(w, 0.0, None))[:, None, :]) @ np.swapaxes(u, 1, 2)


def eigen_plan_bytes(d: int, c: int, *, samples_kept: int, itemsize: int, mass: float = 0.0) -> int:
    """Peak bytes of the eigenbasis integrator on a ``d x d`` matrix with ``c`` chains keeping
    ``samples_kept`` samples per chunk: the matrix, its eigenvectors and the eigensolver's
    workspace (about three ``d x d``), the mode states and the sampled chunk with its rotation
    back to the original basis (two ``samples_kept x d x c``)."""
    k = 1 if mass == 0 else 2
    return int(itemsize * (3 * d * d + (4 * k + 2) * d * c + 2 * samples_kept * d * c))


# ------------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _ar1_path_inplace(noise: np.ndarray, u0: np.ndarray, rho: np.ndarray, sigma: np.ndarray) -> None:
    """Overwrite ``noise`` (n, d, c) with ``u_j = rho u_{j-1} + sigma z_j``, ``u_{-1} = u0``.

    Time is the outer loop so the inner loop runs over contiguous memory (and vectorizes).
    """
    n, d, c = noise.shape
    for i in range(d):
        for col in range(c):
            noise[0, i, col] = rho[i] * u0[i, col] + sigma[i] * noise[0, i, col]
    for j in range(1, n):
        for i in range(d):
            r = rho[i]
            s = sigma[i]
            for col in range(c):
                noise[j, i, col] = r * noise[j - 1, i, col] + s * noise[j, i, col]


@dataclass
class ModeState:
    """Analog state in the eigenbasis: position deviation ``u = y - mu`` and velocity ``w``.

    Arrays of shape ``(d, c)`` on the backend; ``w`` is None for overdamped dynamics.
    """

    u: Array
    w: Array | None


class EigenOU:
    """Exact integrator for ``A_hat`` symmetric positive definite (dimensionless, chip units).

    ``kT`` in V^2; ``mass`` in units of tau^2 (0 for overdamped). Times are in units of tau.
    """

    def __init__(self, a_hat: Array, kT: float, mass: float, backend: ArrayBackend, dtype: str) -> None:
        self.backend = backend
        self.dtype = dtype
        self.kT = float(kT)
        self.mass = float(mass)
        w, v = backend.eigh(a_hat)
        self.eigenvalues = backend.to_numpy(w).astype(np.float64)
        self.eigenvectors = v
        if not self.eigenvalues[0] > 0:
            raise NotPositiveDefiniteError(
                "the realized coupling matrix is not positive definite "
                f"(smallest eigenvalue {self.eigenvalues[0]:.3e}); the dynamics would diverge"
            )

    @property
    def d(self) -> int:
        return self.eigenvalues.size

    @property
    def k(self) -> int:
        return 1 if self.mass == 0 else 2

    # --- basis changes --------------------------------------------------------------------------
    def to_modes(self, x: Array) -> Array:
        """``V^T x`` for ``x`` of shape ``(d, c)`` or ``(m, d, c)``."""
        return self._rotate(self.eigenvectors.T, x)

    def from_modes(self, y: Array) -> Array:
        """``V y`` for ``y`` of shape ``(d, c)`` or ``(m, d, c)``."""
        return self._rotate(self.eigenvectors, y)

    def _rotate(self, m: Array, x: Array) -> Array:
        """``m x`` for ``x`` ``(d, c)``, or for each of a stack ``(k, d, c)`` as one GEMM: a
        broadcast product runs as ``k`` matrix-vector products when ``c = 1`` (a chunk of
        readings), memory-bound at about a tenth of the GEMM's speed (d = 513: 0.22 s against
        0.02 s per 500 readings)."""
        if x.ndim == 2:
            return self.backend.matmul(m, x)
        k, d, c = x.shape
        rows = x.swapaxes(1, 2).reshape(k * c, d)  # every column of every matrix, as a row
        return self.backend.matmul(rows, m.T).reshape(k, c, d).swapaxes(1, 2)

    def mode_mean(self, b_hat: Array) -> Array:
        """Fixed point in the eigenbasis, ``V^T b_hat / lam``, shape ``(d, c)``."""
        lam = self.backend.asarray(self.eigenvalues[:, None], self.dtype)
        return self.to_modes(b_hat) / lam

    def state_from_x(self, x: Array, mu: Array, velocity: Array | None = None) -> ModeState:
        u = self.to_modes(x) - mu
        if self.k == 1:
            return ModeState(u, None)
        w = self.to_modes(velocity) if velocity is not None else self.backend.zeros(tuple(u.shape), self.dtype)
        return ModeState(u, w)

    def x_from_state(self, state: ModeState, mu: Array) -> Array:
        return self.from_modes(state.u + mu)

    # --- exact propagation ------------------------------------------------------------------------
    def _prepare(self, f: np.ndarray, q: np.ndarray) -> tuple[Array, Array | None]:
        """Move a per-mode map to the backend: coefficients and the noise square root."""
        b, dt = self.backend, self.dtype
        root = b.asarray(psd_sqrt(q), dt) if self.kT > 0 else None
        return b.asarray(f, dt), root

    def _affine(self, prepared: tuple[Array, Array | None], z: list[Array], rng: RandomSource | None) -> list[Array]:
        """Apply a prepared per-mode affine Gaussian map to the components ``z`` (each ``(d, c)``)."""
        coeff, root = prepared
        k = len(z)
        out = [sum(coeff[:, r, s][:, None] * z[s] for s in range(k)) for r in range(k)]
        if root is not None and rng is not None:
            noise = [rng.normal(tuple(z[0].shape), self.dtype) for _ in range(k)]
            out = [out[r] + sum(root[:, r, s][:, None] * noise[s] for s in range(k)) for r in range(k)]
        return out

    def propagate(self, state: ModeState, t: float, rng: RandomSource | None) -> ModeState:
        """The state after a time ``t`` (tau), drawn exactly; ``rng=None`` gives the mean."""
        if t == 0:
            return state
        prepared = self._prepare(*mode_transition(self.eigenvalues, t, self.kT, self.mass))
        z = self._affine(prepared, [state.u] if self.k == 1 else [state.u, state.w], rng)
        return ModeState(z[0], z[1] if self.k == 2 else None)

    def window_average(
        self, state: ModeState, h: float, n: int, rng: RandomSource | None
    ) -> tuple[Array, ModeState, np.ndarray]:
        """Draw, jointly and exactly, the average of ``n`` position samples taken every ``h``
        (the first one ``h`` after ``state``) and the state at the last sample.

        Returns ``(mean deviation in the eigenbasis (d, c), final state, variance (d,))``; the
        variance is that of each mode's average for a start in stationarity (host float64), the
        exact error law of the estimate once burn-in is over.
        """
        f, q = power(with_accumulator(mode_transition(self.eigenvalues, h, self.kT, self.mass)), n)
        comps = [state.u] if self.k == 1 else [state.u, state.w]
        comps.append(self.backend.zeros(tuple(state.u.shape), self.dtype))
        z = self._affine(self._prepare(f, q), comps, rng)
        final = ModeState(z[0], z[1] if self.k == 2 else None)
        # A stationary start adds the propagated stationary covariance of the initial state.
        s0 = np.zeros_like(q)
        s0[:, 0, 0] = self.kT / self.eigenvalues
        if self.k == 2:
            s0[:, 1, 1] = self.kT / self.mass
        total = f @ s0 @ np.swapaxes(f, 1, 2) + q
        return z[-1] / n, final, total[:, self.k, self.k] / n**2

    def sample_chunks(
        self, state: ModeState, h: float, n: int, rng: RandomSource, chunk: int
    ) -> Iterator[tuple[Array, ModeState]]:
        """Exact sample path of the positions: yields ``(u_chunk (m, d, c), state_after)``.

        ``u`` is the deviation from the fixed point in the eigenbasis, one sample every ``h``.
        """
        b, dt = self.backend, self.dtype
        if self.k == 1:
            f, q = mode_transition(self.eigenvalues, h, self.kT, self.mass)
            rho, sigma = f[:, 0, 0], np.sqrt(q[:, 0, 0])
            u = state.u
            done = 0
            while done < n:
                m = min(chunk, n - done)
                path = rng.normal((m,) + tuple(u.shape), dt) if self.kT > 0 else b.zeros((m,) + tuple(u.shape), dt)
                if b.name == "numpy":
                    _ar1_path_inplace(path, u, rho.astype(path.dtype), sigma.astype(path.dtype))
                else:
                    rho_b, sig_b = b.asarray(rho[:, None], dt), b.asarray(sigma[:, None], dt)
                    prev = u
                    for j in range(m):
                        path[j] = rho_b * prev + sig_b * path[j]
                        prev = path[j]
                u = path[-1]
                done += m
                yield path, ModeState(b.copy(u), None)
            return
        prepared = self._prepare(*mode_transition(self.eigenvalues, h, self.kT, self.mass))
        current = state
        done = 0
        while done < n:
            m = min(chunk, n - done)
            path = b.empty((m,) + tuple(state.u.shape), dt)
            for j in range(m):
                z = self._affine(prepared, [current.u, current.w], rng)
                current = ModeState(z[0], z[1])
                path[j] = current.u
            done += m
            yield path, current


@numba.njit(cache=True)
def _ar1_varying_inplace(noise: np.ndarray, u0: np.ndarray, rho: np.ndarray, sigma: np.ndarray) -> None:
    """Like :func:`_ar1_path_inplace` with per-step coefficients ``rho, sigma`` of shape (n, d)."""
    n, d, c = noise.shape
    for i in range(d):
        for col in range(c):
            noise[0, i, col] = rho[0, i] * u0[i, col] + sigma[0, i] * noise[0, i, col]
    for j in range(1, n):
        for i in range(d):
            r = rho[j, i]
            s = sigma[j, i]
            for col in range(c):
                noise[j, i, col] = r * noise[j - 1, i, col] + s * noise[j, i, col]


def sample_ou(
    a: Array,
    b: Array,
    x0: Array,
    times: np.ndarray,
    *,
    kT: float = 1.0,
    seed: int = 0,
    backend: ArrayBackend | None = None,
    dtype: str = "float64",
) -> Array:
    """Exact samples of the overdamped process ``dx = -(a x - b) dt + sqrt(2 kT) dW`` at
    ``times`` (strictly increasing, finite, shape ``(n,)``; ``times[0]`` is the time of ``x0``).

    ``a`` symmetric positive definite ``(d, d)``, ``b`` and ``x0`` of shape ``(d,)``, ``kT > 0``
    (V^2), ``seed`` an integer >= 0. The inputs get the solver's checks
    (:mod:`thermo.validation`: real dense arrays, square, finite, symmetric, positive definite,
    matching shapes) and a path above the memory budget is refused before it is allocated.
    Returns ``(n, d)`` with the first row ``x0``. Cost: one eigendecomposition, ``O(n d)`` for
    the recursion in the eigenbasis and one ``(n, d) x (d, d)`` GEMM to rotate back.
    """
    from .backends import NumpyBackend

    a_host = to_host(a, "a")
    b_host = to_host(b, "b")
    x0_host = to_host(x0, "x0")
    check_system(a_host, None, 1e-8)
    d = a_host.shape[0]
    check_rhs(b_host, d, "b", allow_matrix=False)
    check_rhs(x0_host, d, "x0", allow_matrix=False)
    times = check_times(times)
    kT = check_kT(kT)
    check_count(seed, "seed", minimum=0)
    if dtype not in ("float32", "float64"):
        raise InputError(f"dtype must be float32 or float64, got {dtype!r}")
    item = 4 if dtype == "float32" else 8
    n_times = times.size
    varying = n_times > 2 and np.ptp(np.diff(times)) > 1e-12 * max(1.0, float(np.diff(times)[0]))
    check_memory(
        eigen_plan_bytes(d, 1, samples_kept=n_times, itemsize=item) + 8 * n_times * d * (3 if varying else 0),
        f"an exact OU path of {n_times} samples in d = {d}",
        "fewer sample times per call (split the times and chain the calls through x0)",
    )
    be = backend if backend is not None else NumpyBackend()
    ou = EigenOU(be.asarray(0.5 * (a_host + a_host.T), dtype), kT, 0.0, be, dtype)
    rng = be.random(seed)
    steps = np.diff(times)
    mu = ou.mode_mean(be.asarray(b_host, dtype)[:, None])
    u0 = ou.to_modes(be.asarray(x0_host, dtype)[:, None]) - mu
    n = steps.size
    path = rng.normal((n, ou.d, 1), dtype)
    lam = ou.eigenvalues
    if n and np.ptp(steps) <= 1e-12 * max(1.0, steps[0]):
        f, q = mode_transition(lam, float(steps[0]), kT, 0.0)
        rho, sigma = f[None, :, 0, 0], np.sqrt(q[None, :, 0, 0])
    else:
        rho = np.exp(-np.outer(steps, lam))
        sigma = np.sqrt(-kT / lam * np.expm1(-2.0 * np.outer(steps, lam)))
    if be.name == "numpy":
        if rho.shape[0] == 1:
            _ar1_path_inplace(path, u0, rho[0].astype(path.dtype), sigma[0].astype(path.dtype))
        else:
            _ar1_varying_inplace(path, u0, rho.astype(path.dtype), sigma.astype(path.dtype))
    else:
        rho_b, sig_b = be.asarray(rho[..., None], dtype), be.asarray(sigma[..., None], dtype)
        prev = u0
        for j in range(n):
            r, s = (rho_b[0], sig_b[0]) if rho.shape[0] == 1 else (rho_b[j], sig_b[j])
            path[j] = r * prev + s * path[j]
            prev = path[j]
    y = path[:, :, 0] + mu[:, 0]  # (n, d) in the eigenbasis
    out = be.empty((n + 1, ou.d), dtype)
    out[0] = be.asarray(x0_host, dtype)
    out[1:] = be.matmul(y, ou.eigenvectors.T)
    return out
