"""TNGD on the simulator path (``method="simulator"``; the exact low-rank path is tested in
test_tngd_lowrank.py): its limits (t = 0 is SGD, t -> inf is NGD), the exact mean relaxation and OU noise law
of the analog state between reads, warm starts, and checkpoints that resume the same run.

References are computed here with torch.linalg.eigh from ``A = U U^T + lambda I`` and ``g``. The
chip relaxes under ``A_hat = A / alpha`` (``alpha = max|A_ij|`` for ``coupling_range = 1``):
``x(t) = x* + exp(-A_hat t)(x0 - x*)``, covariance ``(beta^2 kT / alpha) A^-1 (I - exp(-2 A_hat t))``.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from scipy import stats
from torch import nn

from digital.curvature import batch_loss, flatten_params, ggn_factor
from digital.errors import UnsupportedConfigurationError
from digital.ngd import NGD
from digital.tngd import TNGD as _TNGD
from thermo import HardwareSpec



def TNGD(*args, **kwargs):  # noqa: N802 - the class under test, on the chip simulator
    return _TNGD(*args, method="simulator", **kwargs)


F64 = torch.float64
NOISELESS = HardwareSpec.ideal(kT=0.0)
H = NOISELESS.sample_interval_tau  # 0.1 tau: analog times live on this grid


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).to(F64)  # N = 23


def data(b: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(b) % 2
    return torch.randn(b, 4, dtype=F64, generator=gen) + 1.5 * y[:, None], y


def params(model: nn.Module) -> torch.Tensor:
    return flatten_params(p.detach() for p in model.parameters()).clone()


def take_step(opt: torch.optim.Optimizer, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    if hasattr(opt, "set_batch"):
        opt.set_batch(x, y)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = batch_loss(model(x), y, "cross_entropy")
        loss.backward()
        return loss

    return float(opt.step(closure).detach())


def system(model: nn.Module, x: torch.Tensor, y: torch.Tensor, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, g)`` of a TNGD step at the model's current parameters."""
    U, _ = ggn_factor(model, x, "cross_entropy")
    model.zero_grad()
    batch_loss(model(x), y, "cross_entropy").backward()
    g = flatten_params(p.grad for p in model.parameters()).clone()
    model.zero_grad()
    return U @ U.mT + damping * torch.eye(U.shape[0], dtype=F64), g


def mean_path(A: torch.Tensor, g: torch.Tensor, x0: torch.Tensor, times: list[float]) -> list[torch.Tensor]:
    """``x* + exp(-A_hat t)(x0 - x*)`` at each time, ``A_hat = A / max|A|``."""
    lam, V = torch.linalg.eigh(A / A.abs().max())
    x_star = torch.linalg.solve(A, g)
    c = V.mT @ (x0 - x_star)
    return [x_star + V @ (torch.exp(-lam * t) * c) for t in times]


def test_long_analog_time_is_the_ngd_step() -> None:
    damping, x, y = 0.05, *data()
    base = mlp()
    A, _ = system(base, x, y, damping)
    # slowest chip mode decays as exp(-lambda_min(A) t / alpha): take it to e^-40
    rate = float(torch.linalg.eigvalsh(A)[0] / A.abs().max())
    t = math.ceil(40 / rate / H) * H
    tngd_model, ngd_model = copy.deepcopy(base), copy.deepcopy(base)
    opt = TNGD(tngd_model, lr=0.7, damping=damping, analog_time_tau=t, hardware=NOISELESS)
    take_step(opt, tngd_model, x, y)
    take_step(NGD(ngd_model, lr=0.7, damping=damping, method="dense"), ngd_model, x, y)
    theta0 = params(base)
    ngd_update, tngd_update = theta0 - params(ngd_model), theta0 - params(tngd_model)
    assert float((tngd_update - ngd_update).norm() / ngd_update.norm()) < 1e-9
    diag = opt.last_diagnostics.extra["thermo"]
    assert diag.analog_time_tau == pytest.approx(t) and opt.last_stats["analog_time_tau"] == pytest.approx(t)
    assert diag.matrix_scale == pytest.approx(float(A.abs().max()), rel=1e-12)
    assert opt.last_diagnostics.analog_time_s == pytest.approx(t * NOISELESS.tau_s)


def test_zero_analog_time_from_the_gradient_is_sgd() -> None:
    x, y = data()
    base = mlp()
    tngd_model, sgd_model = copy.deepcopy(base), copy.deepcopy(base)
    opt = TNGD(tngd_model, lr=0.3, analog_time_tau=0.0, initial_state="gradient")
    take_step(opt, tngd_model, x, y)
    take_step(torch.optim.SGD(sgd_model.parameters(), lr=0.3), sgd_model, x, y)
    assert torch.equal(params(tngd_model), params(sgd_model))
    assert opt.last_diagnostics.analog_time_s == 0.0 and opt.last_stats["analog_time_tau"] == 0.0


