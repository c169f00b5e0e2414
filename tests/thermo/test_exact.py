"""The exact eigenbasis integrator against closed forms and an independent discretization."""

import numpy as np
import pytest

from thermo.backends import NumpyBackend, TorchBackend
from thermo.exact import EigenOU, mode_transition, power, with_accumulator
from thermo.matrices import random_spd
from thermo.stepwise import van_loan

KT = 0.7


@pytest.mark.parametrize("mass", [0.05, 0.25, 1.0, 4.0])
def test_underdamped_law_matches_van_loan(mass):
    lam = np.array([0.3, 1.0, 4.0, 25.0])
    phi, q = mode_transition(lam, 0.37, KT, mass)
    for i, l in enumerate(lam):
        drift = np.array([[0, 1], [-l / mass, -1 / mass]])
        diffusion = np.array([[0, 0], [0, 2 * KT / mass**2]])
        phi_ref, q_ref = van_loan(drift, diffusion, 0.37)
        np.testing.assert_allclose(phi[i], phi_ref, atol=1e-12)
        np.testing.assert_allclose(q[i], q_ref, atol=1e-12)


def test_overdamped_law_matches_van_loan():
    lam = np.array([1e-4, 0.3, 25.0])
    phi, q = mode_transition(lam, 0.37, KT, 0.0)
    for i, l in enumerate(lam):
        p_ref, q_ref = van_loan(np.array([[-l]]), np.array([[2 * KT]]), 0.37)
        assert phi[i, 0, 0] == pytest.approx(p_ref[0, 0], rel=1e-12)
        assert q[i, 0, 0] == pytest.approx(q_ref[0, 0], rel=1e-9)


@pytest.mark.parametrize("mass", [0.0, 0.5])
def test_window_average_variance_by_doubling_equals_direct_sum(mass):
    lam = np.array([0.3, 1.0, 4.0])
    h, n = 0.1, 37
    f, q = power(with_accumulator(mode_transition(lam, h, KT, mass)), n)
    k = f.shape[1] - 1
    s0 = np.zeros_like(q)
    s0[:, 0, 0] = KT / lam
    if mass:
        s0[:, 1, 1] = KT / mass
    total = f @ s0 @ np.swapaxes(f, 1, 2) + q
    # direct: sum over sample pairs of the stationary position autocovariance C(|i-j| h)
    phi, _ = mode_transition(lam, h, KT, mass)
    for m in range(lam.size):
        cov0 = s0[m, :k, :k]
        acf = [cov0[0, 0]]
        p = np.eye(phi.shape[1])
        for _ in range(1, n):
            p = phi[m] @ p
            acf.append((p @ cov0)[0, 0])
        direct = sum(acf[abs(i - j)] for i in range(n) for j in range(n))
        assert total[m, k, k] == pytest.approx(direct, rel=1e-10)


def transition_law(a: np.ndarray, b: np.ndarray, x0: np.ndarray, t: float, mass: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(d,)`` and covariance ``(d, d)`` of the position after ``t`` (tau) from velocity 0
    at ``x0`` (``(d, 1)``), by the Van Loan discretization of the full system, independent of the
    eigenbasis integrator (overdamped: ``N(x* + e^{-At}(x0 - x*), kT A^-1 (I - e^{-2At}))``)."""
    d = a.shape[0]
    n = d if mass == 0 else 2 * d
    drift = -a if mass == 0 else np.block([[np.zeros((d, d)), np.eye(d)], [-a / mass, -np.eye(d) / mass]])
    diffusion = 2 * KT * np.eye(d) if mass == 0 else np.block(
        [[np.zeros((d, d)), np.zeros((d, d))], [np.zeros((d, d)), 2 * KT / mass**2 * np.eye(d)]]
    )
    phi, q = van_loan(drift, diffusion, t)
    x_star = np.linalg.solve(a, b)
    z0 = np.vstack([x0 - x_star, np.zeros((d, 1))])[:n]
    return (x_star + (phi @ z0)[:d])[:, 0], q[:d, :d]


@pytest.mark.parametrize("backend", [NumpyBackend(), TorchBackend("cpu")], ids=["numpy", "torch"])
@pytest.mark.parametrize("mass", [0.0, 0.3])
def test_exact_transition_matches_the_closed_form_law(backend, mass):
    d, chains, t = 5, 20_000, 0.8
    a = random_spd(d, 20.0, seed=3)
    b = np.arange(1.0, d + 1)[:, None]
    ou = EigenOU(backend.asarray(a, "float64"), KT, mass, backend, "float64")
    rng = backend.random(11)
    x0 = np.linspace(-1, 1, d)[:, None]
    mu = ou.mode_mean(backend.asarray(b, "float64"))
    state = ou.state_from_x(backend.asarray(np.repeat(x0, chains, 1), "float64"), mu)
    x = backend.to_numpy(ou.x_from_state(ou.propagate(state, t, rng), mu))
    mean, cov = transition_law(a, b, x0, t, mass)
    emp_mean = x.mean(1)
    emp_cov = np.cov(x)
    # standard errors: mean sqrt(C_ii / n); covariance sqrt((C_ii C_jj + C_ij^2) / n)
    z_mean = (emp_mean - mean) / np.sqrt(cov.diagonal() / chains)
    se_cov = np.sqrt((np.outer(cov.diagonal(), cov.diagonal()) + cov**2) / chains)
    assert np.abs(z_mean).max() < 5
    assert np.abs((emp_cov - cov) / se_cov).max() < 5


def test_window_average_draw_matches_its_law_and_a_sampled_path():
    d, chains = 4, 4000
    a = random_spd(d, 10.0, seed=5)
    be = NumpyBackend()
    ou = EigenOU(a, KT, 0.0, be, "float64")
    b = be.asarray(np.ones((d, chains)), "float64")
    mu = ou.mode_mean(b)
    start = ou.state_from_x(be.asarray(np.zeros((d, chains)), "float64"), mu)
    h, n = 0.2, 50
    closed, _, law_var = ou.window_average(start, h, n, be.random(1))
    sampled = np.zeros((d, chains))
    for chunk, _ in ou.sample_chunks(start, h, n, be.random(2), chunk=16):
        sampled += chunk.sum(0)
    sampled /= n
    # both estimate the same Gaussian law: compare means and variances per mode
    se = np.sqrt(closed.var(1) / chains)
    assert np.abs(closed.mean(1) - sampled.mean(1)).max() < 5 * np.sqrt(2) * se.max()
    # the reported law (stationary start) bounds the spread from a start at the fixed point
    assert np.all(closed.var(1) <= law_var * (1 + 5 * np.sqrt(2 / chains)))
    ratio = closed.var(1) / sampled.var(1)
    # ratio of two sample variances of n draws: relative standard error about sqrt(4 / n)
    assert np.all(np.abs(ratio - 1) < 5 * np.sqrt(4 / chains))


def test_indefinite_matrix_is_rejected():
    from thermo.errors import NotPositiveDefiniteError

    with pytest.raises(NotPositiveDefiniteError, match="smallest eigenvalue"):
        EigenOU(np.diag([1.0, -0.1]), KT, 0.0, NumpyBackend(), "float64")
