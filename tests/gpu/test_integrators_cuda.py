"""The exact eigenbasis integrator and the stepwise integrators on ``TorchBackend(cuda)``: their
deterministic parts (``rng=None``, ``kT = 0``) against the numpy backend to rounding, their noise
against the closed-form laws (the CPU tests' checks, on the GPU's random stream)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from thermo.backends import NumpyBackend, TorchBackend
from thermo.errors import DivergenceError
from thermo.exact import EigenOU, ModeState, sample_ou
from thermo.matrices import random_spd
from thermo.stepwise import DriftProcess, StepwiseLangevin
from tests.thermo.test_exact import transition_law

pytestmark = pytest.mark.gpu

KT = 0.7
CPU = NumpyBackend()


@pytest.fixture
def gpu(device: torch.device) -> TorchBackend:
    return TorchBackend(device)


def host(x: object) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ------------------------------------------------------------------------------------------------
# exact integrator
def test_torch_backend_arrays_live_on_the_device(gpu: TorchBackend, device: torch.device) -> None:
    rng = gpu.random(0)
    for x in (gpu.zeros((3, 2), "float64"), gpu.asarray(np.ones(3), "float32"), rng.normal((4,), "float64"),
              rng.uniform((4,), "float32"), rng.fill_normal(gpu.empty((2, 2), "float64"))):
        assert x.device.type == device.type
    # the generator is the device's, seeded: the same seed draws the same numbers
    np.testing.assert_array_equal(host(gpu.random(5).normal((8,), "float64")), host(gpu.random(5).normal((8,), "float64")))


@pytest.mark.parametrize("mass", [0.0, 0.3])
def test_exact_mean_propagation_on_the_gpu_matches_numpy(gpu: TorchBackend, mass: float) -> None:
    """``rng=None`` gives the mean: the same affine map on both devices, equal in the x basis
    (where the eigenvectors' signs cancel)."""
    d, chains = 12, 5
    a = random_spd(d, 20.0, seed=3)
    b = np.random.default_rng(4).standard_normal((d, chains))
    x0 = np.random.default_rng(5).standard_normal((d, chains))
    results = {}
    for name, be in (("gpu", gpu), ("cpu", CPU)):
        ou = EigenOU(be.asarray(a, "float64"), KT, mass, be, "float64")
        mu = ou.mode_mean(be.asarray(b, "float64"))
        state = ou.propagate(ou.state_from_x(be.asarray(x0, "float64"), mu), 0.8, None)
        avg, final, var = ou.window_average(state, 0.2, 37, None)
        results[name] = (ou.eigenvalues, host(ou.x_from_state(state, mu)), host(ou.x_from_state(ModeState(avg, None), mu)),
                         host(ou.x_from_state(final, mu)), var)
    for got, ref in zip(results["gpu"], results["cpu"]):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("mass", [0.0, 0.3])
def test_exact_transition_on_the_gpu_matches_the_closed_form_law(gpu: TorchBackend, mass: float) -> None:
    """x(t) over 20,000 chains against Van Loan's discretization of the full system."""
    d, chains, t = 5, 20_000, 0.8
    a = random_spd(d, 20.0, seed=3)
    b = np.arange(1.0, d + 1)[:, None]
    ou = EigenOU(gpu.asarray(a, "float64"), KT, mass, gpu, "float64")
    x0 = np.linspace(-1, 1, d)[:, None]
    mu = ou.mode_mean(gpu.asarray(b, "float64"))
    state = ou.state_from_x(gpu.asarray(np.repeat(x0, chains, 1), "float64"), mu)
    x = host(ou.x_from_state(ou.propagate(state, t, gpu.random(11)), mu))
    mean, cov = transition_law(a, b, x0, t, mass)
    z_mean = (x.mean(1) - mean) / np.sqrt(cov.diagonal() / chains)
    se_cov = np.sqrt((np.outer(cov.diagonal(), cov.diagonal()) + cov**2) / chains)
    assert np.abs(z_mean).max() < 5
    assert np.abs((np.cov(x) - cov) / se_cov).max() < 5


def test_window_average_draw_on_the_gpu_matches_its_law_and_a_sampled_path(gpu: TorchBackend) -> None:
    """The closed-form draw and the device's sample loop (``sample_chunks``, torch branch) of the
    same window: equal per-mode means and variances over 4000 chains."""
    d, chains, h, n = 4, 4000, 0.2, 50
    a = random_spd(d, 10.0, seed=5)
    ou = EigenOU(gpu.asarray(a, "float64"), KT, 0.0, gpu, "float64")
    mu = ou.mode_mean(gpu.asarray(np.ones((d, chains)), "float64"))
    start = ou.state_from_x(gpu.zeros((d, chains), "float64"), mu)
    closed, _, law_var = ou.window_average(start, h, n, gpu.random(1))
    sampled = torch.zeros((d, chains), dtype=torch.float64, device=closed.device)
    for chunk, _ in ou.sample_chunks(start, h, n, gpu.random(2), chunk=16):
        assert chunk.device == closed.device
        sampled += chunk.sum(0)
    closed, sampled = host(closed), host(sampled / n)
    se = np.sqrt(closed.var(1) / chains)
    assert np.abs(closed.mean(1) - sampled.mean(1)).max() < 5 * np.sqrt(2) * se.max()
    assert np.all(closed.var(1) <= law_var * (1 + 5 * np.sqrt(2 / chains)))
    assert np.all(np.abs(closed.var(1) / sampled.var(1) - 1) < 5 * np.sqrt(4 / chains))


def test_sample_ou_on_the_gpu(gpu: TorchBackend, device: torch.device) -> None:
    """A path of the overdamped process: on the device, with the numpy path's law. Late samples
    of one long path average to A^-1 b within their standard error."""
    d = 6
    a = random_spd(d, 5.0, seed=6)
    b = np.random.default_rng(7).standard_normal(d)
    times = np.arange(0.0, 4000.0, 0.5)
    path = sample_ou(a, b, np.zeros(d), times, kT=0.05, seed=0, backend=gpu)
    assert isinstance(path, torch.Tensor) and path.device.type == device.type and path.shape == (times.size, d)
    late = host(path)[times >= 100.0]  # 100 tau of burn-in: the slowest mode (rate 1) is at e^-100
    x_star = np.linalg.solve(a, b)
    # the mean of n stationary AR(1) samples of a mode (rho = e^{-lam h}): variance
    # (kT / lam) (1 + rho) / ((1 - rho) n) up to O(1/n^2), rotated to x by the eigenvectors
    lam, vecs = np.linalg.eigh(a)
    rho = np.exp(-lam * 0.5)
    mode_var = 0.05 / lam * (1 + rho) / ((1 - rho) * len(late))
    se = np.sqrt((vecs**2) @ mode_var)
    assert np.abs((late.mean(0) - x_star) / se).max() < 5
    # unequal steps take the time-varying recursion on the device
    uneven = np.cumsum(np.r_[0.0, np.linspace(0.01, 0.3, 200)])
    path = sample_ou(a, b, np.ones(d), uneven, kT=0.05, seed=1, backend=gpu)
    assert bool(torch.isfinite(path).all()) and torch.equal(path[0].cpu(), torch.ones(d, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------
# stepwise integrators
@pytest.mark.parametrize("integrator", ["euler_maruyama", "exact_step"])
@pytest.mark.parametrize("mass", [0.0, 0.4])
def test_noiseless_stepwise_run_on_the_gpu_matches_numpy(gpu: TorchBackend, integrator: str, mass: float) -> None:
    d, chains = 8, 3
    a = random_spd(d, 5.0, seed=1) + 0.1 * np.random.default_rng(0).standard_normal((d, d))  # non-symmetric, stable
    b = np.random.default_rng(2).standard_normal((d, chains))
    dt = 0.05 if integrator == "euler_maruyama" else 0.5
    out = {}
    for name, be in (("gpu", gpu), ("cpu", CPU)):
        stepper = StepwiseLangevin(a, be.asarray(b, "float64"), kT=0.0, mass=mass, dt=dt, integrator=integrator,
                                   backend=be, dtype="float64")
        samples: list[np.ndarray] = []
        x, v = stepper.run(be.zeros((d, chains), "float64"), None, 4, 25, be.random(0),
                           on_sample=lambda s: samples.append(host(s).copy()))
        out[name] = (np.stack(samples), host(x), None if v is None else host(v))
    for got, ref in zip(out["gpu"], out["cpu"]):
        if ref is None:
            assert got is None
            continue
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


def test_euler_maruyama_on_the_gpu_has_its_discrete_stationary_law(gpu: TorchBackend) -> None:
    """N(A^-1 b, kT A^-1 (I - dt A / 2)^-1) for linear dynamics, 20,000 chains."""
    d, chains, dt = 4, 20_000, 0.05
    a = random_spd(d, 5.0, seed=1)
    b = np.array([1.0, -0.5, 0.25, 2.0])[:, None]
    stepper = StepwiseLangevin(a, gpu.asarray(np.repeat(b, chains, 1), "float64"), kT=0.5, mass=0.0, dt=dt,
                               integrator="euler_maruyama", backend=gpu, dtype="float64")
    x, _ = stepper.run(gpu.zeros((d, chains), "float64"), None, int(40 / dt / 0.2), 1, gpu.random(0))
    x = host(x)
    mean = np.linalg.solve(a, b)[:, 0]
    cov = 0.5 * np.linalg.inv(a) @ np.linalg.inv(np.eye(d) - dt * a / 2)
    se_cov = np.sqrt((np.outer(cov.diagonal(), cov.diagonal()) + cov**2) / chains)
    assert np.abs((x.mean(1) - mean) / np.sqrt(cov.diagonal() / chains)).max() < 5
    assert np.abs((np.cov(x) - cov) / se_cov).max() < 5


@pytest.mark.parametrize("mass", [0.0, 0.4])
def test_exact_step_on_the_gpu_is_unbiased(gpu: TorchBackend, mass: float) -> None:
    d, chains = 4, 20_000
    a = random_spd(d, 5.0, seed=2)
    stepper = StepwiseLangevin(a, gpu.zeros((d, chains), "float64"), kT=0.5, mass=mass, dt=0.5,
                               integrator="exact_step", backend=gpu, dtype="float64")
    x, _ = stepper.run(gpu.zeros((d, chains), "float64"), None, 120, 1, gpu.random(0))
    cov = 0.5 * np.linalg.inv(a)
    se_cov = np.sqrt((np.outer(cov.diagonal(), cov.diagonal()) + cov**2) / chains)
    assert np.abs((np.cov(host(x)) - cov) / se_cov).max() < 5


def test_non_symmetric_dynamics_on_the_gpu_relax_to_the_lyapunov_law(gpu: TorchBackend) -> None:
    d, chains = 5, 4000
    a = random_spd(d, 4.0, seed=3) + 0.2 * np.random.default_rng(0).standard_normal((d, d))
    stepper = StepwiseLangevin(a, gpu.asarray(np.ones((d, chains)), "float64"), kT=0.5, mass=0.0, dt=0.5,
                               integrator="exact_step", backend=gpu, dtype="float64")
    x, _ = stepper.run(gpu.zeros((d, chains), "float64"), None, 200, 1, gpu.random(0))
    cov = scipy.linalg.solve_continuous_lyapunov(-a, -2 * 0.5 * np.eye(d))
    assert np.abs((host(x).mean(1) - np.linalg.solve(a, np.ones(d))) / np.sqrt(cov.diagonal() / chains)).max() < 5


def test_rails_and_divergence_on_the_gpu(gpu: TorchBackend) -> None:
    stepper = StepwiseLangevin(np.eye(3), gpu.asarray(np.full((3, 8), 5.0), "float64"), kT=0.5, mass=0.0, dt=0.05,
                               integrator="euler_maruyama", backend=gpu, dtype="float64", clip=1.0)
    x, _ = stepper.run(gpu.zeros((3, 8), "float64"), None, 20, 20, gpu.random(0))
    assert float(x.abs().max()) <= 1.0
    drift = DriftProcess(sigma=3.0, timescale=1.0, symmetric=True, seed=4)
    unstable = StepwiseLangevin(np.diag([1.0, 0.05]), gpu.zeros((2, 1), "float64"), kT=0.5, mass=0.0, dt=0.01,
                                integrator="euler_maruyama", backend=gpu, dtype="float64", drift=drift,
                                divergence_limit=1e3)
    with pytest.raises(DivergenceError, match="diverged"):
        unstable.run(gpu.zeros((2, 1), "float64"), None, 100, 2000, gpu.random(0))
