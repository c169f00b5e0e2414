"""The cost model: device overheads by hand, knob by knob, and bad inputs."""

import dataclasses
import math

import numpy as np
import pytest

from thermo import cost, planning
from thermo.errors import HardwareSpecError, InputError
from thermo.device import CouplingDelivery, DeviceSpec, LinkSpec
from thermo.hardware import HardwareSpec
from thermo.cost import TimingBreakdown
from thermo.planning import SpectrumInfo


# ------------------------------------------------------------------------------------------------
# device overheads
DEVICE_FIELDS = {f.name for f in dataclasses.fields(DeviceSpec)} - {"chip", "link"}


def small_hw(link_bandwidth_bps=1e9, **over):
    """A small device: one chip of the figures below on a 1 Gbit/s, 2 us link; device knobs
    (``n_chips``, ``coupling_delivery``...) and chip fields both go in ``over``."""
    chip = dict(
        tau_s=1e-6, kT=1e-3, bits_A=8, bits_b=10, bits_adc=12, v_range_v=1.0, sample_rate_hz=1e7,
        program_settle_s=3e-6, dac_conversion_s=1e-8,
        adc_conversion_s=5e-8, power_per_unit_w=2e-3, energy_per_conversion_j=1e-11,
    )
    knobs = {k: over.pop(k) for k in list(over) if k in DEVICE_FIELDS}
    chip.update(over)
    return DeviceSpec(chip=HardwareSpec(**chip), link=LinkSpec(bandwidth_bps=link_bandwidth_bps, latency_s=2e-6), **knobs)


LAM4 = np.array([0.5, 1.0, 2.0, 4.0])


def test_solve_overheads_by_hand():
    hw = small_hw(n_chips=2)
    eps, norm, k = 1e-2, 0.8, 3
    out = cost.estimate_solve(hw, LAM4, target_rel_error=eps, solution_norm=norm, n_rhs=k)
    n = planning.solve_samples(LAM4, hw.chip.kT, eps, norm, sample_interval_tau=0.1)
    t0 = planning.equilibration_time_tau(LAM4, eps)
    lat, bw, d = 2e-6, 1e9, 4
    # 3 right-hand sides on 2 chips: rounds of 2 and 1 chains; couplings sent to both chips once
    assert out.program_s == pytest.approx(lat + 2 * d * d * 8 / bw + d * 1e-8, rel=1e-12)
    inputs = sum(lat + c * d * 10 / bw + 1e-8 + 3e-6 for c in (2, 1))
    assert out.input_s == pytest.approx(inputs, rel=1e-12)
    assert out.equilibrate_s == pytest.approx(2 * t0 * 1e-6, rel=1e-12)
    assert out.window_s == pytest.approx(2 * n * 0.1 * 1e-6, rel=1e-12)
    assert out.readout_s == pytest.approx(2 * 5e-8, rel=1e-12)
    assert out.transfer_s == pytest.approx(sum(lat + c * d * 12 / bw for c in (2, 1)), rel=1e-12)
    parts = out.program_s + out.input_s + out.equilibrate_s + out.window_s + out.readout_s + out.transfer_s
    assert out.total_s == pytest.approx(parts, rel=1e-12)
    assert out.analog_time_tau == pytest.approx(2 * (t0 + n * 0.1), rel=1e-12)
    assert (out.n_samples, out.n_tiles, out.n_runs, out.n_chips_used, out.bound) == (n, 1, 2, 2, "exact")
    conversions = 2 * d * d + k * d + k * d * n
    assert (out.n_dac_conversions, out.n_adc_conversions) == (2 * d * d + k * d, k * d * n)
    energy = 2e-3 * d * (2 + 1) * (t0 + n * 0.1) * 1e-6 + 1e-11 * conversions
    assert out.energy_j == pytest.approx(energy, rel=1e-12)
    assert out.burn_in_tau == pytest.approx(t0) and out.window_tau == pytest.approx(n * 0.1)


def test_ideal_converters_cross_the_link_as_float32():
    hw = small_hw(bits_A=None, bits_b=None, bits_adc=None, v_range_v=math.inf)
    out = cost.estimate_solve(hw, LAM4, target_rel_error=1e-2, solution_norm=1.0)
    assert out.program_s == pytest.approx(2e-6 + 16 * 32 / 1e9 + 4e-8, rel=1e-12)
    assert any("32-bit" in note and "bits_A" in note for note in out.notes)


