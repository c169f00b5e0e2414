"""The task graph of one training step, with durations, from a model's layer shapes.

Digital phases get their time from the roofline model of the described GPU (FLOPs and bytes
per phase, from the layer shapes); every device operation from :mod:`thermo.cost` on the
system's :class:`thermo.DeviceSpec`, entering the graph through :func:`device_tasks` (program
over the link, run on a chip, read back). The step graphs then go to :mod:`cosim.schedule` (one
step, or a repeating pattern of steps for a whole run).

Step kinds (``method=``, :data:`STEP_KINDS`; the projected methods built on them are
:data:`METHODS`):

- ``adam`` (or ``sgd``): forward, backward, update.
- ``kfac``: forward, backward, the curvature pass (``mc``: one extra backward), factor
  statistics, and every ``inv_update_steps`` steps the inversion of every factor; then
  preconditioning and the update. ``inverse_on="gpu"`` is digital K-FAC (Cholesky inverses on the
  GPU); ``inverse_on="analog"`` sends each factor over the link, inverts it on a chip (a pool of
  ``n_chips``), and reads it back (thermodynamic K-FAC); the inversions of different layers
  overlap each other and the GPU's factor statistics of later layers.
  With ``analog_op="solve"`` the factors are solved with every step; on steps that keep them, a
  device with resident couplings sends only the right-hand sides.
- ``tngd``: gradient and the GGN factor on the GPU, one device iteration (the ``r (r + 2N)``
  array values and the gradient programmed, relaxation for ``t``, read-back), update; the next
  gradient may overlap the relaxation (``overlap=True``, a delay of one step).

Every number a projection uses is in :class:`StepModel` and the system description; call
:meth:`StepModel.assumptions` to print them beside a result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from thermo import cost
from thermo.device import DeviceSpec
from thermo.registry import Registry
from thermo.hardware import HardwareSpec

from .roofline import (
    BYTES_PER_ELEMENT,
    RooflineModel,
    Work,
    cholesky_inverse,
    elementwise,
    gemm,
)
from .schedule import StepGraph, Task
from .shapes import LayerShape, ModelShape, WorkloadError
from .system import SystemSpec


@dataclass(frozen=True)
class StepModel:
    """How one step is costed. Hardware-independent choices of the algorithm and the precision."""

    method: str = "kfac"
    """How the step's graph is built: a :data:`STEP_KINDS` name."""
    inverse_on: Literal["gpu", "analog"] = "gpu"
    analog_op: Literal["inverse", "solve"] = "inverse"
    """Thermodynamic K-FAC variant (Donatella et al. 2025): invert both factors on the device
    every ``inv_update_steps`` steps (covariance estimate), or solve ``G X = grad`` and
    ``A Y = X^T`` on the device every step (mean estimate, matrix right-hand sides)."""
    inv_update_steps: int = 10
    factor_update_steps: int = 1
    """K-FAC: factor statistics (and the curvature pass) every so many steps; divides
    ``inv_update_steps``."""
    fisher_type: Literal["empirical", "mc", "type-2"] = "mc"
    precision: str = "float32"
    factor_condition_number: float = 1e3
    """Condition number of a damped factor on the chip (assumed geometric spectrum up to the
    coupling range); measured runs replace it (``digital`` diagnostics)."""
    target_rel_error: float = 1e-2
    """Accuracy the analog inversions are planned for (relative Frobenius)."""
    analog_time_tau: float = 50.0
    """TNGD: analog time per step (tau)."""
    overlap: bool = True
    """TNGD: the next gradient is computed while the device relaxes (one step of delay)."""

    def __post_init__(self) -> None:
        if self.method not in STEP_KINDS:
            raise WorkloadError(f"StepModel.method must be one of {', '.join(STEP_KINDS)}, got {self.method!r}")
        if self.inverse_on not in ("gpu", "analog"):
            raise WorkloadError(f"StepModel.inverse_on must be gpu or analog, got {self.inverse_on!r}")
        if self.analog_op not in ("inverse", "solve"):
            raise WorkloadError(f"StepModel.analog_op must be inverse or solve, got {self.analog_op!r}")
        if self.fisher_type not in ("empirical", "mc", "type-2"):
            raise WorkloadError(f"StepModel.fisher_type is unknown: {self.fisher_type!r}")
        if not (isinstance(self.inv_update_steps, int) and self.inv_update_steps >= 1):
            raise WorkloadError(f"StepModel.inv_update_steps must be an integer >= 1, got {self.inv_update_steps!r}")
        if not (isinstance(self.factor_update_steps, int) and self.factor_update_steps >= 1) or (
            self.inv_update_steps % self.factor_update_steps
        ):
            raise WorkloadError(
                "StepModel.factor_update_steps must be an integer >= 1 dividing inv_update_steps, "
                f"got {self.factor_update_steps!r} and {self.inv_update_steps!r}"
            )
        if self.precision not in BYTES_PER_ELEMENT:
            raise WorkloadError(f"StepModel.precision must be one of {sorted(BYTES_PER_ELEMENT)}, got {self.precision!r}")
        if not (math.isfinite(self.factor_condition_number) and self.factor_condition_number >= 1):
            raise WorkloadError(f"StepModel.factor_condition_number must be >= 1, got {self.factor_condition_number!r}")
        if not 0 < self.target_rel_error < 1:
            raise WorkloadError(f"StepModel.target_rel_error must be in (0, 1), got {self.target_rel_error!r}")
        if not (math.isfinite(self.analog_time_tau) and self.analog_time_tau >= 0):
            raise WorkloadError(f"StepModel.analog_time_tau must be >= 0, got {self.analog_time_tau!r}")

    def assumptions(self, system: SystemSpec) -> dict[str, object]:
        """Every figure a projection rests on, flat, for printing beside the result."""
        device, hw = system.device, system.device.chip
        out: dict[str, object] = {f"step.{k}": v for k, v in dataclasses.asdict(self).items()}
        out.update({
            "gpu": system.gpu.name,
            f"gpu.peak_flops[{self.precision}]": system.gpu.peak(self.precision),
            "gpu.memory_bandwidth_bps": system.gpu.memory_bandwidth_bps,
            "gpu.compute_efficiency": system.gpu.compute_efficiency,
            "gpu.memory_efficiency": system.gpu.memory_efficiency,
            "device": device.name or "custom",
            "link.bandwidth_bps": device.link.bandwidth_bps,
            "link.latency_s": device.link.latency_s,
            "device.n_chips": device.n_chips,
            "device.coupling_delivery": device.coupling_delivery.value,
            "device.dac_channels": device.dac_channels or "one per unit",
            "device.adc_channels": device.adc_channels or "one per unit",
            "device.resident_couplings": device.resident_couplings,
            "device.replicas": device.replicas,
            "chip.n_units": hw.n_units or "unbounded",
            "chip.tau_s": hw.tau_s,
            "chip.bits_A": hw.bits_A,
            "chip.bits_adc": hw.bits_adc,
            "chip.readout": hw.readout,
        })
        return out


