"""The one cost model: what each device operation takes (seconds, joules), priced from the device.

Units: seconds unless stated; analog phases are planned in units of ``tau`` by
:mod:`thermo.planning` (burn-in, window, sample count) and converted here.

Digital and hardware overheads are documented at :func:`estimate_solve`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import HardwareSpecError, InputError
from .device import CouplingDelivery, DeviceSpec, as_device
from .hardware import HardwareSpec
from .planning import (
    HOST_FLOAT_BITS,
    Bound,
    BlockSchedule,
    SpectrumInfo,
    SpectrumLike,
    _as_spectrum,
    _check_eps,
    equilibration_time_tau,
    inverse_equilibration_time_tau,
    inverse_samples,
    solve_samples,
)
from .validation import check_count

# ------------------------------------------------------------------------------------------------
# device time
@dataclass(frozen=True)
class TimingBreakdown:
    """Projected wall-clock cost of one primitive call on the device (seconds unless stated).

    Phases run one after the other (critical path): ``total_s`` is their sum. ``analog_time_tau``
    is the analog wall-clock time (``(equilibrate_s + window_s) / tau_s``); ``n_samples`` and
    ``burn_in_tau``/``window_tau`` are per analog run (one chain), ``n_runs`` the analog runs in
    sequence. ``bound`` is ``"exact"`` (all eigenvalues known) or ``"worst-case"``.
    """

    program_s: float
    """Couplings: link transfer (latency + bits/bandwidth, by the coupling delivery) and DAC
    conversion (by the DAC channels)."""
    input_s: float
    """Inputs ``b_hat``: link transfer, DAC conversion and settling, per run."""
    equilibrate_s: float
    """Burn-in, summed over sequential runs."""
    window_s: float
    """Sampling windows, summed over sequential runs."""
    readout_s: float
    """ADC latency: the last conversion of each run (the others overlap the run)."""
    transfer_s: float
    """Results back over the link (exposed part only for a streamed readout)."""
    total_s: float
    analog_time_tau: float
    n_samples: int
    n_tiles: int
    energy_j: float
    bound: Bound
    burn_in_tau: float = 0.0
    window_tau: float = 0.0
    n_runs: int = 1
    n_sweeps: int = 1
    n_chips_used: int = 1
    n_dac_conversions: int = 0
    n_adc_conversions: int = 0
    copies_per_chip: int = 1
    """Copies of the matrix on each chip used (``DeviceSpec.replicas``)."""
    sample_interval_tau: float = 0.0
    """Readout sample interval (tau) the converters reached (:meth:`DeviceSpec.sample_interval_tau`)."""
    resident: bool = False
    """True when the couplings were already on the chips (no programming phase)."""
    notes: tuple[str, ...] = ()

    @property
    def analog_time_s(self) -> float:
        return self.equilibrate_s + self.window_s

    def as_dict(self) -> dict[str, object]:
        """All fields as a flat dict (``notes`` joined by ``"; "``), for tables and CSV rows."""
        out = dataclasses.asdict(self)
        out["notes"] = "; ".join(self.notes)
        return out


@dataclass
class _Tally:
    program: float = 0.0
    inputs: float = 0.0
    equilibrate: float = 0.0
    window: float = 0.0
    readout: float = 0.0
    transfer: float = 0.0
    energy: float = 0.0
    dac: int = 0
    adc: int = 0
    runs: int = 0

    def add(self, other: "_Tally", times: int = 1) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + times * getattr(other, f.name))

    @property
    def analog(self) -> float:
        return self.equilibrate + self.window + self.readout


@dataclass(frozen=True)
class _Bits:
    coupling: int
    inputs: int
    adc: int


def _bits(hw: HardwareSpec, notes: list[str]) -> _Bits:
    def one(value: int | None, name: str) -> int:
        if value is None:
            notes.append(f"{name}=None (ideal converter): its values cross the link as {HOST_FLOAT_BITS}-bit host floats")
            return HOST_FLOAT_BITS
        return value

    return _Bits(one(hw.bits_A, "bits_A"), one(hw.bits_b, "bits_b"), one(hw.bits_adc, "bits_adc"))


def transfer_s(device: DeviceSpec, n_values: float, bits: int) -> float:
    """One transfer of ``n_values`` values of ``bits`` bits over the device's link (s):
    ``latency_s + n_values bits / bandwidth_bps``; nothing to send costs nothing."""
    link = device.link
    return link.latency_s + n_values * bits / link.bandwidth_bps if n_values > 0 else 0.0


@dataclass(frozen=True)
class _Layout:
    """How ``columns`` chains of an ``n x n`` matrix sit on the chips: ``chips`` chips used,
    ``copies`` copies of the matrix on each, so ``per_round = chips * copies`` chains at once."""

    n: int
    chips: int
    copies: int

    @property
    def per_round(self) -> int:
        return self.chips * self.copies

    def busy(self, chains: int) -> tuple[int, int]:
        """Chips busy and chains on the busiest chip in a round of ``chains`` chains."""
        chips = min(self.chips, math.ceil(chains / self.copies))
        return chips, math.ceil(chains / chips)


def _layout(device: DeviceSpec, n: int, columns: int, chips: int | None = None) -> _Layout:
    chips = device.n_chips if chips is None else chips
    if columns <= chips:
        return _Layout(n, columns, 1)
    return _Layout(n, chips, min(device.copies(n), math.ceil(columns / chips)))


def _program(device: DeviceSpec, bits: _Bits, layout: _Layout) -> _Tally:
    """Couplings of an ``n x n`` matrix onto every chip of ``layout``: over the link by the
    device's coupling delivery, then written by each chip's DACs (all its copies)."""
    n, t = layout.n, _Tally()
    per_chip = n * n
    if device.coupling_delivery is CouplingDelivery.SHARED:
        t.program = transfer_s(device, layout.chips * per_chip, bits.coupling)
    else:  # broadcast: one transfer reaches every chip; per-chip: one link each, in parallel
        t.program = transfer_s(device, per_chip, bits.coupling)
    t.program += device.dac_rounds(layout.copies * per_chip, layout.copies * n) * device.chip.dac_conversion_s
    t.dac = layout.chips * layout.copies * per_chip
    return t


def _job(
    device: DeviceSpec,
    bits: _Bits,
    layout: _Layout,
    *,
    columns: int,
    burn_in_tau: float,
    n_samples: int,
    sample_interval_s: float,
    values_per_column: int,
    has_inputs: bool,
    resident: bool = False,
) -> _Tally:
    """One programmed ``n x n`` matrix running ``columns`` independent chains on ``layout``.

    The couplings are programmed once (:func:`_program`; skipped when ``resident``); each round
    of up to ``layout.per_round`` chains sends its own inputs, runs, and reads back.
    """
    hw, n = device.chip, layout.n
    t = _Tally() if resident else _program(device, bits, layout)
    burn_s = burn_in_tau * hw.tau_s
    win_s = n_samples * sample_interval_s
    per_chip_link = device.coupling_delivery is CouplingDelivery.PER_CHIP
    full, rest = divmod(columns, layout.per_round)
    for c, count in ((layout.per_round, full), (rest, 1 if rest else 0)):
        if count == 0:
            continue
        _, on_chip = layout.busy(c)
        on_link = on_chip if per_chip_link else c  # chains whose values share one link
        r = _Tally(runs=1)
        r.inputs = hw.program_settle_s
        if has_inputs:
            r.inputs += transfer_s(device, on_link * n, bits.inputs)
            r.inputs += device.dac_rounds(on_chip * n, on_chip * n) * hw.dac_conversion_s
            r.dac = c * n
        r.equilibrate, r.window = burn_s, win_s
        r.readout = device.adc_rounds(on_chip * n) * hw.adc_conversion_s
        r.adc = c * n * n_samples
        if hw.readout == "accumulate":
            r.transfer = transfer_s(device, on_link * values_per_column, bits.adc)
        else:
            bw = device.link.bandwidth_bps
            stream_s = on_link * n * n_samples * bits.adc / bw
            last_s = on_link * n * bits.adc / bw
            r.transfer = device.link.latency_s + max(stream_s - win_s, last_s)
        r.energy = hw.power_per_unit_w * n * c * (burn_s + win_s)
        t.add(r, count)
    t.energy += hw.energy_per_conversion_j * (t.dac + t.adc)
    return t


def _mass(hw: HardwareSpec) -> float:
    return hw.mass_tau2 if hw.regime == "underdamped" else 0.0


def _device(hardware: HardwareSpec | DeviceSpec) -> DeviceSpec:
    if not isinstance(hardware, (HardwareSpec, DeviceSpec)):
        raise InputError(f"device must be a thermo.DeviceSpec or HardwareSpec, got {type(hardware).__name__}")
    return as_device(hardware)


def _breakdown(
    device: DeviceSpec,
    tally: _Tally,
    *,
    n_samples: int,
    n_tiles: int,
    bound: Bound,
    burn_in_tau: float,
    window_tau: float,
    n_sweeps: int,
    chips_used: int,
    notes: list[str],
    copies: int = 1,
    sample_interval_tau: float | None = None,
    resident: bool = False,
    analog_override_s: float | None = None,
) -> TimingBreakdown:
    hw = device.chip
    total = tally.program + tally.inputs + tally.equilibrate + tally.window + tally.readout + tally.transfer
    analog_s = tally.equilibrate + tally.window if analog_override_s is None else analog_override_s
    return TimingBreakdown(
        program_s=tally.program,
        input_s=tally.inputs,
        equilibrate_s=tally.equilibrate,
        window_s=tally.window,
        readout_s=tally.readout,
        transfer_s=tally.transfer,
        total_s=total,
        analog_time_tau=analog_s / hw.tau_s,
        n_samples=n_samples,
        n_tiles=n_tiles,
        energy_j=tally.energy,
        bound=bound,
        burn_in_tau=burn_in_tau,
        window_tau=window_tau,
        n_runs=tally.runs,
        n_sweeps=n_sweeps,
        n_chips_used=chips_used,
        n_dac_conversions=tally.dac,
        n_adc_conversions=tally.adc,
        copies_per_chip=copies,
        sample_interval_tau=hw.sample_interval_tau if sample_interval_tau is None else sample_interval_tau,
        resident=resident,
        notes=tuple(dict.fromkeys(notes)),
    )


def default_sweeps(target_rel_error: float, sweep_contraction: float = 0.1, schedule: BlockSchedule = "gauss-seidel") -> int:
    """Block sweeps for a tiled solve: ``ceil(ln(1/eps) / ln(1/c)) + 1``.

    ``c`` is the assumed error contraction per block Gauss-Seidel sweep (0.1: one digit per
    sweep); block Jacobi contracts by about ``sqrt(c)`` (``rho_J^2 = rho_GS`` for consistently
    ordered matrices). The extra sweep is the one that sees the change fall below the target
    (the simulator's stopping test).
    """
    eps = _check_eps(target_rel_error, "target_rel_error")
    c = float(sweep_contraction)
    if not 0 < c < 1:
        raise InputError(f"sweep_contraction must be in (0, 1), got {sweep_contraction!r}")
    if schedule == "jacobi":
        c = math.sqrt(c)
    elif schedule != "gauss-seidel":
        raise InputError(f"block_schedule must be 'gauss-seidel' or 'jacobi', got {schedule!r}")
    return max(1, math.ceil(math.log(1.0 / eps) / math.log(1.0 / c) * (1 - 1e-12))) + 1


def _tiled(
    device: DeviceSpec,
    spec: SpectrumInfo,
    bits: _Bits,
    *,
    eps: float,
    columns: int,
    initial_error_ratio: float,
    sweeps: int | None,
    sweep_contraction: float,
    schedule: BlockSchedule,
    notes: list[str],
) -> TimingBreakdown:
    hw = device.chip
    assert hw.n_units is not None
    d, nu, n_chips = spec.d, hw.n_units, device.n_chips
    sizes = [min(nu, d - start) for start in range(0, d, nu)]
    nb = len(sizes)
    n_sweeps = default_sweeps(eps, sweep_contraction, schedule) if sweeps is None else check_count(sweeps, "sweeps")
    mass = _mass(hw)
    # a block of n units fills the chip's readout: its sample interval is the n-unit one
    h_of = {n: device.sample_interval_tau(n) for n in set(sizes)}
    block_samples = {
        n: solve_samples(
            SpectrumInfo.from_bounds(spec.lambda_min, spec.lambda_max, n), hw.kT, eps,
            sample_interval_tau=h_of[n], mass_tau2=mass, input_range_v=hw.input_range_v,
        )
        for n in set(sizes)
    }

    def block_job(n: int, chips: int, burn: float) -> _Tally:
        layout = _Layout(n, min(chips, columns), 1)  # a block fills the chip: no replicas
        return _job(device, bits, layout, columns=columns, burn_in_tau=burn, n_samples=block_samples[n],
                    sample_interval_s=h_of[n] * hw.tau_s, values_per_column=n, has_inputs=True)

    total = _Tally()
    first_burn = 0.0
    analog_s = 0.0
    chips_used = 1
    for sweep in range(n_sweeps):
        r0 = initial_error_ratio * sweep_contraction**sweep
        burn = equilibration_time_tau(
            SpectrumInfo.from_bounds(spec.lambda_min, spec.lambda_max, max(sizes)), eps,
            initial_error_ratio=r0, mass_tau2=mass,
        )
        if sweep == 0:
            first_burn = burn
        if schedule == "gauss-seidel":
            for n in sizes:
                job = block_job(n, n_chips, burn)
                chips_used = max(chips_used, min(n_chips, columns))
                total.add(job)
                analog_s += job.equilibrate + job.window
        else:  # jacobi: blocks of a sweep are independent and share out the chips
            per_block = max(1, n_chips // nb)
            concurrent = min(nb, n_chips)
            chips_used = max(chips_used, concurrent * min(per_block, columns))
            for wave_start in range(0, nb, concurrent):
                wave = [block_job(n, per_block, burn) for n in sizes[wave_start : wave_start + concurrent]]
                merged = _Tally()
                for job in wave:
                    merged.add(job)  # link phases and energy add (one shared link)
                slowest = max(wave, key=lambda j: j.analog)
                merged.equilibrate, merged.window, merged.readout = slowest.equilibrate, slowest.window, slowest.readout
                merged.runs = slowest.runs
                total.add(merged)
                analog_s += slowest.equilibrate + slowest.window
    notes.append(
        f"d={d} > n_units={nu}: tiled into {nb} diagonal blocks ({nb * nb} tiles), {n_sweeps} block "
        f"{schedule} sweeps (assumed contraction {sweep_contraction:g} per Gauss-Seidel sweep); block "
        "spectra bounded by the global one (Cauchy interlacing), block right-hand sides scaled to the "
        "input range (rms-typical solution norm); host-side off-diagonal products not timed"
    )
    if schedule == "gauss-seidel":
        notes.append("Gauss-Seidel is sequential: blocks run one after another; chips only parallelize right-hand sides")
    else:
        notes.append("block Jacobi: the blocks of a sweep run concurrently on the chips (link transfers serialized); "
                     "convergence needs 2 D - A positive definite, not guaranteed for every SPD matrix")
    if sweeps is None:
        notes.append("sweeps from default_sweeps(target_rel_error); pass sweeps= to override")
    if device.resident_couplings:
        notes.append("tiled: every block is reprogrammed on every visit (residency does not apply)")
    n_max = max(block_samples.values())
    return _breakdown(
        device, total, n_samples=n_max, n_tiles=nb * nb, bound="worst-case",
        burn_in_tau=first_burn, window_tau=max(block_samples[n] * h_of[n] for n in h_of), n_sweeps=n_sweeps,
        chips_used=chips_used, notes=notes, sample_interval_tau=max(h_of.values()), analog_override_s=analog_s,
    )


def _regime_note(hw: HardwareSpec, notes: list[str]) -> None:
    if hw.regime == "underdamped":
        notes.append(
            f"underdamped (m = {hw.mass_tau2:g} tau^2): burn-in from the exact response envelope "
            "(start at rest), window from the exact sampled position autocorrelation"
        )


def _knob_notes(device: DeviceSpec, layout: _Layout, h_tau: float, resident: bool, notes: list[str]) -> None:
    hw = device.chip
    if h_tau > hw.sample_interval_tau * (1 + 1e-12):
        notes.append(
            f"{device.adc_channels} ADC channel(s) per chip convert {layout.copies * layout.n} node voltages in "
            f"{device.adc_rounds(layout.copies * layout.n)} rounds: samples every {h_tau:g} tau instead of "
            f"{hw.sample_interval_tau:g} tau"
        )
    if layout.copies > 1:
        notes.append(f"replicas: {layout.copies} copies of the {layout.n}-unit matrix per chip run chains side by side")
    if resident:
        notes.append("couplings resident on the chips from the previous call: no programming phase")


def _resident(device: DeviceSpec, resident: bool) -> bool:
    if not isinstance(resident, bool):
        raise InputError(f"resident must be True or False, got {resident!r}")
    return resident and device.resident_couplings


def estimate_solve(
    device: DeviceSpec | HardwareSpec,
    spectrum: SpectrumLike,
    *,
    target_rel_error: float,
    solution_norm: float | None = None,
    n_rhs: int = 1,
    initial_error_ratio: float = 1.0,
    sweeps: int | None = None,
    sweep_contraction: float = 0.1,
    block_schedule: BlockSchedule = "gauss-seidel",
    resident: bool = False,
) -> TimingBreakdown:
    """Projected device time and energy of ``solve`` for ``A_hat`` (``spectrum``, ``d x d``) and
    ``n_rhs`` right-hand sides, each to an rms relative error ``target_rel_error``, on ``device``
    (a bare :class:`HardwareSpec` is one chip on the default link, :func:`thermo.device.as_device`).

    Analog: burn-in :func:`equilibration_time_tau` (with ``initial_error_ratio``) then a window of
    :func:`solve_samples` samples at the readout interval the ADC channels reach
    (:meth:`DeviceSpec.sample_interval_tau`). ``solution_norm`` is ``|A_hat^-1 b_hat|`` (V); if
    None, the rms-typical ``input_range_v sqrt(sum lam^-2)`` is assumed (noted).

    Overheads, phases in sequence (chip fields of :class:`HardwareSpec`, knobs of
    :class:`DeviceSpec`):

    * program: couplings, ``d^2`` values of ``bits_A`` bits (32 if None) per chip used over the
      link (``latency_s + bits / bandwidth_bps``; ``broadcast`` and ``per-chip`` delivery send
      one copy's worth), written by the DACs (``ceil(copies d^2 / channels)`` conversions of
      ``dac_conversion_s``; one channel per unit: ``d`` conversions); once per call, none when
      ``resident`` and the device keeps its couplings (``resident_couplings``);
    * inputs: per round, ``d`` values of ``bits_b`` bits per chain over the link (a ``per-chip``
      link carries only its chip's), ``ceil(units / channels)`` DAC conversions and
      ``program_settle_s``;
    * right-hand sides run as chains on ``n_chips`` chips, ``copies`` per chip with
      ``replicas``: ``ceil(n_rhs / (n_chips copies))`` rounds in sequence, each reusing the
      programmed couplings;
    * readout: ADC conversions overlap the run, only the last sample's ``ceil(units /
      adc_channels)`` conversions add; ``accumulate`` ships ``d`` values per chain at
      ``bits_adc`` bits (32 if None); ``stream`` ships every sample (``N d`` values per chain)
      during the window, so only what exceeds the window (at least the last sample) is exposed;
    * tiling: if ``d > n_units``, ``ceil(d/n_units)`` diagonal blocks (``n_tiles`` is its square)
      are solved by block sweeps (:func:`default_sweeps` unless ``sweeps`` is given), each block
      reprogrammed on every visit, with worst-case block spectra and the fallback block norm;
      ``block_schedule="gauss-seidel"`` (default) runs blocks sequentially, ``"jacobi"`` runs the
      blocks of a sweep concurrently on the chips;
    * energy: ``power_per_unit_w * active units * analog time + energy_per_conversion_j * (DAC +
      ADC conversions)``.
    """
    dev = _device(device)
    hw = dev.chip
    spec = _as_spectrum(spectrum)
    eps = _check_eps(target_rel_error, "target_rel_error")
    k = check_count(n_rhs, "n_rhs")
    resident = _resident(dev, resident)
    r0 = float(initial_error_ratio)
    if not math.isfinite(r0) or r0 < 0:
        raise InputError(f"initial_error_ratio must be a finite number >= 0, got {initial_error_ratio!r}")
    notes: list[str] = []
    bits = _bits(hw, notes)
    _regime_note(hw, notes)
    if hw.n_units is not None and spec.d > hw.n_units:
        return _tiled(dev, spec, bits, eps=eps, columns=k, initial_error_ratio=r0, sweeps=sweeps,
                      sweep_contraction=sweep_contraction, schedule=block_schedule, notes=notes)
    layout = _layout(dev, spec.d, k)
    mass, h = _mass(hw), dev.sample_interval_tau(layout.copies * spec.d)
    _knob_notes(dev, layout, h, resident, notes)
    if solution_norm is None:
        notes.append(
            "solution_norm not given: assumed the rms-typical |A_hat^-1 b_hat| = input_range_v * "
            "sqrt(sum lambda^-2) (b_hat filling the input range)"
        )
    n = solve_samples(spec, hw.kT, eps, solution_norm, sample_interval_tau=h, mass_tau2=mass,
                      input_range_v=hw.input_range_v)
    burn = equilibration_time_tau(spec, eps, initial_error_ratio=r0, mass_tau2=mass)
    if not spec.exact:
        notes.append("only eigenvalue bounds known: window for the worst spectrum within them")
    tally = _job(dev, bits, layout, columns=k, burn_in_tau=burn, n_samples=n, sample_interval_s=h * hw.tau_s,
                 values_per_column=spec.d, has_inputs=True, resident=resident)
    return _breakdown(dev, tally, n_samples=n, n_tiles=1, bound=spec.bound, burn_in_tau=burn,
                      window_tau=n * h, n_sweeps=1, chips_used=layout.chips, notes=notes, copies=layout.copies,
                      sample_interval_tau=h, resident=resident)


def estimate_inverse(
    device: DeviceSpec | HardwareSpec,
    spectrum: SpectrumLike,
    *,
    target_rel_error: float,
    sweeps: int | None = None,
    sweep_contraction: float = 0.1,
    block_schedule: BlockSchedule = "gauss-seidel",
    resident: bool = False,
) -> TimingBreakdown:
    """Projected device time and energy of ``inverse`` to a relative Frobenius error
    ``target_rel_error``.

    From zero volts, burn-in :func:`inverse_equilibration_time_tau` then :func:`inverse_samples`
    samples of the second moment. The samples are split over the chips (and over the copies on
    each chip with ``replicas``) as parallel chains (each programmed, each with its own burn-in,
    ``ceil(N / chains)`` samples each; the sums add). Inputs are held at zero (no transfer;
    settling only). ``accumulate`` ships ``d (d + 1) / 2`` values per chain, ``stream`` every
    sample. A matrix larger than the chip is inverted as the simulator does, a tiled solve of
    the ``d`` columns of the identity (:func:`estimate_solve`'s tiling model). Other overheads
    as in :func:`estimate_solve`.
    """
    dev = _device(device)
    hw = dev.chip
    spec = _as_spectrum(spectrum)
    eps = _check_eps(target_rel_error, "target_rel_error")
    resident = _resident(dev, resident)
    notes: list[str] = []
    bits = _bits(hw, notes)
    _regime_note(hw, notes)
    if hw.n_units is not None and spec.d > hw.n_units:
        notes.append("inverse as a tiled solve of the d identity columns")
        return _tiled(dev, spec, bits, eps=eps, columns=spec.d, initial_error_ratio=1.0, sweeps=sweeps,
                      sweep_contraction=sweep_contraction, schedule=block_schedule, notes=notes)
    if hw.kT == 0:
        raise HardwareSpecError("inversion reads the thermal covariance: HardwareSpec.kT must be > 0")
    d = spec.d
    capacity = _layout(dev, d, dev.n_chips * dev.copies(d))
    mass, h = _mass(hw), dev.sample_interval_tau(capacity.copies * d)
    n_total = inverse_samples(spec, eps, sample_interval_tau=h, mass_tau2=mass)
    chains = min(capacity.per_round, n_total)
    layout = _layout(dev, d, chains)
    n_chain = math.ceil(n_total / chains)
    burn = inverse_equilibration_time_tau(spec, eps, mass_tau2=mass)
    _knob_notes(dev, layout, h, resident, notes)
    if not spec.exact:
        notes.append("only eigenvalue bounds known: window for the worst spectrum within them")
    if chains > 1:
        notes.append(f"{n_total} samples split over {chains} parallel chains of {n_chain}")
    tally = _job(dev, bits, layout, columns=chains, burn_in_tau=burn, n_samples=n_chain,
                 sample_interval_s=h * hw.tau_s, values_per_column=d * (d + 1) // 2, has_inputs=False,
                 resident=resident)
    return _breakdown(dev, tally, n_samples=n_chain, n_tiles=1, bound=spec.bound, burn_in_tau=burn,
                      window_tau=n_chain * h, n_sweeps=1, chips_used=layout.chips, notes=notes,
                      copies=layout.copies, sample_interval_tau=h, resident=resident)


def serial_readout_units(device: DeviceSpec | HardwareSpec, relaxation_time_tau: float) -> float:
    """The number of node voltages past which reading one sample (``ceil(units / adc_channels)``
    conversions) outlasts ``relaxation_time_tau``: below it the readout samples faster than the
    chip decorrelates, and the extra, correlated samples cost nothing; above it every sample the
    target needs costs its conversions (time ~ units per sample). Infinite with one ADC channel
    per unit (one conversion per sample) or instant conversions."""
    dev = _device(device)
    chip = dev.chip
    if dev.adc_channels is None or chip.adc_conversion_s == 0:
        return math.inf
    return dev.adc_channels * relaxation_time_tau * chip.tau_s / chip.adc_conversion_s


def tngd_array_values(n_params: int, rank: int) -> int:
    """Values the TNGD device's resistor arrays hold: ``J_f`` (``r x N``), ``H_L`` (``r x r``) and
    ``J_f^T`` (``N x r``), ``r (r + 2N)`` with ``r = b d_z`` (Donatella et al. 2024, Appendix C)."""
    return rank * (rank + 2 * n_params)


def tngd_link_needed_bps(device: DeviceSpec | HardwareSpec, *, n_params: int, rank: int, within_s: float) -> float:
    """The link bandwidth (bit/s) at which TNGD's arrays (:func:`tngd_array_values` at
    ``bits_A``) and gradient (``bits_b``) cross the link within ``within_s`` seconds (after the
    link's latency; infinite when the latency alone takes longer): the limit that the ``r (r +
    2N)`` programmed values set on any TNGD iteration as fast as ``within_s``."""
    dev = _device(device)
    n = check_count(n_params, "n_params")
    r = check_count(rank, "rank")
    if not (math.isfinite(within_s) and within_s > 0):
        raise InputError(f"within_s must be a finite number of seconds > 0, got {within_s!r}")
    bits = _bits(dev.chip, [])
    payload = tngd_array_values(n, r) * bits.coupling + n * bits.inputs
    room = within_s - 2 * dev.link.latency_s
    return payload / room if room > 0 else math.inf


def estimate_tngd_iteration(
    device: DeviceSpec | HardwareSpec,
    *,
    n_params: int,
    rank: int,
    analog_time_tau: float,
    n_readout: int = 1,
) -> TimingBreakdown:
    """Projected device time and energy of one thermodynamic-NGD iteration on ``device``'s first
    chip, the procedure of Donatella et al. 2024 (Appendix C) priced like every other operation:

    * program: the curvature's resistor arrays, :func:`tngd_array_values` ``= r (r + 2N)``
      values of ``bits_A`` bits (32 if None) over the link, written by the DACs
      (``ceil(values / channels)`` conversions; one channel per unit of the ``N + r``-unit
      circuit by default); every iteration (the curvature changes every step);
    * inputs: the gradient, ``N`` values of ``bits_b`` bits over the link, its DAC conversions
      and ``program_settle_s``;
    * analog: the dynamics run for ``analog_time_tau`` tau; the last ``n_readout`` samples, at
      the interval the ADC channels reach for ``N`` nodes, end with the run;
    * readout: the last sample's ADC conversions; back over the link ``N`` values of
      ``bits_adc`` bits (``accumulate``) or every sample (``stream``, overlapping the readout);
    * energy: ``power_per_unit_w (N + r)`` over the run plus every conversion.
    """
    dev = _device(device)
    hw = dev.chip
    n = check_count(n_params, "n_params")
    r = check_count(rank, "rank")
    reads = check_count(n_readout, "n_readout")
    t_tau = float(analog_time_tau)
    if not math.isfinite(t_tau) or t_tau < 0:
        raise InputError(f"analog_time_tau must be a finite number >= 0, got {analog_time_tau!r}")
    notes: list[str] = []
    bits = _bits(hw, notes)
    units = n + r
    if hw.n_units is not None and units > hw.n_units:
        notes.append(f"the N + r = {units}-unit circuit exceeds n_units = {hw.n_units}: priced as one chip "
                     "(the low-rank device is not tiled)")
    if dev.n_chips > 1:
        notes.append("TNGD runs on one chip; the others stay idle")
    values = tngd_array_values(n, r)
    t = _Tally(runs=1)
    t.program = transfer_s(dev, values, bits.coupling) + dev.dac_rounds(values, units) * hw.dac_conversion_s
    t.inputs = transfer_s(dev, n, bits.inputs) + dev.dac_rounds(n, units) * hw.dac_conversion_s + hw.program_settle_s
    t.dac = values + n
    h_s = dev.sample_interval_s(n)
    run_s = t_tau * hw.tau_s
    t.window = min(run_s, (reads - 1) * h_s)
    t.equilibrate = run_s - t.window
    t.readout = dev.adc_rounds(n) * hw.adc_conversion_s
    t.adc = n * reads
    if hw.readout == "accumulate":
        t.transfer = transfer_s(dev, n, bits.adc)
    else:
        bw = dev.link.bandwidth_bps
        t.transfer = dev.link.latency_s + max(reads * n * bits.adc / bw - t.window, n * bits.adc / bw)
    t.energy = hw.power_per_unit_w * units * run_s + hw.energy_per_conversion_j * (t.dac + t.adc)
    notes.append(f"arrays J_f, H_L, J_f^T: r (r + 2N) = {values} values programmed per iteration (r = b d_z = {r}, N = {n})")
    return _breakdown(dev, t, n_samples=reads, n_tiles=1, bound="exact", burn_in_tau=t.equilibrate / hw.tau_s,
                      window_tau=t.window / hw.tau_s, n_sweeps=1, chips_used=1, notes=notes,
                      sample_interval_tau=h_s / hw.tau_s)