def test_stream_ships_every_sample_and_overlaps_the_window():
    eps, norm = 1e-3, 0.5
    acc = cost.estimate_solve(small_hw(), LAM4, target_rel_error=eps, solution_norm=norm)
    n = acc.n_samples
    # fast link: streaming hides behind the window except the last sample
    fast = cost.estimate_solve(small_hw(readout="stream"), LAM4, target_rel_error=eps, solution_norm=norm)
    assert fast.transfer_s == pytest.approx(2e-6 + 4 * 12 / 1e9, rel=1e-12)
    # slow link (1e8 bit/s): 4 values x 12 bits every 0.1 us is 4.8e8 bit/s, the link is the bottleneck
    slow_hw = small_hw(readout="stream", link_bandwidth_bps=1e8)
    slow = cost.estimate_solve(slow_hw, LAM4, target_rel_error=eps, solution_norm=norm)
    assert slow.transfer_s == pytest.approx(2e-6 + n * 4 * 12 / 1e8 - n * 1e-7, rel=1e-12)
    slow_acc = cost.estimate_solve(small_hw(link_bandwidth_bps=1e8), LAM4, target_rel_error=eps, solution_norm=norm)
    assert slow_acc.transfer_s == pytest.approx(2e-6 + 4 * 12 / 1e8, rel=1e-12)
    assert acc.window_s == slow.window_s and slow.total_s > slow_acc.total_s


def test_right_hand_sides_spread_over_chips():
    one = cost.estimate_solve(small_hw(n_chips=1), LAM4, target_rel_error=1e-2, solution_norm=1.0, n_rhs=8)
    four = cost.estimate_solve(small_hw(n_chips=4), LAM4, target_rel_error=1e-2, solution_norm=1.0, n_rhs=8)
    assert (one.n_runs, four.n_runs) == (8, 2)
    assert one.analog_time_tau == pytest.approx(4 * four.analog_time_tau, rel=1e-12)
    # same analog work, same energy spent in the units; only the coupling DACs differ (4 chips)
    assert four.n_dac_conversions - one.n_dac_conversions == 3 * 16


def test_tiling_counts_and_block_sweeps():
    hw = small_hw(n_units=4)
    spec = SpectrumInfo.from_eigenvalues(np.linspace(0.2, 2.0, 10))
    out = cost.estimate_solve(hw, spec, target_rel_error=1e-2, n_rhs=1)
    assert out.n_tiles == 9 and out.bound == "worst-case"
    assert out.n_sweeps == cost.default_sweeps(1e-2) == 3  # two digits at 0.1 per sweep, plus the check
    assert out.n_runs == 3 * 3
    fixed = cost.estimate_solve(hw, spec, target_rel_error=1e-2, sweeps=2)
    # blocks 4, 4, 2 reprogrammed on every visit
    per_sweep = sum(2e-6 + n * n * 8 / 1e9 + n * 1e-8 for n in (4, 4, 2))
    assert fixed.program_s == pytest.approx(2 * per_sweep, rel=1e-12)
    assert fixed.n_runs == 6 and any("Gauss-Seidel is sequential" in note for note in fixed.notes)
    # block Jacobi on three chips: the blocks of a sweep run concurrently
    par = cost.estimate_solve(small_hw(n_units=4, n_chips=3), spec, target_rel_error=1e-2, sweeps=2, block_schedule="jacobi")
    seq = cost.estimate_solve(small_hw(n_units=4, n_chips=3), spec, target_rel_error=1e-2, sweeps=2)
    assert seq.analog_time_tau == pytest.approx(3 * par.analog_time_tau, rel=1e-12)
    assert par.energy_j == pytest.approx(seq.energy_j, rel=1e-12)
    assert cost.default_sweeps(1e-2, schedule="jacobi") == 5