def factor_spectrum(hw: HardwareSpec, d: int, condition_number: float) -> np.ndarray:
    """Assumed chip spectrum of a damped ``d x d`` factor: geometric from
    ``coupling_range / condition_number`` up to the coupling range (the DAC scaling puts the
    largest coupling at the range; for a diagonally dominant factor that is about the top
    eigenvalue). Co-simulated training uses the realized spectra instead."""
    lam_max = hw.coupling_range
    return np.geomspace(lam_max / condition_number, lam_max, d)


class StepCoster:
    """Durations of the phases of a step for one model on one system."""

    def __init__(self, shape: ModelShape, system: SystemSpec, step: StepModel) -> None:
        self.shape, self.system, self.step = shape, system, step
        self.roofline = RooflineModel(system.gpu)
        self.device: DeviceSpec = system.device
        """Every device operation is priced from it by :mod:`thermo.cost`."""

    def gpu_s(self, work: Work) -> float:
        return self.roofline.time_s(work)

    def gpu_task(self, name: str, seconds: float, deps: tuple[str, ...], phase: str) -> Task:
        """A GPU task; its energy is the board power over its duration when the GPU lists one
        (an upper bound: the board is charged as fully busy)."""
        power = self.system.gpu.power_w or 0.0
        return Task(name, seconds, resource="gpu", deps=deps, phase=phase, energy_j=power * seconds)

    def _gemm(self, m: int, n: int, k: int) -> Work:
        return gemm(m, n, k, precision=self.step.precision)

    def forward(self, layer: LayerShape) -> Work:
        return self._gemm(self.shape.batch_size * layer.positions, layer.d_out, layer.dim_a)

    def backward(self, layer: LayerShape) -> Work:
        rows = self.shape.batch_size * layer.positions
        # gradient of the input and of the weight: two GEMMs of the forward's size
        return self._gemm(rows, layer.dim_a, layer.d_out) + self._gemm(layer.d_out, layer.dim_a, rows)

    def factors(self, layer: LayerShape) -> Work:
        rows = self.shape.batch_size * layer.positions
        return self._gemm(layer.dim_a, layer.dim_a, rows) + self._gemm(layer.dim_g, layer.dim_g, rows)

    def invert(self, layer: LayerShape) -> Work:
        p = self.step.precision
        return cholesky_inverse(layer.dim_a, precision=p) + cholesky_inverse(layer.dim_g, precision=p)

    def precondition(self, layer: LayerShape) -> Work:
        return self._gemm(layer.dim_g, layer.dim_a, layer.dim_g) + self._gemm(layer.dim_g, layer.dim_a, layer.dim_a)

    def update(self) -> Work:
        n = self.shape.n_params
        if self.step.method == "adam":  # reads parameter, gradient, two moments; writes three
            return elementwise(n, reads=4, writes=3, precision=self.step.precision)
        # SGD-like: reads the parameter and the (preconditioned) direction, writes the parameter
        return elementwise(n, reads=2, writes=1, precision=self.step.precision)

    def analog_inverse(self, d: int) -> cost.TimingBreakdown:
        """Device time of one factor inversion (``d x d``) to the target accuracy."""
        eigenvalues = factor_spectrum(self.device.chip, d, self.step.factor_condition_number)
        return cost.estimate_inverse(self.device, eigenvalues, target_rel_error=self.step.target_rel_error)

    def analog_solve(self, d: int, n_rhs: int, resident: bool = False) -> cost.TimingBreakdown:
        """Device time of a factor solve (``d x d``) with ``n_rhs`` right-hand sides;
        ``resident``: the factor is unchanged since it was last programmed."""
        eigenvalues = factor_spectrum(self.device.chip, d, self.step.factor_condition_number)
        return cost.estimate_solve(self.device, eigenvalues, target_rel_error=self.step.target_rel_error, n_rhs=n_rhs,
                                   resident=resident)

    def tngd_iteration(self, n_params: int, rank: int) -> cost.TimingBreakdown:
        """TNGD: one iteration's upload (arrays and gradient), relaxation for ``analog_time_tau``
        and read-back (:func:`thermo.cost.estimate_tngd_iteration`)."""
        return cost.estimate_tngd_iteration(self.device, n_params=n_params, rank=rank,
                                            analog_time_tau=self.step.analog_time_tau)


