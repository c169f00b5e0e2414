"""The analog device as a whole: its chips, the link to the host, how couplings reach the chips
and the converter channels, as one frozen, self-validating description.

A :class:`~thermo.hardware.HardwareSpec` describes one chip (its physics). A :class:`DeviceSpec`
says how many such chips there are and how they are attached; :mod:`thermo.cost` prices every
device operation from it, and nothing else computes a device time. The architecture knobs,
each with the default that reproduces the original timing model:

* ``n_chips``: chips that run in parallel (tiles, right-hand sides and chains are spread over
  them).
* ``link``: the host link (:class:`LinkSpec`: bandwidth in bit/s and a latency per transfer).
* ``coupling_delivery``: how a programmed coupling matrix reaches the chips that use it:
  ``shared`` (one link, a copy per chip; default), ``broadcast`` (one transfer that every chip
  receives) or ``per-chip`` (one link per chip: transfers to different chips overlap, and the
  co-simulation gives every chip its own link resource).
* ``dac_channels`` / ``adc_channels``: converters per chip. ``None`` (default) is one per unit:
  a row of couplings, an input vector or a sample of every node converts at once. ``k``
  channels convert ``k`` values at a time, so reading ``n`` node voltages takes ``ceil(n / k)``
  conversions and the readout sample interval becomes at least ``ceil(n / k) *
  adc_conversion_s`` (:meth:`DeviceSpec.sample_interval_s`); one channel is a serial converter.
* ``resident_couplings``: programmed couplings stay on a chip until they change, so a second
  call with the same matrix has no programming phase (K-FAC's factors are then programmed once
  per factor update, and per-step solves send only their right-hand sides). Default off: every
  call programs.
* ``replicas``: a chip larger than the matrix holds ``floor(n_units / n)`` copies and runs that
  many right-hand sides (or chains) at once. Default off: one copy per chip.

The readout mode (accumulate on the chip or stream every sample) is a chip property
(``HardwareSpec.readout``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .config_files import is_config_path, read_table
from .errors import DeviceSpecError, HardwareSpecError, LegacyFormatWarning
from .hardware import PRESETS as CHIP_PRESETS
from .hardware import HardwareSpec, hardware_from_table
from .registry import Registry


class CouplingDelivery(str, Enum):
    """How programmed couplings reach the chips that use them."""

    SHARED = "shared"
    """One link; each chip used receives its own copy (transfers add up)."""
    BROADCAST = "broadcast"
    """One transfer that every chip receives."""
    PER_CHIP = "per-chip"
    """One link per chip: transfers to different chips run at the same time."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class LinkSpec:
    """The host <-> device link: a fixed latency per transfer plus a serial bandwidth.

    ``bandwidth_bps`` is in BITS per second (a GPU's memory bandwidth is in bytes per second).
    """

    bandwidth_bps: float
    """Link bandwidth (bit/s), one direction."""
    latency_s: float
    """Fixed latency of one transfer (s)."""
    name: str = ""

    def __post_init__(self) -> None:
        if not _is_number(self.bandwidth_bps) or not math.isfinite(self.bandwidth_bps) or self.bandwidth_bps <= 0:
            raise DeviceSpecError(f"LinkSpec.bandwidth_bps must be a finite number > 0, got {self.bandwidth_bps!r}")
        if not _is_number(self.latency_s) or not math.isfinite(self.latency_s) or self.latency_s < 0:
            raise DeviceSpecError(f"LinkSpec.latency_s must be a finite number >= 0, got {self.latency_s!r}")
        if not isinstance(self.name, str):
            raise DeviceSpecError(f"LinkSpec.name must be a string, got {self.name!r}")

    def replace(self, **changes: object) -> LinkSpec:
        """A copy with ``changes`` applied and validated (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


LINKS: Registry[LinkSpec] = Registry("link preset", DeviceSpecError)
LINKS.add("pcie4-x16", LinkSpec(bandwidth_bps=252e9, latency_s=1e-6, name="pcie4-x16"),
          "PCIe 4.0 x16: 16 GT/s x 16 lanes x 128/130 = 252 Gbit/s per direction (PCI-SIG); 1 us latency assumed")
LINKS.add("pcie5-x16", LinkSpec(bandwidth_bps=504e9, latency_s=1e-6, name="pcie5-x16"),
          "PCIe 5.0 x16: 32 GT/s x 16 lanes x 128/130 = 504 Gbit/s per direction (PCI-SIG); 1 us latency assumed")
LINKS.add("paper-50gbps", LinkSpec(bandwidth_bps=50e9, latency_s=1e-6, name="paper-50gbps"),
          "Donatella et al. 2024 (arXiv 2405.13817): 50 Gb/s digital link; 1 us latency assumed")


def link_preset(name: str, **overrides: object) -> LinkSpec:
    """A link preset by name (any case), with field overrides."""
    spec = LINKS.get(name)
    return spec.replace(**overrides) if overrides else spec


@dataclass(frozen=True)
class DeviceSpec:
    """The analog device: ``n_chips`` chips described by ``chip``, attached through ``link``,
    with the architecture knobs of the module docstring. Bad values raise
    :class:`~thermo.errors.DeviceSpecError` naming the field."""

    chip: HardwareSpec = field(default_factory=HardwareSpec.published)
    """One chip's physics (units, couplings, converters, noise, time constant, readout)."""
    n_chips: int = 1
    """Chips working in parallel."""
    link: LinkSpec = field(default_factory=lambda: LINKS.get("paper-50gbps"))
    """The host link."""
    coupling_delivery: CouplingDelivery = CouplingDelivery.SHARED
    """``shared``, ``broadcast`` or ``per-chip`` (see the module docstring)."""
    dac_channels: int | None = None
    """DAC channels per chip; ``None``: one per unit."""
    adc_channels: int | None = None
    """ADC channels per chip; ``None``: one per unit."""
    resident_couplings: bool = False
    """Programmed couplings stay on a chip until they change."""
    replicas: bool = False
    """A chip of ``n_units`` holds ``floor(n_units / n)`` copies of an ``n x n`` matrix."""
    name: str = ""
    source: str = ""
    """Where the figures come from (papers, datasheets, assumptions)."""

    def __post_init__(self) -> None:
        if not isinstance(self.chip, HardwareSpec):
            raise DeviceSpecError(f"DeviceSpec.chip must be a thermo.HardwareSpec, got {self.chip!r}")
        if not isinstance(self.link, LinkSpec):
            raise DeviceSpecError(f"DeviceSpec.link must be a thermo.device.LinkSpec, got {self.link!r}")
        if not _is_count(self.n_chips):
            raise DeviceSpecError(f"DeviceSpec.n_chips must be an integer >= 1, got {self.n_chips!r}")
        try:
            object.__setattr__(self, "coupling_delivery", CouplingDelivery(self.coupling_delivery))
        except ValueError:
            choices = ", ".join(d.value for d in CouplingDelivery)
            raise DeviceSpecError(
                f"DeviceSpec.coupling_delivery must be one of {choices}, got {self.coupling_delivery!r}"
            ) from None
        for name in ("dac_channels", "adc_channels"):
            value = getattr(self, name)
            if value is not None and not _is_count(value):
                raise DeviceSpecError(f"DeviceSpec.{name} must be None (one per unit) or an integer >= 1, got {value!r}")
            units = self.chip.n_units
            if value is not None and units is not None and value > units:
                raise DeviceSpecError(
                    f"DeviceSpec.{name} is {value} but a chip has only {units} units (chip.n_units): "
                    "at most one channel per unit"
                )
        for name in ("resident_couplings", "replicas"):
            if not isinstance(getattr(self, name), bool):
                raise DeviceSpecError(f"DeviceSpec.{name} must be True or False, got {getattr(self, name)!r}")
        if self.replicas and self.chip.n_units is None:
            raise DeviceSpecError(
                "DeviceSpec.replicas needs a finite chip (chip.n_units): an unbounded chip has no spare units to copy into"
            )
        for name in ("name", "source"):
            if not isinstance(getattr(self, name), str):
                raise DeviceSpecError(f"DeviceSpec.{name} must be a string, got {getattr(self, name)!r}")

    # --- what the knobs mean for an n x n matrix ---------------------------------------------------
    def copies(self, n: int) -> int:
        """Copies of an ``n x n`` matrix one chip holds: ``floor(n_units / n)`` with
        :attr:`replicas`, else 1."""
        if not self.replicas or self.chip.n_units is None or n > self.chip.n_units:
            return 1
        return self.chip.n_units // n

    def dac_rounds(self, n_values: int, units: int) -> int:
        """DAC conversions in sequence to write ``n_values`` values on a chip whose ``units``
        units are in use (``units`` channels when there is one per unit)."""
        channels = units if self.dac_channels is None else min(self.dac_channels, max(units, 1))
        return math.ceil(n_values / channels) if n_values > 0 else 0

    def adc_rounds(self, units: int) -> int:
        """ADC conversions in sequence to read one sample of ``units`` node voltages."""
        if self.adc_channels is None or units <= 0:
            return 1 if units > 0 else 0
        return math.ceil(units / self.adc_channels)

    def sample_interval_s(self, units: int) -> float:
        """Readout sample interval (s) reachable when ``units`` nodes are read per sample: the
        chip's ``1 / sample_rate_hz``, or longer when the ADC channels must convert in turn."""
        return max(self.chip.sample_interval_s, self.adc_rounds(units) * self.chip.adc_conversion_s)

    def sample_interval_tau(self, units: int) -> float:
        """:meth:`sample_interval_s` in units of ``tau``."""
        return self.sample_interval_s(units) / self.chip.tau_s

    def replace(self, **changes: object) -> DeviceSpec:
        """A copy with ``changes`` applied and validated (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_chip(self, **changes: object) -> DeviceSpec:
        """A copy whose chip has ``changes`` applied."""
        return self.replace(chip=self.chip.replace(**changes))

    def with_converter_channels(self, channels: int | None) -> DeviceSpec:
        """A copy with ``channels`` DAC and ADC channels per chip (``None``: one per unit)."""
        return self.replace(dac_channels=channels, adc_channels=channels)

    def summary(self) -> str:
        """One line for reports: the device's name, link, chips, their couplings and time constant,
        and every knob that is not at its default."""
        hw, link = self.chip, self.link
        bits = "ideal" if hw.bits_A is None else f"{hw.bits_A}-bit"
        units = "unbounded" if hw.n_units is None else f"{hw.n_units} units"
        knobs = [f"{self.coupling_delivery.value} couplings"]
        if self.dac_channels is not None or self.adc_channels is not None:
            knobs.append(f"{self.dac_channels or 'one per unit'} DAC / {self.adc_channels or 'one per unit'} ADC "
                         "channel(s) per chip")
        if self.resident_couplings:
            knobs.append("resident couplings")
        if self.replicas:
            knobs.append("replicas")
        return (f"device {self.name or 'custom'}: link {link.name or 'custom'} ({link.bandwidth_bps / 1e9:g} Gb/s), "
                f"{self.n_chips} analog chip(s) ({units}) with {bits} couplings and tau = {hw.tau_s * 1e6:g} us, "
                f"{', '.join(knobs)}")

    # --- serialization ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Nested plain values (``None`` fields left out, as TOML has no null)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, (HardwareSpec, LinkSpec)):
                value = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
            elif isinstance(value, CouplingDelivery):
                value = value.value
            out[f.name] = value
        return out


def as_device(hardware: HardwareSpec | DeviceSpec) -> DeviceSpec:
    """``hardware`` as a device: a :class:`DeviceSpec` as it is, a chip as one chip on the
    default link (the paper's 50 Gb/s, 1 us latency assumed) with the default knobs."""
    if isinstance(hardware, DeviceSpec):
        return hardware
    if isinstance(hardware, HardwareSpec):
        return DeviceSpec(chip=hardware)
    raise DeviceSpecError(f"expected a thermo.HardwareSpec or DeviceSpec, got {type(hardware).__name__}")


# ------------------------------------------------------------------------------------------------
# presets
def _published() -> DeviceSpec:
    return DeviceSpec(
        chip=HardwareSpec.published(), n_chips=1, link=LINKS.get("paper-50gbps"), name="published",
        source="one HardwareSpec.published() chip on the paper's 50 Gb/s link (Donatella et al. 2024, "
               "arXiv 2405.13817); couplings shared over the link, one converter per unit, reprogrammed on "
               "every call, one copy per chip: the original timing model",
    )


def _paper_2024_tngd() -> DeviceSpec:
    # Appendix C charges per iteration: DAC of the gradient, b d_z (b d_z + 2N) resistor values at
    # 16 bits over 50 Gb/s, the run for t, ADC of the node voltages; it states no latency, settling
    # or conversion times, so they are zero here (the converters' cost is their bits on the link).
    chip = HardwareSpec.published(program_settle_s=0.0, dac_conversion_s=0.0, adc_conversion_s=0.0)
    return DeviceSpec(
        chip=chip, n_chips=1, link=LinkSpec(bandwidth_bps=50e9, latency_s=0.0, name="paper-50gbps-no-latency"),
        name="paper-2024-tngd",
        source="exactly the TNGD paper's timing procedure and constants (Donatella et al. 2024, arXiv 2405.13817, "
               "Appendix C): 16-bit converters, 50 Gb/s, RC = 1 us, b d_z (b d_z + 2N) resistors programmed per "
               "iteration; no latency, settling or conversion time is stated there, so all are 0",
    )


def _aggressive() -> DeviceSpec:
    chip = HardwareSpec.published(n_units=4096, sample_rate_hz=1e8, dac_conversion_s=1e-8, adc_conversion_s=1e-8,
                                  program_settle_s=1e-7, readout="accumulate")
    return DeviceSpec(
        chip=chip, n_chips=8, link=LINKS.get("pcie5-x16"), coupling_delivery=CouplingDelivery.BROADCAST,
        resident_couplings=True, replicas=True, name="aggressive",
        source="an aggressive-but-physical design, every figure an assumption of this project: 8 chips of 4096 "
               "units, couplings broadcast over a PCIe 5.0 x16 link, resident factors, replicas of small "
               "matrices, on-chip accumulation, 10 ns converters (one per unit), a 100 MHz readout, 100 ns "
               "settling; the chip's physics otherwise as HardwareSpec.published()",
    )


def _noisy() -> DeviceSpec:
    return DeviceSpec(
        chip=HardwareSpec.noisy_low_precision(), n_chips=1, link=LinkSpec(bandwidth_bps=10e9, latency_s=1e-6, name="10gbps"),
        name="noisy", source="one HardwareSpec.noisy_low_precision() chip on a 10 Gb/s link (1 us latency); assumptions",
    )


DEVICES: Registry[Any] = Registry("device preset", DeviceSpecError)
DEVICES.add("published", _published, "today's published device: one published chip, 50 Gb/s link, original knobs")
DEVICES.add("paper-2024-tngd", _paper_2024_tngd, "the TNGD paper's own timing procedure and constants (Appendix C)")
DEVICES.add("noisy", _noisy, "one pessimistic noisy chip on a 10 Gb/s link (assumptions)")
DEVICES.add("aggressive", _aggressive, "8 x 4096-unit chips, broadcast, resident, replicas, 10 ns converters (assumptions)")


def device_preset(name: str | os.PathLike[str], **overrides: object) -> DeviceSpec:
    """A device preset by name (any case), or a ``.toml``/``.yaml`` device file
    (:func:`load_device`), with field overrides."""
    spec = load_device(name) if is_config_path(name) else DEVICES.get(name)()
    return spec.replace(**overrides) if overrides else spec


# ------------------------------------------------------------------------------------------------
# tables and files
LEGACY_CHIP_KEYS: dict[str, str] = {
    "n_chips": "n_chips",
    "link_bandwidth_bps": "link.bandwidth_bps",
    "link_latency_s": "link.latency_s",
}
"""Keys that an old hardware table carried and that now belong to the device: old key -> place."""

_DEVICE_KEYS = tuple(f.name for f in dataclasses.fields(DeviceSpec))


def _table(value: object, section: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise DeviceSpecError(f"[{section}] must be a table (mapping), got {value!r}")
    return dict(value)


def link_from(value: object, section: str = "link") -> LinkSpec:
    """A link from a preset name or a table of :class:`LinkSpec` fields (``preset`` starts from
    a preset and the other keys override it)."""
    if isinstance(value, str):
        return link_preset(value)
    data = _table(value, section)
    fields = {f.name for f in dataclasses.fields(LinkSpec)}
    unknown = sorted(k for k in data if k != "preset" and k not in fields)
    if unknown:
        raise DeviceSpecError(f"unknown key(s) {unknown} in [{section}]; LinkSpec fields are {sorted(fields)}")
    if "preset" in data:
        return link_preset(data.pop("preset"), **data)
    missing = [k for k in ("bandwidth_bps", "latency_s") if k not in data]
    if missing:
        raise DeviceSpecError(f"[{section}] misses required key(s) {missing} (or name a 'preset')")
    return LinkSpec(**data)


def chip_from(value: object, section: str = "device.chip") -> tuple[HardwareSpec, dict[str, Any]]:
    """A chip from a hardware preset name, a hardware file or a table of HardwareSpec fields, and
    the old device keys found in it (:data:`LEGACY_CHIP_KEYS`), which the caller maps."""
    if isinstance(value, (str, os.PathLike)):
        if is_config_path(value):
            table = read_table(value)
            legacy = {k: table.pop(k) for k in list(table) if k in LEGACY_CHIP_KEYS}
            return hardware_from_table(table, section=f"hardware file {value}"), legacy
        try:
            return CHIP_PRESETS.get(value)(), {}
        except HardwareSpecError as exc:
            raise DeviceSpecError(str(exc)) from None
    data = _table(value, section)
    legacy = {k: data.pop(k) for k in list(data) if k in LEGACY_CHIP_KEYS}
    return hardware_from_table(data, section=section), legacy


def apply_legacy_chip_keys(device: DeviceSpec, legacy: Mapping[str, Any], where: str,
                           given: Iterable[str] = ()) -> DeviceSpec:
    """Move old device keys of a chip table (``n_chips``, ``link_*``) onto ``device``, with one
    :class:`~thermo.errors.LegacyFormatWarning` naming them and their new place. A key whose
    place the caller ``given`` explicitly (``n_chips``, ``link``) is not applied, and the warning
    says so: the explicit value wins."""
    if not legacy:
        return device
    given = set(given)
    superseded = sorted(k for k in legacy if LEGACY_CHIP_KEYS[k].split(".")[0] in given)
    applied = {k: v for k, v in legacy.items() if k not in superseded}
    places = ", ".join(f"{k} -> device.{LEGACY_CHIP_KEYS[k]}" for k in sorted(applied))
    message = f"{where}: the chip description carries device keys"
    if applied:
        message += f" ({places}); they were read into the device"
    if superseded:
        message += f"{';' if applied else ''} {', '.join(superseded)} ignored: given for the device itself"
    warnings.warn(message + ". Move them to the [device] table (and its [device.link]).", LegacyFormatWarning,
                  stacklevel=3)
    link = device.link
    if "link_bandwidth_bps" in applied:
        link = link.replace(bandwidth_bps=applied["link_bandwidth_bps"], name="")
    if "link_latency_s" in applied:
        link = link.replace(latency_s=applied["link_latency_s"], name="")
    changes: dict[str, Any] = {"link": link}
    if "n_chips" in applied:
        changes["n_chips"] = applied["n_chips"]
    return device.replace(**changes)


def device_from_table(data: Mapping[str, Any], section: str = "device") -> DeviceSpec:
    """A :class:`DeviceSpec` from a table: ``preset`` (a device preset to start from), ``chip``
    (a hardware preset name, hardware file or table of HardwareSpec fields; under a device
    ``preset`` a table without its own ``preset`` overrides the preset's chip, otherwise it starts
    from HardwareSpec's defaults), ``link`` (a link preset name or table), and the knobs. Unknown
    keys raise naming them; old device keys inside the chip table are read with a warning."""
    data = _table(data, section)
    unknown = sorted(k for k in data if k != "preset" and k not in _DEVICE_KEYS)
    if unknown:
        raise DeviceSpecError(f"unknown key(s) {unknown} in [{section}]; DeviceSpec fields are {sorted(_DEVICE_KEYS)}")
    from_preset = "preset" in data
    base = device_preset(data.pop("preset")) if from_preset else DeviceSpec()
    legacy: dict[str, Any] = {}
    if "chip" in data:
        chip_value = data.pop("chip")
        if isinstance(chip_value, Mapping) and "preset" not in chip_value and from_preset:
            # under a device preset, a chip table without its own preset overrides the preset's chip
            table = dict(chip_value)
            legacy = {k: table.pop(k) for k in list(table) if k in LEGACY_CHIP_KEYS}
            _check_chip_keys(table, f"{section}.chip")
            data["chip"] = base.chip.replace(**table) if table else base.chip
        else:  # otherwise it starts from HardwareSpec's defaults, as a hardware file does
            data["chip"], legacy = chip_from(chip_value, f"{section}.chip")
    if "link" in data:
        data["link"] = link_from(data["link"], f"{section}.link")
    device = base.replace(**data) if data else base
    return apply_legacy_chip_keys(device, legacy, f"[{section}]", given=data)


def _check_chip_keys(table: Mapping[str, Any], section: str) -> None:
    fields = {f.name for f in dataclasses.fields(HardwareSpec)}
    unknown = sorted(k for k in table if k not in fields)
    if unknown:
        raise DeviceSpecError(f"unknown key(s) {unknown} in [{section}]; HardwareSpec fields are {sorted(fields)}")


def load_device(path: str | os.PathLike[str]) -> DeviceSpec:
    """Read a device file: a TOML or YAML table of :class:`DeviceSpec` fields (see
    :func:`device_from_table`)."""
    return device_from_table(read_table(path), section=f"device file {path}")
