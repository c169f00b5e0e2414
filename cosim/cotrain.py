"""Co-simulated training: train for real through the simulated device, then project the run's
wall-clock time on a described system from what each step actually asked of the device.

:func:`cosimulate_training` trains a K-FAC run whose solver is the thermo simulator (``digital``;
the device is the system's own hardware), records every solver call of every step (its
simulated analog time and the timing model's programming, input, readout and transfer times for
the realized matrix), and turns each step into a task graph: the digital phases from the
roofline model of the system's GPU, the device jobs with the recorded times on the link and the
chips. The same configuration is trained with the exact backend, whose run is projected as
digital K-FAC on the same GPU. The report puts accuracy and projected time side by side with the
assumptions. Its two parts serve other callers too: :func:`record_training` (the recorded run)
and :func:`recorded_schedule` (its steps simulated on a system).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from digital.solvers import SolverDiagnostics
from digital.train import TrainConfig, TrainResult, train

from .roofline import cholesky_inverse
from .runs import RunProjection, project_run
from .schedule import Schedule, StepGraph, Task, simulate
from .system import SystemSpec
from .shapes import LayerShape, ModelShape
from .step_graphs import StepCoster, StepModel, _gradient_and_curvature, _prefixed, device_tasks

StepCalls = dict[str, list[SolverDiagnostics]]
"""One step's solver calls: layer name -> diagnostics in call order."""


@dataclass(frozen=True)
class CoSimReport:
    """Accuracy and projected time of the thermodynamic run and its exact-backend twin."""

    config: TrainConfig
    system: SystemSpec
    thermo_final: dict[str, float]
    exact_final: dict[str, float]
    thermo_schedule: Schedule
    """The recorded steps, simulated on the described system."""
    exact_projection: RunProjection
    analog_time_s: float
    """Simulated analog time summed over the run."""
    fallbacks: int
    assumptions: dict[str, Any] = field(default_factory=dict)

    @property
    def thermo_total_s(self) -> float:
        return self.thermo_schedule.makespan_s

    @property
    def speedup(self) -> float:
        """Projected time of the exact (digital K-FAC) run over the thermodynamic one."""
        return self.exact_projection.total_s / self.thermo_total_s

    def table(self) -> str:
        rows = [
            ("", "thermodynamic K-FAC", "digital K-FAC"),
            ("final train loss", f"{self.thermo_final['train_loss']:.4g}", f"{self.exact_final['train_loss']:.4g}"),
            ("test accuracy", f"{self.thermo_final['test_accuracy']:.4f}", f"{self.exact_final['test_accuracy']:.4f}"),
            ("projected time per step", f"{self.thermo_schedule.time_per_step_s * 1e3:.4g} ms",
             f"{self.exact_projection.time_per_step_s * 1e3:.4g} ms"),
            ("projected run", f"{self.thermo_total_s:.4g} s", f"{self.exact_projection.total_s:.4g} s"),
        ]
        width = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in rows]
        lines.append(f"speedup of the thermodynamic run: {self.speedup:.3g}x; analog time {self.analog_time_s:.4g} s; "
                     f"solver fallbacks {self.fallbacks}")
        return "\n".join(lines)


@dataclass
class RecordedRun:
    """A K-FAC run trained through the simulated device, with what each step asked of it."""

    result: TrainResult
    calls: list[StepCalls]
    """Per step: every solver call, by layer, in call order."""
    factor_steps: list[bool]
    """Per step: whether it updated the Kronecker factors."""
    step: StepModel
    """The run's step model (device solves or inversions at the optimizer's intervals)."""

    @property
    def analog_time_s(self) -> float:
        """Simulated analog time summed over the run (s)."""
        return sum(d.analog_time_s for c in self.calls for ds in c.values() for d in ds)

    @property
    def fallbacks(self) -> int:
        """Calls that fell back to the exact backend."""
        return sum(1 for c in self.calls for ds in c.values() for d in ds if d.backend != "thermo")


def record_training(config: TrainConfig, system: SystemSpec, progress: bool = False) -> RecordedRun:
    """Train ``config`` (a K-FAC configuration) with its solver replaced by the thermo simulator
    of ``system``'s device, recording every step's solver calls."""
    if config.optimizer != "kfac":  # TrainConfig keeps the registered spelling
        raise ValueError(f"co-simulated training covers K-FAC runs, got optimizer {config.optimizer!r}")
    options = dict(config.solver_options)
    options["hardware"] = system.device
    thermo_config = dataclasses.replace(config, solver="thermo", solver_options=options)
    calls: list[StepCalls] = []
    factor_steps: list[bool] = []

    def observe(step: int, optimizer: torch.optim.Optimizer) -> None:
        calls.append({name: list(ds) for name, ds in optimizer.last_diagnostics.items()})
        factor_steps.append(bool(optimizer.last_stats.get("factor_update", True)))

    run = train(thermo_config, progress=progress, observer=observe)
    return RecordedRun(run, calls, factor_steps, kfac_step_model(run, "analog"))