def test_inverse_overheads_and_chip_split():
    eps = 0.1
    n = planning.inverse_samples(LAM4, eps, sample_interval_tau=0.1)
    one = cost.estimate_inverse(small_hw(), LAM4, target_rel_error=eps)
    assert one.n_samples == n and one.input_s == pytest.approx(3e-6)
    assert one.burn_in_tau == pytest.approx(math.log(1 / eps) / (2 * 0.5))
    assert one.transfer_s == pytest.approx(2e-6 + 10 * 12 / 1e9, rel=1e-12)  # d (d+1) / 2 values
    four = cost.estimate_inverse(small_hw(n_chips=4), LAM4, target_rel_error=eps)
    assert four.n_samples == math.ceil(n / 4) and four.n_chips_used == 4
    assert four.program_s == pytest.approx(2e-6 + 4 * 16 * 8 / 1e9 + 4e-8, rel=1e-12)
    assert four.window_s < one.window_s / 3.9
    stream = cost.estimate_inverse(small_hw(readout="stream"), LAM4, target_rel_error=eps)
    assert stream.transfer_s == pytest.approx(2e-6 + 4 * 12 / 1e9, rel=1e-12)  # 4.8e8 < 1e9 bit/s: hidden
    tiled = cost.estimate_inverse(small_hw(n_units=2), LAM4, target_rel_error=eps)
    assert tiled.n_tiles == 4 and any("identity columns" in note for note in tiled.notes)


def test_underdamped_hardware_uses_its_mass():
    hw = small_hw(regime="underdamped", mass_s2=0.5e-12)  # m = 0.5 tau^2: the slowest mode is critical
    out = cost.estimate_solve(hw, LAM4, target_rel_error=1e-2, solution_norm=1.0)
    assert out.burn_in_tau == pytest.approx(planning.equilibration_time_tau(LAM4, 1e-2, mass_tau2=0.5))
    # critical damping of the slowest mode relaxes faster than the overdamped ln(1/eps) / lam_min
    assert out.burn_in_tau < 0.75 * planning.equilibration_time_tau(LAM4, 1e-2)
    assert out.n_samples == planning.solve_samples(LAM4, hw.chip.kT, 1e-2, 1.0, sample_interval_tau=0.1, mass_tau2=0.5)
    inv = cost.estimate_inverse(hw, LAM4, target_rel_error=0.1)
    assert inv.burn_in_tau == pytest.approx(planning.inverse_equilibration_time_tau(LAM4, 0.1, mass_tau2=0.5))


def test_fallback_solution_norm_is_noted_and_bounds_are_flagged():
    out = cost.estimate_solve(small_hw(), SpectrumInfo.from_bounds(0.5, 4.0, 4), target_rel_error=1e-2)
    assert out.bound == "worst-case"
    assert any("rms-typical" in note for note in out.notes)
    expected = planning.solve_samples(
        SpectrumInfo.from_bounds(0.5, 4.0, 4), 1e-3, 1e-2, sample_interval_tau=0.1, input_range_v=1.0
    )
    assert out.n_samples == expected


def test_as_dict_is_flat():
    out = cost.estimate_solve(HardwareSpec.published(), LAM4, target_rel_error=1e-2)
    assert out == cost.estimate_solve(DeviceSpec(), LAM4, target_rel_error=1e-2)  # a chip is one chip on the default link
    row = out.as_dict()
    for key in ("program_s", "input_s", "equilibrate_s", "window_s", "readout_s", "transfer_s", "total_s",
                "analog_time_tau", "n_samples", "n_tiles", "energy_j", "bound"):
        assert key in row
    assert isinstance(row["notes"], str)
    assert isinstance(out, TimingBreakdown)


# ------------------------------------------------------------------------------------------------
# bad inputs
@pytest.mark.parametrize("eps", [0.0, 1.0, -0.1, 2.0, math.nan])
def test_bad_accuracy_is_rejected(eps):
    with pytest.raises(InputError, match="eps"):
        planning.equilibration_time_tau(LAM4, eps)
    with pytest.raises(InputError, match="eps"):
        planning.inverse_samples(LAM4, eps, sample_interval_tau=0.1)
    with pytest.raises(InputError, match="target_rel_error"):
        cost.estimate_solve(small_hw(), LAM4, target_rel_error=eps)


