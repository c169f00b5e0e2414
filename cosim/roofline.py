"""Roofline model of the host GPU: how long a kernel takes from its FLOPs and memory traffic.

A kernel doing ``flops`` floating-point operations and moving ``bytes`` bytes through device
memory takes (seconds)::

    kernels * launch_overhead_s
      + max(flops / (peak(precision) * compute_efficiency),
            bytes / (memory_bandwidth_bps * memory_efficiency))

(Williams, Waterman & Patterson, "Roofline", CACM 2009, plus a per-launch cost). The efficiencies
stand for everything the roofline ignores (tile quantization, occupancy, cache effects) and are
fitted to measured timings by :func:`calibrate`. Kernel helpers (:func:`gemm`, :func:`cholesky`,
...) state their operation and traffic counts; the counts are conventions, not measurements.
"""

from __future__ import annotations

import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
from scipy.optimize import least_squares

from .system import KERNEL_KINDS, PRECISIONS, GPUSpec, SystemSpecError

Bound = Literal["compute", "memory", "launch"]

BYTES_PER_ELEMENT: dict[str, int] = {
    "float64": 8,
    "float32": 4,
    "tf32": 4,  # tf32 is a tensor-core math mode: the data stay float32 in memory
    "bfloat16": 2,
    "float16": 2,
}


class RooflineError(SystemSpecError):
    """A work item or a calibration input is unusable (bad count, unknown precision, ...)."""


class CalibrationWarning(UserWarning):
    """A calibrated parameter is not constrained by the measurements given."""


class MeasurementWarning(UserWarning):
    """A wall-clock timing cannot be trusted: its repeats disagree, or the machine is busy."""


def _check_count(owner: str, name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or value < 0
    ):
        raise RooflineError(f"{owner}.{name} must be a finite number >= 0, got {value!r}")


def _check_precision(owner: str, precision: object) -> None:
    if precision not in PRECISIONS:
        raise RooflineError(
            f"{owner}.precision {precision!r} is unknown; known precisions: {list(PRECISIONS)}"
        )


@dataclass(frozen=True)
class Work:
    """What a kernel (or a sequence of fused kernels) does: FLOPs, memory traffic, launches.

    ``flops`` counts floating-point operations (a fused multiply-add is 2), ``bytes`` the bytes
    read from plus written to device memory, ``kernels`` the launches, ``kind`` the kernel class
    (:data:`cosim.system.KERNEL_KINDS`; ``""`` unclassified) whose relative efficiency the GPU
    applies. Items of the same precision add up with ``+`` (``sum(items)`` works too); a sum of
    two classes is unclassified and runs at the GEMM rate, so time classes apart when their
    efficiencies differ.
    """

    flops: float
    bytes: float
    """Memory traffic (bytes read + bytes written)."""
    kernels: int = 1
    precision: str = "float32"
    name: str = ""
    kind: str = ""

    def __post_init__(self) -> None:
        _check_count("Work", "flops", self.flops)
        _check_count("Work", "bytes", self.bytes)
        k = self.kernels
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise RooflineError(f"Work.kernels must be an integer >= 0, got {k!r}")
        _check_precision("Work", self.precision)
        if not isinstance(self.name, str):
            raise RooflineError(f"Work.name must be a string, got {self.name!r}")
        if self.kind not in ("", *KERNEL_KINDS):
            raise RooflineError(f"Work.kind must be one of {list(KERNEL_KINDS)} or '', got {self.kind!r}")

    def __add__(self, other: object) -> Work:
        if not isinstance(other, Work):
            return NotImplemented
        if other.precision != self.precision:
            raise RooflineError(
                f"cannot add Work of precision {self.precision!r} ({self.name!r}) and "
                f"{other.precision!r} ({other.name!r}): time them separately"
            )
        name = "+".join(n for n in (self.name, other.name) if n)
        return Work(
            self.flops + other.flops,
            self.bytes + other.bytes,
            self.kernels + other.kernels,
            self.precision,
            name,
            _joined_kind(self, other),
        )

    def __radd__(self, other: object) -> Work:
        # Lets sum(works) start from the integer 0.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def scaled(self, times: int) -> Work:
        """The same work done ``times`` times (flops, bytes and kernels multiplied)."""
        if isinstance(times, bool) or not isinstance(times, int) or times < 0:
            raise RooflineError(f"times must be an integer >= 0, got {times!r}")
        return Work(
            self.flops * times, self.bytes * times, self.kernels * times, self.precision, self.name, self.kind
        )

    @property
    def arithmetic_intensity(self) -> float:
        """FLOP per byte; ``inf`` for work that moves no bytes, 0 for empty work."""
        if self.bytes == 0:
            return math.inf if self.flops > 0 else 0.0
        return self.flops / self.bytes


