"""TNGD on the exact low-rank device: the NGD and SGD limits, warm start and delay on hand-built
two-step cases, TNGD-Adam, noise reproducibility, checkpoints and the choice of path."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from digital.curvature import batch_loss, flatten_params, ggn_factor
from digital.errors import UnsupportedConfigurationError
from digital.ngd import NGD
from digital.tngd import TNGD
from thermo import HardwareSpec
from thermo.capabilities import TURN_OFF, Nonideality, describe
from thermo.lowrank import LowRankCurvature, LowRankOU

from .test_tngd import data, mlp, params, take_step

F64 = torch.float64
QUIET = HardwareSpec.ideal(kT=0.0)


def curvature(model: nn.Module, x: torch.Tensor, y: torch.Tensor, damping: float) -> tuple[LowRankCurvature, torch.Tensor]:
    U, _ = ggn_factor(model, x, "cross_entropy")
    model.zero_grad()
    batch_loss(model(x), y, "cross_entropy").backward()
    g = flatten_params(p.grad for p in model.parameters()).clone()
    model.zero_grad()
    return LowRankCurvature.from_matrix(U, damping), g


def test_long_analog_time_is_the_woodbury_ngd_step() -> None:
    x, y = data()
    tngd_model, ngd_model = mlp(), mlp()
    take_step(TNGD(tngd_model, lr=0.7, damping=0.5, analog_time_tau=100.0, hardware=QUIET, method="exact"), tngd_model, x, y)
    take_step(NGD(ngd_model, lr=0.7, damping=0.5, method="woodbury"), ngd_model, x, y)
    step_t, step_n = params(tngd_model) - params(mlp()), params(ngd_model) - params(mlp())
    assert float((step_t - step_n).norm() / step_n.norm()) < 1e-8


def test_zero_analog_time_from_the_gradient_is_sgd() -> None:
    x, y = data()
    model = mlp()
    take_step(TNGD(model, lr=0.3, analog_time_tau=0.0, hardware=QUIET), model, x, y)
    _, g = curvature(mlp(), x, y, 0.1)
    torch.testing.assert_close(params(model), params(mlp()) - 0.3 * g)


@pytest.mark.parametrize("delay", [0.0, 0.4])
def test_two_warm_started_steps_with_a_delay(delay: float) -> None:
    x, y = data()
    lr, damping, t = 0.2, 0.1, 1.5
    model = mlp()
    opt = TNGD(model, lr=lr, damping=damping, analog_time_tau=t, delay_tau=delay, hardware=QUIET)
    assert opt.method == "exact"
    ref = mlp()
    c1, g1 = curvature(ref, x, y, damping)
    x1 = LowRankOU(c1, 0.0).mean(g1, g1, t)
    take_step(opt, model, x, y)
    torch.testing.assert_close(params(model), params(ref) - lr * x1)
    with torch.no_grad():  # the reference model takes the same step
        offset = 0
        for p in ref.parameters():
            p -= lr * x1[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
    state = LowRankOU(c1, 0.0).mean(x1, g1, delay)  # the device ran on the first upload during t_d
    c2, g2 = curvature(ref, x, y, damping)
    x2 = LowRankOU(c2, 0.0).mean(state, g2, t)
    take_step(opt, model, x, y)
    torch.testing.assert_close(params(model), params(ref) - lr * x2)
    assert opt.last_stats["analog_time_tau"] == pytest.approx(t + delay)


def test_tngd_adam_steps_by_the_sign_of_the_read() -> None:
    x, y = data()
    model = mlp()
    take_step(TNGD(model, lr=0.01, damping=0.5, analog_time_tau=100.0, hardware=QUIET, adam=True), model, x, y)
    c, g = curvature(mlp(), x, y, 0.5)
    natural = torch.linalg.solve(c.dense(), g)
    torch.testing.assert_close(params(model), params(mlp()) - 0.01 * natural / (natural.abs() + 1e-8))


def test_noise_is_seeded_and_a_resumed_run_continues_identically() -> None:
    x, y = data()
    options = dict(lr=0.2, damping=0.1, analog_time_tau=2.0, delay_tau=0.2, hardware=HardwareSpec.ideal(kT=1e-3),
                   seed=5, n_readout=4)
    model = mlp()
    opt = TNGD(model, **options)
    take_step(opt, model, x, y)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    take_step(opt, model, x, y)
    take_step(opt, model, x, y)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed = mlp()
    resumed.load_state_dict(saved["model"])
    opt2 = TNGD(resumed, **options)
    opt2.load_state_dict(saved["opt"])
    take_step(opt2, resumed, x, y)
    take_step(opt2, resumed, x, y)
    assert torch.equal(params(model), params(resumed))
    other = mlp()
    opt3 = TNGD(other, **{**options, "seed": 6})
    for _ in range(3):
        take_step(opt3, other, x, y)
    assert not torch.equal(params(model), params(other))  # the noise is real


def test_krylov_path_agrees_with_the_eigen_path() -> None:
    x, y = data()
    models = [mlp(), mlp()]
    for model, method in zip(models, ("exact", "krylov")):
        opt = TNGD(model, lr=0.2, damping=0.1, analog_time_tau=3.0, hardware=QUIET, method=method)
        take_step(opt, model, x, y)
        take_step(opt, model, x, y)
    torch.testing.assert_close(params(models[0]), params(models[1]), rtol=1e-8, atol=1e-10)


def test_the_path_follows_the_hardware() -> None:
    model = mlp()
    assert TNGD(model, hardware="ideal").method == "exact"
    published = TNGD(model, hardware="published")  # its coupling DAC is modelled on the exact path
    assert published.method == "exact" and published.device.hardware.bits_A == 16
    assert TNGD(model, hardware="published", method="krylov").method == "krylov"
    assert TNGD(model, hardware=HardwareSpec.published(mismatch_sigma=0.01)).method == "simulator"
    with pytest.raises(UnsupportedConfigurationError, match="clipping"):
        TNGD(model, hardware=HardwareSpec.published(clip_in_dynamics=True), method="exact")
    with pytest.raises(UnsupportedConfigurationError, match="mismatch.*drift"):
        TNGD(model, hardware="noisy", method="krylov")
    exact = TNGD(model, hardware=HardwareSpec.published(bits_A=None), n_readout=3)
    assert exact.method == "exact" and exact.device.hardware.bits_b == 16 and exact.device.spec.n_readout == 3
    noisier = TNGD(model, hardware="published", kappa=1e-3)  # kappa replaces the chip's kT on the device
    assert noisier.device.hardware == HardwareSpec.published(kT=1e-3) and noisier.hardware == HardwareSpec.published()
    with pytest.raises(UnsupportedConfigurationError, match="delay_tau"):
        TNGD(model, method="simulator", delay_tau=1.0)
    with pytest.raises(UnsupportedConfigurationError, match="method"):
        TNGD(model, method="euler")


def test_a_non_finite_curvature_stops_the_step_as_a_non_finite_gradient(monkeypatch) -> None:
    from digital.errors import NonFiniteGradientError
    from digital.ggn import GGNOperator

    x, y = data()
    model = mlp()
    opt = TNGD(model, lr=0.1, damping=0.1, analog_time_tau=1.0, hardware=QUIET)
    monkeypatch.setattr(GGNOperator, "gram", lambda self, strategy=None: torch.full((self.rank, self.rank), float("nan"),
                                                                                     dtype=F64))
    with pytest.raises(NonFiniteGradientError, match="step 1"):
        take_step(opt, model, x, y)


# -- the coupling DAC on the exact path, against explicit quantization -------------------------------
def tiny_cnn() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(32, 3)).to(F64)  # N = 119


def cnn_data(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    return torch.randn(b, 1, 4, 4, dtype=F64, generator=gen), torch.arange(b) % 3


def explicit_quantized_system(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bits: int, damping: float):
    """``(A_q, g)`` built independently of the code under test: J_f by jacrev, each H_i by autograd's
    Hessian of the per-example loss, the b d_z x b d_z H_L and J_f quantized by nearest rounding, each on
    a grid auto-ranged to its own max|entry| (levels k max|X| / (2^(bits-1) - 1))."""
    from digital.curvature import per_example_jacobian, trainable_params

    J3, z = per_example_jacobian(model, trainable_params(model), x, return_outputs=True)
    b, d_z, n = J3.shape
    J = J3.reshape(b * d_z, n)
    H = torch.block_diag(*[torch.autograd.functional.hessian(lambda v: -torch.log_softmax(v, 0)[0], z[i])
                           for i in range(b)])

    def q(a: torch.Tensor) -> torch.Tensor:
        step = float(a.abs().max()) / (2 ** (bits - 1) - 1)
        return torch.round(a / step) * step

    Jq, Hq = q(J), q(H)
    A = Jq.T @ Hq @ Jq / b + damping * torch.eye(n, dtype=F64)
    model.zero_grad()
    batch_loss(model(x), y, "cross_entropy").backward()
    g = flatten_params(p.grad for p in model.parameters()).clone()
    model.zero_grad()
    return A, g, Jq, Hq, J


@pytest.mark.parametrize("make", [mlp, tiny_cnn], ids=["mlp", "cnn"])
def test_the_exact_path_realizes_the_explicitly_quantized_operator(make) -> None:
    """A 5-bit coupling DAC (errors of a few %, far above rounding), no input/ADC quantization and no
    noise: the TNGD step is -lr (exp(-A_q t) g + A_q^-1 (I - exp(-A_q t)) g), A_q the explicit reference,
    to rounding; the ideal operator's step differs by orders of magnitude more."""
    x, y = data() if make is mlp else cnn_data()
    bits, lr, damping, t = 5, 0.3, 0.05, 2.0
    hw = HardwareSpec.ideal(kT=0.0, bits_A=bits)
    model = make()
    opt = TNGD(model, lr=lr, damping=damping, analog_time_tau=t, hardware=hw)
    assert opt.method == "exact"
    A, g, Jq, Hq, J = explicit_quantized_system(make(), x, y, bits, damping)
    take_step(opt, model, x, y)
    arrays = opt.programmed
    torch.testing.assert_close(arrays.jacobian, Jq, rtol=1e-12, atol=1e-14)  # the J_f (and J_f^T) array
    torch.testing.assert_close(torch.block_diag(*arrays.hessian), Hq, rtol=1e-12, atol=1e-14)  # the H_L array
    curv = arrays.curvature(damping)
    torch.testing.assert_close(curv.dense(), A, rtol=1e-11, atol=1e-12)  # products with U_q and its core
    torch.testing.assert_close(curv.gram, Jq @ Jq.T / x.shape[0], rtol=1e-11, atol=1e-12)
    E = torch.linalg.matrix_exp(-A * t)
    read = E @ g + torch.linalg.solve(A, g - E @ g)
    step = params(model) - params(make())
    assert float((step + lr * read).norm() / step.norm()) < 1e-9
    ideal = make()
    take_step(TNGD(ideal, lr=lr, damping=damping, analog_time_tau=t, hardware=HardwareSpec.ideal(kT=0.0)), ideal, x, y)
    assert float((params(ideal) - params(model)).norm() / step.norm()) > 1e-4  # quantization is visible
    assert float((Jq - J).norm() / J.norm()) > 1e-3


