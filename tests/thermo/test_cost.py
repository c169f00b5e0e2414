"""The cost model: device overheads by hand, knob by knob, and bad inputs."""

import math

import numpy as np
import pytest

from thermo import cost, planning
from thermo.errors import HardwareSpecError, InputError
from thermo.hardware import HardwareSpec
from thermo.cost import TimingBreakdown
from thermo.planning import SpectrumInfo


# ------------------------------------------------------------------------------------------------
# device overheads
def small_hw(**over):
    base = dict(
        tau_s=1e-6, kT=1e-3, bits_A=8, bits_b=10, bits_adc=12, v_range_v=1.0, sample_rate_hz=1e7,
        link_bandwidth_bps=1e9, link_latency_s=2e-6, program_settle_s=3e-6, dac_conversion_s=1e-8,
        adc_conversion_s=5e-8, power_per_unit_w=2e-3, energy_per_conversion_j=1e-11,
    )
    base.update(over)
    return HardwareSpec(**base)


LAM4 = np.array([0.5, 1.0, 2.0, 4.0])


def test_solve_overheads_by_hand():
    hw = small_hw(n_chips=2)
    eps, norm, k = 1e-2, 0.8, 3
    out = cost.estimate_solve(hw, LAM4, target_rel_error=eps, solution_norm=norm, n_rhs=k)
    n = planning.solve_samples(LAM4, hw.kT, eps, norm, sample_interval_tau=0.1)
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
    assert out.n_samples == planning.solve_samples(LAM4, hw.kT, 1e-2, 1.0, sample_interval_tau=0.1, mass_tau2=0.5)
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
    with pytest.raises(InputError, match="hw must be a HardwareSpec"):
        cost.estimate_solve(None, LAM4, target_rel_error=0.1)  # type: ignore[arg-type]
    with pytest.raises(HardwareSpecError, match="kT"):
        cost.estimate_inverse(small_hw(kT=0.0), LAM4, target_rel_error=0.1)
    # a tiled inverse is a block solve of the identity columns: it needs no noise
    assert cost.estimate_inverse(small_hw(kT=0.0, n_units=2), LAM4, target_rel_error=0.1).n_tiles == 4
