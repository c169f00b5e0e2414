"""The end-to-end demo (``tcd demo``): does a thermodynamic device make training faster?

The digits MLP (``digits-mlp``: 64-32-10, scikit-learn's digits) is trained four times, same seed,
same number of epochs: Adam, digital K-FAC (the exact ``torch.linalg`` solver), thermodynamic
K-FAC (the same K-FAC with its factor solves on the simulated device of the system) and
thermodynamic NGD (:mod:`digital.tngd` on the system's chip). Every step of every run is
co-simulated on one described system (default ``cosim.SystemSpec.default()``: an A100 and the
``published`` device): the digital methods' steps through their step graphs
(:func:`cosim.step_graphs.step_pattern`), thermodynamic K-FAC's through the device calls each
step actually made (:func:`cosim.cotrain.record_training`), TNGD's device iteration priced by
:func:`thermo.cost.estimate_tngd_iteration`. The report gives, per method, the projected time to
a training-loss target (default: the loss Adam ends at), the final test accuracy, the speedup
over Adam, and for the two thermodynamic methods the device (time constant, link bandwidth)
at which they would break even with Adam and with digital K-FAC (:func:`studies.crossing.crossing`),
or "never" with the reason.

Each method's run is one point of a resumable sweep (:func:`studies.sweep.run_sweep`): a
finished run is kept in ``demo-runs.sqlite`` (and ``demo-runs.csv``, one row per method with
its learning curve) and is not recomputed by a rerun. Writes into ``out_dir``: ``demo.csv`` (one
row per method and step: projected wall-clock time, training loss, test accuracy), ``demo.png``
(training loss against projected time; test accuracy) and ``demo.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosim.runs import OffloadBound, offload_bound, project_run
from cosim.schedule import simulate
from cosim.shapes import ModelShape
from cosim.step_graphs import StepModel, step_pattern
from cosim.system import GPU_PRESETS, SystemSpec
from digital.errors import TrainingStopped
from thermo.errors import ThermoError

from . import checks, sweep
from .breakeven import KNOBS as DEVICE_KNOBS
from .crossing import Crossing, crossing
from .noise import ADAM_LR, KFAC_SETTINGS
from .plotting import set_scale
from .projections import base_system, describe_system
from .tngd import TNGDStudyConfig

TASK = "digits-mlp"

METHODS: dict[str, str] = {
    "adam": "Adam",
    "kfac": "digital K-FAC",
    "tkfac": "thermodynamic K-FAC",
    "tngd": "TNGD",
}
"""The methods trained, by point name, with their labels (the order of the tables)."""

THERMODYNAMIC = ("tkfac", "tngd")
BASELINES = ("adam", "kfac")

_TNGD_STUDY = TNGDStudyConfig(experiment="wallclock")
TNGD_SETTINGS: dict[str, Any] = {"lr": 0.3, "damping": _TNGD_STUDY.damping,
                                 "analog_time_tau": _TNGD_STUDY.analog_time_tau, "delay_tau": 0.0, "method": "exact"}
"""TNGD: the TNGD study's damping and analog time (50 tau), no delay; its learning rate 0.01 is the
paper's for its CNN and trains this MLP slowly, so a scan of 0.03, 0.1 and 0.3 on this task chose 0.3."""

SOLVER_TARGET_REL_ERROR = 1e-2
"""Accuracy the thermodynamic K-FAC solves are planned for (the solver's default)."""

BREAK_EVEN_KNOBS = ("tau_scale", "link_scale")
"""The device knobs searched for the break-even (:data:`studies.breakeven.KNOBS`)."""

BREAK_EVEN_REL_TOL = 0.02
"""The bisection stops when its bracket's ratio is within ``1 + BREAK_EVEN_REL_TOL``."""


