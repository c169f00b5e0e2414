"""The training paths on the GPU: K-FAC on the exact backend (and on the simulator's torch
backend), and TNGD's exact low-rank path, against the same runs on the CPU.

Models and batches are built in float64 on the CPU and copied to the device, so both runs start
from identical parameters; the exact backends are deterministic (the ``mc`` Fisher draws its
labels on the host), so parameters agree to float64 rounding after several steps. TNGD's noise is
drawn on the device's generator and is compared in law with the exact OU law of the step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
from scipy import stats
from torch import nn

from digital.curvature import batch_loss, flatten_params, ggn_factor
from digital.kfac import KFAC
from digital.ngd import NGD
from digital.solvers import get_solver
from digital.tngd import TNGD
from thermo import HardwareSpec
from thermo.lowrank import LowRankCurvature, LowRankOU
from thermo.matrices import random_spd
from tests.digital.test_tngd import take_step

pytestmark = pytest.mark.gpu

F64 = torch.float64
QUIET = HardwareSpec.ideal(kT=0.0)


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(F64)


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).to(F64)


MODELS: dict[str, tuple[Callable[[int], nn.Module], tuple[int, ...]]] = {"mlp": (mlp, (6,)), "cnn": (cnn, (1, 6, 6))}


def batch(shape: tuple[int, ...], b: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(b) % 3
    return torch.randn(b, *shape, dtype=F64, generator=gen) + y.view(-1, *([1] * len(shape))), y


def params(model: nn.Module) -> torch.Tensor:
    """The flat parameters, on the host."""
    return flatten_params(p.detach() for p in model.parameters()).cpu().clone()


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.cpu() - ref.cpu()).norm() / ref.cpu().norm())


def twin_runs(make_model: Callable[[], nn.Module], make_opt: Callable[[nn.Module], torch.optim.Optimizer],
              shape: tuple[int, ...], device: torch.device, steps: int) -> tuple[nn.Module, nn.Module, list[float], list[float]]:
    """The same training run on the CPU and on ``device``: (cpu model, device model, losses each)."""
    x, y = batch(shape)
    runs = []
    for where in (torch.device("cpu"), device):
        model = copy.deepcopy(make_model()).to(where)
        opt = make_opt(model)
        xs, ys = x.to(where), y.to(where)
        losses = [take_step(opt, model, xs, ys) for _ in range(steps)]
        runs.append((model, losses))
    (cpu_model, cpu_losses), (dev_model, dev_losses) = runs
    return cpu_model, dev_model, cpu_losses, dev_losses


# ------------------------------------------------------------------------------------------------
# K-FAC
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize(
    "options",
    [
        dict(fisher_type="type-2"),
        dict(fisher_type="mc", mode="solve"),
        dict(fisher_type="type-2", damping_mode="eigenbasis"),
        dict(fisher_type="empirical", damping_mode="factored", momentum=0.9, inv_update_steps=2),
    ],
    ids=["inverse-pi", "solve-mc", "eigenbasis", "factored-momentum"],
)
def test_kfac_on_the_exact_backend_runs_on_the_gpu_as_on_the_cpu(device, model_name: str, options: dict) -> None:
    make, shape = MODELS[model_name]
    cpu_model, dev_model, cpu_losses, dev_losses = twin_runs(
        lambda: make(0), lambda m: KFAC(m, lr=0.3, damping=1e-2, solver="exact", **options), shape, device, steps=4)
    assert next(dev_model.parameters()).device.type == device.type
    assert rel(params(dev_model), params(cpu_model)) < 1e-10
    assert dev_losses == pytest.approx(cpu_losses, rel=1e-10)
    moved = rel(params(cpu_model), params(make(0)))
    assert moved > 1e-3  # the run trained: the agreement is not that of two unmoved models


def test_kfac_on_the_simulator_on_the_gpu_agrees_with_the_exact_update(device) -> None:
    """Solve mode on the ideal chip simulated on the GPU (torch backend): each analog solve is
    accurate to its 1e-3 target, two chained solves per layer, so a few times the target on the
    whole update (the CPU test's tolerance)."""
    x, y = batch((6,))
    x, y = x.to(device), y.to(device)
    updates = {}
    for label, options in (
        ("exact", dict(solver="exact")),
        ("thermo", dict(solver="thermo", mode="solve", solver_options={
            "hardware": "ideal", "target_rel_error": 1e-3, "backend": "torch", "device": str(device)})),
    ):
        model = mlp().to(device)
        before = params(model)
        opt = KFAC(model, lr=0.3, damping=1e-2, fisher_type="type-2", kl_clip=None, **options)
        take_step(opt, model, x, y)
        updates[label] = params(model) - before
        if label == "thermo":
            assert opt.solver.simulator.backend.device.type == device.type
            assert opt.last_stats["analog_time_s"] > 0 and opt.last_stats["solver_calls"] == 4
    assert rel(updates["thermo"], updates["exact"]) < 5e-3


def test_the_backends_return_tensors_on_the_callers_device(device) -> None:
    A = torch.as_tensor(random_spd(8, 100.0, seed=1), device=device)
    b = torch.randn(8, dtype=F64, generator=torch.Generator().manual_seed(0)).to(device)
    ref = torch.linalg.solve(A.cpu() + 1e-3 * torch.eye(8, dtype=F64), b.cpu())
    exact = get_solver("exact").solve(A, b, 1e-3)
    assert exact.x.device == A.device and rel(exact.x, ref) < 1e-12
    thermo = get_solver("thermo", hardware="ideal", seed=0, target_rel_error=0.05, backend="torch",
                        device=str(device)).solve(A, b, 1e-3)
    assert thermo.x.device == A.device and thermo.x.dtype == A.dtype
    # the 95% bound, with a 2x margin: a single seeded run far in the tail
    assert rel(thermo.x, ref) < 2 * thermo.diagnostics.estimated_rel_error
    inv = get_solver("exact").inverse(A, 1e-3).inverse
    assert inv.device == A.device
    assert rel(inv, torch.linalg.inv(A.cpu() + 1e-3 * torch.eye(8, dtype=F64))) < 1e-10


# ------------------------------------------------------------------------------------------------
# TNGD, exact low-rank path
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize(
    "options",
    [
        dict(method="exact", analog_time_tau=1.5, delay_tau=0.4),
        dict(method="exact", analog_time_tau=2.0, readout_window_tau=0.5),
        dict(method="krylov", analog_time_tau=1.5),
        dict(method="exact", analog_time_tau=1.0, hardware=HardwareSpec.published(kT=0.0)),  # quantized arrays
    ],
    ids=["delay", "readout-window", "krylov", "published-quantized"],
)
def test_noiseless_tngd_runs_on_the_gpu_as_on_the_cpu(device, model_name: str, options: dict) -> None:
    make, shape = MODELS[model_name]
    options = {"hardware": QUIET, **options}
    cpu_model, dev_model, cpu_losses, dev_losses = twin_runs(
        lambda: make(0), lambda m: TNGD(m, lr=0.2, damping=0.1, **options), shape, device, steps=3)
    # the 16-bit converters round the same values to the same codes on both devices
    assert rel(params(dev_model), params(cpu_model)) < 1e-9
    assert dev_losses == pytest.approx(cpu_losses, rel=1e-9)
    assert rel(params(cpu_model), params(make(0))) > 1e-3


def test_tngd_at_long_analog_time_is_the_woodbury_ngd_step_on_the_gpu(device) -> None:
    x, y = batch((6,))
    x, y = x.to(device), y.to(device)
    tngd_model, ngd_model = mlp().to(device), mlp().to(device)
    take_step(TNGD(tngd_model, lr=0.7, damping=0.5, analog_time_tau=100.0, hardware=QUIET, method="exact"), tngd_model, x, y)
    take_step(NGD(ngd_model, lr=0.7, damping=0.5, method="woodbury"), ngd_model, x, y)
    start = params(mlp())
    step_t, step_n = params(tngd_model) - start, params(ngd_model) - start
    assert rel(step_t, step_n) < 1e-8


def test_tngd_noise_on_the_gpu_follows_the_exact_ou_law(device) -> None:
    """One step from x0 = g on the exact path with kappa = 1e-2, t = 1 tau, over M = 300 seeds:
    the read is x(t) ~ N(mean, C(t)), C(t) = kappa A^-1 (I - exp(-2 A t)), A = U U^T + lam I.
    Whitened by C(t): the mean's squared norm times M is chi-square(N); each read's squared norm
    averages N (sd sqrt(2N / M)); every coordinate's variance is 1 (rel. sd sqrt(2 / M))."""
    m, t, damping, kappa = 300, 1.0, 0.1, 1e-2
    x, y = batch((6,))
    base = mlp()
    U, _ = ggn_factor(base, x, "cross_entropy")
    base.zero_grad()
    batch_loss(base(x), y, "cross_entropy").backward()
    g = flatten_params(p.grad for p in base.parameters()).clone()
    base.zero_grad()
    ou = LowRankOU(LowRankCurvature.from_matrix(U, damping), kappa)  # the law, on the host, float64
    mean = ou.mean(g, g, t)
    cov = ou.dense_covariance(t)
    w, v = torch.linalg.eigh(cov)
    whiten = v / w.sqrt()  # z = (read - mean) @ whiten ~ N(0, I)
    theta0 = params(base)
    xs, ys = x.to(device), y.to(device)
    reads = []
    for seed in range(m):
        model = copy.deepcopy(base).to(device)
        take_step(TNGD(model, lr=1.0, damping=damping, analog_time_tau=t, hardware=HardwareSpec.ideal(kT=kappa),
                       method="exact", seed=seed), model, xs, ys)
        reads.append(theta0 - params(model))
    z = (torch.stack(reads) - mean) @ whiten  # (M, N)
    n = g.numel()
    assert float(m * z.mean(0).pow(2).sum()) < stats.chi2.ppf(1 - 1e-4, n)
    assert abs(float(z.pow(2).sum(1).mean()) - n) < 5 * math.sqrt(2 * n / m)
    assert float((z.pow(2).mean(0) - 1).abs().max()) < 5 * math.sqrt(2 / m)


def test_tngd_on_published_hardware_trains_on_the_gpu(device) -> None:
    """16-bit converters and the published noise: the loss still falls step by step."""
    x, y = batch((6,), b=16, seed=4)
    model = mlp(seed=2).to(device)
    opt = TNGD(model, lr=0.5, damping=0.01, analog_time_tau=50.0, hardware="published")
    assert opt.method == "exact"
    losses = [take_step(opt, model, x.to(device), y.to(device)) for _ in range(6)]
    assert losses[-1] < 0.5 * losses[0]
    assert opt.device.state.device.type == device.type