def test_the_noise_law_on_the_quantized_operator_has_the_explicit_mean() -> None:
    """The exact law of thermo.lowrank on U_q: M draws of x(t) from x0 = g average to the explicit mean;
    each coordinate's sample mean is within 5 standard errors sqrt(C_ii / M) of it (C the explicit
    covariance kappa A_q^-1 (I - exp(-2 A_q t)); 23 coordinates, P(|Z| > 5) = 6e-7 each)."""
    x, y = data()
    bits, damping, t, kappa, m = 5, 0.05, 1.0, 1e-2, 4000
    model = mlp()
    opt = TNGD(model, lr=0.1, damping=damping, analog_time_tau=t, hardware=HardwareSpec.ideal(kT=kappa, bits_A=bits))
    A, g, _, _, _ = explicit_quantized_system(mlp(), x, y, bits, damping)
    take_step(opt, model, x, y)
    ou = LowRankOU(opt.programmed.curvature(damping), kappa)
    eye = torch.eye(A.shape[0], dtype=F64)
    E = torch.linalg.matrix_exp(-A * t)
    mean = E @ g + torch.linalg.solve(A, g - E @ g)
    torch.testing.assert_close(ou.mean(g, g, t), mean, rtol=1e-10, atol=1e-12)
    cov = kappa * torch.linalg.solve(A, eye - torch.linalg.matrix_exp(-2 * A * t))
    torch.testing.assert_close(ou.dense_covariance(t), 0.5 * (cov + cov.T), rtol=1e-9, atol=1e-12)
    draws = ou.sample(g[:, None].expand(-1, m), g, t, torch.Generator().manual_seed(0))
    z = (draws.mean(dim=1) - mean) / (cov.diagonal() / m).sqrt()
    assert float(z.abs().max()) < 5.0


