"""Whole-run projections: time (and energy) to train for a given number of steps with each
method on a described system, with the assumptions beside every number.

``steps`` come from a measured run here (steps to a target loss) or from a published reference
(``DESIGN.md`` section 4: AlgoPerf's NAdamW medians); the projection multiplies nothing by
hand: it runs the step pattern through :func:`cosim.schedule.project`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schedule import project
from .system import SystemSpec
from .shapes import ModelShape
from .step_graphs import StepModel, label_of, step_pattern


@dataclass(frozen=True)
class RunProjection:
    """A method's projected run. Times in seconds, energy in joules."""

    label: str
    n_steps: int
    total_s: float
    time_per_step_s: float
    phase_s: dict[str, float]
    utilization: dict[str, float]
    energy_j: float
    critical_phases_s: dict[str, float]
    """Critical-path time per phase over one period of the steady regime (the sample)."""
    assumptions: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """Flat dict for a CSV row: totals, per-phase times, utilization, then assumptions."""
        out: dict[str, Any] = {
            "label": self.label,
            "n_steps": self.n_steps,
            "total_s": self.total_s,
            "time_per_step_s": self.time_per_step_s,
            "energy_j": self.energy_j,
        }
        out.update({f"phase_s.{k}": v for k, v in sorted(self.phase_s.items())})
        out.update({f"utilization.{k}": v for k, v in sorted(self.utilization.items())})
        out.update({f"assume.{k}": v for k, v in self.assumptions.items()})
        return out


def project_run(shape: ModelShape, system: SystemSpec, step: StepModel, n_steps: int, label: str = "") -> RunProjection:
    """Project ``n_steps`` steps of ``step`` for ``shape`` on ``system``."""
    pattern = step_pattern(shape, system, step)
    proj = project(pattern, n_steps, system.resources())
    sample = proj.sample
    # critical path of the last full pattern repetition simulated (steady regime)
    p = len(pattern)
    last = max(0, sample.n_steps // p - 1)
    critical: dict[str, float] = {}
    for r in sample.critical_path():
        if r.step // p == last:
            critical[r.phase] = critical.get(r.phase, 0.0) + r.duration_s
    return RunProjection(
        label or label_of(step), n_steps, proj.makespan_s, proj.time_per_step_s, dict(proj.phase_s),
        proj.utilization(), proj.energy_j, critical,
        {"model": shape.name, "model.n_params": shape.n_params, "model.batch_size": shape.batch_size,
         **step.assumptions(system)},
    )


def compare(
    shape: ModelShape, system: SystemSpec, runs: dict[str, tuple[StepModel, int]]
) -> list[RunProjection]:
    """One projection per labelled ``(step model, steps)``, e.g. Adam's steps to target against
    K-FAC's (fewer, dearer) steps."""
    return [project_run(shape, system, step, n, label) for label, (step, n) in runs.items()]


REPLACED_PHASES: dict[str, tuple[str, ...]] = {"inverse": ("invert",), "solve": ("invert", "precondition")}
"""The phases of digital K-FAC that thermodynamic K-FAC hands to the device, per published
method (``StepModel.analog_op``): the inverse method replaces the inversions (the GPU still
preconditions with the inverses read back); the solve method replaces the inversions and the
preconditioning products (the device solves with the gradient's right-hand sides)."""


DEVICE_PHASES: tuple[str, ...] = ("program", "analog", "readback")
"""The phases of a step that are the device's (:func:`cosim.step_graphs.device_tasks`)."""


def device_free_s(run: RunProjection) -> float:
    """Seconds of ``run`` that are not the device's: what is left of a method that offloads to a
    device once the device takes no time (its digital floor; the phases run one after another)."""
    return sum(seconds for phase, seconds in run.phase_s.items() if phase not in DEVICE_PHASES)


@dataclass(frozen=True)
class OffloadBound:
    """How much any device could win (Amdahl): if the device's work took no time at all, the
    replaced phases of digital K-FAC would vanish and nothing else would change."""

    replaced_s: float
    """Seconds of digital K-FAC's run in the replaced phases (:data:`REPLACED_PHASES`)."""
    share: float
    """Their share of digital K-FAC's run."""
    vs_kfac: float
    """The largest speedup over digital K-FAC any device could give: ``T / (T - replaced)``."""
    vs_adam: float | None
    """The same bound over Adam's run, when given: ``T_adam / (T - replaced)``."""


def offload_bound(digital: RunProjection, analog_op: str, adam: RunProjection | None = None) -> OffloadBound:
    """The bound on thermodynamic K-FAC (method ``analog_op``) from digital K-FAC's projected run
    at the same factor and inverse intervals. The phases' busy times add up to the run because a
    K-FAC step's GPU work runs one kernel after another."""
    if analog_op not in REPLACED_PHASES:
        raise ValueError(f"analog_op must be one of {', '.join(REPLACED_PHASES)}, got {analog_op!r}")
    replaced = sum(digital.phase_s.get(phase, 0.0) for phase in REPLACED_PHASES[analog_op])
    rest = digital.total_s - replaced
    vs_kfac = digital.total_s / rest if rest > 0 else float("inf")
    vs_adam = None if adam is None else (adam.total_s / rest if rest > 0 else float("inf"))
    return OffloadBound(replaced, replaced / digital.total_s, vs_kfac, vs_adam)


def write_csv(projections: list[RunProjection], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    rows = [p.row() for p in projections]
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def steps_to_target(history: list[dict[str, Any]], target: float, metric: str = "train_loss") -> int | None:
    """First evaluated step of a training history (``digital.train``) whose ``metric`` reached
    ``target`` (at or below it for losses; at or above for accuracies), None if it never did."""
    higher_is_better = "accuracy" in metric
    for row in history:
        if metric in row:
            value = row[metric]
            if (value >= target) if higher_is_better else (value <= target):
                return int(row["step"])
    return None
