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
    """Couplings: link transfer (latency + bits/bandwidth), row-parallel DAC conversion."""
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


def _link_s(hw: HardwareSpec, n_values: float, bits: int) -> float:
    return hw.link_latency_s + n_values * bits / hw.link_bandwidth_bps if n_values > 0 else 0.0


def _job(
    hw: HardwareSpec,
    bits: _Bits,
    *,
    n: int,
    columns: int,
    chips: int,
    burn_in_tau: float,
    n_samples: int,
    values_per_column: int,
    has_inputs: bool,
) -> _Tally:
    """One programmed ``n x n`` block running ``columns`` independent chains on ``chips`` chips.

    Couplings are sent to every chip used (one link, no broadcast) and converted row-parallel
    (``n`` DAC slots); each round of up to ``chips`` chains re-sends only its inputs.
    """
    t = _Tally()
    used = min(chips, columns)
    t.program = _link_s(hw, used * n * n, bits.coupling) + n * hw.dac_conversion_s
    t.dac = used * n * n
    h_s = hw.sample_interval_tau * hw.tau_s
    burn_s = burn_in_tau * hw.tau_s
    win_s = n_samples * h_s
    full, rest = divmod(columns, chips)
    for c, count in ((chips, full), (rest, 1 if rest else 0)):
        if count == 0:
            continue
        r = _Tally(runs=1)
        if has_inputs:
            r.inputs = _link_s(hw, c * n, bits.inputs) + hw.dac_conversion_s + hw.program_settle_s
            r.dac = c * n
        else:
            r.inputs = hw.program_settle_s
        r.equilibrate, r.window = burn_s, win_s
        r.readout = hw.adc_conversion_s
        r.adc = c * n * n_samples
        if hw.readout == "accumulate":
            r.transfer = _link_s(hw, c * values_per_column, bits.adc)
        else:
            stream_s = c * n * n_samples * bits.adc / hw.link_bandwidth_bps
            last_s = c * n * bits.adc / hw.link_bandwidth_bps
            r.transfer = hw.link_latency_s + max(stream_s - win_s, last_s)
        r.energy = hw.power_per_unit_w * n * c * (burn_s + win_s)
        t.add(r, count)
    t.energy += hw.energy_per_conversion_j * (t.dac + t.adc)
    return t


def _mass(hw: HardwareSpec) -> float:
    return hw.mass_tau2 if hw.regime == "underdamped" else 0.0


def _check_hw(hw: HardwareSpec) -> None:
    if not isinstance(hw, HardwareSpec):
        raise InputError(f"hw must be a HardwareSpec, got {type(hw).__name__}")