@dataclass(frozen=True)
class DemoConfig:
    """The demo's options (the command line's ``tcd demo``)."""

    epochs: float = 20.0
    """Training epochs of every method (a fraction trains part of one epoch)."""
    batch_size: int | None = None
    """Examples per step (default: the task's, 64)."""
    loss_target: float | None = None
    """Training loss (nats) whose first crossing times each method; None: the loss Adam ends at."""
    seed: int = 0
    """Model initialization, batch order and device noise of every run."""
    gpu: str = "A100"
    device: str = "published"
    system: str | None = None
    """A system file (``.toml``/``.yaml``) replacing ``gpu`` and ``device``."""
    knobs: tuple[tuple[str, Any], ...] = ()
    """:class:`thermo.DeviceSpec` fields changed on the system's device (``--converter-channels``...)."""
    workers: int | None = None
    out_dir: Path = field(default=Path("results/demo"))

    def __post_init__(self) -> None:
        owner = "DemoConfig"
        if self.gpu not in GPU_PRESETS:
            raise checks.StudyConfigError(f"{owner}.gpu must be a GPU preset ({', '.join(GPU_PRESETS)}), got {self.gpu!r}")
        checks.device(owner, "device", self.device)
        checks.system_file(owner, "system", self.system)
        if isinstance(self.knobs, dict):
            object.__setattr__(self, "knobs", tuple(sorted(self.knobs.items())))
        checks.store(
            self,
            epochs=checks.positive(owner, "epochs", self.epochs),
            batch_size=None if self.batch_size is None else checks.integer(owner, "batch_size", self.batch_size),
            loss_target=None if self.loss_target is None else checks.positive(owner, "loss_target", self.loss_target),
            seed=checks.integer(owner, "seed", self.seed, minimum=0),
            workers=checks.workers(owner, self.workers),
            knobs=tuple((str(k), v) for k, v in self.knobs),
        )
        try:
            system_of(self)
        except (ValueError, TypeError) as exc:  # a knob the device refuses
            raise checks.StudyConfigError(f"{owner}.knobs: {exc}") from None
        steps_of(self)  # a batch larger than the training set stops here

    @property
    def steps(self) -> int:
        """Optimizer steps of every run: ``epochs`` times the steps of one epoch, at least one."""
        return steps_of(self)


@functools.lru_cache(maxsize=16)
def system_of(cfg: DemoConfig) -> SystemSpec:
    """The co-simulated system: the file, or the presets, with the device knobs applied."""
    system = base_system(cfg.gpu, None, None, None, cfg.system, device=cfg.device)
    if cfg.knobs:
        system = system.replace(device=system.device.replace(**dict(cfg.knobs)))
    return system


@functools.lru_cache(maxsize=16)
def steps_of(cfg: DemoConfig) -> int:
    from digital.data import batches_per_epoch
    from digital.tasks import build_task

    task = build_task(TASK)
    per_epoch = batches_per_epoch(len(task.train), cfg.batch_size or task.batch_size)
    return max(1, round(cfg.epochs * per_epoch))


@functools.lru_cache(maxsize=16)
def shape_of(batch_size: int | None) -> ModelShape:
    """The MLP's layer shapes at the batch size (the model of every run)."""
    import torch

    from digital.tasks import build_task

    task = build_task(TASK)
    inputs = task.train.subset(torch.arange(batch_size or task.batch_size)).inputs
    return ModelShape.from_model(task.model, inputs, name=TASK)


# -- the runs --------------------------------------------------------------------------------------
def points(cfg: DemoConfig) -> list[dict[str, Any]]:
    """One point per method, the slowest to simulate first so that the pool finishes together."""
    return [{"method": m} for m in ("tngd", "tkfac", "adam", "kfac")]


def train_config(cfg: DemoConfig, method: str) -> Any:
    """The :class:`digital.train.TrainConfig` of ``method``: every step evaluated (the curves
    read the full training set's loss after each step)."""
    from digital.train import TrainConfig

    common = dict(task=TASK, steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed, eval_every=1,
                  checkpoint_every=0)
    kfac_options = {k: v for k, v in KFAC_SETTINGS.items() if k != "lr"}
    if method == "adam":
        return TrainConfig(optimizer="adam", lr=ADAM_LR, **common)
    if method == "kfac":
        return TrainConfig(optimizer="kfac", lr=KFAC_SETTINGS["lr"], optimizer_options=kfac_options, **common)
    if method == "tkfac":  # cosim.cotrain puts the system's device in as the hardware
        return TrainConfig(optimizer="kfac", lr=KFAC_SETTINGS["lr"], optimizer_options=kfac_options, solver="thermo",
                           solver_options={"target_rel_error": SOLVER_TARGET_REL_ERROR, "seed": cfg.seed}, **common)
    if method == "tngd":
        options = {k: v for k, v in TNGD_SETTINGS.items() if k != "lr"}
        options.update(hardware=system_of(cfg).device.chip, seed=cfg.seed)  # noise kappa: the chip's kT
        return TrainConfig(optimizer="tngd", lr=TNGD_SETTINGS["lr"], optimizer_options=options, **common)
    raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")