def device_tasks(key: str, t: cost.TimingBreakdown, deps: tuple[str, ...], analog_s: float | None = None) -> list[Task]:
    """The one way a device operation enters a step graph: program (couplings and inputs) over
    the link, run on a chip, read back over the link, each phase as :mod:`thermo.cost` priced it
    in ``t``. ``analog_s`` replaces the priced analog run by a simulated one (co-simulation); the
    readout conversion is added to it as to the priced one."""
    run_s = t.equilibrate_s + t.window_s if analog_s is None else analog_s
    return [
        Task(f"program_{key}", t.program_s + t.input_s, resource="link", deps=deps, phase="program"),
        Task(f"analog_{key}", run_s + t.readout_s, resource="analog", deps=(f"program_{key}",),
             phase="analog", energy_j=t.energy_j),
        Task(f"readback_{key}", t.transfer_s, resource="link", deps=(f"analog_{key}",), phase="readback"),
    ]


def _prefixed(name: str, layer: LayerShape) -> str:
    return f"{name}[{layer.name}]"


def step_pattern(shape: ModelShape, system: SystemSpec, step: StepModel) -> list[StepGraph]:
    """The repeating pattern of step graphs: one step for Adam/SGD/TNGD, ``inv_update_steps``
    steps for K-FAC (the first one inverts)."""
    return STEP_KINDS.get(step.method)(shape, StepCoster(shape, system, step))


def _first_order_pattern(shape: ModelShape, c: StepCoster) -> list[StepGraph]:
    return [_first_order_step(shape, c)]


def _kfac_pattern(shape: ModelShape, c: StepCoster) -> list[StepGraph]:
    step = c.step
    if step.inverse_on == "analog" and step.analog_op == "solve":
        return [_kfac_solve_step(shape, c, update_factors=k == 0) for k in range(step.factor_update_steps)]
    return [
        _kfac_step(shape, c, invert=k == 0, update_factors=k % step.factor_update_steps == 0)
        for k in range(step.inv_update_steps)
    ]


def _tngd_pattern(shape: ModelShape, c: StepCoster) -> list[StepGraph]:
    return [_tngd_step(shape, c)]


