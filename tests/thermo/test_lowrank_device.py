"""The hybrid-loop device: warm start, delay, reset and converters on hand-built two-step cases."""

from __future__ import annotations

import pytest
import torch

from thermo import HardwareSpec, preset
from thermo.capabilities import UnmodelledHardwareError
from thermo.errors import HardwareSpecError, InputError
from thermo.lowrank_device import LowRankDevice, LowRankDeviceSpec, convert
from thermo.lowrank import LowRankCurvature, LowRankOU

N, R, LAM = 12, 3, 0.2
QUIET = HardwareSpec.ideal(kT=0.0)  # no thermal noise: the reads are the mean


def _problem(seed: int) -> tuple[LowRankCurvature, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    U = torch.randn(N, R, generator=gen, dtype=torch.float64)
    return LowRankCurvature.from_matrix(U, LAM), torch.randn(N, generator=gen, dtype=torch.float64)


def _natural_gradient(curv: LowRankCurvature, g: torch.Tensor) -> torch.Tensor:
    return torch.linalg.solve(curv.dense(), g)


def test_t_zero_reads_the_start_and_large_t_reads_the_natural_gradient() -> None:
    curv, g = _problem(0)
    device = LowRankDevice(LowRankDeviceSpec(QUIET))
    device.upload(curv, g)
    device.reset(g)
    assert torch.equal(device.run(0.0), g)  # x0 = g: the SGD step
    device.reset(g)
    x = device.run(400.0)  # lam t = 80: the transient is e^-80
    torch.testing.assert_close(x, _natural_gradient(curv, g), rtol=1e-10, atol=1e-12)


def test_warm_start_continues_from_the_previous_final_state() -> None:
    (c1, g1), (c2, g2) = _problem(1), _problem(2)
    device = LowRankDevice(LowRankDeviceSpec(QUIET))
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
    device = LowRankDevice(LowRankDeviceSpec(QUIET))
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
    spec = LowRankDeviceSpec(HardwareSpec.ideal(kT=0.01))
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
    # the rails v_range_v only make the ADC valid: the device auto-ranges its converters
    device = LowRankDevice(LowRankDeviceSpec(QUIET.replace(bits_b=4, bits_adc=6, v_range_v=1.0)))
    device.upload(curv, g)
    device.reset(g)
    x = device.run(400.0)
    g_q = convert(g, 4, None)
    assert len(torch.unique(g_q)) <= 2**4 - 1 and not torch.equal(g_q, g)
    ideal = _natural_gradient(curv, g_q)  # the dynamics see the converted input
    step = float(ideal.abs().max()) / (2**5 - 1)
    assert float((x - ideal).abs().max()) <= step / 2 + 1e-9  # and the ADC rounds the read
    torch.testing.assert_close(x / step, torch.round(x / step), rtol=0, atol=1e-9)
    ranged = LowRankDevice(LowRankDeviceSpec(QUIET, output_range=0.1))
    ranged.upload(curv, g)
    ranged.reset(g)
    assert float(ranged.run(400.0).abs().max()) <= 0.1  # fixed rails saturate


def test_the_spec_holds_the_chip_and_refuses_bad_settings() -> None:
    hw = preset("published")
    spec = LowRankDeviceSpec(hw, n_readout=5)
    assert spec.hardware is hw and LowRankDevice(spec).hardware is hw and spec.n_readout == 5
    for bad in (dict(n_readout=0), dict(method="euler"), dict(output_range=0.0), dict(input_range=-1.0),
                dict(krylov_steps=0)):
        with pytest.raises(HardwareSpecError):
            LowRankDeviceSpec(QUIET, **bad)
    with pytest.raises(HardwareSpecError, match="HardwareSpec"):
        LowRankDeviceSpec("published")  # type: ignore[arg-type]
    device = LowRankDevice(LowRankDeviceSpec(QUIET))
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
        device = LowRankDevice(LowRankDeviceSpec(QUIET, method=method, n_readout=4))
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
        LowRankDevice(LowRankDeviceSpec(QUIET)).upload(bad, g)


# -- the coupling DAC on the arrays J_f, H_L, J_f^T ---------------------------------------------------
def _arrays(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    b, d_z, n = 3, 4, 9
    J = torch.randn(b * d_z, n, generator=gen, dtype=torch.float64)
    B = torch.randn(b, d_z, d_z, generator=gen, dtype=torch.float64)
    return J, B @ B.mT / d_z


def _explicit(x: torch.Tensor, bits: int, full_scale: float) -> torch.Tensor:
    """Nearest rounding onto the mid-tread grid of a DAC auto-ranged to max|x| (thermo.program's
    rule: alpha = max|x| / full_scale, levels k * full_scale / (2^(bits-1) - 1))."""
    alpha = float(x.abs().max()) / full_scale
    step = full_scale / (2 ** (bits - 1) - 1)
    return torch.round(x / alpha / step) * step * alpha


@pytest.mark.parametrize("coupling_range", [1.0, 3.0])
def test_program_arrays_rounds_each_array_on_its_own_auto_ranged_grid(coupling_range: float) -> None:
    from thermo.lowrank_device import program_arrays

    J, H = _arrays(0)
    bits = 5
    arrays = program_arrays(J, H, bits, coupling_range=coupling_range)
    torch.testing.assert_close(arrays.jacobian, _explicit(J, bits, coupling_range), rtol=1e-14, atol=0)
    torch.testing.assert_close(arrays.hessian, _explicit(H, bits, coupling_range), rtol=1e-14, atol=0)
    # a nearest DAC errs by at most half a level, and the largest entry of each array is a level
    half = 0.5 * float(J.abs().max()) / (2 ** (bits - 1) - 1)
    assert float((arrays.jacobian - J).abs().max()) <= half * (1 + 1e-12)
    assert float(arrays.jacobian.abs().max()) == pytest.approx(float(J.abs().max()), rel=1e-14)
    assert 0 < arrays.jacobian_rel_error < 0.1 and 0 < arrays.hessian_rel_error < 0.1
    # the realized operator: J_q^T blockdiag(H_q) J_q / b + lam I, Gram J_q J_q^T / b
    lam, b = 0.3, H.shape[0]
    curv = arrays.curvature(lam)
    Hq = torch.block_diag(*arrays.hessian)
    A = arrays.jacobian.T @ Hq @ arrays.jacobian / b + lam * torch.eye(J.shape[1], dtype=torch.float64)
    torch.testing.assert_close(curv.dense(), A, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(curv.gram, arrays.jacobian @ arrays.jacobian.T / b, rtol=1e-13, atol=1e-13)
    ideal = program_arrays(J, H, None)
    assert torch.equal(ideal.jacobian, J) and torch.equal(ideal.hessian, H)


def test_stochastic_rounding_is_seeded_unbiased_and_keeps_h_symmetric() -> None:
    from thermo.lowrank_device import program_arrays

    J, H = _arrays(1)
    bits = 4
    a1 = program_arrays(J, H, bits, "stochastic", seed=3)
    assert torch.equal(a1.jacobian, program_arrays(J, H, bits, "stochastic", seed=3).jacobian)
    assert torch.equal(a1.hessian, a1.hessian.mT)
    step = float(J.abs().max()) / (2 ** (bits - 1) - 1)
    codes = a1.jacobian / step
    torch.testing.assert_close(codes, torch.round(codes), rtol=0, atol=1e-9)  # every value on the grid
    assert float((a1.jacobian - J).abs().max()) < step * (1 + 1e-12)  # one of the two neighbours
    # unbiased: the mean of M draws is within 5 standard errors (each draw's error has variance <= step^2 / 4)
    m = 400
    mean = sum(program_arrays(J, H, bits, "stochastic", seed=s).jacobian for s in range(m)) / m
    assert float((mean - J).abs().max()) < 5 * 0.5 * step / m**0.5


def test_the_readout_samples_on_the_hardware_grid() -> None:
    """n_readout samples every hardware.sample_interval_tau ending at t: the read is their average,
    the window of the device's law (thermo.lowrank.LowRankOU.readout) on the chip's grid."""
    curv, g = _problem(10)
    t, n = 1.0, 4
    for rate in (1e7, 2e7):  # h = 0.1 and 0.05 tau
        hw = QUIET.replace(sample_rate_hz=rate)
        device = LowRankDevice(LowRankDeviceSpec(hw, n_readout=n))
        device.upload(curv, g)
        device.reset(g)
        read = device.run(t)
        ou = LowRankOU(curv, 0.0)
        h = hw.sample_interval_tau
        expected = sum(ou.mean(g, g, t - j * h) for j in range(n)) / n
        torch.testing.assert_close(read, expected, rtol=1e-10, atol=1e-12)


def test_the_device_refuses_hardware_it_does_not_model_by_name() -> None:
    for hw, feature in ((QUIET.replace(mismatch_sigma=0.01), "mismatch"), (QUIET.replace(drift_sigma=0.01), "drift"),
                        (QUIET.replace(v_range_v=1.0, clip_in_dynamics=True), "clipping inside the dynamics"),
                        (QUIET.replace(regime="underdamped", mass_s2=1e-13), "underdamped")):
        with pytest.raises(UnmodelledHardwareError, match=rf"{feature}.*dense chip simulator.*hardware\.replace"):
            LowRankDeviceSpec(hw)
    device = LowRankDevice(LowRankDeviceSpec(QUIET.replace(n_units=N - 1)))  # the size is known at the upload
    curv, g = _problem(11)
    with pytest.raises(UnmodelledHardwareError, match=rf"n_units={N - 1} < N={N}.*n_units=None"):
        device.upload(curv, g)
    LowRankDevice(LowRankDeviceSpec(QUIET.replace(n_units=N))).upload(curv, g)  # a chip that holds it


def test_the_input_dac_and_adc_round_as_the_hardware_says() -> None:
    """Stochastic rounding (the hardware's rounding, as on the dense chip): every converted value on
    the converter's grid, one of the two neighbours, seeded by the device's generator."""
    curv, g = _problem(12)
    hw = QUIET.replace(bits_b=4, bits_adc=5, v_range_v=1.0, rounding="stochastic")
    converted = []
    for seed in (0, 0, 1):
        device = LowRankDevice(LowRankDeviceSpec(hw), torch.Generator().manual_seed(seed))
        device.upload(curv, g)
        converted.append(device.g)
    assert torch.equal(converted[0], converted[1]) and not torch.equal(converted[0], converted[2])
    step = float(g.abs().max()) / (2**3 - 1)
    codes = converted[0] / step
    torch.testing.assert_close(codes, torch.round(codes), rtol=0, atol=1e-9)
    assert float((converted[0] - g).abs().max()) < step * (1 + 1e-12)
    nearest = LowRankDevice(LowRankDeviceSpec(hw.replace(rounding="nearest")))
    nearest.upload(curv, g)
    assert torch.equal(nearest.g, convert(g, 4, None))