def test_bad_arguments_name_themselves():
    with pytest.raises(InputError, match="initial_error_ratio"):
        planning.equilibration_time_tau(LAM4, 0.1, initial_error_ratio=-1.0)
    with pytest.raises(InputError, match="mass_tau2"):
        planning.equilibration_time_tau(LAM4, 0.1, mass_tau2=-0.1)
    with pytest.raises(InputError, match="sample_interval_tau"):
        planning.solve_samples(LAM4, 1e-3, 0.1, 1.0, sample_interval_tau=0.0)
    with pytest.raises(InputError, match="solution_norm"):
        planning.solve_samples(LAM4, 1e-3, 0.1, 0.0, sample_interval_tau=0.1)
    with pytest.raises(InputError, match="input_range_v"):
        planning.solve_samples(LAM4, 1e-3, 0.1, sample_interval_tau=0.1)
    with pytest.raises(InputError, match="kT"):
        planning.solve_samples(LAM4, -1.0, 0.1, 1.0, sample_interval_tau=0.1)
    with pytest.raises(InputError, match="n_rhs"):
        cost.estimate_solve(small_hw(), LAM4, target_rel_error=0.1, n_rhs=0)
    with pytest.raises(InputError, match="n_samples"):
        planning.inverse_relative_error(LAM4, 0, sample_interval_tau=0.1)
    with pytest.raises(InputError, match="sweeps"):
        cost.estimate_solve(small_hw(n_units=2), LAM4, target_rel_error=0.1, sweeps=0)
    with pytest.raises(InputError, match="block_schedule"):
        cost.estimate_solve(small_hw(n_units=2), LAM4, target_rel_error=0.1, block_schedule="red-black")
    with pytest.raises(InputError, match="device must be a thermo.DeviceSpec or HardwareSpec"):
        cost.estimate_solve(None, LAM4, target_rel_error=0.1)  # type: ignore[arg-type]
    with pytest.raises(HardwareSpecError, match="kT"):
        cost.estimate_inverse(small_hw(kT=0.0), LAM4, target_rel_error=0.1)
    # a tiled inverse is a block solve of the identity columns: it needs no noise
    assert cost.estimate_inverse(small_hw(kT=0.0, n_units=2), LAM4, target_rel_error=0.1).n_tiles == 4


# ------------------------------------------------------------------------------------------------
# the device knobs, each by hand on small cases (small_hw: 1 Gbit/s link with 2 us latency,
# 10 ns DAC, 50 ns ADC, 10 MHz readout, bits 8 / 10 / 12)
def test_serial_converters_read_n_nodes_one_after_another():
    eps, norm, d = 1e-2, 0.8, 4
    parallel = cost.estimate_solve(small_hw(), LAM4, target_rel_error=eps, solution_norm=norm)
    serial = cost.estimate_solve(small_hw(adc_channels=1, dac_channels=1), LAM4, target_rel_error=eps, solution_norm=norm)
    # readout of one sample: d conversions of 50 ns instead of one
    assert parallel.readout_s == pytest.approx(5e-8, rel=1e-12)
    assert serial.readout_s == pytest.approx(d * 5e-8, rel=1e-12)
    # the sample rate follows: 4 x 50 ns = 0.2 us > the chip's 0.1 us
    assert serial.sample_interval_tau == pytest.approx(0.2) and parallel.sample_interval_tau == pytest.approx(0.1)
    n = planning.solve_samples(LAM4, 1e-3, eps, norm, sample_interval_tau=0.2)
    assert serial.n_samples == n and serial.window_s == pytest.approx(n * 0.2e-6, rel=1e-12)
    # DACs: d^2 couplings one at a time (16 conversions) instead of row-parallel (4); inputs d instead of 1
    assert serial.program_s - parallel.program_s == pytest.approx((16 - 4) * 1e-8, rel=1e-9)
    assert serial.input_s - parallel.input_s == pytest.approx((4 - 1) * 1e-8, rel=1e-9)
    assert any("ADC channel" in note for note in serial.notes)


def test_serial_readout_grows_with_n_at_fixed_rate_where_the_chip_rate_does_not():
    spectrum = lambda d: np.geomspace(0.1, 1.0, d)  # noqa: E731 - fixed condition number
    for d in (8, 16, 32):
        serial = cost.estimate_inverse(small_hw(adc_channels=1), spectrum(d), target_rel_error=0.1)
        assert serial.readout_s == pytest.approx(d * 5e-8, rel=1e-12)
        assert serial.sample_interval_tau == pytest.approx(d * 5e-8 / 1e-6)