def _joined_kind(a: Work, b: Work) -> str:
    """The class of ``a + b``: theirs when they share one (empty work joins any class)."""
    if a.kind == b.kind or (b.flops == 0 and b.bytes == 0):
        return a.kind
    if a.flops == 0 and a.bytes == 0:
        return b.kind
    return ""


class RooflineTerms(NamedTuple):
    """The three terms of the roofline time (s): ``total = launch + max(compute, memory)``."""

    launch_s: float
    compute_s: float
    memory_s: float

    @property
    def total_s(self) -> float:
        return self.launch_s + max(self.compute_s, self.memory_s)


class RooflineModel:
    """Times :class:`Work` items on ``gpu`` (see the module docstring for the formula)."""

    def __init__(self, gpu: GPUSpec) -> None:
        if not isinstance(gpu, GPUSpec):
            raise RooflineError(f"RooflineModel needs a GPUSpec, got {gpu!r}")
        self.gpu = gpu

    def __repr__(self) -> str:
        return f"RooflineModel({self.gpu.name!r})"

    def terms(self, work: Work) -> RooflineTerms:
        """Launch, compute and memory terms (s) of ``work``."""
        gpu = self.gpu
        return RooflineTerms(
            launch_s=work.kernels * gpu.launch_overhead_s,
            compute_s=work.flops / (gpu.peak(work.precision) * gpu.compute_efficiency
                                    * gpu.kernel_efficiency.get(work.kind, 1.0)),
            memory_s=work.bytes / (gpu.memory_bandwidth_bps * gpu.memory_efficiency),
        )

    def time_s(self, work: Work) -> float:
        """Predicted time (s) of ``work``: its roofline times the GPU's ``anchor_scale``."""
        return self.terms(work).total_s * self.gpu.anchor_scale

    def total_time_s(self, works: Sequence[Work]) -> float:
        """Time (s) of kernels run one after another: each pays its own roofline, which is
        longer than the roofline of their sum when they are bound by different terms."""
        return sum(self.time_s(w) for w in works)

    def bound(self, work: Work) -> Bound:
        """The dominating term: ``launch`` when launches outweigh the larger of the others,
        else ``compute`` or ``memory`` (ties, as exactly at the ridge point, say ``compute``)."""
        t = self.terms(work)
        busy = max(t.compute_s, t.memory_s)
        if t.launch_s > busy:
            return "launch"
        return "compute" if t.compute_s >= t.memory_s else "memory"

    @staticmethod
    def arithmetic_intensity(work: Work) -> float:
        """FLOP per byte of ``work`` (see :attr:`Work.arithmetic_intensity`)."""
        return work.arithmetic_intensity

    def ridge_point(self, precision: str = "float32") -> float:
        """Arithmetic intensity (FLOP/byte) above which work at ``precision`` is compute-bound:
        ``peak * compute_efficiency / (memory_bandwidth * memory_efficiency)``."""
        gpu = self.gpu
        return (gpu.peak(precision) * gpu.compute_efficiency) / (
            gpu.memory_bandwidth_bps * gpu.memory_efficiency
        )


