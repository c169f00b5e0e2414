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
    assert published.method == "exact" and published.device.spec.bits_coupling == 16
    assert TNGD(model, hardware="published", method="krylov").method == "krylov"
    assert TNGD(model, hardware=HardwareSpec.published(mismatch_sigma=0.01)).method == "simulator"
    with pytest.raises(UnsupportedConfigurationError, match="clipping"):
        TNGD(model, hardware=HardwareSpec.published(clip_in_dynamics=True), method="exact")
    with pytest.raises(UnsupportedConfigurationError, match="mismatch.*drift"):
        TNGD(model, hardware="noisy", method="krylov")
    exact = TNGD(model, hardware=HardwareSpec.published(bits_A=None), n_readout=3)
    assert exact.method == "exact" and exact.device.spec.bits_in == 16 and exact.device.spec.n_readout == 3
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
