"""The simulated system: a host GPU, the link to the analog device, and the analog device.

Each part is a frozen, self-validating dataclass with its units in the field names (``_s``
seconds, ``_bps`` bits or bytes per second as stated on the field, ``_w`` watts); bad values raise
:class:`SystemSpecError` naming the field. Figures of the presets come from vendor datasheets
(cited in ``source`` and beside each number) or are marked as assumptions of this project.

A :class:`SystemSpec` serializes to nested plain dicts and to TOML or YAML files::

    spec = SystemSpec.from_dict({"gpu": {"preset": "A100", "compute_efficiency": 0.6},
                                 "link": "paper-50gbps",
                                 "analog": {"hardware": "published", "n_chips": 4}})
    spec.save("system.toml");  SystemSpec.load("system.toml") == spec
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thermo import PRESETS as HARDWARE_PRESETS
from thermo import HardwareSpec
from thermo import preset as hardware_preset
from thermo.config_files import file_format, is_config_path, read_table
from thermo.errors import ConfigFileError, HardwareSpecError


class SystemSpecError(ValueError):
    """A system description is unusable: a bad value, an unknown key or an unknown preset."""


PRECISIONS: tuple[str, ...] = ("float64", "float32", "tf32", "bfloat16", "float16")
"""Precision keys a :class:`GPUSpec` may list (``tf32``: tensor-core math on float32 data)."""

DEFAULT_LAUNCH_OVERHEAD_S = 5e-6
"""Per-kernel launch overhead (s). An assumption: typical CUDA launch latencies are a few
microseconds; calibrate it (:func:`cosim.roofline.calibrate`) where it matters."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_positive_finite(owner: str, name: str, value: object) -> None:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:  # type: ignore[arg-type]
        raise SystemSpecError(f"{owner}.{name} must be a finite number > 0, got {value!r}")


def _check_non_negative_finite(owner: str, name: str, value: object) -> None:
    if not _is_number(value) or not math.isfinite(value) or value < 0:  # type: ignore[arg-type]
        raise SystemSpecError(f"{owner}.{name} must be a finite number >= 0, got {value!r}")


def _check_str(owner: str, name: str, value: object, *, non_empty: bool = False) -> None:
    if not isinstance(value, str) or (non_empty and not value.strip()):
        kind = "a non-empty string" if non_empty else "a string"
        raise SystemSpecError(f"{owner}.{name} must be {kind}, got {value!r}")


# ------------------------------------------------------------------------------------------------
# GPU
# ------------------------------------------------------------------------------------------------
class _ReadOnlyDict(dict):  # type: ignore[type-arg]
    """A dict that refuses changes: keeps a frozen spec frozen, yet pickles, deep-copies and
    goes through ``dataclasses.asdict`` like a plain dict (a ``MappingProxyType`` does not)."""

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("GPUSpec.peak_flops is read-only: use GPUSpec.replace(peak_flops=...)")

    __setitem__ = __delitem__ = __ior__ = _read_only  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type, tuple[dict[str, float]]]:
        # Rebuild from a plain copy: the default protocol would refill through __setitem__.
        return type(self), (dict(self),)