def projected_step_ends(shape: ModelShape, system: SystemSpec, step: StepModel, n_steps: int) -> list[float]:
    """Projected wall-clock time (s) at the end of each of ``n_steps`` steps of ``step``: its
    repeating pattern of step graphs, simulated step by step on ``system``."""
    pattern = step_pattern(shape, system, step)
    return simulate([pattern[k % len(pattern)] for k in range(n_steps)], system.resources()).step_ends_s


def _round(values: list[float], digits: int = 7) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in values]


def evaluate(cfg: DemoConfig, point: dict[str, Any]) -> dict[str, Any]:
    """Train one method and co-simulate each of its steps; the run's totals and its curve."""
    from cosim.cotrain import kfac_step_model, record_training, recorded_schedule
    from digital.train import train

    method = point["method"]
    system, shape = system_of(cfg), shape_of(cfg.batch_size)
    config = train_config(cfg, method)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if method == "tkfac":
                recorded = record_training(config, system)
                result = recorded.result
                realized = [d.extra["thermo"].realized_condition_number for c in recorded.calls for ds in c.values()
                            for d in ds if d.backend == "thermo" and d.extra.get("thermo") is not None]
                realized = [k for k in realized if k is not None and math.isfinite(k)]
                # the timing model's factor spectrum, at the conditioning the run realized (break-even search)
                step = dataclasses.replace(recorded.step, target_rel_error=SOLVER_TARGET_REL_ERROR,
                                           **({"factor_condition_number": statistics.median(realized)} if realized else {}))
                ends = recorded_schedule(recorded, shape, system).step_ends_s
                fallbacks = recorded.fallbacks
            else:
                result = train(config)
                if method == "kfac":
                    step = kfac_step_model(result, "gpu")
                elif method == "tngd":  # trained with no delay: no overlap of the next gradient
                    step = StepModel(method="tngd", analog_time_tau=TNGD_SETTINGS["analog_time_tau"], overlap=False)
                else:
                    step = StepModel(method="adam")
                ends = projected_step_ends(shape, system, step, config.steps)
                fallbacks = 0
        except (TrainingStopped, ThermoError) as err:  # a diverged run is a result of the demo
            return {"steps": config.steps, "status": f"failed: {type(err).__name__}: {err}", "final_train_loss": math.inf,
                    "final_test_accuracy": math.nan, "projected_s": math.nan, "step_s": math.nan, "host_s":
                    time.perf_counter() - start, "analog_time_s": 0.0, "fallbacks": 0, "warnings": len(caught),
                    "step_model": "{}", "curve": "{}"}
    history = result.history
    curve = {"time_s": _round(ends), "train_loss": _round([float(r["train_loss"]) for r in history]),
             "test_accuracy": _round([float(r["test_accuracy"]) for r in history])}
    return {
        "steps": len(history), "status": "ok", "final_train_loss": float(result.final["train_loss"]),
        "final_test_accuracy": float(result.final["test_accuracy"]), "projected_s": ends[-1],
        "step_s": ends[-1] / len(ends), "host_s": time.perf_counter() - start,
        "analog_time_s": sum(float(r.get("analog_time_s", 0.0)) for r in history), "fallbacks": fallbacks,
        "warnings": len(caught), "step_model": json.dumps(dataclasses.asdict(step)), "curve": json.dumps(curve),
    }


# -- the analysis ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodOutcome:
    """One method's run, projected (seconds), against the loss target."""

    method: str
    steps: int
    status: str
    final_train_loss: float
    final_test_accuracy: float
    total_s: float
    step_s: float
    steps_to_target: int | None
    """First step whose training loss is at or below the target (None: never in the run)."""
    time_to_target_s: float | None
    speedup_to_target: float | None
    """Adam's time to the target over this method's (None when either misses it)."""
    speedup_per_step: float
    """Adam's mean projected time per step over this method's."""
    host_s: float
    analog_time_s: float
    fallbacks: int

    @property
    def label(self) -> str:
        return METHODS[self.method]