def _forward_backward(shape: ModelShape, c: StepCoster, first_dep: tuple[str, ...]) -> list[Task]:
    tasks: list[Task] = []
    prev = first_dep
    for layer in shape.layers:
        name = _prefixed("forward", layer)
        tasks.append(c.gpu_task(name, c.gpu_s(c.forward(layer)), prev, "forward"))
        prev = (name,)
    for layer in reversed(shape.layers):
        name = _prefixed("backward", layer)
        tasks.append(c.gpu_task(name, c.gpu_s(c.backward(layer)), prev, "backward"))
        prev = (name,)
    if shape.unmodelled_step_s > 0:  # anchored, not modelled: the same for every method
        tasks.append(c.gpu_task("unmodelled", shape.unmodelled_step_s, prev, "unmodelled"))
    return tasks


UNMODELLED_BACKWARD_SHARE = 2.0 / 3.0
"""The share of a step's unmodelled work (``ModelShape.unmodelled_step_s``) that one more backward
pass repeats: a backward costs about twice its forward (two GEMMs against one), an assumption."""


def _backward_pass_s(shape: ModelShape, c: StepCoster) -> float:
    """Seconds of one more backward pass through the model (a curvature or Jacobian column): its
    layers' backward GEMMs and its share of the unmodelled work."""
    return sum(c.gpu_s(c.backward(layer)) for layer in shape.layers) + UNMODELLED_BACKWARD_SHARE * shape.unmodelled_step_s


def _gradient_and_curvature(shape: ModelShape, c: StepCoster, update_factors: bool = True) -> tuple[list[Task], str]:
    """Forward, backward and (on factor steps, for ``mc``/``type-2``) the curvature pass: one
    more backward per MC sample or loss-Hessian column. Returns the tasks and the last one."""
    tasks = _forward_backward(shape, c, ("prev:update",))
    last = tasks[-1].name
    if c.step.fisher_type != "empirical" and update_factors:
        columns = 1 if c.step.fisher_type == "mc" else shape.output_dim
        seconds = columns * _backward_pass_s(shape, c)
        tasks.append(c.gpu_task("curvature", seconds, (last,), "curvature"))
        last = "curvature"
    return tasks, last


def _first_order_step(shape: ModelShape, c: StepCoster) -> StepGraph:
    tasks = _forward_backward(shape, c, ("prev:update",))
    tasks.append(c.gpu_task("update", c.gpu_s(c.update()), (tasks[-1].name,), "update"))
    return StepGraph(tuple(tasks), "first-order")


def _kfac_step(shape: ModelShape, c: StepCoster, invert: bool, update_factors: bool = True) -> StepGraph:
    step = c.step
    tasks, last = _gradient_and_curvature(shape, c, update_factors)
    precondition_deps: dict[str, tuple[str, ...]] = {}
    for layer in shape.layers:
        factors = _prefixed("factors", layer)
        seconds = c.gpu_s(c.factors(layer)) if update_factors else 0.0  # kept: the graph's shape
        tasks.append(c.gpu_task(factors, seconds, (last,), "factors"))
        deps: tuple[str, ...] = (factors,)
        if invert and step.inverse_on == "gpu":
            inv = _prefixed("invert", layer)
            tasks.append(c.gpu_task(inv, c.gpu_s(c.invert(layer)), (factors,), "invert"))
            deps = (inv,)
        elif invert:
            for label, d in (("A", layer.dim_a), ("G", layer.dim_g)):
                job = device_tasks(f"{label}[{layer.name}]", c.analog_inverse(d), (factors,))
                tasks += job
                deps = (*deps, job[-1].name)
        precondition_deps[layer.name] = deps
    pre_names = []
    for layer in shape.layers:
        name = _prefixed("precondition", layer)
        tasks.append(c.gpu_task(name, c.gpu_s(c.precondition(layer)), precondition_deps[layer.name], "precondition"))
        pre_names.append(name)
    tasks.append(c.gpu_task("update", c.gpu_s(c.update()), tuple(pre_names), "update"))
    return StepGraph(tuple(tasks), "kfac-invert" if invert else "kfac")


