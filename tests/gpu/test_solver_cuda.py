"""The thermodynamic solver on the torch backend on the GPU: solve and inverse through the exact
and the stepwise integrators, against the numpy backend on the CPU.

Noiseless runs (``kT = 0``) are deterministic and agree with the CPU to float tolerances, as do
the planned schedules and the reported bounds (computed on the host from the realized spectrum);
noisy runs draw from another random stream on the GPU, so they are compared in law.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thermo import HardwareSpec, SolverConfig, ThermodynamicSolver
from thermo.matrices import random_spd
from tests.thermo.test_solver import assert_stationary_law

pytestmark = pytest.mark.gpu


def on(device: torch.device, **options: object) -> SolverConfig:
    """The solver's configuration on the torch backend on ``device``."""
    return SolverConfig(backend="torch", device=str(device), **options)


def rel(x: object, y: np.ndarray) -> float:
    x = x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


def same_schedule(got, ref) -> None:
    """The planned run and its bounds (float64): host arithmetic on the same realized matrix,
    whose eigenvalues the two devices' eigensolvers find to rounding."""
    assert (got.method, got.integrator, got.n_samples) == (ref.method, ref.integrator, ref.n_samples)
    assert got.burn_in_tau == pytest.approx(ref.burn_in_tau, rel=1e-10)
    assert got.window_tau == pytest.approx(ref.window_tau, rel=1e-10)
    assert got.matrix_scale == ref.matrix_scale
    assert got.estimated_rel_error == pytest.approx(ref.estimated_rel_error, rel=1e-8)


@pytest.mark.parametrize("closed_form", [True, False], ids=["closed-form", "sampled-path"])
def test_noiseless_solve_on_the_gpu_matches_the_cpu_to_rounding(device, closed_form: bool) -> None:
    a = random_spd(32, 50.0, seed=0)
    b = np.random.default_rng(1).standard_normal((32, 3))
    hw = HardwareSpec.ideal(kT=0.0)
    options = dict(closed_form=closed_form, burn_in_tau=20.0, window_tau=5.0)
    gpu = ThermodynamicSolver(hw, on(device, **options), seed=0).solve(torch.as_tensor(a, device=device),
                                                                     torch.as_tensor(b, device=device))
    cpu = ThermodynamicSolver(hw, SolverConfig(**options), seed=0).solve(a, b)
    assert isinstance(gpu.x, torch.Tensor) and gpu.x.device.type == device.type and gpu.x.dtype == torch.float64
    # the transient left after 20 tau is the same on both: the results agree far below it
    assert rel(gpu.x, cpu.x) < 1e-10
    assert rel(gpu.state.x, cpu.state.x) < 1e-10
    same_schedule(gpu.diagnostics, cpu.diagnostics)
    assert gpu.diagnostics.method == "exact"


def test_float32_solve_on_the_gpu_is_accurate_to_its_precision(device) -> None:
    a = random_spd(16, 10.0, seed=24)
    b = np.ones(16)
    hw = HardwareSpec.ideal(kT=1e-12)
    res = ThermodynamicSolver(hw, on(device, dtype="float32", target_rel_error=1e-4), seed=0).solve(a, b)
    ref = ThermodynamicSolver(hw, SolverConfig(dtype="float32", target_rel_error=1e-4), seed=0).solve(a, b)
    x_star = np.linalg.solve(a, b)
    assert rel(res.x, x_star) < 1e-3
    assert rel(res.x, np.asarray(ref.x)) < 1e-4  # float32 eigh and GEMMs on two devices
    # the plan reads float32 eigenvalues: equal to their precision (a window may differ by a sample)
    assert abs(res.diagnostics.n_samples - ref.diagnostics.n_samples) <= 1
    assert res.diagnostics.estimated_rel_error == pytest.approx(ref.diagnostics.estimated_rel_error, rel=1e-4)


@pytest.mark.parametrize("mass_tau2", [0.1, 2.0])
def test_underdamped_solve_on_the_gpu(device, mass_tau2: float) -> None:
    a = random_spd(8, 10.0, seed=25)
    b = np.random.default_rng(26).standard_normal(8)
    hw = HardwareSpec.ideal(kT=0.0, regime="underdamped", mass_s2=mass_tau2 * 1e-12)
    res = ThermodynamicSolver(hw, on(device, target_rel_error=1e-5), seed=0).solve(a, b)
    ref = ThermodynamicSolver(hw, SolverConfig(target_rel_error=1e-5), seed=0).solve(a, b)
    assert rel(res.x, np.linalg.solve(a, b)) < 1e-4
    assert rel(res.x, np.asarray(ref.x)) < 1e-10
    assert res.state.velocity is not None
    np.testing.assert_allclose(res.state.velocity, ref.state.velocity, rtol=0, atol=1e-10 * np.abs(ref.state.velocity).max())