def test_published_hardware_keeps_the_digits_cnn_on_the_exact_path(monkeypatch) -> None:
    """The published preset's 16-bit coupling DAC used to route TNGD to the dense N x N chip simulator
    (N = 16,826: past 16 GB); now one step runs on the exact path under a 1 GB budget and never builds
    the simulator."""
    from digital.solvers.thermo_backend import ThermoSolver
    from digital.tasks import build_task

    def refuse(*args, **kwargs):
        raise AssertionError("the dense chip simulator was constructed")

    monkeypatch.setattr(ThermoSolver, "__init__", refuse)
    monkeypatch.setattr(TNGD, "relax_on_device", refuse)
    monkeypatch.setenv("TCD_MEMORY_BUDGET", "1GB")
    task = build_task("digits-cnn", seed=0)
    model = task.model
    x, y = task.train.inputs[:16], task.train.targets[:16]
    opt = TNGD(model, lr=0.01, damping=0.01, analog_time_tau=50.0, hardware="published")
    assert opt.method == "exact"
    before = params(model)
    take_step(opt, model, x, y)
    assert opt.programmed is not None and opt.programmed.jacobian.shape == (16 * 10, opt.num_params)
    assert opt.last_stats["rank"] == 160 and any("coupling DAC 16 bits" in n for n in opt.last_diagnostics.notes)
    assert bool(torch.isfinite(params(model)).all()) and not torch.equal(params(model), before)