@dataclass(frozen=True)
class BreakEven:
    """The device knob value at which ``method`` reaches the time to target of ``baseline``."""

    method: str
    baseline: str
    knob: str
    result: Crossing | None
    why_not: str = ""
    """Why there is no search (a run that misses the target)."""

    def text(self) -> str:
        """``tau x0.31``, ``already at the base device``, ``never (bound: ...)``, or why not."""
        if self.result is None:
            return f"- ({self.why_not})"
        name = {"tau_scale": "tau", "link_scale": "link bandwidth"}[self.knob]
        if not self.result.reachable:
            return f"never ({self.result.limit})"
        if self.result.value == 1.0:
            return "already at the base device"
        return f"{name} x{self.result.value:.3g}"


@dataclass(frozen=True)
class DemoResults:
    target: float
    target_source: str
    methods: dict[str, MethodOutcome]
    breakeven: list[BreakEven]
    curves: dict[str, dict[str, list[float]]]
    bound: OffloadBound | None
    """What any device could win for thermodynamic K-FAC's run (Amdahl, over its steps)."""
    digital_rest_s: float | None
    """Digital K-FAC projected over thermodynamic K-FAC's steps, less the phases the device replaces."""
    step_models: dict[str, dict[str, Any]]

    def breakeven_of(self, method: str, baseline: str, knob: str = "tau_scale") -> BreakEven | None:
        return next((b for b in self.breakeven if (b.method, b.baseline, b.knob) == (method, baseline, knob)), None)


def analyse(cfg: DemoConfig, rows: list[dict[str, Any]]) -> DemoResults:
    """Times to the target, speedups, the Amdahl bound and the break-even searches, from the runs."""
    by_method = {str(r["method"]): r for r in rows}
    curves = {m: json.loads(r["curve"]) for m, r in by_method.items()}
    if cfg.loss_target is not None:
        target, source = cfg.loss_target, "given (--loss-target)"
    elif by_method["adam"]["status"] == "ok":  # as the curve holds it: Adam reaches it at its last step
        target, source = curves["adam"]["train_loss"][-1], "the training loss Adam ends at"
    else:
        raise sweep.SweepError(f"Adam's run failed ({by_method['adam']['status']}): give a --loss-target")
    reached: dict[str, tuple[int, float] | None] = {}
    for m, curve in curves.items():
        first = next((k for k, loss in enumerate(curve.get("train_loss", [])) if loss <= target), None)
        reached[m] = None if first is None else (first + 1, curve["time_s"][first])
    adam = by_method["adam"]
    methods = {}
    for m in METHODS:
        r, hit = by_method[m], reached[m]
        adam_hit = reached["adam"]
        methods[m] = MethodOutcome(
            m, int(r["steps"]), str(r["status"]), float(r["final_train_loss"]), float(r["final_test_accuracy"]),
            float(r["projected_s"]), float(r["step_s"]), None if hit is None else hit[0],
            None if hit is None else hit[1],
            None if hit is None or adam_hit is None else adam_hit[1] / hit[1],
            float(adam["step_s"]) / float(r["step_s"]), float(r["host_s"]), float(r["analog_time_s"]),
            int(r["fallbacks"]))
    step_models = {m: json.loads(r["step_model"]) for m, r in by_method.items()}
    bound, rest = None, None
    if all(by_method[m]["status"] == "ok" for m in ("kfac", "tkfac")):
        digital = project_run(shape_of(cfg.batch_size), system_of(cfg), StepModel(**step_models["kfac"]),
                              methods["tkfac"].steps, "digital K-FAC")
        bound = offload_bound(digital, step_models["tkfac"]["analog_op"])
        rest = digital.total_s - bound.replaced_s
    searches = [break_even(cfg, methods, curves, step_models, m, b, knob)
                for m in THERMODYNAMIC for b in BASELINES for knob in BREAK_EVEN_KNOBS]
    return DemoResults(target, source, methods, searches, curves, bound, rest, step_models)