@dataclass(frozen=True)
class GPUSpec:
    """A host accelerator described for a roofline model (:mod:`cosim.roofline`).

    ``peak_flops`` maps precision keys (:data:`PRECISIONS`) to dense peak throughput in FLOP/s
    (no structured-sparsity figures). It is stored as a read-only dict and left out of the
    hash, so the spec stays hashable. ``compute_efficiency`` and ``memory_efficiency`` are the
    fractions of peak FLOP/s and of peak bandwidth that real kernels reach (1 = datasheet peak);
    calibration fits them to measurements.
    """

    name: str
    peak_flops: Mapping[str, float] = field(hash=False)
    """Dense peak throughput (FLOP/s) per precision key."""
    memory_bandwidth_bps: float
    """Peak device-memory bandwidth in BYTES per second."""
    launch_overhead_s: float = DEFAULT_LAUNCH_OVERHEAD_S
    """Fixed cost of one kernel launch (s)."""
    compute_efficiency: float = 1.0
    """Fraction of ``peak_flops`` reached by real kernels, in (0, 1]."""
    memory_efficiency: float = 1.0
    """Fraction of ``memory_bandwidth_bps`` reached by real kernels, in (0, 1]."""
    power_w: float | None = None
    """Board power (W) for energy estimates; ``None`` when unknown."""
    source: str = ""
    """Where the figures come from (datasheet, measurement, assumption)."""

    def __post_init__(self) -> None:
        owner = "GPUSpec"
        _check_str(owner, "name", self.name, non_empty=True)
        if not isinstance(self.peak_flops, Mapping) or not self.peak_flops:
            raise SystemSpecError(
                f"{owner}.peak_flops must be a non-empty mapping precision -> FLOP/s, "
                f"got {self.peak_flops!r}"
            )
        for key, value in self.peak_flops.items():
            if key not in PRECISIONS:
                raise SystemSpecError(
                    f"{owner}.peak_flops has unknown precision {key!r}; "
                    f"known precisions: {list(PRECISIONS)}"
                )
            _check_positive_finite(owner, f"peak_flops[{key!r}]", value)
        # Canonical order and float values so that equal specs compare equal whatever order or
        # int/float spelling they were written in; a read-only dict keeps the frozen promise.
        canonical = {k: float(self.peak_flops[k]) for k in PRECISIONS if k in self.peak_flops}
        object.__setattr__(self, "peak_flops", _ReadOnlyDict(canonical))
        _check_positive_finite(owner, "memory_bandwidth_bps", self.memory_bandwidth_bps)
        _check_non_negative_finite(owner, "launch_overhead_s", self.launch_overhead_s)
        for name in ("compute_efficiency", "memory_efficiency"):
            value = getattr(self, name)
            if not _is_number(value) or not (0 < value <= 1):
                raise SystemSpecError(f"{owner}.{name} must be in (0, 1], got {value!r}")
        if self.power_w is not None:
            _check_positive_finite(owner, "power_w", self.power_w)
        _check_str(owner, "source", self.source)

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precision keys this GPU lists."""
        return tuple(self.peak_flops)

    def peak(self, precision: str) -> float:
        """Dense peak throughput (FLOP/s) at ``precision``; raises for a precision not listed."""
        try:
            return self.peak_flops[precision]
        except KeyError:
            raise SystemSpecError(
                f"GPUSpec {self.name!r} lists no peak for precision {precision!r}; "
                f"it lists {list(self.peak_flops)}"
            ) from None

    def replace(self, **changes: object) -> GPUSpec:
        """A copy with ``changes`` applied and validated (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_T = 1e12  # TFLOP/s

# NVIDIA Tesla V100 datasheet (SXM2, 32 GB),
# https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf
# FP64 7.8, FP32 15.7, tensor (FP16 in, FP32 accumulate) 125 TFLOP/s; HBM2 900 GB/s; 300 W.
V100 = GPUSpec(
    name="V100",
    peak_flops={"float64": 7.8 * _T, "float32": 15.7 * _T, "float16": 125 * _T},
    memory_bandwidth_bps=900e9,
    power_w=300.0,
    source=(
        "NVIDIA Tesla V100 datasheet, V100 SXM2 32GB "
        "(images.nvidia.com/content/technologies/volta/pdf/"
        "volta-v100-datasheet-update-us-1165301-r5.pdf); launch overhead 5 us is an assumption"
    ),
)

# NVIDIA A100 Tensor Core GPU datasheet (SXM4, 80 GB),
# https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
# FP64 9.7 (the FP64 tensor-core figure, 19.5, is not used), FP32 19.5, TF32 tensor 156,
# BF16/FP16 tensor 312 TFLOP/s dense; HBM2e 2,039 GB/s; 400 W.
A100 = GPUSpec(
    name="A100",
    peak_flops={
        "float64": 9.7 * _T,
        "float32": 19.5 * _T,
        "tf32": 156 * _T,
        "bfloat16": 312 * _T,
        "float16": 312 * _T,
    },
    memory_bandwidth_bps=2039e9,
    power_w=400.0,
    source=(
        "NVIDIA A100 Tensor Core GPU datasheet, A100 SXM4 80GB, dense figures "
        "(nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
        "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf); "
        "launch overhead 5 us is an assumption"
    ),
)

# NVIDIA H100 Tensor Core GPU datasheet (SXM5),
# https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet
# FP64 34 (FP64 tensor 67 not used), FP32 67, TF32 tensor 494.7, BF16/FP16 tensor 989.4 TFLOP/s
# dense (the datasheet prints the 2:4-sparsity figures 989 and 1,979; dense is half, as in the
# H100 architecture whitepaper); HBM3 3.35 TB/s; up to 700 W.
H100 = GPUSpec(
    name="H100",
    peak_flops={
        "float64": 34 * _T,
        "float32": 67 * _T,
        "tf32": 494.7 * _T,
        "bfloat16": 989.4 * _T,
        "float16": 989.4 * _T,
    },
    memory_bandwidth_bps=3.35e12,
    power_w=700.0,
    source=(
        "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM5, dense figures (half the sparsity "
        "figures; resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet); "
        "launch overhead 5 us is an assumption"
    ),
)

GPU_PRESETS: dict[str, GPUSpec] = {"V100": V100, "A100": A100, "H100": H100}


def _lookup(presets: Mapping[str, Any], name: object, kind: str) -> Any:
    if isinstance(name, str):
        for key, value in presets.items():
            if key.lower() == name.lower():
                return value
    raise SystemSpecError(f"unknown {kind} preset {name!r}; choose one of {list(presets)}")


def gpu_preset(name: str, **overrides: object) -> GPUSpec:
    """A GPU preset by (case-insensitive) name: ``V100``, ``A100``, ``H100``, with overrides."""
    spec: GPUSpec = _lookup(GPU_PRESETS, name, "GPU")
    return spec.replace(**overrides) if overrides else spec


# ------------------------------------------------------------------------------------------------
# Link
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinkSpec:
    """The host <-> analog-device link: a fixed latency plus a serial bandwidth.

    ``bandwidth_bps`` is in BITS per second, like ``HardwareSpec.link_bandwidth_bps`` (and unlike
    ``GPUSpec.memory_bandwidth_bps``, which is bytes per second).
    """

    bandwidth_bps: float
    """Link bandwidth (bit/s), one direction."""
    latency_s: float
    """Fixed latency of one transfer (s)."""
    name: str = ""

    def __post_init__(self) -> None:
        _check_positive_finite("LinkSpec", "bandwidth_bps", self.bandwidth_bps)
        _check_non_negative_finite("LinkSpec", "latency_s", self.latency_s)
        _check_str("LinkSpec", "name", self.name)

    def transfer_time_s(self, n_bytes: float) -> float:
        """Time (s) to move ``n_bytes`` bytes: ``latency_s + 8 * n_bytes / bandwidth_bps``.

        A zero-byte transfer still pays the latency: callers skip transfers that do not happen.
        """
        if not _is_number(n_bytes) or not math.isfinite(n_bytes) or n_bytes < 0:
            raise SystemSpecError(f"n_bytes must be a finite number >= 0, got {n_bytes!r}")
        return self.latency_s + 8.0 * n_bytes / self.bandwidth_bps

    def replace(self, **changes: object) -> LinkSpec:
        """A copy with ``changes`` applied and validated (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


LINK_PRESETS: dict[str, LinkSpec] = {
    # PCIe 4.0 x16: 16 GT/s x 16 lanes x 128/130 encoding = 31.5 GB/s per direction = 252 Gbit/s
    # (PCI-SIG base specification rates). The 1 us latency is an assumption.
    "pcie4-x16": LinkSpec(bandwidth_bps=252e9, latency_s=1e-6, name="pcie4-x16"),
    # PCIe 5.0 x16: 32 GT/s x 16 x 128/130 = 63 GB/s per direction = 504 Gbit/s; latency assumed.
    "pcie5-x16": LinkSpec(bandwidth_bps=504e9, latency_s=1e-6, name="pcie5-x16"),
    # Donatella et al. 2024 (arXiv 2405.13817), thermodynamic NGD timing model: 50 Gb/s digital
    # link (as in HardwareSpec.published()); the 1 us latency is an assumption.
    "paper-50gbps": LinkSpec(bandwidth_bps=50e9, latency_s=1e-6, name="paper-50gbps"),
}


def link_preset(name: str, **overrides: object) -> LinkSpec:
    """A link preset by (case-insensitive) name, with field overrides."""
    spec: LinkSpec = _lookup(LINK_PRESETS, name, "link")
    return spec.replace(**overrides) if overrides else spec


# ------------------------------------------------------------------------------------------------
# Analog device
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnalogSpec:
    """The analog co-processor: a chip description and how many chips there are.

    ``n_chips`` is authoritative for the chip count: a ``hardware`` that itself says
    ``n_chips > 1`` must agree with it. ``units_per_chip=None`` takes ``hardware.n_units``
    (itself ``None`` for a chip that holds any matrix without tiling).
    """

    hardware: HardwareSpec = field(default_factory=HardwareSpec.published)
    n_chips: int = 1
    units_per_chip: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.hardware, HardwareSpec):
            raise SystemSpecError(
                f"AnalogSpec.hardware must be a thermo.HardwareSpec, got {self.hardware!r}"
            )
        if isinstance(self.n_chips, bool) or not isinstance(self.n_chips, int) or self.n_chips < 1:
            raise SystemSpecError(
                f"AnalogSpec.n_chips must be an integer >= 1, got {self.n_chips!r}"
            )
        if self.hardware.n_chips != 1 and self.hardware.n_chips != self.n_chips:
            raise SystemSpecError(
                f"AnalogSpec.n_chips is {self.n_chips} but hardware.n_chips is "
                f"{self.hardware.n_chips}: set the chip count once, on AnalogSpec.n_chips"
            )
        u = self.units_per_chip
        if u is not None and (isinstance(u, bool) or not isinstance(u, int) or u < 1):
            raise SystemSpecError(
                f"AnalogSpec.units_per_chip must be None (take hardware.n_units) or an integer "
                f">= 1, got {u!r}"
            )

    @property
    def units(self) -> int | None:
        """Units per chip in effect: ``units_per_chip``, else ``hardware.n_units`` (None =
        unbounded)."""
        return self.units_per_chip if self.units_per_chip is not None else self.hardware.n_units

    def effective_hardware(self) -> HardwareSpec:
        """``hardware`` with this spec's chip count and units per chip written into it."""
        return self.hardware.replace(n_chips=self.n_chips, n_units=self.units)

    def replace(self, **changes: object) -> AnalogSpec:
        """A copy with ``changes`` applied and validated (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# System
# ------------------------------------------------------------------------------------------------
_SECTIONS = ("name", "notes", "gpu", "link", "analog")


@dataclass(frozen=True)
class SystemSpec:
    """Host GPU + link + analog device: everything a co-simulation needs to time a step."""

    gpu: GPUSpec
    link: LinkSpec
    analog: AnalogSpec
    name: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        for attr, cls in (("gpu", GPUSpec), ("link", LinkSpec), ("analog", AnalogSpec)):
            if not isinstance(getattr(self, attr), cls):
                raise SystemSpecError(
                    f"SystemSpec.{attr} must be a {cls.__name__}, got {getattr(self, attr)!r}"
                )
        _check_str("SystemSpec", "name", self.name)
        _check_str("SystemSpec", "notes", self.notes)

    @classmethod
    def default(cls) -> SystemSpec:
        """A100 host, the paper's 50 Gb/s link, one chip of the published hardware."""
        return cls(
            gpu=A100,
            link=LINK_PRESETS["paper-50gbps"],
            analog=AnalogSpec(),
            name="default",
            notes="A100 SXM4 80GB + 50 Gb/s link + HardwareSpec.published(); see each source",
        )

    @classmethod
    def from_presets(
        cls,
        gpu: str = "A100",
        link: str = "paper-50gbps",
        hardware: str = "published",
        n_chips: int = 1,
        units_per_chip: int | None = None,
        name: str = "",
        notes: str = "",
    ) -> SystemSpec:
        """A system assembled from preset names (GPU, link, :data:`thermo.PRESETS` hardware or a
        hardware file)."""
        return cls(
            gpu=gpu_preset(gpu),
            link=link_preset(link),
            analog=AnalogSpec(_hardware_by_name(hardware), n_chips, units_per_chip),
            name=name,
            notes=notes,
        )

    def analog_hardware(self) -> HardwareSpec:
        """The HardwareSpec the analog timing model should use for this system.

        The system's link and chip count are authoritative: ``link_bandwidth_bps`` and
        ``link_latency_s`` come from :attr:`link`, ``n_chips`` and ``n_units`` from
        :attr:`analog`, whatever the embedded HardwareSpec says.
        """
        return self.analog.effective_hardware().replace(
            link_bandwidth_bps=self.link.bandwidth_bps, link_latency_s=self.link.latency_s
        )

    def replace(self, **changes: object) -> SystemSpec:
        """A copy with ``changes`` applied and validated (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    # --- serialization ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Nested plain dicts (str, int, float, bool values). ``None`` fields are left out (TOML
        has no null) and restored by the field defaults on reading; infinities stay floats."""
        return {
            "name": self.name,
            "notes": self.notes,
            "gpu": _gpu_to_dict(self.gpu),
            "link": _dataclass_to_dict(self.link),
            "analog": {
                "hardware": _dataclass_to_dict(self.analog.hardware),
                **_dataclass_to_dict(self.analog, skip=("hardware",)),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SystemSpec:
        """Inverse of :meth:`to_dict`, also accepting preset references.

        ``gpu`` and ``link`` are a preset name or a table of fields; a table with a ``preset``
        key starts from that preset and overrides the fields it names (``peak_flops`` entries
        are merged into the preset's). ``analog`` is a table with ``hardware`` (a
        :data:`thermo.PRESETS` name or a table of HardwareSpec fields, optionally with
        ``preset``), ``n_chips`` and ``units_per_chip``; a bare string names the hardware
        preset. A missing section takes :meth:`default`'s. Unknown keys raise
        :class:`SystemSpecError` naming the key and its section.
        """
        data = _as_table(data, "top level")
        _reject_unknown(data, _SECTIONS, "top level")
        base = cls.default()
        return cls(
            gpu=_gpu_from(data["gpu"]) if "gpu" in data else base.gpu,
            link=_link_from(data["link"]) if "link" in data else base.link,
            analog=_analog_from(data["analog"]) if "analog" in data else base.analog,
            name=data.get("name", ""),
            notes=data.get("notes", ""),
        )

    def save(self, path: str | Path) -> Path:
        """Write the spec to ``path`` as TOML (``.toml``) or YAML (``.yaml``/``.yml``)."""
        path = Path(path)
        fmt = _format_of(path)
        data = self.to_dict()
        if fmt == "toml":
            try:
                import tomli_w
            except ImportError as exc:  # pragma: no cover - environment problem
                raise SystemSpecError("writing TOML needs the tomli-w package") from exc
            text = tomli_w.dumps(data)
        else:
            import yaml

            text = yaml.safe_dump(data, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> SystemSpec:
        """Read a spec written by :meth:`save` (or by hand) from a TOML or YAML file; a missing or
        malformed file raises :class:`thermo.errors.ConfigFileError` naming it (and the line)."""
        path = Path(path)
        _format_of(path)
        return cls.from_dict(_as_table(read_table(path), f"file {path}"))


# --- serialization helpers ------------------------------------------------------------------------
def _format_of(path: Path) -> str:
    """:func:`thermo.config_files.file_format`, raising this module's :class:`SystemSpecError`."""
    try:
        return file_format(path)
    except ConfigFileError as exc:
        raise SystemSpecError(str(exc)) from None


def _dataclass_to_dict(obj: object, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if f.name in skip or value is None:
            continue
        out[f.name] = value
    return out


def _gpu_to_dict(gpu: GPUSpec) -> dict[str, Any]:
    out = _dataclass_to_dict(gpu)
    out["peak_flops"] = dict(gpu.peak_flops)
    return out


def _as_table(value: object, section: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SystemSpecError(f"section [{section}] must be a table (mapping), got {value!r}")
    for key in value:
        if not isinstance(key, str):
            raise SystemSpecError(f"section [{section}] has a non-string key {key!r}")
    return dict(value)


def _reject_unknown(data: Mapping[str, Any], allowed: tuple[str, ...], section: str) -> None:
    for key in data:
        if key not in allowed:
            raise SystemSpecError(
                f"unknown key {key!r} in section [{section}]; allowed keys: {list(allowed)}"
            )


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _build(cls: type, data: dict[str, Any], section: str) -> Any:
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise SystemSpecError(
            f"section [{section}] misses required key(s) {missing} (or name a 'preset')"
        )
    return cls(**data)


def _gpu_from(value: object) -> GPUSpec:
    if isinstance(value, str):
        return gpu_preset(value)
    data = _as_table(value, "gpu")
    _reject_unknown(data, ("preset", *_field_names(GPUSpec)), "gpu")
    if "peak_flops" in data:
        data["peak_flops"] = _as_table(data["peak_flops"], "gpu.peak_flops")
    if "preset" in data:
        base = gpu_preset(data.pop("preset"))
        if "peak_flops" in data:
            data["peak_flops"] = {**base.peak_flops, **data["peak_flops"]}
        return base.replace(**data)
    return _build(GPUSpec, data, "gpu")


def _link_from(value: object) -> LinkSpec:
    if isinstance(value, str):
        return link_preset(value)
    data = _as_table(value, "link")
    _reject_unknown(data, ("preset", *_field_names(LinkSpec)), "link")
    if "preset" in data:
        return link_preset(data.pop("preset")).replace(**data)
    return _build(LinkSpec, data, "link")


def _hardware_by_name(name: object) -> HardwareSpec:
    """A :data:`thermo.PRESETS` name (any case) or a .toml/.yaml hardware file."""
    if isinstance(name, str):
        try:
            return hardware_preset(name)
        except HardwareSpecError as exc:
            if is_config_path(name):
                raise
            raise SystemSpecError(str(exc)) from None
    raise SystemSpecError(
        f"unknown hardware preset {name!r}; choose one of {list(HARDWARE_PRESETS)}"
    )


def _hardware_from(value: object) -> HardwareSpec:
    if isinstance(value, str):
        return _hardware_by_name(value)
    data = _as_table(value, "analog.hardware")
    _reject_unknown(data, ("preset", *_field_names(HardwareSpec)), "analog.hardware")
    if "preset" in data:
        return _hardware_by_name(data.pop("preset")).replace(**data)
    # A table without a preset starts from HardwareSpec's field defaults, which is also what
    # restores the None-valued fields that to_dict leaves out.
    return HardwareSpec(**data)


def _analog_from(value: object) -> AnalogSpec:
    if isinstance(value, str):
        return AnalogSpec(hardware=_hardware_by_name(value))
    data = _as_table(value, "analog")
    _reject_unknown(data, _field_names(AnalogSpec), "analog")
    if "hardware" in data:
        data["hardware"] = _hardware_from(data["hardware"])
    return AnalogSpec(**data)
