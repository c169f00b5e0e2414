"""Stepwise integration of the Langevin dynamics, batched over chains as GEMMs.

Needed where the exact eigenbasis method does not apply: a non-symmetric realized coupling
matrix (independent mismatch of ``A_ij`` and ``A_ji``), drift of the couplings during the run,
and node voltages that saturate at the rails inside the dynamics. Also the reference that the
exact integrator is tested against.

Integrators (time in units of tau, state ``X`` of shape ``(d, c)``, one column per chain):

* ``euler_maruyama``: overdamped ``X <- (I - dt A) X + dt B + sqrt(2 kT dt) Z``, one GEMM per
  step; the fixed point is exact, the stationary variance of a mode is biased by a factor
  ``1 / (1 - lam dt / 2)``. Underdamped: symplectic Euler (velocity first).
* ``exact_step``: the exact affine Gaussian transition over ``dt`` for any stable linear drift
  (``Phi = expm(F dt)``, covariance by Van Loan's block exponential): no discretization bias,
  two GEMMs per step. Requires static couplings (no drift).

What a run through these integrators represents (:data:`INTEGRATOR_MODELS`, their union
:data:`MODELS`; read by the solver's routing, :mod:`thermo.capabilities`): everything of the
eigenbasis integrator (converters and symmetric mismatch applied around the run by
:mod:`thermo.program` and :mod:`thermo.readout`, both regimes) and any stable non-symmetric
static matrix (asymmetric mismatch); ``euler_maruyama`` also the drift of the couplings and the
rails inside the dynamics, which break the static linear law ``exact_step`` needs. Not the chip
size: the solver tiles before a block reaches an integrator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.linalg

from .backends import Array, ArrayBackend, RandomSource
from .capabilities import Nonideality
from .errors import DivergenceError, InputError, NotPositiveDefiniteError
from .exact import MODELS as EIGENBASIS_MODELS
from .exact import psd_sqrt
from .memory import check_memory
from .validation import check_finite, check_square

Integrator = str  # "euler_maruyama" | "exact_step"

INTEGRATOR_MODELS: dict[Integrator, frozenset[Nonideality]] = {
    "exact_step": EIGENBASIS_MODELS | {Nonideality.ASYMMETRIC_MISMATCH},
    "euler_maruyama": EIGENBASIS_MODELS
    | {Nonideality.ASYMMETRIC_MISMATCH, Nonideality.DRIFT, Nonideality.DYNAMICS_CLIPPING},
}
"""What each stepwise integrator represents, in the order ``auto`` prefers them (the exact
transition first: no discretization bias)."""

MODELS: frozenset[Nonideality] = frozenset().union(*INTEGRATOR_MODELS.values())
"""The non-idealities some stepwise integrator represents (module docstring)."""


def van_loan(drift: np.ndarray, diffusion: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact discretization of ``dz = F z dt + G dW`` over ``h``: ``(Phi, Q)``.

    ``diffusion`` is ``G G^T``. Uses ``expm([[-F, GG^T], [0, F^T]] h) = [[., E12], [0, E22]]``,
    ``Phi = E22^T``, ``Q = Phi E12`` (Van Loan 1978).
    """
    n = drift.shape[0]
    block = np.zeros((2 * n, 2 * n))
    block[:n, :n] = -drift
    block[:n, n:] = diffusion
    block[n:, n:] = drift.T
    e = scipy.linalg.expm(block * h)
    phi = e[n:, n:].T
    q = phi @ e[:n, n:]
    return phi, 0.5 * (q + q.T)


def stepwise_plan_bytes(d: int, c: int, *, itemsize: int, mass: float = 0.0, integrator: Integrator = "euler_maruyama") -> int:
    """Peak bytes of a stepwise run on ``d`` nodes with ``c`` chains: the stability checks'
    eigenvalues (a complex ``d x d`` copy), the step matrix (and noise root for ``exact_step``)
    of the ``n``-dimensional state (``n = d``, or ``2 d`` underdamped), Van Loan's ``2n x 2n``
    matrix exponential with its workspace (``exact_step``), and the chains' state, spare buffer
    and noise (``n x c`` each, with the velocity)."""
    n = d if mass == 0 else 2 * d
    checks = 8 * 4 * d * d
    matrices = itemsize * n * n * (2 if integrator == "exact_step" else 1)
    van_loan = 8 * 6 * (2 * n) ** 2 if integrator == "exact_step" else 0
    chains = itemsize * 5 * n * c
    return int(checks + matrices + van_loan + chains)


def spectral_abscissa_bound(a: np.ndarray) -> float:
    """Gershgorin bound on the largest ``|eigenvalue|`` of ``a`` (cheap, O(d^2))."""
    return float(np.abs(a).sum(axis=1).max())