def _scaled_time_s(cfg: DemoConfig, method: str, step_models: dict[str, dict[str, Any]], recorded_s: float,
                   n_steps: int, knob: str, value: float) -> tuple[float, str]:
    """Projected time of ``n_steps`` of ``method`` with the device knob scaled by ``value``, and
    the busiest resource. TNGD: its step graphs on the scaled system. Thermodynamic K-FAC: its
    recorded time scaled by the ratio the timing model gives between the scaled and the base
    device (the recorded calls keep their own spectra, which the model does not have)."""
    step = StepModel(**step_models[method])
    scaled_s, busiest = _projected(cfg, step, n_steps, knob, value)
    if method == "tngd":
        return scaled_s, busiest
    return recorded_s * scaled_s / _projected(cfg, step, n_steps, knob, 1.0)[0], busiest


@functools.lru_cache(maxsize=256)
def _projected(cfg: DemoConfig, step: StepModel, n_steps: int, knob: str, value: float) -> tuple[float, str]:
    """Projected seconds of ``n_steps`` of ``step`` on the system with ``knob`` scaled by ``value``,
    and the busiest resource (cached: every evaluation of a search divides by the base device's)."""
    run = project_run(shape_of(cfg.batch_size), DEVICE_KNOBS[knob].apply(system_of(cfg), value), step, n_steps)
    return run.total_s, max(run.utilization, key=run.utilization.get)


def break_even(cfg: DemoConfig, methods: dict[str, MethodOutcome], curves: dict[str, dict[str, list[float]]],
               step_models: dict[str, dict[str, Any]], method: str, baseline: str, knob: str) -> BreakEven:
    """The value of ``knob`` (a scale of the base device's figure) at which ``method`` reaches the
    loss target as soon as ``baseline`` does, by bisection from the base device to the knob's most
    favourable value (:data:`studies.breakeven.KNOBS`); "never" when thermodynamic K-FAC's Amdahl
    bound is below 1x or the speedup saturates first."""
    m, b = methods[method], methods[baseline]
    if m.time_to_target_s is None or b.time_to_target_s is None:
        missed = m if m.time_to_target_s is None else b
        return BreakEven(method, baseline, knob, None, f"{missed.label} does not reach the loss target")
    n = m.steps_to_target
    assert n is not None
    bound = math.inf
    if method == "tkfac" and step_models.get("kfac"):
        digital = project_run(shape_of(cfg.batch_size), system_of(cfg), StepModel(**step_models["kfac"]), n)
        rest = digital.total_s - offload_bound(digital, step_models["tkfac"]["analog_op"]).replaced_s
        bound = b.time_to_target_s / rest if rest > 0 else math.inf

    def speedup(value: float) -> tuple[float, str]:
        seconds, busiest = _scaled_time_s(cfg, method, step_models, m.time_to_target_s, n, knob, value)
        return b.time_to_target_s / seconds, busiest

    found = crossing(speedup, 1.0, 1.0, DEVICE_KNOBS[knob].best, bound=bound, rel_tol=BREAK_EVEN_REL_TOL)
    return BreakEven(method, baseline, knob, found)


# -- outputs ---------------------------------------------------------------------------------------
CSV_COLUMNS = ("method", "step", "projected_time_s", "train_loss", "test_accuracy")


def write_csv(results: DemoResults, path: Path) -> Path:
    """``demo.csv``: one row per method and step (the last step's test accuracy is the final one)."""
    import csv

    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for m in METHODS:
            c = results.curves[m]
            for k, (t, loss, acc) in enumerate(zip(c.get("time_s", []), c.get("train_loss", []),
                                                   c.get("test_accuracy", [])), start=1):
                writer.writerow((m, k, f"{t:.7g}", f"{loss:.7g}", f"{acc:.7g}"))
    return path