@pytest.mark.parametrize("initial_state", ["gradient", "zero"])
def test_mean_relaxation_over_two_warm_started_steps(initial_state: str) -> None:
    """Noiseless chip, t = 1 tau: step 1 relaxes from g (or 0), step 2 from step 1's state."""
    damping, t, lr, x, y = 0.05, 10 * H, 0.2, *data()
    model = mlp()
    opt = TNGD(model, lr=lr, damping=damping, analog_time_tau=t, hardware=NOISELESS, initial_state=initial_state)
    state = None
    for _ in range(2):
        A, g = system(model, x, y, damping)
        x0 = g if state is None else state
        if initial_state == "zero" and state is None:
            x0 = torch.zeros_like(g)
        (expected,) = mean_path(A, g, x0, [t])
        before = params(model)
        take_step(opt, model, x, y)
        read = (before - params(model)) / lr
        assert float((read - expected).norm() / expected.norm()) < 1e-10
        state = torch.as_tensor(opt.analog_state.x)
        torch.testing.assert_close(state, expected, rtol=0, atol=1e-10 * float(expected.norm()))
        # the relaxation is genuinely partial: far from both x0 and the natural gradient
        x_star = torch.linalg.solve(A, g)
        assert float((read - x_star).norm()) > 1e-3 * float(x_star.norm())


def test_readout_window_averages_the_end_of_the_run() -> None:
    """t = 1 tau read over the last 0.5 tau: the average of the samples at 0.6, ..., 1.0 tau."""
    damping, lr, x, y = 0.05, 0.2, *data()
    model = mlp()
    A, g = system(model, x, y, damping)
    opt = TNGD(model, lr=lr, damping=damping, analog_time_tau=10 * H, readout_window_tau=5 * H, hardware=NOISELESS)
    before = params(model)
    take_step(opt, model, x, y)
    samples = mean_path(A, g, g, [k * H for k in range(6, 11)])
    read = (before - params(model)) / lr
    expected = torch.stack(samples).mean(0)
    assert float((read - expected).norm() / expected.norm()) < 1e-10
    assert float((torch.as_tensor(opt.analog_state.x) - samples[-1]).norm() / samples[-1].norm()) < 1e-10
    assert opt.last_stats["analog_time_tau"] == pytest.approx(10 * H)


@pytest.mark.parametrize("m", [150, pytest.param(2000, marks=pytest.mark.slow)])
def test_noisy_update_follows_the_ou_law_over_seeds(m: int) -> None:
    """One step from x0 = g on a chip with kT = 1e-2, t = 1 tau, over M seeds: the whitened
    mean error is chi-square(N) / M-distributed, each sample's squared Mahalanobis distance
    averages N (sd sqrt(2N / M)) and each eigenmode's variance matches (rel. sd sqrt(2 / M))."""
    damping, t, x, y = 0.05, 10 * H, *data()
    hw = HardwareSpec.ideal(kT=1e-2)
    base = mlp()
    A, g = system(base, x, y, damping)
    n = g.numel()
    theta0 = params(base)
    reads = []
    for seed in range(m):
        model = copy.deepcopy(base)
        opt = TNGD(model, lr=1.0, damping=damping, analog_time_tau=t, hardware=hw, seed=seed)
        take_step(opt, model, x, y)
        reads.append(theta0 - params(model))
    reads = torch.stack(reads)  # (M, N)
    diag = opt.last_diagnostics.extra["thermo"]
    alpha, beta = diag.matrix_scale, float(diag.rhs_scale[0])
    assert alpha == pytest.approx(float(A.abs().max()), rel=1e-12) and beta == pytest.approx(float(g.abs().max()))
    (mu,) = mean_path(A, g, g, [t])
    lam, V = torch.linalg.eigh(A)
    mode_var = beta**2 * hw.kT / alpha * -torch.expm1(-2 * lam / alpha * t) / lam  # (N,)
    z = (reads - mu) @ V / mode_var.sqrt()  # whitened, (M, N): iid N(0, 1) in theory
    assert float(m * z.mean(0).pow(2).sum()) < stats.chi2.ppf(1 - 1e-4, n)
    assert abs(float(z.pow(2).sum(1).mean()) - n) < 5 * math.sqrt(2 * n / m)
    assert float((z.pow(2).mean(0) - 1).abs().max()) < 5 * math.sqrt(2 / m)