def test_broadcast_programs_every_chip_in_one_transfer():
    shared = cost.estimate_solve(small_hw(n_chips=3), LAM4, target_rel_error=1e-2, solution_norm=1.0, n_rhs=3)
    broadcast = cost.estimate_solve(small_hw(n_chips=3, coupling_delivery="broadcast"), LAM4, target_rel_error=1e-2,
                                    solution_norm=1.0, n_rhs=3)
    assert shared.program_s == pytest.approx(2e-6 + 3 * 16 * 8 / 1e9 + 4 * 1e-8, rel=1e-12)
    assert broadcast.program_s == pytest.approx(2e-6 + 16 * 8 / 1e9 + 4 * 1e-8, rel=1e-12)
    # inputs differ per chain: broadcast does not help them
    assert broadcast.input_s == shared.input_s and broadcast.n_dac_conversions == shared.n_dac_conversions


def test_one_link_per_chip_carries_only_its_chips_values():
    kw = dict(target_rel_error=1e-2, solution_norm=1.0, n_rhs=3)
    per_chip = cost.estimate_solve(small_hw(n_chips=3, coupling_delivery=CouplingDelivery.PER_CHIP), LAM4, **kw)
    assert per_chip.program_s == pytest.approx(2e-6 + 16 * 8 / 1e9 + 4e-8, rel=1e-12)
    assert per_chip.input_s == pytest.approx(2e-6 + 4 * 10 / 1e9 + 1e-8 + 3e-6, rel=1e-12)
    assert per_chip.transfer_s == pytest.approx(2e-6 + 4 * 12 / 1e9, rel=1e-12)


def test_resident_couplings_skip_the_programming_phase_of_a_second_solve():
    dev = small_hw(resident_couplings=True)
    first = cost.estimate_solve(dev, LAM4, target_rel_error=1e-2, solution_norm=1.0, n_rhs=2)
    second = cost.estimate_solve(dev, LAM4, target_rel_error=1e-2, solution_norm=1.0, n_rhs=2, resident=True)
    assert first.program_s > 0 and second.program_s == 0.0 and second.resident
    assert first.total_s - second.total_s == pytest.approx(first.program_s, rel=1e-12)
    assert first.n_dac_conversions - second.n_dac_conversions == 16
    # a device that does not keep its couplings reprograms whatever the caller says
    forgetful = cost.estimate_solve(small_hw(), LAM4, target_rel_error=1e-2, solution_norm=1.0, n_rhs=2, resident=True)
    assert forgetful.program_s == first.program_s and not forgetful.resident


def test_the_simulator_prices_a_repeated_factor_as_resident():
    from thermo import ThermodynamicSolver

    a = np.diag(LAM4) + 0.1
    b = np.ones(4)
    keeps = ThermodynamicSolver(small_hw(resident_couplings=True, bits_A=None, bits_b=None, bits_adc=None,
                                         v_range_v=math.inf), seed=0)
    times = [keeps.solve(m, b).diagnostics.device_time for m in (a, a, 2 * a)]
    assert times[0].program_s > 0 and times[1].program_s == 0.0 and times[2].program_s > 0
    forgets = ThermodynamicSolver(small_hw(bits_A=None, bits_b=None, bits_adc=None, v_range_v=math.inf), seed=0)
    assert all(forgets.solve(a, b).diagnostics.device_time.program_s > 0 for _ in range(2))


def test_replicas_run_k_right_hand_sides_of_a_k_n_unit_chip_in_one_round():
    kw = dict(target_rel_error=1e-2, solution_norm=1.0, n_rhs=3)
    copies = cost.estimate_solve(small_hw(n_units=12, replicas=True), LAM4, **kw)
    single = cost.estimate_solve(small_hw(n_units=12), LAM4, **kw)
    assert (copies.n_runs, copies.copies_per_chip) == (1, 3) and (single.n_runs, single.copies_per_chip) == (3, 1)
    # three copies of 16 couplings written by 12 channels: 4 conversions; one transfer of one copy
    assert copies.program_s == pytest.approx(2e-6 + 16 * 8 / 1e9 + 4 * 1e-8, rel=1e-12)
    assert copies.n_dac_conversions == 3 * 16 + 3 * 4
    assert copies.analog_time_tau == pytest.approx(single.analog_time_tau / 3, rel=1e-12)
    # an inversion splits its samples over the copies as parallel chains
    eps = 0.1
    n = planning.inverse_samples(LAM4, eps, sample_interval_tau=0.1)
    inv = cost.estimate_inverse(small_hw(n_units=12, replicas=True), LAM4, target_rel_error=eps)
    assert inv.n_samples == math.ceil(n / 3) and inv.copies_per_chip == 3