def plot(cfg: DemoConfig, results: DemoResults, path: Path) -> Any:
    """Training loss (first panel) and test accuracy against projected wall-clock time, log time
    axis, one curve per method; the loss target dashed. Returns the (closed) Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    times, losses = [], []
    for m, label in METHODS.items():
        c = results.curves[m]
        if not c.get("time_s"):
            continue
        line = loss_ax.plot(c["time_s"], c["train_loss"], label=label, lw=1.4)
        acc_ax.plot(c["time_s"], c["test_accuracy"], label=label, lw=1.4, color=line[0].get_color())
        times += c["time_s"]
        losses += c["train_loss"]
    loss_ax.axhline(results.target, ls="--", color="grey", lw=1, label=f"loss target {results.target:.4g}")
    for ax in (loss_ax, acc_ax):
        ax.set_xscale("log")
        ax.set_xlabel("projected wall-clock time (s)")
        ax.grid(True, which="both", alpha=0.3)
    set_scale(loss_ax, "y", [*losses, results.target])
    loss_ax.set_ylabel("training loss, full training set (nats)")
    acc_ax.set_ylabel("test accuracy (fraction)")
    loss_ax.set_title("training loss against projected time", fontsize=9)
    acc_ax.set_title("test accuracy against projected time", fontsize=9)
    loss_ax.legend(fontsize=7)
    fig.suptitle(f"{TASK}, {cfg.steps} steps per method, on {describe_system(system_of(cfg))}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def _seconds(value: float | None) -> str:
    if value is None:
        return "not reached"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if value >= scale:
            return f"{value / scale:.4g} {unit}"
    return f"{value * 1e9:.4g} ns"


def _settings(options: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in options.items())


def _ratio(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3g}x"


TABLE_HEADER = ("method", "steps to target", "time to target", "final test accuracy", "speedup over Adam (to target)",
                "speedup over Adam (per step)", "break-even with Adam (device tau)",
                "break-even with digital K-FAC (device tau)")
"""The columns of the report's first table (and of what ``tcd demo`` prints)."""


def table_rows(results: DemoResults) -> list[tuple[str, ...]]:
    """The first table: one row per method."""
    rows = []
    for m, o in results.methods.items():
        accuracy = f"{o.final_test_accuracy:.4f}" if o.status == "ok" else o.status
        cells = [o.label, "-" if o.steps_to_target is None else str(o.steps_to_target), _seconds(o.time_to_target_s),
                 accuracy, _ratio(o.speedup_to_target), _ratio(o.speedup_per_step)]
        for baseline in BASELINES:
            found = results.breakeven_of(m, baseline)
            cells.append("-" if found is None else found.text())
        rows.append(tuple(cells))
    return rows