def test_warm_start_differs_from_restarting_every_step() -> None:
    damping, t, x, y = 0.05, 10 * H, *data()
    runs = {}
    for warm in (True, False):
        model = mlp()
        opt = TNGD(model, lr=0.2, damping=damping, analog_time_tau=t, hardware=NOISELESS, warm_start=warm)
        trajectory = [params(model)]
        for _ in range(2):
            take_step(opt, model, x, y)
            trajectory.append(params(model))
        runs[warm] = (model, trajectory)
    (_, warm), (_, cold) = runs[True], runs[False]
    assert torch.equal(warm[1], cold[1])
    second_warm, second_cold = warm[1] - warm[2], cold[1] - cold[2]
    assert float((second_warm - second_cold).norm()) > 1e-2 * float(second_cold.norm())
    # without warm start the second step is a first step from where the first one left off
    fresh = mlp()
    with torch.no_grad():
        for p, v in zip(fresh.parameters(), torch.split(cold[1], [p.numel() for p in fresh.parameters()])):
            p.copy_(v.view_as(p))
    take_step(TNGD(fresh, lr=0.2, damping=damping, analog_time_tau=t, hardware=NOISELESS), fresh, x, y)
    torch.testing.assert_close(params(fresh), cold[2], rtol=0, atol=1e-14)


def test_checkpoint_resumes_the_same_noisy_run() -> None:
    hw, x, y = HardwareSpec.ideal(kT=1e-2), *data()
    options = dict(lr=0.2, damping=0.05, analog_time_tau=10 * H, hardware=hw, seed=3)
    model = mlp()
    opt = TNGD(model, **options)
    for _ in range(2):
        take_step(opt, model, x, y)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    for _ in range(2):
        take_step(opt, model, x, y)
    expected = params(model)

    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)  # tensors and plain values only
    assert isinstance(checkpoint["opt"]["tngd"]["analog_x"], torch.Tensor)
    resumed = mlp(seed=5)
    resumed.load_state_dict(checkpoint["model"])
    opt2 = TNGD(resumed, **options)
    opt2.load_state_dict(checkpoint["opt"])
    for _ in range(2):
        take_step(opt2, resumed, x, y)
    assert torch.equal(params(resumed), expected)
    # not vacuous: another noise seed, or a lost analog state, gives another run
    for change in ({"seed": 4}, {"lose_state": True}):
        other = mlp(seed=5)
        other.load_state_dict(checkpoint["model"])
        opt3 = TNGD(other, **{**options, "seed": change.get("seed", 3)})
        opt3.load_state_dict(checkpoint["opt"])
        if change.get("lose_state"):
            opt3.analog_state = None
        for _ in range(2):
            take_step(opt3, other, x, y)
        assert not torch.allclose(params(other), expected, rtol=0, atol=1e-9)


def test_published_hardware_trains() -> None:
    """16-bit converters, rails and the published noise: the loss still falls step by step."""
    x, y = data(16, seed=4)
    model = mlp(seed=2)
    opt = TNGD(model, lr=0.5, damping=0.01, analog_time_tau=50.0, hardware="published")
    losses = [take_step(opt, model, x, y) for _ in range(6)]
    assert losses[-1] < 0.5 * losses[0]
    assert opt.last_diagnostics.analog_time_s == pytest.approx(50 * 1e-6)


def test_bad_configurations_are_refused() -> None:
    model = mlp()
    with pytest.raises(UnsupportedConfigurationError, match="sample interval"):
        TNGD(model, analog_time_tau=0.05)
    with pytest.raises(UnsupportedConfigurationError, match="longer than"):
        TNGD(model, analog_time_tau=1.0, readout_window_tau=2.0)
    with pytest.raises(UnsupportedConfigurationError, match="burn_in_tau"):
        TNGD(model, burn_in_tau=3.0)
    with pytest.raises(UnsupportedConfigurationError, match="unknown SolverConfig"):
        TNGD(model, warp_speed=True)
    with pytest.raises(UnsupportedConfigurationError, match="initial_state"):
        TNGD(model, initial_state="random")
    with pytest.raises(UnsupportedConfigurationError, match="damping"):
        TNGD(model, damping=0.0)
    with pytest.raises(UnsupportedConfigurationError, match="n_units"):
        TNGD(model, hardware=HardwareSpec.ideal(n_units=16))  # N = 23: would be tiled
    opt = TNGD(model)
    opt.param_groups[0]["analog_time_tau"] = 0.33  # a schedule that leaves the grid
    x, y = data()
    with pytest.raises(UnsupportedConfigurationError, match="sample interval"):
        take_step(opt, model, x, y)
    assert bool(torch.isfinite(params(model)).all())