def kfac_step_model(run: TrainResult, inverse_on: Literal["gpu", "analog"], **fields: Any) -> StepModel:
    """The step model of a trained K-FAC run: its optimizer's method (solve or inverse), factor
    and inverse intervals, Fisher type and precision, with the inversions or solves on the GPU or
    the device (``inverse_on``); ``fields``: other :class:`StepModel` fields."""
    kfac = run.optimizer.config
    return StepModel(method="kfac", inverse_on=inverse_on, analog_op=kfac.mode, inv_update_steps=kfac.inv_update_steps,
                     factor_update_steps=kfac.factor_update_steps, fisher_type=kfac.fisher_type,
                     precision=run.config.dtype, **fields)


def recorded_schedule(recorded: RecordedRun, shape: ModelShape, system: SystemSpec) -> Schedule:
    """The recorded steps as task graphs (:func:`_recorded_step`), simulated on ``system``."""
    coster = StepCoster(shape, system, recorded.step)
    mode = recorded.step.analog_op
    graphs = [_recorded_step(shape, coster, step_calls, mode, f)
              for step_calls, f in zip(recorded.calls, recorded.factor_steps)]
    return simulate(graphs, system.resources())


def cosimulate_training(config: TrainConfig, system: SystemSpec, progress: bool = False) -> CoSimReport:
    """Train ``config`` (a K-FAC configuration; its solver is replaced by the thermo simulator
    of ``system``'s hardware) and its exact-backend twin; project both on ``system``."""
    recorded = record_training(config, system, progress)
    thermo_run = recorded.result
    exact_run = train(dataclasses.replace(config, solver="exact", solver_options={}), progress=progress)
    shape = shape_of(thermo_run, config)
    schedule = recorded_schedule(recorded, shape, system)
    exact_step = dataclasses.replace(recorded.step, inverse_on="gpu")
    exact_projection = project_run(shape, system, exact_step, config.steps, "digital K-FAC")
    return CoSimReport(
        thermo_run.config, system, thermo_run.final, exact_run.final, schedule, exact_projection,
        recorded.analog_time_s, recorded.fallbacks,
        {"model": config.task, "model.n_params": shape.n_params, **recorded.step.assumptions(system)},
    )


def shape_of(run: TrainResult, config: TrainConfig) -> ModelShape:
    """The layer shapes of a trained run's model at its batch size (one batch of its task)."""
    from digital.tasks import build_task

    task = build_task(config.task, seed=config.seed)
    batch = config.batch_size or task.batch_size
    inputs = task.train.subset(torch.arange(batch)).inputs
    return ModelShape.from_model(run.model, inputs, name=config.task)


def _recorded_step(
    shape: ModelShape, c: StepCoster, step_calls: StepCalls, mode: str, update_factors: bool = True
) -> StepGraph:
    """One recorded K-FAC step: digital phases from the roofline, every device call with its
    recorded times (solves of a layer in sequence, inversions of a layer side by side)."""
    tasks, last = _gradient_and_curvature(shape, c, update_factors)
    finals = []
    for layer in shape.layers:
        factors = _prefixed("factors", layer)
        tasks.append(c.gpu_task(factors, c.gpu_s(c.factors(layer)) if update_factors else 0.0, (last,), "factors"))
        done: list[str] = []
        prev = factors
        for i, diag in enumerate(step_calls.get(layer.name, [])):
            key = f"{i}[{layer.name}]"
            deps = (prev,) if mode == "solve" else (factors,)
            job = _call_tasks(c, layer, diag, key, deps)
            tasks += job
            prev = job[-1].name
            done.append(prev)
        if mode == "inverse":
            name = _prefixed("precondition", layer)
            tasks.append(c.gpu_task(name, c.gpu_s(c.precondition(layer)), (factors, *done), "precondition"))
            finals.append(name)
        else:
            finals.append(prev)
    tasks.append(c.gpu_task("update", c.gpu_s(c.update()), tuple(finals), "update"))
    return StepGraph(tuple(tasks), "recorded")


def _call_tasks(c: StepCoster, layer: LayerShape, diag: SolverDiagnostics, key: str, deps: tuple[str, ...]) -> list[Task]:
    thermo_diag = diag.extra.get("thermo")
    if diag.backend != "thermo" or thermo_diag is None or thermo_diag.device_time is None:
        # a fallback to the exact backend ran on the GPU
        d = max(layer.dim_a, layer.dim_g)
        return [c.gpu_task(f"fallback_{key}", c.gpu_s(cholesky_inverse(d, precision=c.step.precision)), deps, "fallback")]
    # the call's own priced phases, with the simulated analog time in place of the planned one
    return device_tasks(key, thermo_diag.device_time, deps, analog_s=diag.analog_time_s)