def table_text(results: DemoResults) -> list[str]:
    """The first table as aligned plain text (what ``tcd demo`` prints)."""
    rows = [TABLE_HEADER, *table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEADER))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def report(cfg: DemoConfig, results: DemoResults, path: Path) -> None:
    system, shape = system_of(cfg), shape_of(cfg.batch_size)
    tkfac = results.methods["tkfac"]
    lines = [
        f"# End-to-end demo: Adam, digital K-FAC, thermodynamic K-FAC and TNGD on {TASK}", "",
        f"Loss target: **{results.target:.4g} nats** of training loss on the full training set ({results.target_source}). "
        "Times are projected wall-clock times of the run on the system below; speedups over Adam are its time over "
        "the method's (> 1x is faster); a break-even device is the base device's time constant scaled by the factor "
        "shown, at which the method reaches the target as soon as the baseline does.", "",
        "| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER),
        *("| " + " | ".join(r) + " |" for r in table_rows(results)), "",
        f"![training loss and test accuracy against projected wall-clock time]({path.with_suffix('.png').name})", "",
        "## Break-even devices", "",
        "| method | baseline | device time constant (x base tau) | link bandwidth (x base) |", "|---|---|---|---|",
    ]
    for m in THERMODYNAMIC:
        for b in BASELINES:
            cells = [results.breakeven_of(m, b, knob) for knob in BREAK_EVEN_KNOBS]
            lines.append(f"| {METHODS[m]} | {METHODS[b]} | " + " | ".join(c.text() if c else "-" for c in cells) + " |")
    lines += ["", "Searched by bisection (`studies.crossing.crossing`, bracket within "
              f"{100 * BREAK_EVEN_REL_TOL:g}%) from the base device to tau x{DEVICE_KNOBS['tau_scale'].best:g} and the "
              f"link x{DEVICE_KNOBS['link_scale'].best:g}; every other figure of the system stays."]
    if results.bound is not None and results.digital_rest_s is not None:
        lines += ["", f"Amdahl bound of thermodynamic K-FAC: the device replaces {100 * results.bound.share:.3g}% of "
                  f"digital K-FAC's projected run ({_seconds(results.bound.replaced_s)} of "
                  f"{_seconds(results.bound.replaced_s / results.bound.share)} over {tkfac.steps} steps), so no device "
                  f"beats {_ratio(results.bound.vs_kfac)} over digital K-FAC at the same steps; the recorded run takes "
                  f"{_seconds(tkfac.total_s)} against the bound's {_seconds(results.digital_rest_s)}."]
    lines += [
        "", "## Assumptions", "",
        f"- System: {describe_system(system)}.",
        f"- Model: {TASK} ({shape.n_params:,} parameters), batch {shape.batch_size}, {cfg.epochs:g} epochs = "
        f"{cfg.steps} steps per method, seed {cfg.seed} for every run (initialization, batch order, device noise).",
        f"- Adam: lr {ADAM_LR:g}. K-FAC (both): {_settings(KFAC_SETTINGS)} (the noise study's settings); digital K-FAC solves "
        "with the exact torch.linalg solver and is projected at the same factor and inverse intervals "
        f"({results.step_models['kfac'].get('inv_update_steps', '-')} steps per inversion, on the GPU); thermodynamic "
        f"K-FAC solves on the simulated device of the system, planned for a relative error {SOLVER_TARGET_REL_ERROR:g}.",
        f"- TNGD: {_settings(TNGD_SETTINGS)} on the system's chip (its noise kappa is the chip's kT), projected without overlap of "
        "the next gradient (trained with no delay).",
        "- Measured here: every training run (the training loss on the full training set and the test accuracy after "
        "each step), and thermodynamic K-FAC's device calls (each call's simulated analog time and the timing model's "
        "programming, input, readout and transfer times for the matrix the chip realized).",
        f"- Modelled: every GPU phase by the roofline of the {system.gpu.name} (cosim.roofline), the device phases by "
        "thermo.cost (TNGD's iteration by thermo.cost.estimate_tngd_iteration), and their overlap by the "
        "discrete-event schedule of the step graphs (cosim.schedule). Host time is not wall-clock time: the runs took "
        + ", ".join(f"{o.label} {o.host_s:.3g} s" for o in results.methods.values()) + " on this machine.",
        "- Break-even: TNGD re-projected on the scaled device; thermodynamic K-FAC's recorded time scaled by the ratio "
        "the timing model gives between the scaled and the base device (its factor spectrum assumed geometric at the "
        f"median condition number the run realized, "
        f"{results.step_models['tkfac'].get('factor_condition_number', math.nan):.3g}).",
        f"- Thermodynamic K-FAC: {_seconds(tkfac.analog_time_s)} of simulated analog time, {tkfac.fallbacks} solver "
        "fallbacks to the exact backend.",
    ]
    path.write_text("\n".join(lines) + "\n")


def check(results: DemoResults) -> None:
    """Warn about runs that cannot be trusted: failures and fallbacks to the exact solver."""
    for o in results.methods.values():
        if o.status != "ok":
            warnings.warn(f"{o.label}: {o.status}", stacklevel=2)
    if results.methods["tkfac"].fallbacks:
        warnings.warn(f"thermodynamic K-FAC fell back to the exact solver {results.methods['tkfac'].fallbacks} time(s): "
                      "those solves ran on the GPU", stacklevel=2)


@dataclass(frozen=True)
class DemoOutputs:
    """Where a demo run wrote, and what it found."""

    csv: Path
    png: Path
    report: Path
    runs: Path
    """The sweep's CSV: one row per method with its learning curve (the store beside it)."""
    results: DemoResults


def run(cfg: DemoConfig, progress: bool = True) -> DemoOutputs:
    """Train and co-simulate the methods not yet done, then analyse and write the outputs."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    runs_csv = cfg.out_dir / "demo-runs.csv"
    pts = points(cfg)
    workers = cfg.workers
    if workers == 1:  # runs here: the MLP's tensors are tiny, one thread is the fastest
        sweep.pin_threads(1)
    rows = sweep.run_sweep(functools.partial(evaluate, cfg), pts, runs_csv, workers=workers, progress=progress,
                           description="demo runs",
                           context=sweep.context_of(cfg, exclude=("loss_target", "workers", "out_dir")))
    results = analyse(cfg, rows)
    out = DemoOutputs(write_csv(results, cfg.out_dir / "demo.csv"), cfg.out_dir / "demo.png",
                      cfg.out_dir / "demo.md", runs_csv, results)
    plot(cfg, results, out.png)
    report(cfg, results, out.report)
    check(results)
    return out