# ------------------------------------------------------------------------------------------------
# Kernel counts
# ------------------------------------------------------------------------------------------------
def _element_bytes(precision: str, bytes_per_element: float | None) -> float:
    _check_precision("kernel", precision)
    if bytes_per_element is None:
        return float(BYTES_PER_ELEMENT[precision])
    _check_count("kernel", "bytes_per_element", bytes_per_element)
    return float(bytes_per_element)


def _check_dim(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise RooflineError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def gemm(
    m: int,
    n: int,
    k: int,
    precision: str = "float32",
    bytes_per_element: float | None = None,
    kernels: int = 1,
) -> Work:
    """``C (m x n) = A (m x k) @ B (k x n)``: ``2 m n k`` FLOPs; traffic reads A and B and
    writes C once, ``(m k + k n + m n) * bytes_per_element`` bytes (the ideal-reuse count: a
    ``beta != 0`` update also reads C, which this leaves out)."""
    m, n, k = _check_dim("m", m), _check_dim("n", n), _check_dim("k", k)
    b = _element_bytes(precision, bytes_per_element)
    return Work(
        2.0 * m * n * k, (m * k + k * n + m * n) * b, kernels, precision, f"gemm{m}x{n}x{k}", "gemm"
    )


def cholesky(
    d: int, precision: str = "float32", bytes_per_element: float | None = None, kernels: int = 1
) -> Work:
    """Cholesky factorization of a ``d x d`` SPD matrix: ``d^3 / 3`` FLOPs (leading order);
    traffic reads the matrix and writes the factor once, ``2 d^2`` elements. Library
    implementations launch several kernels per block column: pass ``kernels`` to model it."""
    d = _check_dim("d", d)
    b = _element_bytes(precision, bytes_per_element)
    return Work(d**3 / 3.0, 2.0 * d * d * b, kernels, precision, f"cholesky{d}", "cholesky")


def cholesky_inverse(
    d: int, precision: str = "float32", bytes_per_element: float | None = None, kernels: int = 1
) -> Work:
    """Inverse of a ``d x d`` SPD matrix through its Cholesky factor: ``d^3`` FLOPs by the
    convention factorization ``d^3 / 3`` + inverse from the factor ``2 d^3 / 3`` (``potrf`` +
    ``potri``, leading order); traffic ``4 d^2`` elements (each stage reads and writes a
    matrix once)."""
    d = _check_dim("d", d)
    b = _element_bytes(precision, bytes_per_element)
    return Work(float(d) ** 3, 4.0 * d * d * b, kernels, precision, f"cholesky_inverse{d}", "cholesky_inverse")


def eigh(
    d: int, precision: str = "float32", bytes_per_element: float | None = None, kernels: int = 1
) -> Work:
    """Symmetric eigendecomposition (values and vectors) of a ``d x d`` matrix: about ``9 d^3``
    FLOPs. An assumption: the usual textbook estimate for the dense symmetric eigensolver
    (tridiagonal reduction, tridiagonal QR and back-transformation; Golub & Van Loan), which
    varies with the algorithm. Traffic reads the matrix and writes ``d`` eigenvalues and ``d^2``
    eigenvector entries: ``2 d^2 + d`` elements."""
    d = _check_dim("d", d)
    b = _element_bytes(precision, bytes_per_element)
    return Work(9.0 * float(d) ** 3, (2.0 * d * d + d) * b, kernels, precision, f"eigh{d}", "eigh")


def elementwise(
    n: int,
    reads: int = 1,
    writes: int = 1,
    precision: str = "float32",
    bytes_per_element: float | None = None,
    flops_per_element: float = 1.0,
    kernels: int = 1,
) -> Work:
    """An elementwise kernel over ``n`` elements reading ``reads`` and writing ``writes``
    arrays: ``n * flops_per_element`` FLOPs, ``n * (reads + writes) * bytes_per_element``
    bytes (e.g. ``c = a + b`` is ``reads=2, writes=1``)."""
    n = _check_dim("n", n)
    reads, writes = _check_dim("reads", reads), _check_dim("writes", writes)
    _check_count("elementwise", "flops_per_element", flops_per_element)
    b = _element_bytes(precision, bytes_per_element)
    return Work(
        n * flops_per_element, n * (reads + writes) * b, kernels, precision, f"elementwise{n}", "elementwise"
    )


# ------------------------------------------------------------------------------------------------
# Measurement and calibration
# ------------------------------------------------------------------------------------------------
def cpu_spec(
    peak_flops: float | Mapping[str, float],
    memory_bandwidth_bps: float,
    launch_overhead_s: float = 0.0,
    name: str = "cpu",
    source: str = "assumed figures for this machine's CPU",
) -> GPUSpec:
    """A :class:`GPUSpec` describing a CPU, to calibrate the roofline against local timings.

    A single number is the float32 peak (FLOP/s), float64 then gets half of it (SIMD lanes hold
    half as many doubles); a mapping gives the peaks per precision. ``memory_bandwidth_bps`` is
    in bytes per second.
    """
    if isinstance(peak_flops, Mapping):
        peaks = dict(peak_flops)
    else:
        peaks = {"float32": peak_flops, "float64": peak_flops / 2}
    return GPUSpec(
        name=name,
        peak_flops=peaks,
        memory_bandwidth_bps=memory_bandwidth_bps,
        launch_overhead_s=launch_overhead_s,
        source=source,
    )


def measure(
    fn: Callable[[], object], work: Work, repeats: int = 5, warmup: int = 1
) -> tuple[Work, float]:
    """Time ``fn()`` (which should do ``work``): median of ``repeats`` wall-clock runs (s) after
    ``warmup`` untimed runs, with :func:`time.perf_counter`. ``fn`` must finish its work before
    returning (synchronize asynchronous devices inside it)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise RooflineError(f"repeats must be an integer >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise RooflineError(f"warmup must be an integer >= 0, got {warmup!r}")
    return work, statistics.median(wall_times(fn, repeats, warmup))


def wall_times(fn: Callable[[], object], repeats: int, warmup: int = 1, pause_s: float = 0.0) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn()`` after ``warmup`` untimed calls.

    ``pause_s`` seconds of sleep before each timed call let the idle thread pools of numba,
    torch and OpenBLAS stop spinning, so that one contender does not pay for another's threads
    on a small machine."""
    return _timed_calls(fn, warmup, pause_s, repeats, lambda times, elapsed_s: False)


def _timed_calls(
    fn: Callable[[], object],
    warmup: int,
    pause_s: float,
    max_repeats: int,
    enough: Callable[[list[float], float], bool],
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> list[float]:
    """The one timing loop: ``warmup`` untimed calls, then timed calls of ``fn()`` (each after
    ``pause_s`` of sleep) until ``max_repeats`` or until ``enough(times, seconds since the first
    timed call began)`` says so."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    began = clock()
    while len(times) < max_repeats:
        if pause_s:
            sleep(pause_s)
        start = clock()
        fn()
        end = clock()
        times.append(end - start)
        if enough(times, end - began):
            break
    return times


def relative_spread(times: Sequence[float]) -> float:
    """``(p90 - p10) / median`` of ``times`` (dimensionless; 0 for one time): the width of the
    middle 80% of the repeats relative to their median, robust to a single outlier."""
    x = np.asarray(times, dtype=float)
    if x.size == 0:
        raise RooflineError("relative_spread needs at least one time")
    median = float(np.median(x))
    if x.size == 1 or median <= 0:
        return 0.0
    p10, p90 = np.percentile(x, [10.0, 90.0])
    return float((p90 - p10) / median)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _load_average() -> float | None:
    """The 1-minute load average, or None where the OS has none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None


@dataclass(frozen=True)
class Timing:
    """A wall-clock measurement of one callable: the median and how far its repeats spread.

    ``spread`` is :func:`relative_spread` of ``times_s`` (``(p90 - p10) / median``);
    ``load`` the 1-minute load average when the measurement ended (None where the OS has none)
    on ``cores`` usable cores; ``stable`` says whether the spread reached the tolerance asked.
    """

    median_s: float
    spread: float
    repeats: int
    tolerance: float
    load: float | None
    cores: int
    times_s: tuple[float, ...] = field(repr=False)

    @property
    def stable(self) -> bool:
        return self.spread <= self.tolerance

    @property
    def busy(self) -> bool:
        """More runnable tasks than usable cores on average over the last minute."""
        return self.load is not None and self.load > self.cores

    @property
    def reliable(self) -> bool:
        return self.stable and not self.busy

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    def describe(self) -> str:
        """``"1.23 ms (spread 4%, 9 repeats)"``: the median with its spread, for a table."""
        return f"{_format_seconds(self.median_s)} (spread {100 * self.spread:.0f}%, {self.repeats} repeats)"


def _format_seconds(seconds: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise RooflineError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def measure_stable(
    fn: Callable[[], object],
    what: str = "fn",
    *,
    tolerance: float = 0.1,
    min_repeats: int = 5,
    max_repeats: int = 30,
    budget_s: float = 10.0,
    warmup: int = 1,
    pause_s: float = 0.0,
    warn: bool = True,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    load: Callable[[], float | None] = _load_average,
    cores: int | None = None,
) -> Timing:
    """Time ``fn()`` until its repeats agree: the median and spread of its wall-clock seconds.

    After ``warmup`` untimed calls, ``min_repeats`` timed calls, then one more at a time until
    the spread (:func:`relative_spread`, ``(p90 - p10) / median``) is at most ``tolerance``, or
    ``max_repeats`` calls are timed, or ``budget_s`` seconds (timed calls and pauses, by
    ``clock``) are spent, whichever comes first (``min_repeats`` calls are always timed). ``pause_s`` seconds of sleep before each
    timed call let idle thread pools stop spinning (see :func:`wall_times`).

    A :class:`MeasurementWarning` names ``what`` when the spread stays above the tolerance or
    when the load average exceeds the usable cores (``warn=False`` leaves the verdict to
    :attr:`Timing.reliable`). ``clock``, ``sleep``, ``load`` and ``cores`` are injectable so that
    the procedure can be tested without real timing.
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance > 0):
        raise RooflineError(f"tolerance must be a finite relative spread > 0 (e.g. 0.1), got {tolerance!r}")
    min_repeats = _check_positive_int("min_repeats", min_repeats)
    max_repeats = _check_positive_int("max_repeats", max_repeats)
    if max_repeats < min_repeats:
        raise RooflineError(f"max_repeats ({max_repeats}) must be >= min_repeats ({min_repeats})")
    warmup = _check_positive_int("warmup", warmup, minimum=0)
    if not (isinstance(budget_s, (int, float)) and budget_s > 0):
        raise RooflineError(f"budget_s must be a time > 0 in seconds, got {budget_s!r}")
    if not (isinstance(pause_s, (int, float)) and pause_s >= 0):
        raise RooflineError(f"pause_s must be a time >= 0 in seconds, got {pause_s!r}")
    n_cores = usable_cores() if cores is None else _check_positive_int("cores", cores)
    def enough(times: list[float], elapsed_s: float) -> bool:
        return len(times) >= min_repeats and (relative_spread(times) <= tolerance or elapsed_s >= budget_s)

    times = _timed_calls(fn, warmup, pause_s, max_repeats, enough, clock, sleep)
    return timing_of(times, what, tolerance=tolerance, warn=warn, load=load(), cores=n_cores, stacklevel=3)


def timing_of(
    times: Sequence[float],
    what: str = "fn",
    *,
    tolerance: float = 0.1,
    warn: bool = True,
    load: float | None | object = ...,
    cores: int | None = None,
    stacklevel: int = 2,
) -> Timing:
    """:class:`Timing` of wall-clock ``times`` (seconds) taken elsewhere (an interleaved loop
    of several contenders), with the same :class:`MeasurementWarning` as :func:`measure_stable`.
    ``load`` defaults to the 1-minute load average now, ``cores`` to the usable cores."""
    times = [float(t) for t in times]
    if not times:
        raise RooflineError(f"timing_of({what!r}) needs at least one time")
    timing = Timing(median_s=float(statistics.median(times)), spread=relative_spread(times), repeats=len(times),
                    tolerance=float(tolerance), load=_load_average() if load is ... else load,  # type: ignore[arg-type]
                    cores=usable_cores() if cores is None else cores, times_s=tuple(times))
    if warn and not timing.reliable:
        warnings.warn(unreliable_message(what, timing), MeasurementWarning, stacklevel=stacklevel)
    return timing


def unreliable_message(what: str, timing: Timing) -> str:
    """The one line that says why ``timing`` of ``what`` cannot be trusted, and what to do."""
    load = "load unknown" if timing.load is None else f"load {timing.load:.1f}"
    return (f"timings of {what} are unreliable: spread {100 * timing.spread:.0f}% (tolerance "
            f"{100 * timing.tolerance:.0f}%) after {timing.repeats} repeats, {load} on {timing.cores} cores; "
            "rerun on an idle machine")


_EFFICIENCY_BOUNDS = (1e-3, 1.0)
_LAUNCH_BOUNDS_S = (1e-9, 1.0)


def calibrate(
    gpu: GPUSpec,
    measurements: Sequence[tuple[Work, float]],
    *,
    fit_launch_overhead: bool = False,
) -> GPUSpec:
    """Fit ``compute_efficiency`` and ``memory_efficiency`` (and, if asked, ``launch_overhead_s``)
    of ``gpu`` to measured ``(work, seconds)`` pairs; return the fitted copy.

    Least squares on log time (each measurement counts by its relative error, whatever its
    size), with the efficiencies bounded to [1e-3, 1] and the launch overhead to [1e-9, 1] s,
    solved in log parameters by :func:`scipy.optimize.least_squares` from several starts (the
    ``max`` makes the cost piecewise smooth). An efficiency is only constrained by measurements
    its term dominates: give both compute- and memory-bound kernels, or a
    :class:`CalibrationWarning` says which parameter kept an arbitrary value.
    """
    if not isinstance(gpu, GPUSpec):
        raise RooflineError(f"calibrate needs a GPUSpec, got {gpu!r}")
    measurements = list(measurements)
    n_params = 3 if fit_launch_overhead else 2
    if len(measurements) < n_params:
        raise RooflineError(
            f"calibrate needs at least {n_params} measurements to fit {n_params} parameters, "
            f"got {len(measurements)}"
        )
    compute, memory, kernels, seconds = [], [], [], []
    for i, item in enumerate(measurements):
        try:
            work, t = item
        except (TypeError, ValueError):
            raise RooflineError(
                f"measurement {i} must be a (Work, seconds) pair, got {item!r}"
            ) from None
        if not isinstance(work, Work):
            raise RooflineError(f"measurement {i}: expected a Work, got {work!r}")
        if (
            isinstance(t, bool)
            or not isinstance(t, (int, float, np.floating))
            or not (math.isfinite(t) and t > 0)
        ):
            raise RooflineError(
                f"measurement {i} ({work.name!r}): seconds must be finite > 0, got {t!r}"
            )
        launches_cost = work.kernels > 0 and (fit_launch_overhead or gpu.launch_overhead_s > 0)
        if work.flops == 0 and work.bytes == 0 and not launches_cost:
            raise RooflineError(
                f"measurement {i} ({work.name!r}) has no flops, bytes or launches to time"
            )
        compute.append(work.flops / gpu.peak(work.precision))  # seconds at full efficiency
        memory.append(work.bytes / gpu.memory_bandwidth_bps)
        kernels.append(work.kernels)
        seconds.append(float(t))
    c, m, k = np.array(compute), np.array(memory), np.array(kernels, dtype=float)
    log_measured = np.log(np.array(seconds))
    fixed_launch = gpu.launch_overhead_s

    def parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tc = c * np.exp(-x[0])
        tm = m * np.exp(-x[1])
        tl = k * (np.exp(x[2]) if fit_launch_overhead else fixed_launch)
        return tc, tm, tl

    def residuals(x: np.ndarray) -> np.ndarray:
        tc, tm, tl = parts(x)
        return np.log(tl + np.maximum(tc, tm)) - log_measured

    def jacobian(x: np.ndarray) -> np.ndarray:
        tc, tm, tl = parts(x)
        total = tl + np.maximum(tc, tm)
        compute_side = tc >= tm
        jac = np.zeros((len(total), n_params))
        jac[:, 0] = np.where(compute_side, -tc, 0.0) / total
        jac[:, 1] = np.where(compute_side, 0.0, -tm) / total
        if fit_launch_overhead:
            jac[:, 2] = tl / total
        return jac

    lo = [math.log(_EFFICIENCY_BOUNDS[0])] * 2
    hi = [0.0, 0.0]
    if fit_launch_overhead:
        lo.append(math.log(_LAUNCH_BOUNDS_S[0]))
        hi.append(math.log(_LAUNCH_BOUNDS_S[1]))
    # Starts spread over the box: a start on the wrong side of a kink can stall where the
    # other term's derivative is zero.
    starts = [(a, b) for a in (0.03, 0.3, 0.9) for b in (0.03, 0.3, 0.9)]
    if fit_launch_overhead:
        guess = min(max(min(seconds) / max(k.max(), 1.0), 2e-9), 0.5)
        launch_starts = (guess, guess * 1e-2 + 2e-9)
        x0s = [(*s, ls) for s in starts for ls in launch_starts]
        x0s = [(math.log(a), math.log(b), math.log(ls)) for a, b, ls in x0s]
    else:
        x0s = [(math.log(a), math.log(b)) for a, b in starts]
    best = None
    for x0 in x0s:
        result = least_squares(
            residuals,
            np.array(x0),
            jac=jacobian,
            bounds=(lo, hi),
            method="trf",
            xtol=1e-14,
            ftol=1e-14,
            gtol=1e-14,
            max_nfev=2000,
        )
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    x = best.x
    # A parameter is constrained when moving it either way worsens the fit. One whose term never
    # dominates (or only ties at a kink) is merely bounded from one side: say so.
    names = ("compute_efficiency", "memory_efficiency", "launch_overhead_s")[:n_params]
    cost = float(np.sum(residuals(x) ** 2))
    for j, label in enumerate(names):
        step = np.zeros(n_params)
        step[j] = 0.01
        changes_cost = [
            float(np.sum(residuals(x + sign * step) ** 2)) > cost + 1e-12 * (1.0 + cost)
            for sign in (1.0, -1.0)
        ]
        if not all(changes_cost):
            value = math.exp(x[j])
            warnings.warn(
                f"calibrate: {label} = {value:.3g} is not pinned down by the measurements "
                "(its term never dominates on both sides of the fit); add kernels bound by it",
                CalibrationWarning,
                stacklevel=2,
            )
    changes: dict[str, float] = {
        "compute_efficiency": float(min(math.exp(x[0]), 1.0)),
        "memory_efficiency": float(min(math.exp(x[1]), 1.0)),
    }
    if fit_launch_overhead:
        changes["launch_overhead_s"] = float(math.exp(x[2]))
    return gpu.replace(
        source=f"{gpu.source}; calibrated on {len(measurements)} measurements".lstrip("; "),
        **changes,
    )
