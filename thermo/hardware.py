"""Description of a thermodynamic (Langevin) co-processor as a frozen, self-validating dataclass.

Physical model (DESIGN.md section 1.1). The chip holds a dimensionless coupling matrix ``A_hat``
(couplings in units of the unit conductance ``1/R``) and an input vector ``b_hat`` in volts; the
node voltages ``x`` (volts) obey, with time ``s`` in seconds,

* overdamped (RC cells):      ``tau dx = -(A_hat x - b_hat) ds + sqrt(2 kT tau) dW``
* underdamped (RLC cells):    ``M dv = -(A_hat x - b_hat) ds - tau v ds + sqrt(2 tau kT) dW``,
  ``dx = v ds``

so that ``tau = RC`` is the time constant of a unit coupling, ``M = LC`` (s^2) the inertia of an
RLC cell and ``kT`` (V^2) the noise energy expressed as a voltage variance (``k_B T / C`` for
Johnson noise on a capacitor, larger when a noise source is injected). Both regimes share the
stationary law ``N(A_hat^-1 b_hat, kT A_hat^-1)``.

Every non-ideality is switchable: ``None`` bits means an ideal (continuous) converter,
``v_range_v = inf`` means no rails, zero sigmas mean no mismatch or drift, ``n_units=None`` means
the chip holds any matrix without tiling.

This is one chip. How many chips there are, the link to the host, how couplings reach the chips
and the converter channels are the device's (:class:`thermo.device.DeviceSpec`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .config_files import is_config_path, read_table
from .errors import HardwareSpecError, LegacyFormatWarning
from .registry import Registry

Regime = Literal["overdamped", "underdamped"]
Rounding = Literal["nearest", "stochastic"]
Readout = Literal["stream", "accumulate"]

_MAX_BITS = 32
# Boltzmann constant (J/K), exact since the 2019 SI redefinition.
BOLTZMANN_J_PER_K = 1.380649e-23


def johnson_noise_variance(temperature_k: float, capacitance_f: float) -> float:
    """Thermal voltage variance ``k_B T / C`` (V^2) of a capacitor at ``temperature_k`` kelvin."""
    if temperature_k <= 0 or capacitance_f <= 0:
        raise HardwareSpecError("temperature_k and capacitance_f must both be > 0")
    return BOLTZMANN_J_PER_K * temperature_k / capacitance_f


@dataclass(frozen=True)
class HardwareSpec:
    """One thermodynamic chip: dynamics, converters, non-idealities, size and timing of its parts.

    Units are in the field names: ``_s`` seconds, ``_hz`` hertz, ``_v`` volts, ``_bps`` bits per
    second, ``_w`` watts, ``_j`` joules; couplings are dimensionless (units of ``1/R``).
    """

    # --- dynamics -------------------------------------------------------------------------
    tau_s: float = 1e-6
    """Time constant ``RC`` of a unit coupling (s). Sets the physical time unit."""
    kT: float = 1e-6
    """Noise energy as a voltage variance (V^2): stationary covariance is ``kT A_hat^-1``."""
    regime: Regime = "overdamped"
    """``overdamped`` (RC cells) or ``underdamped`` (RLC cells, needs ``mass_s2``)."""
    mass_s2: float = 0.0
    """Inertia ``M = LC`` (s^2) of an RLC cell; critical damping of a unit mode at ``tau^2/4``."""

    # --- programming DACs -------------------------------------------------------------------
    coupling_range: float = 1.0
    """Largest programmable ``|A_hat_ij|`` (dimensionless); A is scaled to fill it."""
    bits_A: int | None = None
    """Coupling DAC resolution (bits); ``None`` is an ideal continuous coupling."""
    input_range_v: float = 1.0
    """Largest input ``|b_hat_i|`` (V) the input DAC produces; b is scaled to fill it."""
    bits_b: int | None = None
    """Input DAC resolution (bits); ``None`` is ideal."""
    rounding: Rounding = "nearest"
    """DAC rounding: deterministic ``nearest`` or unbiased ``stochastic``."""

    # --- readout ------------------------------------------------------------------------------
    bits_adc: int | None = None
    """Readout ADC resolution (bits) over ``[-v_range_v, v_range_v]``; ``None`` is ideal."""
    v_range_v: float = math.inf
    """Rails (V): node voltages and ADC readings saturate at ``+-v_range_v``; inf disables."""
    clip_in_dynamics: bool = False
    """If True the node voltages themselves saturate at the rails (needs the stepwise path)."""
    sample_rate_hz: float = 1e7
    """Readout sampling rate (Hz): only discrete samples enter the estimators."""

    # --- static and slow imperfections ----------------------------------------------------------
    mismatch_sigma: float = 0.0
    """Relative std of the static error of each programmed coupling (fixed per chip)."""
    mismatch_symmetric: bool = True
    """True when ``A_ij`` and ``A_ji`` are one physical element (passive coupling)."""
    chip_seed: int = 0
    """Seed of the chip's static mismatch pattern: the same seed is the same chip."""
    drift_sigma: float = 0.0
    """Relative rms of the slow (Ornstein-Uhlenbeck) drift of each coupling."""
    drift_timescale_s: float = 1e-3
    """Correlation time (s) of the coupling drift."""

    # --- chip size ----------------------------------------------------------------------------------
    n_units: int | None = None
    """Units (nodes) per chip: a chip holds at most an ``n_units x n_units`` block."""

    # --- timing: converters and settling ---------------------------------------------------------
    program_settle_s: float = 1e-6
    """Time for freshly written couplings and inputs to settle before the run starts (s)."""
    dac_conversion_s: float = 1e-8
    """Conversion time of one DAC value; values of one row convert in parallel (s)."""
    adc_conversion_s: float = 1e-8
    """Conversion time of one ADC sample; all units convert in parallel (s)."""
    readout: Readout = "accumulate"
    """``accumulate``: the chip sums samples and ships only estimates; ``stream``: every sample
    crosses the link."""

    # --- energy ---------------------------------------------------------------------------------
    power_per_unit_w: float = 1e-3
    """Static power of one active unit (W) during the analog run."""
    energy_per_conversion_j: float = 1e-12
    """Energy of one DAC or ADC conversion (J)."""

    def __post_init__(self) -> None:
        self._validate()

    # ------------------------------------------------------------------------------------------
    def _fail(self, field: str, requirement: str) -> None:
        raise HardwareSpecError(
            f"HardwareSpec.{field} {requirement}, got {getattr(self, field)!r}"
        )

    def _validate(self) -> None:
        positive_finite = (
            "tau_s",
            "coupling_range",
            "input_range_v",
            "sample_rate_hz",
            "drift_timescale_s",
        )
        for name in positive_finite:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                self._fail(name, "must be a finite number > 0")
        non_negative = (
            "kT",
            "mass_s2",
            "mismatch_sigma",
            "drift_sigma",
            "program_settle_s",
            "dac_conversion_s",
            "adc_conversion_s",
            "power_per_unit_w",
            "energy_per_conversion_j",
        )
        for name in non_negative:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                self._fail(name, "must be a finite number >= 0")
        if not isinstance(self.v_range_v, (int, float)) or math.isnan(self.v_range_v) or self.v_range_v <= 0:
            self._fail("v_range_v", "must be > 0 (use math.inf for no rails)")
        for name in ("bits_A", "bits_b", "bits_adc"):
            bits = getattr(self, name)
            if bits is None:
                continue
            if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= _MAX_BITS:
                self._fail(name, f"must be None (ideal) or an integer in [2, {_MAX_BITS}]")
        if self.regime not in ("overdamped", "underdamped"):
            self._fail("regime", "must be 'overdamped' or 'underdamped'")
        if self.regime == "underdamped" and self.mass_s2 <= 0:
            self._fail("mass_s2", "must be > 0 for the underdamped regime")
        if self.rounding not in ("nearest", "stochastic"):
            self._fail("rounding", "must be 'nearest' or 'stochastic'")
        if self.readout not in ("stream", "accumulate"):
            self._fail("readout", "must be 'stream' or 'accumulate'")
        if self.bits_adc is not None and not math.isfinite(self.v_range_v):
            self._fail("v_range_v", "must be finite when bits_adc is set (the ADC needs a range)")
        if self.clip_in_dynamics and not math.isfinite(self.v_range_v):
            self._fail("v_range_v", "must be finite when clip_in_dynamics is True")
        if self.n_units is not None and (
            isinstance(self.n_units, bool) or not isinstance(self.n_units, int) or self.n_units < 1
        ):
            self._fail("n_units", "must be None (unbounded) or an integer >= 1")
        if not isinstance(self.chip_seed, int) or self.chip_seed < 0:
            self._fail("chip_seed", "must be an integer >= 0")
        if self.adc_conversion_s > self.sample_interval_s:
            raise HardwareSpecError(
                "HardwareSpec.sample_rate_hz is impossible: one ADC conversion takes "
                f"{self.adc_conversion_s:g} s but samples are {self.sample_interval_s:g} s apart"
            )

    # ------------------------------------------------------------------------------------------
    @property
    def sample_interval_s(self) -> float:
        """Time between two readout samples (s)."""
        return 1.0 / self.sample_rate_hz

    @property
    def sample_interval_tau(self) -> float:
        """Time between two readout samples in units of ``tau``."""
        return 1.0 / (self.sample_rate_hz * self.tau_s)

    @property
    def mass_tau2(self) -> float:
        """Inertia in units of ``tau^2`` (the dimensionless mass used by the integrators); 0 in
        the overdamped regime, whatever ``mass_s2`` says."""
        if self.regime == "overdamped":
            return 0.0
        return self.mass_s2 / self.tau_s**2

    @property
    def drift_timescale_tau(self) -> float:
        """Drift correlation time in units of ``tau``."""
        return self.drift_timescale_s / self.tau_s

    @property
    def has_quantization(self) -> bool:
        return any(b is not None for b in (self.bits_A, self.bits_b, self.bits_adc))

    def replace(self, **changes: object) -> "HardwareSpec":
        """A copy with ``changes`` applied and validated (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def with_converter_bits(self, bits: int) -> "HardwareSpec":
        """A copy whose three converters (coupling DAC, input DAC, readout ADC) have ``bits``."""
        return self.replace(bits_A=bits, bits_b=bits, bits_adc=bits)

    # --- presets ----------------------------------------------------------------------------------
    @classmethod
    def ideal(cls, **overrides: object) -> "HardwareSpec":
        """A device with every non-ideality off: continuous converters, no rails, no mismatch,
        no drift, unbounded chip size; same time constant, noise and readout rate as
        :meth:`published`."""
        return cls(**overrides)  # type: ignore[arg-type]

    @classmethod
    def published(cls, **overrides: object) -> "HardwareSpec":
        """A device close to the published thermodynamic-NGD hardware figures.

        Donatella et al. 2024 (arXiv 2405.13817), timing model: 16-bit DAC and ADC, R = 1 kOhm
        and C = 1 nF so ``tau = RC = 1 us``; thermal noise ``kappa_0`` of order 1e-6 (used here as
        ``kT = 1e-6 V^2``); its 50 Gb/s link is the device's (:mod:`thermo.device`). Not in the
        sources and therefore assumptions of this project, to be swept by studies: a +-1 V signal
        range, a 10 MHz readout (10 samples per tau), 1 us settling, 10 ns converters.
        """
        base = dict(
            tau_s=1e3 * 1e-9,  # R * C = 1 kOhm * 1 nF
            kT=1e-6,
            bits_A=16,
            bits_b=16,
            bits_adc=16,
            input_range_v=1.0,
            v_range_v=1.0,
            sample_rate_hz=1e7,
        )
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]

    @classmethod
    def noisy_low_precision(cls, **overrides: object) -> "HardwareSpec":
        """A pessimistic device for robustness studies: 8-bit converters with stochastic
        rounding, 100x the published noise, 2% static mismatch, 0.5% drift, a 4 MHz readout and
        a 256-unit chip (larger problems are tiled). All figures are assumptions. (Its former
        10 Gb/s link is a device property now: :mod:`thermo.device`.)"""
        base = dict(
            tau_s=1e-6,
            kT=1e-4,
            bits_A=8,
            bits_b=8,
            bits_adc=8,
            rounding="stochastic",
            input_range_v=1.0,
            v_range_v=1.0,
            sample_rate_hz=4e6,
            mismatch_sigma=0.02,
            drift_sigma=0.005,
            drift_timescale_s=1e-3,
            n_units=256,
        )
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]


PRESETS: Registry[Callable[..., HardwareSpec]] = Registry("hardware preset", HardwareSpecError)
PRESETS.add("ideal", HardwareSpec.ideal, "every non-ideality off (continuous converters, no rails, unbounded chip)")
PRESETS.add("published", HardwareSpec.published, "the TNGD paper's chip: 16-bit converters, tau = RC = 1 us, kT = 1e-6 V^2")
PRESETS.add("noisy", HardwareSpec.noisy_low_precision, "8-bit stochastic converters, 100x noise, 2% mismatch, 256 units (assumptions)")

LEGACY_DEVICE_KEYS = ("n_chips", "link_bandwidth_bps", "link_latency_s")
"""Old HardwareSpec fields that describe the device, not the chip (:mod:`thermo.device`)."""


def preset(name: str, **overrides: object) -> HardwareSpec:
    """Look a preset up by name (``ideal``, ``published``, ``noisy``, any case), with field
    overrides; a name ending in ``.toml``, ``.yaml`` or ``.yml`` is a hardware file
    (:func:`load_hardware`), so every option that takes a preset also takes a file."""
    if isinstance(name, (str, os.PathLike)) and is_config_path(name):
        spec = load_hardware(name)
        return spec.replace(**overrides) if overrides else spec
    if name not in PRESETS:
        raise HardwareSpecError(
            f"unknown hardware preset {name!r}; choose one of {', '.join(PRESETS)}, or give a .toml/.yaml hardware file"
        )
    return PRESETS.get(name)(**overrides)


def hardware_from_table(data: Mapping[str, Any], section: str = "hardware") -> HardwareSpec:
    """A :class:`HardwareSpec` from a table of its fields; a ``preset`` key starts from that preset
    and the other keys override it, without one the fields start from the defaults (those of
    :meth:`HardwareSpec.ideal`). Unknown keys raise :class:`HardwareSpecError` naming them."""
    data = dict(data)
    legacy = sorted(k for k in data if k in LEGACY_DEVICE_KEYS)
    if legacy:
        for key in legacy:
            data.pop(key)
        warnings.warn(f"[{section}]: {', '.join(legacy)} describe the device, not the chip, and were ignored "
                      "here; give them in a device or system description (thermo.DeviceSpec: n_chips, link)",
                      LegacyFormatWarning, stacklevel=2)
    fields = {f.name for f in dataclasses.fields(HardwareSpec)}
    unknown = sorted(k for k in data if k != "preset" and k not in fields)
    if unknown:
        raise HardwareSpecError(f"unknown key(s) {unknown} in [{section}]; HardwareSpec fields are {sorted(fields)}")
    values = {k: v for k, v in data.items() if k != "preset"}
    if "preset" in data:
        if not isinstance(data["preset"], str) or is_config_path(data["preset"]):
            raise HardwareSpecError(f"[{section}] preset must name one of {', '.join(PRESETS)}, got {data['preset']!r}")
        return preset(data["preset"], **values)
    return HardwareSpec(**values)


def load_hardware(path: str | os.PathLike[str]) -> HardwareSpec:
    """Read a hardware file: a TOML or YAML table of :class:`HardwareSpec` fields, optionally
    with ``preset = "published"`` to start from a preset (see :func:`hardware_from_table`)."""
    return hardware_from_table(read_table(path), section=f"hardware file {path}")