def test_tngd_upload_is_the_papers_resistor_count_over_the_link_and_the_dacs():
    from thermo.device import device_preset

    paper = device_preset("paper-2024-tngd")
    for n_params, expected_ms in ((10_000, 4.0), (100_000, 41.0)):
        out = cost.estimate_tngd_iteration(paper, n_params=n_params, rank=640, analog_time_tau=50)
        values = 640 * (640 + 2 * n_params)
        assert cost.tngd_array_values(n_params, 640) == values
        assert out.program_s == pytest.approx(values * 16 / 50e9, rel=1e-12)
        # PAPER.md: "at b d_z = 640 programming alone is about 4 ms at N = 1e4 and about 41 ms at N = 1e5"
        assert out.program_s * 1e3 == pytest.approx(expected_ms, rel=0.06)
        assert out.input_s == pytest.approx(n_params * 16 / 50e9, rel=1e-12)
        assert out.equilibrate_s + out.window_s == pytest.approx(50e-6, rel=1e-12)
        assert out.transfer_s == pytest.approx(n_params * 16 / 50e9, rel=1e-12)
    # the published device adds its latency and its conversions, one DAC channel per unit of N + r
    pub = device_preset("published")
    out = cost.estimate_tngd_iteration(pub, n_params=1000, rank=20, analog_time_tau=5)
    values = 20 * (20 + 2000)
    assert out.program_s == pytest.approx(1e-6 + values * 16 / 50e9 + math.ceil(values / 1020) * 1e-8, rel=1e-12)
    assert out.input_s == pytest.approx(1e-6 + 1000 * 16 / 50e9 + 1e-8 + 1e-6, rel=1e-12)
    assert out.readout_s == pytest.approx(1e-8, rel=1e-12)
    with pytest.raises(InputError, match="rank"):
        cost.estimate_tngd_iteration(pub, n_params=10, rank=0, analog_time_tau=1)


def test_the_simulator_samples_as_fast_as_its_adc_channels_allow():
    from thermo import ThermodynamicSolver

    d = 8
    a = np.diag(np.linspace(0.5, 2.0, d))
    dev = small_hw(adc_channels=2, bits_A=None, bits_b=None, bits_adc=None, v_range_v=math.inf)
    diag = ThermodynamicSolver(dev, seed=0).solve(a, np.ones(d)).diagnostics
    # 8 nodes on 2 channels: 4 conversions of 50 ns = 0.2 us between samples, not the chip's 0.1 us
    assert diag.window_tau / diag.n_samples == pytest.approx(0.2, rel=1e-9)
    assert diag.device_time.sample_interval_tau == pytest.approx(0.2, rel=1e-12)
    inv = ThermodynamicSolver(dev, seed=0).inverse(a).diagnostics
    assert inv.window_tau / inv.n_samples == pytest.approx(0.2, rel=1e-9)


def test_serial_readout_units_is_where_one_sample_outlasts_the_relaxation():
    # 2 ADC channels of 50 ns on a 1 us chip: 10 tau of relaxation is read in 10 us = 200 conversions = 400 units
    assert cost.serial_readout_units(small_hw(adc_channels=2), 10.0) == pytest.approx(400.0)
    assert cost.serial_readout_units(small_hw(), 10.0) == math.inf


def test_the_link_tngd_needs_to_program_within_a_given_time():
    from thermo.device import device_preset

    paper = device_preset("paper-2024-tngd")  # no latency: the payload over the time
    need = cost.tngd_link_needed_bps(paper, n_params=10_000, rank=640, within_s=1e-3)
    assert need == pytest.approx((640 * (640 + 20_000) + 10_000) * 16 / 1e-3, rel=1e-12)
    # at that bandwidth the programming and the gradient take exactly the time given
    fast = paper.replace(link=paper.link.replace(bandwidth_bps=need))
    t = cost.estimate_tngd_iteration(fast, n_params=10_000, rank=640, analog_time_tau=0)
    assert t.program_s + t.input_s == pytest.approx(1e-3, rel=1e-9)
    assert cost.tngd_link_needed_bps(device_preset("published"), n_params=10, rank=1, within_s=1e-6) == math.inf