def test_a_dense_simulator_plan_beyond_the_budget_is_refused_at_construction(monkeypatch) -> None:
    from digital.tasks import build_task
    from digital.tngd import dense_plan_bytes
    from thermo.errors import MemoryBudgetError

    monkeypatch.setenv("TCD_MEMORY_BUDGET", "1GB")
    model = build_task("digits-cnn", seed=0).model
    hw = HardwareSpec.published(mismatch_sigma=0.01)  # mismatch needs the simulator
    assert dense_plan_bytes(16826, 0, hw) > 16e9
    with pytest.raises(MemoryBudgetError, match=r"chip simulator.*N = 16826.*GB.*hardware without mismatch"):
        TNGD(model, hardware=hw)
    with pytest.raises(MemoryBudgetError, match="method='auto'"):
        TNGD(model, hardware="ideal", method="simulator")


@pytest.mark.parametrize("method", ["exact", "simulator"])
def test_a_step_without_set_batch_names_the_call_to_make(method: str) -> None:
    x, y = data()
    model = mlp()
    opt = TNGD(model, hardware=QUIET, method=method, analog_time_tau=1.0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = batch_loss(model(x), y, "cross_entropy")
        loss.backward()
        return loss

    with pytest.raises(UnsupportedConfigurationError, match=r"optimizer\.set_batch\(inputs, targets\)"):
        opt.step(closure)
    take_step(opt, model, x, y)  # set_batch, then step: fine
    with pytest.raises(UnsupportedConfigurationError, match=r"set_batch"):  # a step consumes the batch
        opt.step(closure)


# -- the path of each non-ideality, read from the declared lists (thermo.capabilities) -------------
def _only(feature: Nonideality) -> HardwareSpec:
    """A hardware with only ``feature`` switched on (an ADC or clipping inside the dynamics needs
    rails, stochastic rounding a quantized converter)."""
    F = Nonideality
    return HardwareSpec.ideal(kT=1e-6).replace(**{
        F.COUPLING_QUANTIZATION: dict(bits_A=8), F.INPUT_QUANTIZATION: dict(bits_b=8),
        F.ADC_QUANTIZATION: dict(bits_adc=8, v_range_v=1.0), F.STOCHASTIC_ROUNDING: dict(bits_b=8, rounding="stochastic"),
        F.READOUT_CLIPPING: dict(v_range_v=1.0), F.DYNAMICS_CLIPPING: dict(v_range_v=1.0, clip_in_dynamics=True),
        F.SYMMETRIC_MISMATCH: dict(mismatch_sigma=0.01), F.ASYMMETRIC_MISMATCH: dict(mismatch_sigma=0.01, mismatch_symmetric=False),
        F.DRIFT: dict(drift_sigma=0.01), F.UNDERDAMPED: dict(regime="underdamped", mass_s2=1e-13),
        F.TILING: dict(n_units=16),  # N = 23 parameters
    }[feature])


@pytest.mark.parametrize("feature", list(Nonideality), ids=lambda f: f.value)
def test_each_feature_takes_the_path_it_took_before_and_a_refusal_names_it(feature: Nonideality) -> None:
    """auto: the exact low-rank path unless the feature was one of the simulator's (mismatch,
    drift, clipping inside the dynamics, underdamped nodes), as before the declared lists. The one
    change: a model larger than the chip (n_units < N), which the exact path used to ignore, is
    refused on every path (neither tiles), naming n_units."""
    model = mlp()
    hw = _only(feature)
    name = describe(feature, hw, 23).split(" (")[0]
    if feature is Nonideality.TILING:
        for method in ("auto", "exact", "krylov", "simulator"):
            with pytest.raises(UnsupportedConfigurationError, match=r"n_units=16 < N=23.*n_units=None"):
                TNGD(model, hardware=hw, method=method)
        return
    before = "simulator" if (hw.mismatch_sigma or hw.drift_sigma or hw.clip_in_dynamics or hw.regime != "overdamped") \
        else "exact"
    assert TNGD(model, hardware=hw).method == before
    if before == "exact":
        assert TNGD(model, hardware=hw, method="krylov").method == "krylov"
        return
    off = ", ".join(f"{k}={v!r}" for k, v in TURN_OFF[feature].items())
    for method in ("exact", "krylov"):
        with pytest.raises(UnsupportedConfigurationError,
                           match=rf"method='{method}' cannot model {name}.*method='simulator'.*replace\({off}\)"):
            TNGD(model, hardware=hw, method=method)
