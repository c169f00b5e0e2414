"""Calibration mode: fit the roofline's efficiencies to the real digital K-FAC path run here.

The roofline (:mod:`cosim.roofline`) times a phase of a training step from its FLOPs, bytes and
kernel launches relative to the peaks of a machine. This module measures both sides on THIS
machine, so that the projections for a GPU rest on a model that was checked against reality
somewhere:

1. :func:`measure_machine` states the peaks: FLOP/s of a large square matmul and bytes per second
   of a large elementwise add (plus the cost of one tiny op, the per-kernel overhead), as a
   :func:`cosim.roofline.cpu_spec`.
2. :func:`measure_kfac_phases` runs the real :class:`digital.KFAC` optimizer (exact backend,
   factors and inverses every step) on a batch and reads the seconds of its phases from
   ``last_stats``.
3. :func:`phase_work` states the modeled :class:`~cosim.roofline.Work` of the same phases from
   :class:`cosim.step_graphs.StepCoster` (the counts the projections use).
4. :func:`calibrate_from_training_runs` fits ``compute_efficiency``, ``memory_efficiency`` and
   (by default) ``launch_overhead_s`` of the machine to the ``(Work, seconds)`` pairs with
   :func:`cosim.roofline.calibrate`, and reports measured against predicted seconds before and
   after the fit (:class:`CalibrationReport`, :meth:`CalibrationReport.table`).

The roofline is a coarse model of CPU kernels: small torch ops on a CPU cost tens of microseconds
of Python and dispatch each, the modeled kernel counts are a convention (one GEMM per product),
and the real K-FAC splits its phases slightly differently from the model (its curvature pass
repeats the forward and builds ``G`` inside the gradient phase; the model charges ``G`` to the
factors phase). Expect agreement within a small factor per phase, not percent-level accuracy.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from .roofline import (
    BYTES_PER_ELEMENT,
    RooflineError,
    RooflineModel,
    Work,
    calibrate,
    cpu_spec,
    timing_of,
    wall_times,
)
from .system import GPUSpec, SystemSpec
from .shapes import ModelShape
from .runs import project_run
from .step_graphs import StepCoster, StepModel

PHASES: tuple[str, ...] = ("gradient_s", "factors_s", "precondition_s", "update_s")
"""Phases of a K-FAC step, named as in :attr:`digital.KFAC.last_stats` (values in seconds)."""

_TORCH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}

# Options of the K-FAC optimizer that would change which work a phase does: the calibration
# fixes them so that every measured step factors, inverts and preconditions like the model.
_FIXED_KFAC_OPTIONS: dict[str, Any] = {
    "solver": "exact",
    "inv_update_steps": 1,
    "factor_update_steps": 1,
    "mode": "inverse",
}

__all__ = [
    "PHASES",
    "Anchor",
    "AnchorMode",
    "anchor_to_step",
    "CalibrationReport",
    "calibrate_from_training",
    "calibrate_from_training_runs",
    "measure_kfac_phases",
    "measure_machine",
    "phase_work",
]


# ------------------------------------------------------------------------------------------------
# The machine's peaks
# ------------------------------------------------------------------------------------------------
def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RooflineError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _best_seconds(fn: Any, repeats: int, warmup: int = 1) -> float:
    """Shortest wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs (noise
    only ever slows a run, so the fastest is the best estimate of a peak)."""
    return min(wall_times(fn, repeats, warmup))


def _matmul_seconds(size: int, dtype: torch.dtype, generator: torch.Generator, repeats: int) -> float:
    """Shortest seconds of ``torch.matmul`` of two random ``size x size`` matrices."""
    a = torch.randn(size, size, generator=generator, dtype=dtype)
    b = torch.randn(size, size, generator=generator, dtype=dtype)
    c = torch.empty(size, size, dtype=dtype)
    return _best_seconds(lambda: torch.matmul(a, b, out=c), repeats)


def _add_seconds(
    n: int, dtype: torch.dtype, generator: torch.Generator, repeats: int, per_timing: int = 1
) -> float:
    """Shortest seconds of ``per_timing`` calls of ``torch.add(x, y, out=z)`` on ``n`` elements."""
    x = torch.rand(n, generator=generator, dtype=dtype)
    y = torch.rand(n, generator=generator, dtype=dtype)
    z = torch.empty(n, dtype=dtype)

    def adds() -> None:
        for _ in range(per_timing):
            torch.add(x, y, out=z)

    return _best_seconds(adds, repeats)


def measure_machine(
    precision: str = "float32",
    size: int = 1024,
    n_elements: int = 2**24,
    repeats: int = 5,
) -> GPUSpec:
    """A :func:`~cosim.roofline.cpu_spec` of THIS machine from microbenchmarks (current torch
    thread count): the peaks the calibrated efficiencies are relative to.

    - peak FLOP/s at ``precision``: ``2 size^3 / t`` for a square ``size x size`` matmul;
    - memory bandwidth (bytes/s): ``3 n_elements bytes_per_element / t`` for
      ``torch.add(x, y, out=z)`` over ``n_elements`` (two arrays read, one written);
    - launch overhead (s): the time of the same add on one element, the fixed cost of one torch
      op (dispatch and Python), which stands in for a GPU's kernel launch.

    Each ``t`` is the SHORTEST of ``repeats`` timed runs (seconds) after one warm-up, not the
    median: a peak is the best rate the machine reaches, and on a shared machine interference
    only ever slows a run down. (A median taken while a neighbour streams memory can read the
    bandwidth 3x low; the efficiencies, capped at 1, then cannot make up for it.)

    The other of float32/float64 gets twice or half the measured peak (SIMD lanes hold half as
    many doubles; an assumption, stated in ``source``).
    """
    if precision not in _TORCH_DTYPES:
        raise RooflineError(
            f"measure_machine: precision {precision!r} cannot be measured on the CPU; "
            f"choose one of {sorted(_TORCH_DTYPES)}"
        )
    size = _check_int("measure_machine: size", size, 1)
    n_elements = _check_int("measure_machine: n_elements", n_elements, 1)
    repeats = _check_int("measure_machine: repeats", repeats, 1)
    dtype = _TORCH_DTYPES[precision]
    generator = torch.Generator().manual_seed(0)

    peak = 2.0 * size**3 / _matmul_seconds(size, dtype, generator, repeats)
    add_s = _add_seconds(n_elements, dtype, generator, repeats)
    bandwidth = 3.0 * n_elements * BYTES_PER_ELEMENT[precision] / add_s
    # many tiny ops per timing: one op (a few microseconds) is close to the timer's resolution
    per_batch = 200
    launch_s = _add_seconds(1, dtype, generator, repeats, per_batch) / per_batch

    other = "float64" if precision == "float32" else "float32"
    peaks = {precision: peak, other: peak / 2 if other == "float64" else peak * 2}
    threads = torch.get_num_threads()
    source = (
        f"measured on this machine with torch {torch.__version__}, {threads} thread(s): "
        f"peak {precision} FLOP/s = 2 n^3 / time of a {size}x{size} matmul ({peak:.3g} FLOP/s); "
        f"memory bandwidth = 3 n {BYTES_PER_ELEMENT[precision]} B / time of torch.add on "
        f"n = {n_elements} elements ({bandwidth:.3g} B/s); launch overhead = time of one "
        f"torch.add on 1 element ({launch_s:.3g} s); each time the shortest of {repeats} runs; "
        f"{other} peak assumed {'half' if other == 'float64' else 'twice'} the measured one"
    )
    return cpu_spec(
        peaks,
        bandwidth,
        launch_overhead_s=launch_s,
        name="this machine (cpu)",
        source=source,
    )


# ------------------------------------------------------------------------------------------------
# The real K-FAC path
# ------------------------------------------------------------------------------------------------
def _kfac_options(loss: str, kfac_options: Mapping[str, Any]) -> dict[str, Any]:
    options = dict(kfac_options)
    for key, required in _FIXED_KFAC_OPTIONS.items():
        if key in options and options[key] != required:
            raise RooflineError(
                f"calibration runs K-FAC with {key}={required!r} (every step must factor, invert "
                f"and precondition like the modeled step); got {key}={options[key]!r}"
            )
        options[key] = required
    if options.get("damping_mode") == "eigenbasis":
        raise RooflineError(
            "calibration models the inversions as Cholesky inverses: damping_mode='eigenbasis' "
            "(eigendecompositions) is not supported"
        )
    if "loss" in options and options["loss"] != loss:
        raise RooflineError(f"loss is given twice with different values: {loss!r} and {options['loss']!r}")
    options["loss"] = loss
    options.setdefault("fisher_type", "mc")
    options.setdefault("lr", 1e-4)
    options.setdefault("kl_clip", None)
    return options


CALIBRATION_SPREAD_TOLERANCE = 0.25
"""Largest ``(p90 - p10) / median`` of the timed K-FAC steps before calibration warns
(:class:`cosim.roofline.MeasurementWarning`) that its fit rests on unsteady timings."""


def measure_kfac_phases(
    model: nn.Module,
    batch_inputs: Tensor | tuple[Tensor, ...],
    batch_targets: Tensor,
    loss: str = "cross_entropy",
    steps: int = 5,
    warmup: int = 2,
    **kfac_options: Any,
) -> dict[str, float]:
    """Median seconds of each K-FAC phase (:data:`PHASES`) over ``steps`` steps, measured by
    running the real :class:`digital.KFAC` on one batch after ``warmup`` untimed steps.

    The optimizer uses the exact backend with factors and inverses every step
    (``factor_update_steps = inv_update_steps = 1``), a small learning rate (``lr=1e-4``) and no
    KL clipping unless ``kfac_options`` say otherwise; ``fisher_type`` defaults to ``"mc"``.
    The optimizer steps a deep copy of ``model``: the caller's model is left untouched. Phases as
    in ``last_stats``: ``gradient_s`` the curvature pass plus the closure's forward and backward,
    ``factors_s`` the factor statistics, ``precondition_s`` the inversions and the
    preconditioning products, ``update_s`` the parameter update. A
    :class:`~cosim.roofline.MeasurementWarning` says when the step times spread by more than
    :data:`CALIBRATION_SPREAD_TOLERANCE` or the machine is busy.
    """
    from digital.kfac import KFAC
    from digital.losses import loss_function
    from digital.models import model_inputs_call

    steps = _check_int("measure_kfac_phases: steps", steps, 1)
    warmup = _check_int("measure_kfac_phases: warmup", warmup, 0)
    if not isinstance(model, nn.Module):
        raise RooflineError(f"measure_kfac_phases needs a torch nn.Module, got {type(model).__name__}")
    options = _kfac_options(loss, kfac_options)
    loss_fn = loss_function(loss)
    model = copy.deepcopy(model)
    model.train()
    optimizer = KFAC(model, **options)

    def closure() -> Tensor:
        optimizer.zero_grad()
        value = loss_fn(model_inputs_call(model, batch_inputs), batch_targets)
        value.backward()
        return value

    samples: dict[str, list[float]] = {phase: [] for phase in PHASES}
    try:
        for i in range(warmup + steps):
            optimizer.set_batch(batch_inputs, batch_targets)
            value = optimizer.step(closure)
            if value is not None and not bool(torch.isfinite(value)):
                raise RooflineError(
                    f"measure_kfac_phases: the loss became {float(value)} at step {i + 1}; "
                    "lower lr or raise damping"
                )
            if i >= warmup:
                for phase in PHASES:
                    samples[phase].append(float(optimizer.last_stats[phase]))
    finally:
        optimizer.remove_hooks()
    # the step times' spread and the machine's load decide whether the fit can be trusted: say so
    timing_of([sum(step) for step in zip(*samples.values())], "the K-FAC steps timed for calibration",
              tolerance=CALIBRATION_SPREAD_TOLERANCE, stacklevel=3)
    return {phase: statistics.median(values) for phase, values in samples.items()}


# ------------------------------------------------------------------------------------------------
# The modeled work of the same phases
# ------------------------------------------------------------------------------------------------
def _coster(
    shape: ModelShape, step: StepModel, system: GPUSpec | SystemSpec | StepCoster | None
) -> StepCoster:
    if isinstance(system, StepCoster):
        if system.shape != shape or system.step != step:
            raise RooflineError(
                "phase_work: the StepCoster given was built for another model shape or step model "
                "than the ones passed"
            )
        return system
    if system is None:
        spec = SystemSpec.default()
    elif isinstance(system, GPUSpec):
        spec = SystemSpec.default().replace(gpu=system)
    elif isinstance(system, SystemSpec):
        spec = system
    else:
        raise RooflineError(
            f"phase_work needs a GPUSpec, a SystemSpec or a StepCoster, got {type(system).__name__}"
        )
    return StepCoster(shape, spec, step)


def phase_work(
    shape: ModelShape,
    step: StepModel,
    system: GPUSpec | SystemSpec | StepCoster | None = None,
    invert: bool = True,
) -> dict[str, Work]:
    """Modeled :class:`Work` of each K-FAC phase (:data:`PHASES`), summed over the layers with
    ``+`` (launches add up: each kernel pays its overhead), from :class:`StepCoster`.

    - ``gradient_s``: forward + backward of every layer, plus the curvature pass: one more
      backward of every layer for ``mc``, ``output_dim`` of them for ``type-2``, none for
      ``empirical``;
    - ``factors_s``: the factor statistics of every layer;
    - ``precondition_s``: the inversions (on an inverse step, ``invert=True``) and the
      preconditioning products;
    - ``update_s``: the parameter update.

    The counts do not depend on the GPU; ``system`` (a GPU, a whole system or an existing
    :class:`StepCoster` for the same ``shape`` and ``step``; default :meth:`SystemSpec.default`)
    only builds the coster. Only digital K-FAC has these phases: ``step.method`` must be
    ``"kfac"`` and ``step.inverse_on`` ``"gpu"``.
    """
    if not isinstance(shape, ModelShape):
        raise RooflineError(f"phase_work needs a ModelShape, got {type(shape).__name__}")
    if not isinstance(step, StepModel):
        raise RooflineError(f"phase_work needs a StepModel, got {type(step).__name__}")
    if step.method != "kfac" or step.inverse_on != "gpu":
        raise RooflineError(
            "phase_work models digital K-FAC: step.method must be 'kfac' and step.inverse_on 'gpu', "
            f"got method={step.method!r}, inverse_on={step.inverse_on!r}"
        )
    c = _coster(shape, step, system)
    layers = shape.layers
    curvature_columns = {"empirical": 0, "mc": 1, "type-2": shape.output_dim}[step.fisher_type]
    gradient = sum((c.forward(layer) + c.backward(layer) for layer in layers), Work(0.0, 0.0, 0, step.precision))
    if curvature_columns:
        gradient = gradient + sum(c.backward(layer) for layer in layers).scaled(curvature_columns)
    precondition = sum(c.precondition(layer) for layer in layers)
    if invert:
        precondition = sum(c.invert(layer) for layer in layers) + precondition
    return {
        "gradient_s": _named(gradient, "gradient"),
        "factors_s": _named(sum(c.factors(layer) for layer in layers), "factors"),
        "precondition_s": _named(precondition, "precondition"),
        "update_s": _named(c.update(), "update"),
    }


def _named(work: Work, name: str) -> Work:
    return Work(work.flops, work.bytes, work.kernels, work.precision, name, work.kind)


# ------------------------------------------------------------------------------------------------
# Calibration
# ------------------------------------------------------------------------------------------------
def _ratio_text(measured: float, predicted: float) -> str:
    return f"{predicted / measured:.2f}" if measured > 0 else "-"


@dataclass(frozen=True)
class CalibrationReport:
    """Measured against predicted phase seconds, before and after fitting the roofline.

    Keys of the second-level ``dict`` fields are ``"<run>/<phase>"`` (``<run>`` the label of a
    run, :data:`PHASES` the phases; one-run reports from :func:`calibrate_from_training` use the
    bare phase names). All times in seconds.
    """

    before: GPUSpec
    """The machine as measured (or given), efficiencies as they were."""
    after: GPUSpec
    """The machine with fitted ``compute_efficiency``, ``memory_efficiency`` (and, when fitted,
    ``launch_overhead_s``)."""
    measured_s: dict[str, float]
    """Median measured seconds per phase."""
    predicted_before_s: dict[str, float]
    """Roofline seconds of each phase's summed work on :attr:`before`."""
    predicted_after_s: dict[str, float]
    """Roofline seconds of each phase's summed work on :attr:`after`."""
    work: dict[str, Work] = field(default_factory=dict)
    """Modeled work of each phase (the calibration inputs)."""
    runs: tuple[str, ...] = ()
    """Run labels in order (``("",)`` for a one-run report)."""

    def key(self, run: str, phase: str) -> str:
        """The dictionary key of ``phase`` of ``run``."""
        return f"{run}/{phase}" if run else phase

    def step_totals_s(self) -> dict[str, tuple[float, float, float]]:
        """Per run: the whole step's seconds (measured, predicted before, predicted after),
        the sums over its phases."""
        out = {}
        for run in self.runs:
            keys = [self.key(run, p) for p in PHASES]
            out[run] = (
                sum(self.measured_s[k] for k in keys),
                sum(self.predicted_before_s[k] for k in keys),
                sum(self.predicted_after_s[k] for k in keys),
            )
        return out

    def table(self) -> str:
        """A text table: per phase (and per run's whole step) the measured seconds, the
        predictions before and after calibration, and their ratios predicted/measured; then the
        fitted parameters."""
        header = ("phase", "measured ms", "before ms", "ratio", "after ms", "ratio")
        rows: list[tuple[str, ...]] = []
        totals = self.step_totals_s()
        for run in self.runs:
            for phase in PHASES:
                k = self.key(run, phase)
                m, b, a = self.measured_s[k], self.predicted_before_s[k], self.predicted_after_s[k]
                rows.append((k, f"{m * 1e3:.4f}", f"{b * 1e3:.4f}", _ratio_text(m, b), f"{a * 1e3:.4f}", _ratio_text(m, a)))
            m, b, a = totals[run]
            rows.append((self.key(run, "step"), f"{m * 1e3:.4f}", f"{b * 1e3:.4f}", _ratio_text(m, b), f"{a * 1e3:.4f}", _ratio_text(m, a)))
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

        def line(r: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

        fitted = (
            f"compute_efficiency {self.before.compute_efficiency:.3g} -> {self.after.compute_efficiency:.3g}, "
            f"memory_efficiency {self.before.memory_efficiency:.3g} -> {self.after.memory_efficiency:.3g}, "
            f"launch_overhead_s {self.before.launch_overhead_s:.3g} -> {self.after.launch_overhead_s:.3g}"
        )
        peaks = ", ".join(f"{k} {v:.3g} FLOP/s" for k, v in self.before.peak_flops.items())
        return "\n".join([
            f"Roofline calibration on {self.before.name} ({peaks}; {self.before.memory_bandwidth_bps:.3g} B/s)",
            line(header),
            "  ".join("-" * w for w in widths),
            *map(line, rows),
            fitted,
        ])


Run = tuple[nn.Module, Any, Tensor]


def _precision_of(model: nn.Module) -> str:
    dtypes = {p.dtype for p in model.parameters()}
    for name, dtype in _TORCH_DTYPES.items():
        if dtypes == {dtype}:
            return name
    raise RooflineError(
        f"calibration needs a model whose parameters are all float32 or all float64, got {sorted(map(str, dtypes))}"
    )


def calibrate_from_training_runs(
    runs: Sequence[Run],
    loss: str = "cross_entropy",
    machine: GPUSpec | None = None,
    fit_launch_overhead: bool = True,
    labels: Sequence[str] | None = None,
    steps: int = 5,
    warmup: int = 2,
    **kfac_options: Any,
) -> CalibrationReport:
    """Fit the roofline of ``machine`` (default :func:`measure_machine`) to the phases of real
    K-FAC steps of several ``(model, batch_inputs, batch_targets)`` runs, pooled.

    Each run's phases are measured with :func:`measure_kfac_phases` (``steps``, ``warmup`` and
    ``kfac_options`` passed on) and modeled with :func:`phase_work` for
    ``ModelShape.from_model(model, batch_inputs)`` and ``StepModel(method="kfac",
    inverse_on="gpu", inv_update_steps=1, fisher_type=...)`` at the model's precision; all
    ``(Work, seconds)`` pairs go to :func:`cosim.roofline.calibrate`. Give runs with both
    compute-heavy phases (wide layers) and memory-heavy ones, or the fit warns
    (:class:`~cosim.roofline.CalibrationWarning`) that an efficiency kept an arbitrary value; the
    warning is passed on and the report still returned. ``labels`` name the runs in the report
    (default ``run0``, ``run1``...).
    """
    runs = list(runs)
    if not runs:
        raise RooflineError("calibrate_from_training_runs needs at least one (model, inputs, targets) run")
    if labels is None:
        labels = [f"run{i}" for i in range(len(runs))]
    labels = list(labels)
    if len(labels) != len(runs) or len(set(labels)) != len(labels):
        raise RooflineError(f"labels must name each of the {len(runs)} runs once, got {labels!r}")
    if machine is None:
        machine = measure_machine()
    elif not isinstance(machine, GPUSpec):
        raise RooflineError(f"machine must be a GPUSpec, got {type(machine).__name__}")
    fisher_type = kfac_options.get("fisher_type", "mc")

    measured: dict[str, float] = {}
    works: dict[str, Work] = {}
    for i, (label, run) in enumerate(zip(labels, runs)):
        try:
            model, inputs, targets = run
        except (TypeError, ValueError):
            raise RooflineError(f"run {i} must be a (model, batch_inputs, batch_targets) tuple, got {run!r}") from None
        if not isinstance(model, nn.Module):
            raise RooflineError(f"run {i}: the model must be a torch nn.Module, got {type(model).__name__}")
        step = StepModel(
            method="kfac", inverse_on="gpu", inv_update_steps=1, fisher_type=fisher_type,
            precision=_precision_of(model),
        )
        shape = ModelShape.from_model(model, inputs, name=label)
        run_work = phase_work(shape, step, machine)
        seconds = measure_kfac_phases(model, inputs, targets, loss, steps=steps, warmup=warmup, **kfac_options)
        for phase in PHASES:
            key = f"{label}/{phase}" if label else phase
            works[key] = run_work[phase]
            measured[key] = seconds[phase]

    pairs = [(works[k], measured[k]) for k in works]
    fitted = calibrate(machine, pairs, fit_launch_overhead=fit_launch_overhead)
    before, after = RooflineModel(machine), RooflineModel(fitted)
    return CalibrationReport(
        before=machine,
        after=fitted,
        measured_s=measured,
        predicted_before_s={k: before.time_s(w) for k, w in works.items()},
        predicted_after_s={k: after.time_s(w) for k, w in works.items()},
        work=works,
        runs=tuple(labels),
    )


def calibrate_from_training(
    model: nn.Module,
    batch_inputs: Tensor | tuple[Tensor, ...],
    batch_targets: Tensor,
    loss: str = "cross_entropy",
    machine: GPUSpec | None = None,
    fit_launch_overhead: bool = True,
    steps: int = 5,
    warmup: int = 2,
    **kfac_options: Any,
) -> CalibrationReport:
    """:func:`calibrate_from_training_runs` for one run; the report's keys are the bare phase
    names (:data:`PHASES`). With four phases and three parameters a single small model rarely
    pins every parameter down: expect a :class:`~cosim.roofline.CalibrationWarning`."""
    return calibrate_from_training_runs(
        [(model, batch_inputs, batch_targets)],
        loss=loss,
        machine=machine,
        fit_launch_overhead=fit_launch_overhead,
        labels=[""],
        steps=steps,
        warmup=warmup,
        **kfac_options,
    )


class AnchorMode(str, Enum):
    """How a measured step time is imposed on the step model."""

    SCALE = "scale"
    """Every GPU kernel is slower than its roofline by the same factor (real kernels reach a
    fraction of peak): K-FAC's extra kernels inherit the factor."""
    RESIDUAL = "residual"
    """The kernels stay at their roofline; the step holds work the model does not cover (memory
    bound gather / scatter...), a fixed number of seconds every method pays alike."""


@dataclass(frozen=True)
class Anchor:
    """How a projected step was made equal to a measured one. Times in seconds per step."""

    scale: float
    """``GPUSpec.anchor_scale`` set (1 in residual mode)."""
    modelled_step_s: float
    """The roofline's step before anchoring (``anchor_scale`` 1, no residual)."""
    measured_step_s: float
    source: str = ""
    mode: AnchorMode = AnchorMode.SCALE
    residual_s: float = 0.0
    """``ModelShape.unmodelled_step_s`` set (0 in scale mode)."""

    @property
    def modelled_share(self) -> float:
        """The share of the measured step the model accounts for (the rest is anchored)."""
        return self.modelled_step_s / self.measured_step_s


def anchor_to_step(
    shape: ModelShape, system: SystemSpec, measured_step_s: float, step: StepModel | None = None, source: str = "",
    mode: AnchorMode | str = AnchorMode.SCALE,
) -> tuple[ModelShape, SystemSpec, Anchor]:
    """``shape`` and ``system`` anchored so that the projected step of ``step`` (default Adam) on
    ``shape`` takes ``measured_step_s`` (a published or measured step time), and the anchor.

    ``mode`` (:class:`AnchorMode`): ``scale`` multiplies every GPU kernel alike, so the other
    methods' digital work inherits it; ``residual`` adds the missing seconds to every step as
    unmodelled work (``ModelShape.unmodelled_step_s``), so K-FAC's extra kernels keep their
    roofline times. The device's times are never touched (they come from :mod:`thermo.cost`).
    """
    if not (isinstance(measured_step_s, (int, float)) and math.isfinite(measured_step_s) and measured_step_s > 0):
        raise RooflineError(f"measured_step_s must be a finite number of seconds > 0, got {measured_step_s!r}")
    try:
        mode = AnchorMode(mode)
    except ValueError:
        raise RooflineError(f"anchor mode must be one of {[m.value for m in AnchorMode]}, got {mode!r}") from None
    step = StepModel(method="adam") if step is None else step
    plain = system.replace(gpu=system.gpu.replace(anchor_scale=1.0))
    bare = dataclasses.replace(shape, unmodelled_step_s=0.0)
    modelled = project_run(bare, plain, step, 100).time_per_step_s
    if mode is AnchorMode.RESIDUAL:
        residual = measured_step_s - modelled
        if residual < 0:
            raise RooflineError(f"the modelled {step.method} step ({modelled:.4g} s) is already longer than the measured "
                                f"{measured_step_s:.4g} s: a residual anchor cannot remove time; use mode 'scale'")
        anchor = Anchor(1.0, modelled, float(measured_step_s), source, mode, residual)
        return dataclasses.replace(shape, unmodelled_step_s=residual), plain, anchor
    scale = measured_step_s / modelled
    note = f"anchored x{scale:.4g} to a {measured_step_s:.4g} s {step.method} step" + (f" ({source})" if source else "")
    gpu = plain.gpu.replace(anchor_scale=scale, source=f"{plain.gpu.source}; {note}" if plain.gpu.source else note)
    return bare, system.replace(gpu=gpu), Anchor(scale, modelled, float(measured_step_s), source, mode)
