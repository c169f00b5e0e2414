"""The simulated system: a host GPU and the analog device (:class:`thermo.DeviceSpec`: its chips,
its link and its architecture knobs, described once in ``thermo``).

Each part is a frozen, self-validating dataclass with its units in the field names (``_s``
seconds, ``_bps`` bits or bytes per second as stated on the field, ``_w`` watts); bad values raise
:class:`SystemSpecError` (GPU, system) or :class:`thermo.errors.DeviceSpecError` (device) naming
the field. Figures of the presets come from vendor datasheets (cited in ``source`` and beside
each number) or are marked as assumptions of this project.

A :class:`SystemSpec` serializes to nested plain dicts and to TOML or YAML files::

    spec = SystemSpec.from_dict({"gpu": {"preset": "A100", "compute_efficiency": 0.6},
                                 "device": {"preset": "published", "n_chips": 4, "link": "pcie4-x16"}})
    spec.save("system.toml");  SystemSpec.load("system.toml") == spec

Files of the older layout (a top-level ``link`` and an ``[analog]`` table with ``hardware``,
``n_chips`` and ``units_per_chip``) still load, with one :class:`thermo.LegacyFormatWarning`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import warnings

from thermo.config_files import file_format, read_table
from thermo.device import (
    CouplingDelivery,
    DeviceSpec,
    chip_from,
    device_from_table,
    device_preset,
    link_from,
)
from thermo.errors import ConfigFileError, LegacyFormatWarning
from thermo.registry import Registry


class SystemSpecError(ValueError):
    """A system description is unusable: a bad value, an unknown key or an unknown preset."""


PRECISIONS: tuple[str, ...] = ("float64", "float32", "tf32", "bfloat16", "float16")

KERNEL_KINDS: tuple[str, ...] = ("gemm", "cholesky", "cholesky_inverse", "eigh", "elementwise")
"""The kernel classes the roofline prices (``cosim.roofline.Work.kind``); a GPU may state how
efficient each is relative to its dense GEMMs (:attr:`GPUSpec.kernel_efficiency`)."""
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
    anchor_scale: float = 1.0
    """Multiplies every kernel time the roofline predicts: the anchor of a whole digital step to a
    measured one (:func:`cosim.calibration.anchor_to_step`; 1: the roofline as it is)."""
    kernel_efficiency: Mapping[str, float] = field(default_factory=dict, hash=False)
    """Per kernel class (:data:`KERNEL_KINDS`), the FLOP rate it reaches relative to a dense GEMM
    (``compute_efficiency`` is the GEMM's): a factorization at ``0.2`` runs its FLOPs at a fifth
    of the GEMM rate. A class not listed runs at the GEMM rate. Measured by
    :func:`cosim.kernels.calibrate_kernels`; read-only and left out of the hash."""

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
        _check_positive_finite(owner, "anchor_scale", self.anchor_scale)
        if not isinstance(self.kernel_efficiency, Mapping):
            raise SystemSpecError(f"{owner}.kernel_efficiency must be a mapping kernel class -> relative "
                                  f"FLOP rate, got {self.kernel_efficiency!r}")
        for key, value in self.kernel_efficiency.items():
            if key not in KERNEL_KINDS:
                raise SystemSpecError(f"{owner}.kernel_efficiency has unknown kernel class {key!r}; "
                                      f"known classes: {list(KERNEL_KINDS)}")
            _check_positive_finite(owner, f"kernel_efficiency[{key!r}]", value)
        object.__setattr__(self, "kernel_efficiency", _ReadOnlyDict(
            {k: float(self.kernel_efficiency[k]) for k in KERNEL_KINDS if k in self.kernel_efficiency}))
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

GPU_PRESETS: Registry[GPUSpec] = Registry("GPU preset", SystemSpecError)
GPU_PRESETS.add("V100", V100, "NVIDIA Tesla V100 SXM2 32GB (datasheet)")
GPU_PRESETS.add("A100", A100, "NVIDIA A100 SXM4 80GB, dense figures (datasheet)")
GPU_PRESETS.add("H100", H100, "NVIDIA H100 SXM5, dense figures (datasheet)")


def gpu_preset(name: str, **overrides: object) -> GPUSpec:
    """A GPU preset by (case-insensitive) name: ``V100``, ``A100``, ``H100``, with overrides."""
    spec = GPU_PRESETS.get(name)
    return spec.replace(**overrides) if overrides else spec


# ------------------------------------------------------------------------------------------------
# System
# ------------------------------------------------------------------------------------------------
_SECTIONS = ("name", "notes", "gpu", "device")
_LEGACY_SECTIONS = ("link", "analog")


@dataclass(frozen=True)
class SystemSpec:
    """Host GPU + analog device: everything a co-simulation needs to time a step."""

    gpu: GPUSpec
    device: DeviceSpec = field(default_factory=lambda: device_preset("published"))
    name: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        for attr, cls in (("gpu", GPUSpec), ("device", DeviceSpec)):
            if not isinstance(getattr(self, attr), cls):
                raise SystemSpecError(
                    f"SystemSpec.{attr} must be a {cls.__name__}, got {getattr(self, attr)!r}"
                )
        _check_str("SystemSpec", "name", self.name)
        _check_str("SystemSpec", "notes", self.notes)

    @classmethod
    def default(cls) -> SystemSpec:
        """A100 host and the ``published`` device (one published chip on the paper's 50 Gb/s link)."""
        return cls(
            gpu=A100,
            device=device_preset("published"),
            name="default",
            notes="A100 SXM4 80GB + the published device (50 Gb/s link, HardwareSpec.published()); see each source",
        )

    @classmethod
    def from_presets(
        cls,
        gpu: str = "A100",
        link: str | None = None,
        hardware: str | None = None,
        n_chips: int | None = None,
        units_per_chip: int | None = None,
        name: str = "",
        notes: str = "",
        *,
        device: str = "published",
        **knobs: object,
    ) -> SystemSpec:
        """A system from preset names: the ``device`` preset (or device file), with its ``link``
        (a link preset), its chip (``hardware``: a hardware preset or file; ``units_per_chip``
        its ``n_units``), ``n_chips`` and any other :class:`thermo.DeviceSpec` knob replaced
        where given."""
        table = {"preset": device, "chip": hardware, "link": link, "n_chips": n_chips, **knobs}
        dev = device_from_table({k: v for k, v in table.items() if v is not None}, section="presets")
        if units_per_chip is not None:
            dev = dev.with_chip(n_units=units_per_chip)
        return cls(gpu=gpu_preset(gpu), device=dev, name=name, notes=notes)

    def resources(self) -> dict[str, int]:
        """Capacities of the co-simulation's resources: one GPU, the link (one per chip with
        ``per-chip`` coupling delivery) and the chips (``analog``)."""
        links = self.device.n_chips if self.device.coupling_delivery is CouplingDelivery.PER_CHIP else 1
        return {"gpu": 1, "link": links, "analog": self.device.n_chips}

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
            "device": self.device.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "system description") -> SystemSpec:
        """Inverse of :meth:`to_dict`, also accepting preset references.

        ``gpu`` is a preset name or a table of fields; a table with a ``preset`` key starts from
        that preset and overrides the fields it names (``peak_flops`` entries are merged into
        the preset's). ``device`` is a device preset name or a table
        (:func:`thermo.device.device_from_table`: ``preset``, ``chip``, ``link`` and the knobs).
        A missing section takes :meth:`default`'s. Unknown keys raise :class:`SystemSpecError`
        naming the key and its section. The older layout (top-level ``link``, ``[analog]`` with
        ``hardware``, ``n_chips``, ``units_per_chip``) is read with a
        :class:`thermo.LegacyFormatWarning` naming ``source``.
        """
        data = _as_table(data, "top level")
        _reject_unknown(data, _SECTIONS + _LEGACY_SECTIONS, "top level")
        base = cls.default()
        legacy = [k for k in _LEGACY_SECTIONS if k in data]
        if legacy and "device" in data:
            raise SystemSpecError(
                f"{source} mixes the old sections {legacy} with [device]: describe the device once, in [device]"
            )
        if legacy:
            device = _device_from_legacy(data, source)
        elif "device" in data:
            device = device_preset(data["device"]) if isinstance(data["device"], str) else device_from_table(data["device"])
        else:
            device = base.device
        return cls(
            gpu=_gpu_from(data["gpu"]) if "gpu" in data else base.gpu,
            device=device,
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
        return cls.from_dict(_as_table(read_table(path), f"file {path}"), source=f"system file {path}")


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
    out["kernel_efficiency"] = dict(gpu.kernel_efficiency)
    if not out["kernel_efficiency"]:
        del out["kernel_efficiency"]
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
    if "kernel_efficiency" in data:
        data["kernel_efficiency"] = _as_table(data["kernel_efficiency"], "gpu.kernel_efficiency")
    if "preset" in data:
        base = gpu_preset(data.pop("preset"))
        if "peak_flops" in data:
            data["peak_flops"] = {**base.peak_flops, **data["peak_flops"]}
        return base.replace(**data)
    return _build(GPUSpec, data, "gpu")


_ANALOG_KEYS = ("hardware", "n_chips", "units_per_chip")


def _device_from_legacy(data: Mapping[str, Any], source: str) -> DeviceSpec:
    """The device of an old-layout description: top-level ``link``, ``[analog]`` with
    ``hardware`` (whose own link and chip-count fields the system's overrode), ``n_chips`` and
    ``units_per_chip``. Warns once, naming the source and the new layout."""
    warnings.warn(
        f"{source} uses the old layout (top-level link, [analog] with hardware / n_chips / units_per_chip); "
        "it was read as [device] (link -> device.link, analog.hardware -> device.chip, analog.n_chips -> "
        "device.n_chips, analog.units_per_chip -> device.chip.n_units). Rewrite it with SystemSpec.save.",
        LegacyFormatWarning, stacklevel=4,
    )
    device = device_preset("published")
    if "link" in data:
        device = device.replace(link=link_from(data["link"]))
    analog = data.get("analog", {})
    if isinstance(analog, str):
        analog = {"hardware": analog}
    analog = _as_table(analog, "analog")
    _reject_unknown(analog, _ANALOG_KEYS, "analog")
    if "hardware" in analog:
        chip, old_keys = chip_from(analog["hardware"], "analog.hardware")
        n_old = old_keys.get("n_chips", 1)
        n_chips = analog.get("n_chips", 1)
        if n_old != 1 and n_old != n_chips:
            raise SystemSpecError(
                f"{source}: analog.n_chips is {n_chips} but analog.hardware.n_chips is {n_old}: set the chip count once"
            )
        device = device.replace(chip=chip)
    if "n_chips" in analog:
        device = device.replace(n_chips=analog["n_chips"])
    if analog.get("units_per_chip") is not None:
        device = device.with_chip(n_units=analog["units_per_chip"])
    return device