def _breakdown(
    hw: HardwareSpec,
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
    analog_override_s: float | None = None,
) -> TimingBreakdown:
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
    hw: HardwareSpec,
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
    assert hw.n_units is not None
    d, nu = spec.d, hw.n_units
    sizes = [min(nu, d - start) for start in range(0, d, nu)]
    nb = len(sizes)
    n_sweeps = default_sweeps(eps, sweep_contraction, schedule) if sweeps is None else check_count(sweeps, "sweeps")
    mass, h = _mass(hw), hw.sample_interval_tau
    block_samples = {
        n: solve_samples(
            SpectrumInfo.from_bounds(spec.lambda_min, spec.lambda_max, n), hw.kT, eps,
            sample_interval_tau=h, mass_tau2=mass, input_range_v=hw.input_range_v,
        )
        for n in set(sizes)
    }
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
        jobs: list[_Tally] = []
        if schedule == "gauss-seidel":
            for n in sizes:
                jobs.append(_job(hw, bits, n=n, columns=columns, chips=hw.n_chips, burn_in_tau=burn,
                                 n_samples=block_samples[n], values_per_column=n, has_inputs=True))
                chips_used = max(chips_used, min(hw.n_chips, columns))
            for job in jobs:
                total.add(job)
                analog_s += job.equilibrate + job.window
        else:  # jacobi: blocks of a sweep are independent and share out the chips
            per_block = max(1, hw.n_chips // nb)
            concurrent = min(nb, hw.n_chips)
            chips_used = max(chips_used, concurrent * min(per_block, columns))
            for wave_start in range(0, nb, concurrent):
                wave = [
                    _job(hw, bits, n=n, columns=columns, chips=per_block, burn_in_tau=burn,
                         n_samples=block_samples[n], values_per_column=n, has_inputs=True)
                    for n in sizes[wave_start : wave_start + concurrent]
                ]
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
    return _breakdown(
        hw, total, n_samples=max(block_samples.values()), n_tiles=nb * nb, bound="worst-case",
        burn_in_tau=first_burn, window_tau=max(block_samples.values()) * h, n_sweeps=n_sweeps,
        chips_used=chips_used, notes=notes, analog_override_s=analog_s,
    )


def _regime_note(hw: HardwareSpec, notes: list[str]) -> None:
    if hw.regime == "underdamped":
        notes.append(
            f"underdamped (m = {hw.mass_tau2:g} tau^2): burn-in from the exact response envelope "
            "(start at rest), window from the exact sampled position autocorrelation"
        )


def estimate_solve(
    hw: HardwareSpec,
    spectrum: SpectrumLike,
    *,
    target_rel_error: float,
    solution_norm: float | None = None,
    n_rhs: int = 1,
    initial_error_ratio: float = 1.0,
    sweeps: int | None = None,
    sweep_contraction: float = 0.1,
    block_schedule: BlockSchedule = "gauss-seidel",
) -> TimingBreakdown:
    """Projected device time and energy of ``solve`` for ``A_hat`` (``spectrum``, ``d x d``) and
    ``n_rhs`` right-hand sides, each to an rms relative error ``target_rel_error``.

    Analog: burn-in :func:`equilibration_time_tau` (with ``initial_error_ratio``) then a window of
    :func:`solve_samples` samples. ``solution_norm`` is ``|A_hat^-1 b_hat|`` (V); if None, the
    rms-typical ``input_range_v sqrt(sum lam^-2)`` is assumed (noted).

    Overheads (``HardwareSpec`` fields), phases in sequence:

    * program: couplings, ``d^2`` values of ``bits_A`` bits (32 if None) per chip used over the
      link (``link_latency_s + bits / link_bandwidth_bps``), converted row-parallel
      (``d`` DAC slots: ``d * dac_conversion_s``); once per call;
    * inputs: per round, ``d`` values of ``bits_b`` bits per chain, one ``dac_conversion_s`` and
      ``program_settle_s``;
    * right-hand sides run as chains on ``n_chips`` chips: ``ceil(n_rhs / n_chips)`` rounds in
      sequence, each reusing the programmed couplings;
    * readout: ADC conversions overlap the run, only the last adds ``adc_conversion_s``;
      ``accumulate`` ships ``d`` values per chain at ``bits_adc`` bits (32 if None); ``stream``
      ships every sample (``N d`` values per chain) during the window, so only what exceeds the
      window (at least the last sample) is exposed;
    * tiling: if ``d > n_units``, ``ceil(d/n_units)`` diagonal blocks (``n_tiles`` is its square)
      are solved by block sweeps (:func:`default_sweeps` unless ``sweeps`` is given), each block
      reprogrammed on every visit, with worst-case block spectra and the fallback block norm;
      ``block_schedule="gauss-seidel"`` (default) runs blocks sequentially, ``"jacobi"`` runs the
      blocks of a sweep concurrently on the chips;
    * energy: ``power_per_unit_w * active units * analog time + energy_per_conversion_j * (DAC +
      ADC conversions)``.
    """
    _check_hw(hw)
    spec = _as_spectrum(spectrum)
    eps = _check_eps(target_rel_error, "target_rel_error")
    k = check_count(n_rhs, "n_rhs")
    r0 = float(initial_error_ratio)
    if not math.isfinite(r0) or r0 < 0:
        raise InputError(f"initial_error_ratio must be a finite number >= 0, got {initial_error_ratio!r}")
    notes: list[str] = []
    bits = _bits(hw, notes)
    _regime_note(hw, notes)
    if hw.n_units is not None and spec.d > hw.n_units:
        return _tiled(hw, spec, bits, eps=eps, columns=k, initial_error_ratio=r0, sweeps=sweeps,
                      sweep_contraction=sweep_contraction, schedule=block_schedule, notes=notes)
    mass, h = _mass(hw), hw.sample_interval_tau
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
    tally = _job(hw, bits, n=spec.d, columns=k, chips=hw.n_chips, burn_in_tau=burn, n_samples=n,
                 values_per_column=spec.d, has_inputs=True)
    return _breakdown(hw, tally, n_samples=n, n_tiles=1, bound=spec.bound, burn_in_tau=burn,
                      window_tau=n * h, n_sweeps=1, chips_used=min(hw.n_chips, k), notes=notes)


def estimate_inverse(
    hw: HardwareSpec,
    spectrum: SpectrumLike,
    *,
    target_rel_error: float,
    sweeps: int | None = None,
    sweep_contraction: float = 0.1,
    block_schedule: BlockSchedule = "gauss-seidel",
) -> TimingBreakdown:
    """Projected device time and energy of ``inverse`` to a relative Frobenius error
    ``target_rel_error``.

    From zero volts, burn-in :func:`inverse_equilibration_time_tau` then :func:`inverse_samples`
    samples of the second moment. The samples are split over the ``n_chips`` chips as parallel
    chains (each programmed, each with its own burn-in, ``ceil(N / n_chips)`` samples each; the
    sums add). Inputs are held at zero (no transfer; settling only). ``accumulate`` ships
    ``d (d + 1) / 2`` values per chip, ``stream`` every sample. A matrix larger than the chip is
    inverted as the simulator does, a tiled solve of the ``d`` columns of the identity
    (:func:`estimate_solve`'s tiling model). Other overheads as in :func:`estimate_solve`.
    """
    _check_hw(hw)
    spec = _as_spectrum(spectrum)
    eps = _check_eps(target_rel_error, "target_rel_error")
    notes: list[str] = []
    bits = _bits(hw, notes)
    _regime_note(hw, notes)
    if hw.n_units is not None and spec.d > hw.n_units:
        notes.append("inverse as a tiled solve of the d identity columns")
        return _tiled(hw, spec, bits, eps=eps, columns=spec.d, initial_error_ratio=1.0, sweeps=sweeps,
                      sweep_contraction=sweep_contraction, schedule=block_schedule, notes=notes)
    if hw.kT == 0:
        raise HardwareSpecError("inversion reads the thermal covariance: HardwareSpec.kT must be > 0")
    mass, h = _mass(hw), hw.sample_interval_tau
    n_total = inverse_samples(spec, eps, sample_interval_tau=h, mass_tau2=mass)
    chips = min(hw.n_chips, n_total)
    n_chain = math.ceil(n_total / chips)
    burn = inverse_equilibration_time_tau(spec, eps, mass_tau2=mass)
    if not spec.exact:
        notes.append("only eigenvalue bounds known: window for the worst spectrum within them")
    if chips > 1:
        notes.append(f"{n_total} samples split over {chips} chips as parallel chains of {n_chain}")
    d = spec.d
    tally = _job(hw, bits, n=d, columns=chips, chips=chips, burn_in_tau=burn, n_samples=n_chain,
                 values_per_column=d * (d + 1) // 2, has_inputs=False)
    return _breakdown(hw, tally, n_samples=n_chain, n_tiles=1, bound=spec.bound, burn_in_tau=burn,
                      window_tau=n_chain * h, n_sweeps=1, chips_used=chips, notes=notes)