@pytest.mark.parametrize(
    "hw, options",
    [
        (HardwareSpec.ideal(kT=1e-3), dict(window_tau=30.0)),  # closed-form window average
        (HardwareSpec.ideal(kT=1e-3), dict(window_tau=30.0, closed_form=False)),  # sampled on the device
        (HardwareSpec.ideal(kT=1e-3, v_range_v=1.0, bits_adc=14), dict(window_tau=30.0)),  # through the ADC
    ],
    ids=["closed-form", "sampled-path", "adc"],
)
def test_noisy_solves_on_the_gpu_have_the_cpu_law(device, hw: HardwareSpec, options: dict) -> None:
    """300 independent chains per device: means agree within 5 standard errors of their
    difference, spreads within 5 standard errors of a ratio of standard deviations."""
    a = random_spd(8, 10.0, seed=22)
    b = np.random.default_rng(23).standard_normal(8)
    reps = 300
    rhs = np.repeat(b[:, None], reps, 1)
    gpu = ThermodynamicSolver(hw, on(device, **options), seed=0).solve(a, rhs)
    cpu = ThermodynamicSolver(hw, SolverConfig(**options), seed=0).solve(a, rhs)
    x, y = np.asarray(gpu.x), np.asarray(cpu.x)
    se = np.sqrt(x.var(1) / reps + y.var(1) / reps)
    assert np.abs((x.mean(1) - y.mean(1)) / se).max() < 5
    assert np.all(np.abs(x.std(1) / y.std(1) - 1) < 5 / np.sqrt(reps))
    same_schedule(gpu.diagnostics, cpu.diagnostics)
    assert gpu.diagnostics.bound_retries == cpu.diagnostics.bound_retries == 0
    # not vacuous: the noise is there and the GPU draws its own
    assert np.all(x.std(1) > 0) and not np.array_equal(x, y)


@pytest.mark.parametrize(
    "options",
    [dict(method="exact"), dict(method="stepwise", integrator="exact_step")],
    ids=["exact", "exact-step"],
)
def test_stationary_mean_and_covariance_on_the_gpu(device, options: dict) -> None:
    """One sample per chain after equilibration: N(A^-1 b, kT (beta/alpha)^2 alpha A^-1)."""
    d, chains = 16, 4000
    a = random_spd(d, 30.0, seed=d)
    b = np.random.default_rng(d).standard_normal(d)
    hw = HardwareSpec.ideal(kT=0.1)
    cfg = on(device, window_tau=hw.sample_interval_tau, target_rel_error=1e-6, **options)
    res = ThermodynamicSolver(hw, cfg, seed=1).solve(a, np.repeat(b[:, None], chains, 1))
    assert res.diagnostics.method == options["method"]
    assert_stationary_law(res, a, b, hw.kT, chains)


def test_euler_maruyama_through_the_solver_has_its_discrete_law_on_the_gpu(device) -> None:
    """EM at dt: stationary covariance kT A_hat^-1 (I - dt A_hat / 2)^-1 in chip units, exact mean."""
    d, chains, dt = 6, 4000, 0.02
    a = random_spd(d, 5.0, seed=30)
    b = np.random.default_rng(31).standard_normal(d)
    hw = HardwareSpec.ideal(kT=0.1)
    cfg = on(device, method="stepwise", integrator="euler_maruyama", dt_tau=dt, window_tau=hw.sample_interval_tau,
             target_rel_error=1e-6)
    res = ThermodynamicSolver(hw, cfg, seed=2).solve(a, np.repeat(b[:, None], chains, 1))
    assert (res.diagnostics.method, res.diagnostics.integrator) == ("stepwise", "euler_maruyama")
    alpha, beta = res.diagnostics.matrix_scale, res.diagnostics.rhs_scale[0]
    a_hat = a / alpha
    cov = hw.kT * (beta / alpha) ** 2 * np.linalg.inv(a_hat) @ np.linalg.inv(np.eye(d) - dt * a_hat / 2)
    x = np.asarray(res.x)
    z = (x.mean(1) - np.linalg.solve(a, b)) / np.sqrt(cov.diagonal() / chains)
    se_cov = np.sqrt((np.outer(cov.diagonal(), cov.diagonal()) + cov**2) / chains)
    assert np.abs(z).max() < 5
    assert np.abs((np.cov(x) - cov) / se_cov).max() < 5.5