def _kfac_solve_step(shape: ModelShape, c: StepCoster, update_factors: bool = True) -> StepGraph:
    """Thermodynamic K-FAC, solve variant: per layer, ``G X = grad`` (``d_A`` right-hand sides)
    then ``A Y = X^T`` (``d_G`` right-hand sides) on the device, every step. On a step that keeps
    the factors, a device with resident couplings (``DeviceSpec.resident_couplings``, one chip
    per factor) sends only the right-hand sides."""
    tasks, last = _gradient_and_curvature(shape, c, update_factors)
    # both factors of every layer stay on their own chips only if there are chips for all of them
    resident = not update_factors and c.device.n_chips >= 2 * len(shape.layers)
    finals = []
    for layer in shape.layers:
        factors = _prefixed("factors", layer)
        tasks.append(c.gpu_task(factors, c.gpu_s(c.factors(layer)) if update_factors else 0.0, (last,), "factors"))
        first = device_tasks(f"G[{layer.name}]", c.analog_solve(layer.dim_g, layer.dim_a, resident), (factors,))
        second = device_tasks(f"A[{layer.name}]", c.analog_solve(layer.dim_a, layer.dim_g, resident), (first[-1].name,))
        tasks += first + second
        finals.append(second[-1].name)
    tasks.append(c.gpu_task("update", c.gpu_s(c.update()), tuple(finals), "update"))
    return StepGraph(tuple(tasks), "kfac-solve")


def _tngd_step(shape: ModelShape, c: StepCoster) -> StepGraph:
    n = shape.n_params
    r = shape.batch_size * shape.output_dim
    # the GGN factor: r backward passes (one per output of each example), as in the paper
    tasks = _forward_backward(shape, c, ("prev:program_tngd",) if c.step.overlap else ("prev:update",))
    last = tasks[-1].name
    jac_s = shape.output_dim * _backward_pass_s(shape, c)
    tasks.append(c.gpu_task("jacobian", jac_s, (last,), "curvature"))
    tasks += device_tasks("tngd", c.tngd_iteration(n, r), ("jacobian",))
    tasks.append(c.gpu_task("update", c.gpu_s(c.update()), ("readback_tngd",), "update"))
    return StepGraph(tuple(tasks), "tngd")


STEP_KINDS: Registry[Callable[[ModelShape, StepCoster], list[StepGraph]]] = Registry("step kind", WorkloadError)
"""``StepModel.method``: how a step's graph is built (each entry builds the repeating pattern)."""
STEP_KINDS.add("adam", _first_order_pattern, "forward, backward, Adam update")
STEP_KINDS.add("sgd", _first_order_pattern, "forward, backward, SGD update")
STEP_KINDS.add("kfac", _kfac_pattern, "K-FAC: curvature pass, factors, inversions or solves (GPU or device), preconditioning")
STEP_KINDS.add("tngd", _tngd_pattern, "thermodynamic NGD: gradient and GGN factor on the GPU, one device iteration")


@dataclass(frozen=True)
class ProjectedMethod:
    """A method a projection compares: its label in tables and the :class:`StepModel` fields that
    make it (the other fields are the projection's common settings)."""

    label: str
    fields: tuple[tuple[str, str], ...]

    def step(self, **common: Any) -> StepModel:
        return StepModel(**{**common, **dict(self.fields)})

    def matches(self, step: StepModel) -> bool:
        return all(getattr(step, k) == v for k, v in self.fields)


METHODS: Registry[ProjectedMethod] = Registry("projected method", WorkloadError)
"""The methods ``tcd project --steps NAME=N`` and the run projections know, by name."""
METHODS.add("adam", ProjectedMethod("Adam", (("method", "adam"),)), "Adam on the GPU")
METHODS.add("sgd", ProjectedMethod("SGD", (("method", "sgd"),)), "SGD on the GPU")
METHODS.add("kfac", ProjectedMethod("digital K-FAC", (("method", "kfac"), ("inverse_on", "gpu"))),
            "digital K-FAC: Cholesky inverses on the GPU")
METHODS.add("tkfac", ProjectedMethod("thermodynamic K-FAC", (("method", "kfac"), ("inverse_on", "analog"),
                                                             ("analog_op", "inverse"))),
            "thermodynamic K-FAC: factors inverted on the device")
METHODS.add("tkfac-solve", ProjectedMethod("thermodynamic K-FAC", (("method", "kfac"), ("inverse_on", "analog"),
                                                                   ("analog_op", "solve"))),
            "thermodynamic K-FAC: factor solves on the device every step")
METHODS.add("tngd", ProjectedMethod("thermodynamic NGD", (("method", "tngd"),)), "thermodynamic NGD")


def label_of(step: StepModel) -> str:
    """The table label of ``step``: its projected method's (:data:`METHODS`)."""
    return next(e.value.label for e in METHODS.entries() if e.value.matches(step))
