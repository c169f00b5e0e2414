"""The hybrid-loop device: warm start, delay, reset and converters on hand-built two-step cases."""

from __future__ import annotations

import pytest
import torch

from thermo import preset
from thermo.errors import HardwareSpecError, InputError
from thermo.hybrid import LowRankDevice, LowRankDeviceSpec, convert
from thermo.lowrank import LowRankCurvature, LowRankOU

N, R, LAM = 12, 3, 0.2


def _problem(seed: int) -> tuple[LowRankCurvature, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    U = torch.randn(N, R, generator=gen, dtype=torch.float64)
    return LowRankCurvature.from_matrix(U, LAM), torch.randn(N, generator=gen, dtype=torch.float64)


def _natural_gradient(curv: LowRankCurvature, g: torch.Tensor) -> torch.Tensor:
    return torch.linalg.solve(curv.dense(), g)


def test_t_zero_reads_the_start_and_large_t_reads_the_natural_gradient() -> None:
    curv, g = _problem(0)
    device = LowRankDevice(LowRankDeviceSpec())
    device.upload(curv, g)
    device.reset(g)
    assert torch.equal(device.run(0.0), g)  # x0 = g: the SGD step
    device.reset(g)
    x = device.run(400.0)  # lam t = 80: the transient is e^-80
    torch.testing.assert_close(x, _natural_gradient(curv, g), rtol=1e-10, atol=1e-12)


def test_warm_start_continues_from_the_previous_final_state() -> None:
    (c1, g1), (c2, g2) = _problem(1), _problem(2)
    device = LowRankDevice(LowRankDeviceSpec())
    device.upload(c1, g1)
    device.reset(g1)
    first = device.run(2.0)
    device.upload(c2, g2)
    second = device.run(3.0)
    expected_first = LowRankOU(c1, 0.0).mean(g1, g1, 2.0)
    torch.testing.assert_close(first, expected_first)
    torch.testing.assert_close(second, LowRankOU(c2, 0.0).mean(expected_first, g2, 3.0))
    assert device.analog_time_tau == pytest.approx(5.0)
    device.reset(None)  # a reset starts from zero volts
    torch.testing.assert_close(device.run(3.0), LowRankOU(c2, 0.0).mean(torch.zeros(N, dtype=torch.float64), g2, 3.0))


def test_the_delay_runs_the_previous_upload_before_the_next_one() -> None:
    (c1, g1), (c2, g2) = _problem(3), _problem(4)
    device = LowRankDevice(LowRankDeviceSpec())
    device.idle(0.5)  # nothing uploaded yet: nothing runs
    assert device.analog_time_tau == 0
    device.upload(c1, g1)
    device.reset(g1)
    x1 = device.run(1.0)
    device.idle(0.5)
    device.upload(c2, g2)
    x2 = device.run(1.0)
    after_delay = LowRankOU(c1, 0.0).mean(x1, g1, 0.5)
    torch.testing.assert_close(x2, LowRankOU(c2, 0.0).mean(after_delay, g2, 1.0))
    assert device.analog_time_tau == pytest.approx(2.5)


def test_noise_reads_are_reproducible_and_spread_as_the_ou_law() -> None:
    curv, g = _problem(5)
    spec = LowRankDeviceSpec(kappa=0.01)
    reads = []
    for _ in range(2):
        device = LowRankDevice(spec, torch.Generator().manual_seed(7))
        device.upload(curv, g)
        device.reset(g)
        reads.append(device.run(1.0))
    assert torch.equal(reads[0], reads[1])
    # over many seeds the read's covariance is C(t) = kappa A^-1 (I - e^{-2At})
    draws = []
    for seed in range(4000):
        device = LowRankDevice(spec, torch.Generator().manual_seed(seed))
        device.upload(curv, g)
        device.reset(g)
        draws.append(device.run(1.0))
    x = torch.stack(draws)
    ou = LowRankOU(curv, 0.01)
    mean = ou.mean(g, g, 1.0)
    stderr = ou.dense_covariance(1.0).diagonal().sqrt() / 4000**0.5
    assert bool(((x.mean(0) - mean).abs() <= 5 * stderr).all())


def test_converters_quantize_the_input_and_the_readout() -> None:
    curv, g = _problem(6)
    device = LowRankDevice(LowRankDeviceSpec(bits_in=4, bits_out=6))
    device.upload(curv, g)
    device.reset(g)
    x = device.run(400.0)
    g_q = convert(g, 4, None)
    assert len(torch.unique(g_q)) <= 2**4 - 1 and not torch.equal(g_q, g)
    ideal = _natural_gradient(curv, g_q)  # the dynamics see the converted input
    step = float(ideal.abs().max()) / (2**5 - 1)
    assert float((x - ideal).abs().max()) <= step / 2 + 1e-9  # and the ADC rounds the read
    torch.testing.assert_close(x / step, torch.round(x / step), rtol=0, atol=1e-9)
    ranged = LowRankDevice(LowRankDeviceSpec(output_range=0.1))
    ranged.upload(curv, g)
    ranged.reset(g)
    assert float(ranged.run(400.0).abs().max()) <= 0.1  # fixed rails saturate


def test_the_spec_comes_from_the_hardware_and_refuses_bad_values() -> None:
    hw = preset("published")
    spec = LowRankDeviceSpec.from_hardware(hw, n_readout=5)
    assert (spec.tau_s, spec.kappa, spec.bits_in, spec.bits_out) == (hw.tau_s, hw.kT, hw.bits_b, hw.bits_adc)
    assert spec.n_readout == 5 and spec.sample_interval_tau == pytest.approx(hw.sample_interval_tau)
    for bad in (dict(kappa=-1.0), dict(bits_in=1), dict(n_readout=0), dict(tau_s=0.0), dict(method="euler"),
                dict(output_range=0.0)):
        with pytest.raises(HardwareSpecError):
            LowRankDeviceSpec(**bad)
    device = LowRankDevice(LowRankDeviceSpec())
    with pytest.raises(InputError, match="upload"):
        device.run(1.0)
    curv, g = _problem(7)
    with pytest.raises(InputError, match="shape"):
        device.upload(curv, g[:-1])
    device.upload(curv, g)
    with pytest.raises(InputError, match="delay"):
        device.idle(-1.0)


def test_krylov_and_eigen_devices_agree() -> None:
    curv, g = _problem(8)
    reads = []
    for method in ("eigen", "krylov"):
        device = LowRankDevice(LowRankDeviceSpec(method=method, n_readout=4))
        device.upload(curv, g)
        device.reset(g)
        reads.append(device.run(2.0))
    torch.testing.assert_close(reads[0], reads[1], rtol=1e-8, atol=1e-10)


def test_a_non_finite_curvature_is_refused_by_name() -> None:
    from thermo.errors import NonFiniteInputError

    curv, g = _problem(9)
    bad = LowRankCurvature(apply_u=curv.apply_u, apply_ut=curv.apply_ut, gram=curv.gram, damping=LAM, n=N)
    object.__setattr__(bad, "gram", torch.full_like(curv.gram, float("nan")))
    with pytest.raises(NonFiniteInputError, match="Gram"):
        LowRankDevice(LowRankDeviceSpec()).upload(bad, g)
