"""Stepwise integrators: known stationary laws, agreement with the exact method, divergence."""

import numpy as np
import pytest

from thermo.backends import NumpyBackend, TorchBackend
from thermo.errors import DivergenceError, InputError, NotPositiveDefiniteError
from thermo.matrices import random_spd
from thermo.stepwise import DriftProcess, StepwiseLangevin

KT = 0.5


def _stationary_samples(stepper, backend, chains, d, n_burn_steps, seed=0):
    x = backend.zeros((d, chains), "float64")
    x, _ = stepper.run(x, None, n_burn_steps, 1, backend.random(seed))
    return backend.to_numpy(x)


@pytest.mark.parametrize("backend", [NumpyBackend(), TorchBackend("cpu")], ids=["numpy", "torch"])
def test_euler_maruyama_stationary_law_is_the_known_discrete_one(backend):
    """EM's stationary law is exactly N(A^-1 b, kT A^-1 (I - dt A / 2)^-1) for linear dynamics."""
    d, chains, dt = 4, 20_000, 0.05
    a = random_spd(d, 5.0, seed=1)
    b = np.array([1.0, -0.5, 0.25, 2.0])[:, None]
    stepper = StepwiseLangevin(
        a, backend.asarray(np.repeat(b, chains, 1), "float64"), kT=KT, mass=0.0, dt=dt,
        integrator="euler_maruyama", backend=backend, dtype="float64",
    )
    x = _stationary_samples(stepper, backend, chains, d, n_burn_steps=int(40 / dt / 0.2))
    mean = np.linalg.solve(a, b)[:, 0]
    cov = KT * np.linalg.inv(a) @ np.linalg.inv(np.eye(d) - dt * a / 2)
    se_mean = np.sqrt(cov.diagonal() / chains)
    se_cov = np.sqrt((np.outer(cov.diagonal(), cov.diagonal()) + cov**2) / chains)
    assert np.abs((x.mean(1) - mean) / se_mean).max() < 5
    assert np.abs((np.cov(x) - cov) / se_cov).max() < 5


@pytest.mark.parametrize("mass", [0.0, 0.4])
def test_exact_step_stationary_law_is_unbiased(mass):
    d, chains = 4, 20_000
    be = NumpyBackend()
    a = random_spd(d, 5.0, seed=2)
    b = np.zeros((d, chains))
    stepper = StepwiseLangevin(a, be.asarray(b, "float64"), kT=KT, mass=mass, dt=0.5, integrator="exact_step", backend=be, dtype="float64")
    x = _stationary_samples(stepper, be, chains, d, n_burn_steps=120)
    cov = KT * np.linalg.inv(a)
    se_cov = np.sqrt((np.outer(cov.diagonal(), cov.diagonal()) + cov**2) / chains)
    assert np.abs((np.cov(x) - cov) / se_cov).max() < 5


def test_nonsymmetric_stable_matrix_relaxes_to_its_solution():
    d, chains = 5, 4000
    be = NumpyBackend()
    rng = np.random.default_rng(0)
    a = random_spd(d, 4.0, seed=3) + 0.2 * rng.standard_normal((d, d))  # still stable
    assert np.linalg.eigvals(a).real.min() > 0
    b = np.ones((d, chains))
    stepper = StepwiseLangevin(a, be.asarray(b, "float64"), kT=KT, mass=0.0, dt=0.5, integrator="exact_step", backend=be, dtype="float64")
    x = _stationary_samples(stepper, be, chains, d, n_burn_steps=200)
    x_star = np.linalg.solve(a, np.ones(d))
    # stationary covariance solves the Lyapunov equation A S + S A^T = 2 kT I
    import scipy.linalg

    cov = scipy.linalg.solve_continuous_lyapunov(-a, -2 * KT * np.eye(d))
    assert np.abs((x.mean(1) - x_star) / np.sqrt(cov.diagonal() / chains)).max() < 5


def test_unstable_matrix_is_refused_before_running():
    be = NumpyBackend()
    with pytest.raises(NotPositiveDefiniteError, match="unstable"):
        StepwiseLangevin(np.diag([1.0, -0.5]), be.zeros((2, 1), "float64"), kT=KT, mass=0.0, dt=0.1, integrator="euler_maruyama", backend=be, dtype="float64")


def test_too_large_em_step_is_refused():
    be = NumpyBackend()
    with pytest.raises(InputError, match="unstable"):
        StepwiseLangevin(np.diag([1.0, 50.0]), be.zeros((2, 1), "float64"), kT=KT, mass=0.0, dt=0.1, integrator="euler_maruyama", backend=be, dtype="float64")


def test_drift_that_destabilizes_the_chip_raises_divergence():
    be = NumpyBackend()
    a = np.diag([1.0, 0.05])
    # 300% relative drift: the second coupling goes negative within a few samples
    drift = DriftProcess(sigma=3.0, timescale=1.0, symmetric=True, seed=4)
    stepper = StepwiseLangevin(a, be.zeros((2, 1), "float64"), kT=KT, mass=0.0, dt=0.01, integrator="euler_maruyama", backend=be, dtype="float64", drift=drift, divergence_limit=1e3)
    with pytest.raises(DivergenceError, match="diverged"):
        stepper.run(be.zeros((2, 1), "float64"), None, 100, 2000, be.random(0))


def test_clipping_inside_the_dynamics_holds_the_rails():
    be = NumpyBackend()
    a = np.eye(3)
    b = np.full((3, 8), 5.0)  # fixed point at 5 V, rails at 1 V
    stepper = StepwiseLangevin(a, be.asarray(b, "float64"), kT=KT, mass=0.0, dt=0.05, integrator="euler_maruyama", backend=be, dtype="float64", clip=1.0)
    x, _ = stepper.run(be.zeros((3, 8), "float64"), None, 20, 20, be.random(0))
    assert np.abs(x).max() <= 1.0
