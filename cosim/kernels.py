"""Kernel calibration: how fast this machine (a CPU, or a CUDA GPU) factorizes, relative to a GEMM.

The roofline (:mod:`cosim.roofline`) runs every kernel's FLOPs at the GEMM's rate unless the GPU
states a relative rate per kernel class (:attr:`cosim.system.GPUSpec.kernel_efficiency`). That
rate decides how much of a digital K-FAC step its inversions take, and so the Amdahl bound of
any device that replaces them. :func:`calibrate_kernels` times float32 ``eigh``, ``cholesky``,
``cholesky_inverse`` (``potrf`` + ``potri``) and a square GEMM at each factor size asked (the
factor sizes of a workload: :func:`factor_sizes`) and states, per class, the FLOP rate it reached
over the GEMM's at the same sizes (by the roofline's FLOP conventions: :func:`cosim.roofline.eigh`
counts ``9 d^3``). :class:`KernelCalibration` keeps the timings with their spread, saves and loads
them as JSON with their source, and applies the rates to a GPU.

A rate measured on one machine and applied to another is an assumption (a GPU's factorizations
fall further behind its GEMMs than a CPU's): the source says where the rates were measured.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .roofline import RooflineError, Timing, Work, cholesky, cholesky_inverse, eigh, gemm, measure_stable
from .shapes import ModelShape
from .system import KERNEL_KINDS, GPUSpec

TIMED_KINDS: tuple[str, ...] = ("gemm", "cholesky", "cholesky_inverse", "eigh")
"""The kernel classes :func:`calibrate_kernels` times (the GEMM is the reference rate)."""

_WORK_OF: dict[str, Callable[[int], Work]] = {
    "gemm": lambda d: gemm(d, d, d),
    "cholesky": cholesky,
    "cholesky_inverse": cholesky_inverse,
    "eigh": eigh,
}

__all__ = ["TIMED_KINDS", "KernelCalibration", "KernelTiming", "calibrate_kernels", "factor_sizes"]


def factor_sizes(shapes: Iterable[ModelShape]) -> tuple[int, ...]:
    """The distinct K-FAC factor sizes (``dim_a`` and ``dim_g`` of every layer) of ``shapes``, sorted."""
    return tuple(sorted({d for shape in shapes for layer in shape.layers for d in (layer.dim_a, layer.dim_g)}))


@dataclass(frozen=True)
class KernelTiming:
    """One kernel class timed at one size: median seconds, their spread, and the FLOPs the
    roofline counts for it."""

    kind: str
    size: int
    seconds: float
    spread: float
    repeats: int
    flops: float

    @property
    def rate_flops(self) -> float:
        """FLOP/s reached (roofline FLOP convention over the median seconds)."""
        return self.flops / self.seconds


def _spd(size: int, generator: torch.Generator, device: str) -> torch.Tensor:
    """A well-conditioned float32 SPD matrix of ``size`` (a damped Gram, like a K-FAC factor)."""
    a = torch.randn(size, size, generator=generator, dtype=torch.float32)
    return (a @ a.T / size + torch.eye(size)).to(device)


def _kernel(kind: str, a: torch.Tensor) -> Callable[[], object]:
    if kind == "gemm":
        out = torch.empty_like(a)
        return lambda: torch.matmul(a, a, out=out)
    if kind == "cholesky":
        return lambda: torch.linalg.cholesky(a)
    if kind == "cholesky_inverse":
        return lambda: torch.cholesky_inverse(torch.linalg.cholesky(a))
    return lambda: torch.linalg.eigh(a)


def _timed(fn: Callable[[], object], device: str) -> Callable[[], object]:
    if not device.startswith("cuda"):
        return fn

    def synchronized() -> object:  # a CUDA launch returns before the kernel ends
        out = fn()
        torch.cuda.synchronize()
        return out

    return synchronized


@dataclass(frozen=True)
class KernelCalibration:
    """Timed kernels at each size and, per class, the FLOP rate reached relative to the GEMM."""

    timings: tuple[KernelTiming, ...]
    machine: str
    """Where the kernels ran (CPU model or CUDA device name, and threads)."""
    source: str = ""

    def __post_init__(self) -> None:
        if not any(t.kind == "gemm" for t in self.timings):
            raise RooflineError("a kernel calibration needs GEMM timings: they are the reference rate")
        for t in self.timings:
            if t.kind not in KERNEL_KINDS or t.seconds <= 0 or t.flops <= 0:
                raise RooflineError(f"bad kernel timing {t!r}: a known class, seconds > 0 and FLOPs > 0")

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(sorted({t.size for t in self.timings}))

    def seconds(self, kind: str, size: int) -> float:
        for t in self.timings:
            if t.kind == kind and t.size == size:
                return t.seconds
        raise KeyError(f"no {kind} timing at size {size}")

    def relative(self) -> dict[str, float]:
        """Per timed class, its FLOP rate over the GEMM's, each summed over the sizes both were
        timed at (FLOPs over seconds: the large factors, whose time dominates, weigh most)."""
        gemms = {t.size: t for t in self.timings if t.kind == "gemm"}
        out: dict[str, float] = {}
        for kind in dict.fromkeys(t.kind for t in self.timings if t.kind != "gemm"):
            rows = [t for t in self.timings if t.kind == kind and t.size in gemms]
            if rows:
                rate = sum(t.flops for t in rows) / sum(t.seconds for t in rows)
                gemm_rate = sum(gemms[t.size].flops for t in rows) / sum(gemms[t.size].seconds for t in rows)
                out[kind] = rate / gemm_rate
        return out

    def apply(self, gpu: GPUSpec) -> GPUSpec:
        """``gpu`` with these relative rates (its GEMM efficiency untouched) and their source."""
        note = f"kernel rates relative to GEMM measured on {self.machine}" + (f" ({self.source})" if self.source else "")
        return gpu.replace(kernel_efficiency=self.relative(),
                           source=f"{gpu.source}; {note}" if gpu.source else note)

    def gemm_rate_flops(self) -> float:
        """The GEMM's FLOP rate over every size timed (FLOPs over seconds)."""
        gemms = [t for t in self.timings if t.kind == "gemm"]
        return sum(t.flops for t in gemms) / sum(t.seconds for t in gemms)

    def modelled_s(self, timing: KernelTiming) -> float:
        """What the one-rate-per-class model says ``timing`` took: its FLOPs at the GEMM's rate
        times its class's relative rate (no launch or memory term)."""
        return timing.flops / (self.gemm_rate_flops() * self.relative().get(timing.kind, 1.0))

    def table(self) -> str:
        """Markdown: per class and size, the measured seconds (with their spread), the FLOP rate and
        its ratio to the GEMM's at that size, and the model's seconds (one rate per class) beside them."""
        lines = ["| kernel | size | measured | spread | GFLOP/s | rate / GEMM rate at this size | model (one rate per class) "
                 "| model / measured |", "|---|---|---|---|---|---|---|---|"]
        for t in sorted(self.timings, key=lambda t: (TIMED_KINDS.index(t.kind) if t.kind in TIMED_KINDS else 99, t.size)):
            gemm_rate = _WORK_OF["gemm"](t.size).flops / self.seconds("gemm", t.size)
            model = self.modelled_s(t)
            lines.append(f"| {t.kind} | {t.size} | {t.seconds * 1e3:.3g} ms | {100 * t.spread:.0f}% | "
                         f"{t.rate_flops / 1e9:.3g} | {t.rate_flops / gemm_rate:.3g} | {model * 1e3:.3g} ms | "
                         f"{model / t.seconds:.3g} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "source": self.source, "timings": [asdict(t) for t in self.timings]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KernelCalibration:
        try:
            return cls(tuple(KernelTiming(**t) for t in data["timings"]), str(data["machine"]), str(data.get("source", "")))
        except (KeyError, TypeError) as exc:
            raise RooflineError(f"not a kernel calibration ({exc}): expected machine, source and timings") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> KernelCalibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise RooflineError(f"kernel calibration file {path} does not exist (write one with tcd calibrate --kernels)") from None
        except json.JSONDecodeError as exc:
            raise RooflineError(f"kernel calibration file {path} is not JSON: {exc}") from None
        return cls.from_dict(data)


def _cpu_name() -> str:
    try:  # Linux names the model here; platform.processor() is often empty there
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA)"
    return f"{_cpu_name()}, {torch.get_num_threads()} torch thread(s)"