def test_noiseless_stepwise_solve_on_the_gpu_matches_the_cpu(device) -> None:
    """Asymmetric mismatch forces the stepwise path; without noise its GEMMs are deterministic."""
    a = random_spd(10, 10.0, seed=27)
    b = np.random.default_rng(28).standard_normal(10)
    hw = HardwareSpec.ideal(kT=0.0, mismatch_sigma=1e-3, mismatch_symmetric=False)
    options = dict(burn_in_tau=30.0, window_tau=2.0)
    gpu = ThermodynamicSolver(hw, on(device, **options), seed=0).solve(a, b)
    cpu = ThermodynamicSolver(hw, SolverConfig(**options), seed=0).solve(a, b)
    assert gpu.diagnostics.method == "stepwise" and gpu.diagnostics.integrator == cpu.diagnostics.integrator
    assert rel(gpu.x, np.asarray(cpu.x)) < 1e-10


def test_tiled_solve_on_the_gpu_converges(device) -> None:
    d = 40
    a = random_spd(d, 20.0, seed=0)
    b = np.random.default_rng(1).standard_normal(d)
    hw = HardwareSpec.ideal(kT=1e-14, n_units=16)
    res = ThermodynamicSolver(hw, on(device, target_rel_error=1e-6), seed=0).solve(torch.as_tensor(a, device=device),
                                                                                 torch.as_tensor(b, device=device))
    assert res.x.device.type == device.type
    assert rel(res.x, np.linalg.solve(a, b)) < 1e-4
    assert res.diagnostics.n_tiles == 9


def test_inverse_on_the_gpu_is_within_its_predicted_error(device) -> None:
    d = 6
    a = random_spd(d, 5.0, seed=7)
    hw = HardwareSpec.ideal(kT=0.05)
    res = ThermodynamicSolver(hw, on(device, target_rel_error=0.05), seed=8).inverse(torch.as_tensor(a, device=device))
    ref = ThermodynamicSolver(hw, SolverConfig(target_rel_error=0.05), seed=8).inverse(a)
    assert isinstance(res.inverse, torch.Tensor) and res.inverse.device.type == device.type
    inv = np.linalg.inv(a)
    err = rel(res.inverse, inv)
    # the squared Frobenius error is a sum of many weighted chi-square terms: 3x the rms
    assert err < 3 * res.diagnostics.predicted_rel_error
    got = res.inverse.cpu().numpy()
    assert np.array_equal(got, got.T)
    same_schedule(res.diagnostics, ref.diagnostics)
    assert res.diagnostics.predicted_rel_error == pytest.approx(ref.diagnostics.predicted_rel_error, rel=1e-10)


def test_inverse_error_on_the_gpu_averages_to_its_predicted_rms(device) -> None:
    """16 seeded inversions: E[(err / predicted)^2] = 1 for the rms prediction (a sum of d^2
    squared Gaussians per run, so the mean over 16 runs lies well inside (0.4, 2.5))."""
    a = random_spd(6, 10.0, seed=5)
    inv = np.linalg.inv(a)
    z2 = []
    for seed in range(16):
        res = ThermodynamicSolver(HardwareSpec.ideal(kT=0.05), on(device, target_rel_error=0.1), seed=seed).inverse(a)
        z2.append((rel(res.inverse, inv) / res.diagnostics.predicted_rel_error) ** 2)
    assert 0.4 < np.mean(z2) < 2.5


@pytest.mark.parametrize(
    "hw, options",
    [
        (HardwareSpec.ideal(kT=0.05, bits_adc=16, v_range_v=10.0), {}),  # samples rotated back and converted
        (HardwareSpec.ideal(kT=0.05), dict(method="stepwise", integrator="exact_step")),
    ],
    ids=["adc", "exact-step"],
)
def test_inverse_paths_on_the_gpu_stay_within_their_bound(device, hw: HardwareSpec, options: dict) -> None:
    a = random_spd(5, 4.0, seed=9)
    res = ThermodynamicSolver(hw, on(device, target_rel_error=0.1, **options), seed=3).inverse(a)
    assert res.diagnostics.method == options.get("method", "exact")
    assert res.diagnostics.adc_clip_fraction == 0.0
    # estimated_rel_error is a 95% bound: twice it is far in the tail
    assert rel(res.inverse, np.linalg.inv(a)) < 2 * res.diagnostics.estimated_rel_error