@dataclass
class DriftProcess:
    """Slow relative drift of every coupling: ``A(t) = A0 * (1 + sigma D(t))``.

    ``D`` is a matrix of unit-variance OU processes with correlation time ``timescale`` (tau),
    symmetric when the coupling elements are shared. Updated exactly at each readout interval
    and held constant in between (the drift is slow against the sampling by construction).
    """

    sigma: float
    timescale: float
    symmetric: bool
    seed: int

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xD21F7]))
        self._d: np.ndarray | None = None

    def _fresh(self, n: int) -> np.ndarray:
        e = self._rng.standard_normal((n, n))
        if self.symmetric:
            e = np.triu(e) + np.triu(e, 1).T
        return e

    def perturbation(self, n: int, elapsed: float) -> np.ndarray:
        """Advance by ``elapsed`` (tau) and return the current relative perturbation ``sigma D``."""
        if self._d is None:
            self._d = self._fresh(n)  # stationary start: the chip has been drifting all along
        else:
            rho = math.exp(-elapsed / self.timescale)
            self._d = rho * self._d + math.sqrt(1 - rho * rho) * self._fresh(n)
        return self.sigma * self._d


class StepwiseLangevin:
    """Batched stepwise simulation of the chip with coupling matrix ``a_hat`` (``d x d``,
    dimensionless, possibly non-symmetric) and inputs ``b_hat`` (``d x c``, volts).

    ``mass`` in tau^2 (0 = overdamped), ``kT`` in V^2, ``dt`` in tau. ``clip`` saturates the node
    voltages at ``+-clip`` volts after every step (None: no rails inside the dynamics).
    """

    def __init__(
        self,
        a_hat: np.ndarray,
        b_hat: Array,
        *,
        kT: float,
        mass: float,
        dt: float,
        integrator: Integrator,
        backend: ArrayBackend,
        dtype: str,
        clip: float | None = None,
        drift: DriftProcess | None = None,
        divergence_limit: float = 1e8,
    ) -> None:
        if integrator not in ("euler_maruyama", "exact_step"):
            raise InputError(f"unknown integrator {integrator!r}: use euler_maruyama or exact_step")
        if integrator == "exact_step" and (drift is not None or clip is not None):
            raise InputError("exact_step needs static linear dynamics: use euler_maruyama with drift or clipping")
        a0 = np.asarray(a_hat)
        if a0.dtype.kind not in "fiu":
            raise InputError(f"a_hat must be a real float array, got dtype {a0.dtype}: pass .real or a real embedding")
        check_square(a0, "a_hat")
        self.a0 = a0.astype(np.float64, copy=False)
        check_finite(self.a0, "a_hat")
        self.d = self.a0.shape[0]
        if tuple(b_hat.shape)[:1] != (self.d,) or len(tuple(b_hat.shape)) != 2:
            raise InputError(f"b_hat must have shape ({self.d}, c) to match a_hat, got {tuple(b_hat.shape)}")
        check_memory(
            stepwise_plan_bytes(
                self.d, int(b_hat.shape[1]), itemsize=4 if dtype == "float32" else 8, mass=float(mass), integrator=integrator
            ),
            f"a stepwise chip simulation of {self.d} nodes with {int(b_hat.shape[1])} chains",
            "fewer right-hand sides per call, dtype='float32', or the exact eigenbasis path (symmetric, static couplings)",
        )
        self.kT, self.mass, self.dt = float(kT), float(mass), float(dt)
        self.integrator = integrator
        self.backend, self.dtype = backend, dtype
        self.b_hat = b_hat
        self.clip = clip
        self.drift = drift
        self.divergence_limit = divergence_limit
        self._spare: Array | None = None
        self._check_stable(self.a0)
        if integrator == "euler_maruyama":
            self._check_em_step(self.a0)
        self._set_matrix(self.a0)

    # --- set-up ---------------------------------------------------------------------------------
    def _check_stable(self, a: np.ndarray) -> None:
        real_min = float(np.linalg.eigvals(a).real.min())
        if not real_min > 0:
            raise NotPositiveDefiniteError(
                "the realized coupling matrix has an eigenvalue with non-positive real part "
                f"({real_min:.3e}): the analog dynamics are unstable"
            )

    def _check_em_step(self, a: np.ndarray) -> None:
        bound = spectral_abscissa_bound(a)
        limit = 2.0 if self.mass == 0 else 1.0  # crude stability region of the explicit step
        if self.dt * bound > limit and self.dt * float(np.abs(np.linalg.eigvals(a)).max()) > limit:
            raise InputError(
                f"Euler-Maruyama step dt={self.dt:g} tau is unstable for this matrix "
                f"(dt * |lambda|_max > {limit:g}); use a smaller dt or exact_step"
            )

    def _set_matrix(self, a: np.ndarray) -> None:
        b, dt = self.backend, self.dtype
        h = self.dt
        if self.integrator == "euler_maruyama":
            if self.mass == 0:
                self._m = b.asarray(np.eye(self.d) - h * a, dt)
                self._c = self.b_hat * h
                self._sigma = math.sqrt(2 * self.kT * h)
            else:
                self._m = b.asarray(-(h / self.mass) * a, dt)
                self._c = self.b_hat * (h / self.mass)
                self._sigma = math.sqrt(2 * self.kT * h) / self.mass
            if self._sigma > 0:
                self._c_over_sigma = self._c / self._sigma
            return
        if self.mass == 0:
            drift = -a
            diffusion = 2 * self.kT * np.eye(self.d)
        else:
            n = self.d
            drift = np.zeros((2 * n, 2 * n))
            drift[:n, n:] = np.eye(n)
            drift[n:, :n] = -a / self.mass
            drift[n:, n:] = -np.eye(n) / self.mass
            diffusion = np.zeros((2 * n, 2 * n))
            diffusion[n:, n:] = 2 * self.kT / self.mass**2 * np.eye(n)
        phi, q = van_loan(drift, diffusion, h)
        root = psd_sqrt(q[None])[0]
        self._m = b.asarray(phi, dt)
        self._root = b.asarray(root, dt) if self.kT > 0 else None
        x_star = np.linalg.solve(a, b.to_numpy(self.b_hat).astype(np.float64))
        fixed = x_star if self.mass == 0 else np.vstack([x_star, np.zeros_like(x_star)])
        self._c = b.asarray((np.eye(phi.shape[0]) - phi) @ fixed, dt)

    # --- stepping -------------------------------------------------------------------------------
    def _step(self, x: Array, v: Array | None, rng: RandomSource) -> tuple[Array, Array | None]:
        b = self.backend
        if self.integrator == "euler_maruyama":
            # Double buffering: the previous state's array receives the next state.
            acc = self._spare if self._spare is not None and self._spare.shape == x.shape else b.empty(tuple(x.shape), self.dtype)
            self._spare = x
            if self.kT > 0:
                # acc <- sigma (Z + c / sigma) + M x: the noise scale rides on the GEMM's beta
                rng.fill_normal(acc)
                acc += self._c_over_sigma
                beta = self._sigma
            else:
                acc[...] = self._c
                beta = 1.0
            if self.mass == 0:
                x = b.addmm_(acc, self._m, x, beta=beta)
            else:
                acc *= beta
                acc += v * (1.0 - self.dt / self.mass)
                v = b.addmm_(acc, self._m, x)
                x = x + self.dt * v
        else:
            state = x if self.mass == 0 else _stack(b, x, v)
            acc = b.copy(self._c)
            if self._root is not None:
                acc = b.addmm_(acc, self._root, rng.normal(tuple(state.shape), self.dtype))
            state = b.addmm_(acc, self._m, state)
            if self.mass == 0:
                x = state
            else:
                x, v = state[: self.d], state[self.d :]
        if self.clip is not None:
            x = b.clip_(x, -self.clip, self.clip)
        return x, v

    def run(
        self,
        x: Array,
        v: Array | None,
        steps_per_sample: int,
        n_samples: int,
        rng: RandomSource,
        on_sample: Callable[[Array], None] | None = None,
    ) -> tuple[Array, Array | None]:
        """Advance ``steps_per_sample * n_samples`` steps; call ``on_sample(x)`` at each sample.

        The arrays passed in and to ``on_sample`` are reused as buffers by later steps: copy
        them to keep them.

        Raises :class:`DivergenceError` if the state stops being finite or leaves the divergence
        limit (volts) while no rails hold it.
        """
        b = self.backend
        if self.mass > 0 and v is None:
            v = b.zeros(tuple(x.shape), self.dtype)
        sample_time = steps_per_sample * self.dt
        for _ in range(n_samples):
            if self.drift is not None:
                self._set_matrix(self.a0 * (1.0 + self.drift.perturbation(self.d, sample_time)))
            for _ in range(steps_per_sample):
                x, v = self._step(x, v, rng)
            if not b.all_finite(x) or b.absmax(x) > self.divergence_limit:
                raise DivergenceError(
                    "the simulated analog state diverged (non-finite or beyond "
                    f"{self.divergence_limit:g} V): the realized dynamics are unstable"
                )
            if on_sample is not None:
                on_sample(x)
        return x, v


def _stack(b: ArrayBackend, x: Array, v: Array) -> Array:
    if b.name == "numpy":
        return np.concatenate([x, v], axis=0)
    import torch

    return torch.cat([x, v], dim=0)