def calibrate_kernels(
    sizes: Sequence[int],
    *,
    kinds: Sequence[str] = TIMED_KINDS,
    device: str = "cpu",
    seed: int = 0,
    budget_s: float = 3.0,
    tolerance: float = 0.15,
    source: str = "",
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
) -> KernelCalibration:
    """Time each of ``kinds`` (float32) at each of ``sizes`` on ``device`` (``"cpu"`` or a CUDA
    device) until the repeats agree (:func:`cosim.roofline.measure_stable`, at most ``budget_s``
    seconds per kernel and size) and return the calibration. Torch runs on ``threads`` CPU threads
    while timing (pinned: spinning pools on shared cores distort the rates), then as before.
    ``progress`` is told each kernel."""
    if not sizes or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in sizes):
        raise RooflineError(f"sizes must be positive integers, got {sizes!r}")
    unknown = set(kinds) - set(TIMED_KINDS)
    if unknown:
        raise RooflineError(f"kinds must be among {list(TIMED_KINDS)}, got {sorted(unknown)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RooflineError("device 'cuda' asked but CUDA is not available: calibrate on 'cpu'")
    generator = torch.Generator().manual_seed(seed)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timings = _time_kernels(sorted(set(sizes)), kinds, device, generator, budget_s, tolerance, progress)
        return KernelCalibration(tuple(timings), _machine(device), source)
    finally:
        torch.set_num_threads(before)


def _time_kernels(sizes: Sequence[int], kinds: Sequence[str], device: str, generator: torch.Generator, budget_s: float,
                  tolerance: float, progress: Callable[[str], None] | None) -> list[KernelTiming]:
    timings = []
    for size in sizes:
        a = _spd(size, generator, device)
        for kind in dict.fromkeys(("gemm", *kinds)):
            if progress is not None:
                progress(f"{kind} {size}")
            timing: Timing = measure_stable(_timed(_kernel(kind, a), device), f"{kind} at {size}",
                                            tolerance=tolerance, budget_s=budget_s, min_repeats=3, warn=False)
            timings.append(KernelTiming(kind, size, timing.median_s, timing.spread, timing.repeats,
                                        _WORK_OF[kind](size).flops))
    return timings
