"""Studies: the published thermodynamic-NGD experiments (Donatella et al. 2024), reproduced on
scikit-learn's digits with a small CNN (one Conv2d and two Linear layers, batch 64).

One study per experiment (``EXPERIMENTS``), each over seeds with 95% confidence intervals,
writing ``tngd-<experiment>.csv`` (every run, with its learning curve), a PNG and a report that
states the published outcome beside ours and whether they agree:

- ``wallclock``: loss and accuracy (train and test) against estimated wall-clock time, Adam
  against TNGD (t = 50 tau); the time per step of each comes from the co-simulation of the
  digits CNN on an A100, the 50 Gb/s link and the published device (``cosim``);
- ``analog-time``: TNGD at t = 5, 10, 20, 50 tau against exact NGD (Woodbury);
- ``delay``: t_d = 0, 0.2 tau and tau at t = 5 tau;
- ``noise``: kappa_0 = 0.1, 0.01, 0.001 at t = tau;
- ``bits``: input DAC and readout ADC bit widths (both the same), t = 50 tau;
- ``runtime``: time per iteration against the parameter count N at fixed d_z = 10 (the digits
  MLP's hidden width varies) for dense NGD, NGD-CG and NGD-Woodbury (measured here) and TNGD
  (its digital part measured, its analog part from the co-simulation's timing model), with
  fitted exponents beside the paper's Table 1.

TNGD runs on the exact low-rank device (``digital.tngd``, ``method="exact"``): each step costs
one eigendecomposition of the 640 x 640 Gram and a few JVP/VJP passes, where the paper ran 500
Euler-Maruyama steps of GGN-vector products.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cosim.roofline import measure_stable
from cosim.runs import project_run
from cosim.shapes import ModelShape
from cosim.step_graphs import StepModel, step_pattern
from digital.curvature import batch_loss
from digital.errors import TrainingStopped
from digital.optimizers import make_optimizer
from digital.tasks import build_task
from digital.train import TrainConfig, train
from digital.train import evaluate as evaluate_model
from thermo import preset

from . import checks, sweep
from .intervals import mean_ci
from .options import DEVICE_HELP, HARDWARE_HELP, SYSTEM_HELP, add_sweep_arguments, given, positive_int, sweep_options
from .plotting import set_scale
from .projections import base_system, describe_system
from .protocol import Study

EXPERIMENTS: dict[str, str] = {
    "wallclock": "TNGD (eta 0.01, lambda 0.01, t = 50 tau, t_d = 0) beats Adam (eta 1e-3) in loss against "
                 "estimated wall-clock time, and generalises better.",
    "analog-time": "Loss per iteration improves with t and approaches exact NGD near t = 50 tau.",
    "delay": "At t = 5 tau, t_d = 0.2 tau and t_d = tau improve on t_d = 0.",
    "noise": "At t = tau, noise below kappa_0 = 0.01 has no visible effect.",
    "bits": "No figure in PAPER.md: the paper's timing model assumes 16-bit DAC/ADC precision.",
    "runtime": "NGD grows as N^3 (O(N^3 + b d_z N^2)); NGD-CG, NGD-Woodbury and TNGD grow linearly in N; "
               "TNGD about 2x Adam's time per iteration (A100).",
}
"""The published outcome of each experiment (PAPER.md section 1)."""

def study_name(experiment: str) -> str:
    """``tcd study tngd-<experiment>``: the study of one experiment, the stem of its files."""
    return f"tngd-{experiment}"


TABLE1_EXPONENTS = {"ngd-dense": 3.0, "ngd-cg": 1.0, "ngd-woodbury": 1.0, "tngd": 1.0}

RUNTIME_SPREAD = 0.25
"""Largest (p90 - p10) / median of a runtime point's repeated iterations that the report trusts."""


@dataclass(frozen=True)
class TNGDStudyConfig:
    experiment: str
    task: str = "digits-cnn"
    epochs: int = 10
    seeds: int = 3
    lr: float = 0.01
    """TNGD's learning rate (the paper's eta)."""
    damping: float = 0.01
    adam_lr: float = 1e-3
    adam_max_epochs: int = 300
    """wallclock: Adam trains as long as TNGD in projected time, at most this many epochs."""
    kappa: float = 1e-6
    """Noise of the device outside the noise sweep (the hardware's kT, of order 1e-6)."""
    analog_time_tau: float = 50.0
    analog_times: tuple[float, ...] = (5.0, 10.0, 20.0, 50.0)
    delays: tuple[float, ...] = (0.0, 0.2, 1.0)
    delay_time_tau: float = 5.0
    kappas: tuple[float, ...] = (0.1, 0.01, 0.001)
    noise_time_tau: float = 1.0
    bits: tuple[int, ...] = (4, 6, 8, 12, 16)
    widths: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    """runtime: hidden widths of the digits MLP (N = 75 w + 10)."""
    dense_max_n: int = 5000
    """runtime: dense NGD (an N x N solve) only up to this N."""
    runtime_batch: int = 32
    cg_iterations: int = 200
    runtime_repeats: int = 3
    hardware: str = "ideal"
    """The device TNGD trains on (a preset or a hardware file); its ``kT`` is replaced by ``kappa``
    and the bits study sets its input DAC and ADC."""
    gpu: str = "A100"
    device: str = "paper-2024-tngd"
    """The device of the co-simulated wall-clock and of the runtime's analog part: by default the
    TNGD paper's own procedure and constants (``thermo.device``), so the comparison with its
    estimate is like for like."""
    system: str | None = None
    """A system file (``.toml``/``.yaml``) for the co-simulated wall-clock, replacing ``gpu`` and
    ``device``."""
    workers: int | None = None
    scheduler: str | None = None
    out_dir: Path = field(default=Path("results/tngd"))

    def __post_init__(self) -> None:
        if self.experiment not in EXPERIMENTS:
            raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got {self.experiment!r}")
        owner = "TNGDStudyConfig"
        object.__setattr__(self, "task", checks.task(owner, "task", self.task))
        checks.hardware(owner, "hardware", self.hardware)
        checks.device(owner, "device", self.device)
        checks.system_file(owner, "system", self.system)
        times = dict(analog_time_tau=self.analog_time_tau, delay_time_tau=self.delay_time_tau,
                     noise_time_tau=self.noise_time_tau)
        checks.store(
            self,
            epochs=checks.integer(owner, "epochs", self.epochs),
            seeds=checks.integer(owner, "seeds", self.seeds),
            lr=checks.positive(owner, "lr", self.lr),
            damping=checks.positive(owner, "damping", self.damping),
            adam_lr=checks.positive(owner, "adam_lr", self.adam_lr),
            adam_max_epochs=checks.integer(owner, "adam_max_epochs", self.adam_max_epochs),
            kappa=checks.real(owner, "kappa", self.kappa, low=0.0),
            **{name: checks.real(owner, name, value, low=0.0) for name, value in times.items()},
            analog_times=checks.reals(owner, "analog_times", self.analog_times, low=0.0),
            delays=checks.reals(owner, "delays", self.delays, low=0.0),
            kappas=checks.reals(owner, "kappas", self.kappas, low=0.0),
            bits=checks.integers(owner, "bits", self.bits, minimum=2),
            widths=checks.integers(owner, "widths", self.widths),
            dense_max_n=checks.integer(owner, "dense_max_n", self.dense_max_n),
            runtime_batch=checks.integer(owner, "runtime_batch", self.runtime_batch),
            cg_iterations=checks.integer(owner, "cg_iterations", self.cg_iterations),
            runtime_repeats=checks.integer(owner, "runtime_repeats", self.runtime_repeats),
            workers=checks.workers(owner, self.workers),
        )

    @classmethod
    def full(cls, experiment: str, **overrides: Any) -> TNGDStudyConfig:
        return cls(**{"experiment": experiment, "epochs": 20, "seeds": 5,
                      "widths": (8, 16, 32, 64, 128, 256, 512, 1024), **overrides})

    @property
    def stem(self) -> str:
        return study_name(self.experiment)


# -- points ----------------------------------------------------------------------------------------
def points(cfg: TNGDStudyConfig) -> list[dict[str, Any]]:
    """Every run of the experiment: ``variant`` (adam, ngd, tngd), ``value`` (the swept quantity)
    and ``seed``; the runtime experiment has one point per (optimizer, width)."""
    if cfg.experiment == "runtime":
        out = [{"variant": v, "value": float(w), "seed": 0} for w in cfg.widths
               for v in ("adam", "ngd-dense", "ngd-cg", "ngd-woodbury", "tngd")]
        return [p for p in out if not (p["variant"] == "ngd-dense" and _mlp_params(int(p["value"])) > cfg.dense_max_n)]
    sweeps = {
        "wallclock": [("adam", 0.0), ("tngd", cfg.analog_time_tau)],
        "analog-time": [("ngd", 0.0), *(("tngd", t) for t in cfg.analog_times)],
        "delay": [("tngd", d) for d in cfg.delays],
        "noise": [("tngd", k) for k in cfg.kappas],
        "bits": [("tngd", 0.0), *(("tngd", float(b)) for b in cfg.bits)],  # 0: ideal converters
    }[cfg.experiment]
    return [{"variant": v, "value": float(x), "seed": s} for s in range(cfg.seeds) for v, x in sweeps]


def _mlp_params(width: int, d_in: int = 64, d_out: int = 10) -> int:
    return d_in * width + width + width * d_out + d_out


def _tngd_options(cfg: TNGDStudyConfig, value: float) -> dict[str, Any]:
    t, delay, kappa, hw = cfg.analog_time_tau, 0.0, cfg.kappa, preset(cfg.hardware)
    if cfg.experiment == "analog-time":
        t = value
    elif cfg.experiment == "delay":
        t, delay = cfg.delay_time_tau, value
    elif cfg.experiment == "noise":
        t, kappa = cfg.noise_time_tau, value
    elif cfg.experiment == "bits" and value:
        rails = hw.v_range_v if math.isfinite(hw.v_range_v) else 1.0  # an ADC needs a range
        hw = hw.replace(bits_b=int(value), bits_adc=int(value), v_range_v=rails)
    return {"damping": cfg.damping, "analog_time_tau": t, "delay_tau": delay, "kappa": kappa, "hardware": hw,
            "method": "exact"}


def steps_per_epoch(task: str) -> int:
    built = build_task(task)
    return math.ceil(len(built.train.targets) / built.batch_size)


# -- evaluation -----------------------------------------------------------------------------------
def evaluate(cfg: TNGDStudyConfig, point: dict[str, Any]) -> dict[str, Any]:
    """One training run (or, for ``runtime``, one timing) of one variant, value and seed."""
    if cfg.experiment == "runtime":
        return _time_iteration(cfg, point["variant"], int(point["value"]))
    variant, value, seed = point["variant"], float(point["value"]), int(point["seed"])
    per_epoch = steps_per_epoch(cfg.task)
    epochs = cfg.epochs
    if variant == "adam" and cfg.experiment == "wallclock":
        # Adam trains for as long as TNGD in projected wall-clock time (capped)
        ratio = _step_time(cfg, "tngd") / _step_time(cfg, "adam")
        epochs = max(cfg.epochs, min(cfg.adam_max_epochs, math.ceil(cfg.epochs * ratio)))
    eval_every = per_epoch * max(1, epochs // 50)
    common = dict(task=cfg.task, steps=epochs * per_epoch, seed=seed, eval_every=eval_every, checkpoint_every=0)
    if variant == "adam":
        config = TrainConfig(optimizer="adam", lr=cfg.adam_lr, **common)
    elif variant == "ngd":
        config = TrainConfig(optimizer="ngd", lr=cfg.lr, optimizer_options={"damping": cfg.damping, "method": "woodbury"},
                             **common)
    else:
        config = TrainConfig(optimizer="tngd", lr=cfg.lr, optimizer_options={**_tngd_options(cfg, value), "seed": seed},
                             **common)
    start = time.perf_counter()
    try:
        result = train(config)
    except TrainingStopped as err:  # a diverged run is a result of the study
        # the loss of a diverged run is unbounded (inf keeps it out of every "within" check); its
        # accuracy is unknown, not zero (NaN keeps it out of the means)
        return {"train_loss": math.inf, "test_loss": math.inf, "train_accuracy": math.nan, "test_accuracy": math.nan,
                "sim_s": time.perf_counter() - start, "step_s": _step_time(cfg, variant), "curve": "{}",
                "status": f"failed: {type(err).__name__}"}
    evals = [_initial_evaluation(cfg.task, seed)] + [r for r in result.history if "train_loss" in r]
    curve = {"step": [int(r["step"]) for r in evals],
             **{k: [round(float(r[k]), 6) for r in evals] for k in ("train_loss", "test_loss", "train_accuracy", "test_accuracy")},
             "batch_loss": [round(float(r["loss"]), 5) for r in result.history]}
    final = result.final
    return {"train_loss": final["train_loss"], "test_loss": final["test_loss"], "train_accuracy": final["train_accuracy"],
            "test_accuracy": final["test_accuracy"], "sim_s": time.perf_counter() - start,
            "step_s": _step_time(cfg, variant), "curve": json.dumps(curve), "status": "ok"}


def _cell(entry: dict[str, Any], metric: str, spec: str, ci: bool = True) -> str:
    """A summary's ``metric`` as ``mean ± half-width``, or which seeds diverged when a run of the
    group failed (its loss is infinite and its accuracy unknown: no mean describes the group)."""
    mean = entry[metric]
    if not math.isfinite(mean):
        return f"diverged ({entry['failed']} of {entry['n']} seeds)"
    return f"{mean:{spec}} ± {_finite(entry[f'{metric}_ci']):.2g}" if ci else f"{mean:{spec}}"


def _initial_evaluation(task: str, seed: int) -> dict[str, Any]:
    """Step 0 of a learning curve: the untrained model of ``train``'s run with this seed."""
    built = build_task(task, seed=seed)
    row: dict[str, Any] = {"step": 0}
    row["train_loss"], row["train_accuracy"] = evaluate_model(built.model, built.train, built.loss)
    row["test_loss"], row["test_accuracy"] = evaluate_model(built.model, built.test, built.loss)
    return row


@functools.lru_cache(maxsize=8)
def _system(cfg: TNGDStudyConfig) -> Any:
    return base_system(cfg.gpu, None, None, None, cfg.system, device=cfg.device)


def _shape(task: str, width: int | None = None, batch: int | None = None) -> Any:
    built = build_task(task, **({} if width is None else {"hidden": (width,)}))
    inputs = built.train.subset(np.arange(batch or built.batch_size)).inputs
    return ModelShape.from_model(built.model, inputs, name=task)


def _step_time(cfg: TNGDStudyConfig, variant: str, analog_time_tau: float | None = None) -> float:
    """Projected seconds per step of ``variant`` on the co-simulated system (A100, link, device)."""
    if variant == "adam":
        step = StepModel(method="adam")
    elif variant == "tngd":
        step = StepModel(method="tngd", analog_time_tau=analog_time_tau or cfg.analog_time_tau)
    else:
        return math.nan  # exact NGD is a reference, not a timed method here
    return project_run(_shape(cfg.task), _system(cfg), step, 100).time_per_step_s


def _phases(cfg: TNGDStudyConfig) -> str:
    """The co-simulated TNGD step's time by phase, largest first (microseconds)."""
    run = project_run(_shape(cfg.task), _system(cfg), StepModel(method="tngd", analog_time_tau=cfg.analog_time_tau),
                      100)
    phases = sorted(run.phase_s.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {seconds / run.n_steps * 1e6:.3g} us" for name, seconds in phases if seconds > 0)


def _time_iteration(cfg: TNGDStudyConfig, variant: str, width: int) -> dict[str, Any]:
    """Median seconds of one iteration of ``variant`` on the digits MLP of hidden ``width``
    (batch ``runtime_batch``), measured here; TNGD adds its analog part from the timing model."""
    task = build_task("digits-mlp", hidden=(width,))
    model = task.model
    batch = task.train.subset(torch.arange(cfg.runtime_batch))
    x, y = batch.inputs, batch.targets
    options: dict[str, Any] = {"damping": cfg.damping}
    name = variant
    if variant.startswith("ngd-"):
        name = "ngd"
        options["method"] = variant.removeprefix("ngd-")
        if options["method"] == "cg":
            # c iterations whatever the residual (the paper's fixed-budget CG)
            options["solver_options"] = {"max_iter": cfg.cg_iterations, "rtol": 1e-12, "warn_unconverged": False}
    elif variant == "tngd":
        options.update(analog_time_tau=cfg.analog_time_tau, method="exact")
    elif variant == "adam":
        options = {}
    solver_options = options.pop("solver_options", None)
    opt = make_optimizer(name, model, lr=1e-3, loss="cross_entropy", solver_options=solver_options, **options)

    def one() -> None:
        if hasattr(opt, "set_batch"):
            opt.set_batch(x, y)

        def closure() -> Any:
            opt.zero_grad()
            loss = batch_loss(model(x), y, "cross_entropy")
            loss.backward()
            return loss

        opt.step(closure)

    # median of runtime_repeats to 3 x runtime_repeats iterations, until their spread is within
    # RUNTIME_SPREAD; the report flags a width whose spread stays above it
    timing = measure_stable(one, f"a {variant} iteration at width {width}", tolerance=RUNTIME_SPREAD,
                            min_repeats=cfg.runtime_repeats, max_repeats=3 * cfg.runtime_repeats, budget_s=20.0,
                            warn=False)
    digital = timing.median_s
    analog = 0.0
    if variant == "tngd":
        digital -= float(opt.last_stats.get("device_s", 0.0))  # the simulated device is not digital work
        analog = _analog_part(cfg, width)
    return {"n_params": _mlp_params(width), "digital_s": digital, "analog_s": analog, "iteration_s": digital + analog,
            "spread": timing.spread, "repeats": timing.repeats, "load": math.nan if timing.load is None else timing.load,
            "cores": timing.cores, "status": "ok"}


def _analog_part(cfg: TNGDStudyConfig, width: int) -> float:
    """Upload, relaxation for ``t``, readout and read-back of one TNGD step (priced by thermo.cost)."""
    graph = step_pattern(_shape("digits-mlp", width, cfg.runtime_batch), _system(cfg),
                         StepModel(method="tngd", analog_time_tau=cfg.analog_time_tau, overlap=False))[0]
    return sum(t.duration_s for t in graph.tasks if t.resource in ("link", "analog"))


# -- summary, agreement, outputs -------------------------------------------------------------------
def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (variant, value): mean and 95% half-width over seeds of the final metrics."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r["variant"]), float(r["value"])), []).append(r)
    out = []
    for (variant, value), rs in groups.items():
        entry: dict[str, Any] = {"variant": variant, "value": value, "n": len(rs),
                                 "failed": sum(1 for r in rs if str(r["status"]) != "ok")}
        for metric in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            if metric in rs[0]:
                entry[metric], entry[f"{metric}_ci"] = mean_ci([float(r[metric]) for r in rs])
        for metric in ("step_s", "iteration_s", "n_params", "digital_s", "analog_s", "spread", "load", "cores"):
            if metric in rs[0]:
                entry[metric] = float(rs[0][metric])
        out.append(entry)
    return out


def _loss_at(curves: list[dict[str, Any]], step_s: float, at_s: float, metric: str = "train_loss") -> float:
    """Mean over seeds of ``metric`` interpolated at wall-clock ``at_s``."""
    values = [float(np.interp(at_s, np.asarray(c["step"]) * step_s, c[metric])) for c in curves if c]
    return float(np.mean(values)) if values else math.nan


def fit_exponent(ns: list[float], times: list[float], last: int = 3) -> float:
    """Slope of log time against log N over the ``last`` largest N."""
    pairs = sorted(zip(ns, times))[-last:]
    if len(pairs) < 2:
        return math.nan
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def agreement(cfg: TNGDStudyConfig, rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> tuple[bool | None, str]:
    """Whether our outcome agrees with the published one, and the evidence in one sentence.
    Where the published claim has several parts the verdict is the conjunction of their
    sub-checks (:func:`conjunction`), each printed in the evidence."""
    by = {(s["variant"], s["value"]): s for s in summary}

    def differs(a: dict[str, Any], b: dict[str, Any], metric: str = "train_loss") -> bool:
        """a and b differ by more than their combined 95% half-widths."""
        half = math.hypot(_finite(a.get(f"{metric}_ci")), _finite(b.get(f"{metric}_ci")))
        return abs(a[metric] - b[metric]) > half

    if cfg.experiment == "wallclock":
        adam, tngd = by[("adam", 0.0)], by[("tngd", cfg.analog_time_tau)]
        curves = {v: [json.loads(r["curve"]) for r in rows if r["variant"] == v] for v in ("adam", "tngd")}
        horizon = min(adam["step_s"] * max(curves["adam"][0]["step"]), tngd["step_s"] * max(curves["tngd"][0]["step"]))
        la = _loss_at(curves["adam"], adam["step_s"], horizon)
        lt = _loss_at(curves["tngd"], tngd["step_s"], horizon)
        ta = _loss_at(curves["adam"], adam["step_s"], horizon, "test_accuracy")
        tt = _loss_at(curves["tngd"], tngd["step_s"], horizon, "test_accuracy")
        return conjunction(
            f"at {horizon * 1e3:.3g} ms of projected wall-clock time TNGD's train loss is {lt:.4g} against "
            f"Adam's {la:.4g}, test accuracy {tt:.4f} against {ta:.4f} (step {tngd['step_s'] * 1e6:.3g} us "
            f"against {adam['step_s'] * 1e6:.3g} us)",
            {"lower train loss than Adam": lt < la, "test accuracy at least Adam's": tt >= ta})
    if cfg.experiment == "analog-time":
        ts = sorted(cfg.analog_times)
        losses = [by[("tngd", t)]["train_loss"] for t in ts]
        ngd = by[("ngd", 0.0)]
        improves = all(b <= a or not differs(by[("tngd", tb)], by[("tngd", ta)]) for a, b, ta, tb in
                       zip(losses, losses[1:], ts, ts[1:]))
        close = not differs(by[("tngd", ts[-1])], ngd) or abs(losses[-1] - ngd["train_loss"]) <= 0.1 * ngd["train_loss"]
        gaps = [abs(x - ngd["train_loss"]) for x in losses]
        approaches = all(b <= a for a, b in zip(gaps, gaps[1:]))
        # the published claim has both halves: the loss improves with t, and it approaches exact NGD
        return conjunction(
            f"final train loss at t = {', '.join(f'{t:g}' for t in ts)} tau: {', '.join(f'{x:.4g}' for x in losses)}; "
            f"exact NGD {ngd['train_loss']:.4g}",
            {"improves with t": improves, "approaches exact NGD as t grows": approaches,
             "within 10% or the intervals of NGD at the largest t": close})
    if cfg.experiment == "delay":
        base = by[("tngd", 0.0)]
        others = [by[("tngd", d)] for d in cfg.delays if d > 0]
        # an improvement counts when it exceeds the seeds' combined 95% half-widths
        ok = all(o["train_loss"] < base["train_loss"] and differs(o, base) for o in others)
        runs = [by[("tngd", d)] for d in cfg.delays]
        return ok, (f"final train loss at t_d = {', '.join(f'{d:g}' for d in cfg.delays)} tau: "
                    + ", ".join(f"{r['train_loss']:.4g} ± {_finite(r['train_loss_ci']):.2g}" for r in runs))
    if cfg.experiment == "noise":
        small = [by[("tngd", k)] for k in cfg.kappas if k <= 0.01]
        ok = all(not differs(a, b) for a, b in zip(small, small[1:]))
        runs = [by[("tngd", k)] for k in cfg.kappas]
        return ok, (f"final train loss at kappa_0 = {', '.join(f'{k:g}' for k in cfg.kappas)}: "
                    + ", ".join(f"{r['train_loss']:.4g} ± {_finite(r['train_loss_ci']):.2g}" for r in runs))
    if cfg.experiment == "bits":
        ideal = by[("tngd", 0.0)]
        # a width keeps the ideal result when its mean lies within the ideal run's own 95%
        # half-width (or 5% of it): a wide interval of its own (a diverging seed) cannot help it
        margin = max(_finite(ideal.get("train_loss_ci")), 0.05 * ideal["train_loss"])
        smallest = None
        for b in sorted(cfg.bits, reverse=True):
            if abs(by[("tngd", float(b))]["train_loss"] - ideal["train_loss"]) > margin:
                break
            smallest = b
        return None, (f"smallest bit width from which every wider one is within {margin:.2g} of the ideal converters' "
                      f"final train loss ({ideal['train_loss']:.4g}): {smallest if smallest is not None else 'none'}")
    fits = {v: fit_exponent([s["n_params"] for s in summary if s["variant"] == v],
                            [s["iteration_s"] for s in summary if s["variant"] == v]) for v in TABLE1_EXPONENTS}
    linear = [v for v in ("ngd-cg", "ngd-woodbury", "tngd") if math.isfinite(fits[v])]
    sub = {f"{v} grows below N^1.5": fits[v] < 1.5 for v in linear}
    if math.isfinite(fits["ngd-dense"]):
        sub["ngd-dense grows above N^1.5"] = fits["ngd-dense"] > 1.5
    noisy = [f"{s['variant']} at N = {int(s['n_params'])}" for s in summary
             if not float(s.get("spread", 0.0)) <= RUNTIME_SPREAD]
    evidence = "fitted exponents: " + ", ".join(f"{v} {fits[v]:.2f} (Table 1: {TABLE1_EXPONENTS[v]:g})" for v in fits)
    if noisy:
        evidence += (f" (timings spread more than {100 * RUNTIME_SPREAD:.0f}%, unreliable: {', '.join(noisy)}; rerun "
                     f"on an idle machine)")
    return conjunction(evidence, sub)


def conjunction(evidence: str, sub_checks: dict[str, bool]) -> tuple[bool, str]:
    """The verdict of an experiment whose claim has several parts: it agrees only when every
    sub-check does. The evidence names each sub-check with its outcome and says so."""
    verdict = all(sub_checks.values())
    parts = "; ".join(f"{name}: {'yes' if ok else 'no'}" for name, ok in sub_checks.items())
    return verdict, f"{evidence}. {parts} (the verdict agrees only when every one of these is yes)"


def verdict_text(agrees: bool | None) -> str:
    """The words of :func:`agreement`'s verdict."""
    return {True: "agrees", False: "does not agree", None: "no published outcome to compare"}[agrees]


def _spread_text(spread: Any) -> str:
    if spread is None or not math.isfinite(float(spread)):
        return "-"
    flag = "" if float(spread) <= RUNTIME_SPREAD else " (unreliable)"
    return f"{100 * float(spread):.0f}%{flag}"


def _finite(x: Any) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else 0.0


def run(cfg: TNGDStudyConfig, progress: bool = True) -> Path:
    """Run the experiment's missing points, summarize over seeds, plot and report; return the CSV path."""
    return VARIANTS[cfg.experiment].run(cfg, progress)


def _label(cfg: TNGDStudyConfig, variant: str, value: float) -> str:
    if variant != "tngd":
        return {"adam": "Adam", "ngd": "exact NGD"}.get(variant, variant)
    name = {"wallclock": f"TNGD t={value:g}", "analog-time": f"TNGD t={value:g} tau", "delay": f"t_d={value:g} tau",
            "noise": f"kappa_0={value:g}", "bits": f"{int(value)} bits" if value else "ideal converters"}
    return name[cfg.experiment]


METRIC_LABELS = {
    "batch_loss": "minibatch training loss (nats)",
    "train_loss": "train loss (nats)",
    "test_loss": "test loss (nats)",
    "train_accuracy": "train accuracy (fraction)",
    "test_accuracy": "test accuracy (fraction)",
}
"""The y label of each learning-curve panel, with its unit (cross-entropy in nats)."""


def plot(cfg: TNGDStudyConfig, rows: list[dict[str, Any]], summary: list[dict[str, Any]], path: Path) -> Any:
    """Learning curves (every recorded point: the minibatch loss of every step, and each
    evaluation of the full train and test sets), mean over seeds with a min..max band; for
    ``runtime``, time per iteration against N. Losses are on log axes where they span more
    than a decade. Returns the (closed) Figure."""
    # matplotlib is imported where a figure is drawn: at module level it would slow every
    # `tcd` command (even --help) by about half a second
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if cfg.experiment == "runtime":
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        ns, ts = [], []
        for v in ("adam", *TABLE1_EXPONENTS):
            pts = sorted((s["n_params"], s["iteration_s"]) for s in summary if s["variant"] == v)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=v)
                ns += [p[0] for p in pts]
                ts += [p[1] for p in pts]
        set_scale(ax, "x", ns)
        set_scale(ax, "y", ts)
        ax.set_xlabel("parameters N, digits MLP with d_z = 10 (count)")
        ax.set_ylabel("time per iteration (s)")
        noisy = [(s["n_params"], s["iteration_s"]) for s in summary if not float(s.get("spread", 0.0)) <= RUNTIME_SPREAD]
        if noisy:  # the timings the report calls unreliable, marked where they are drawn
            ax.scatter(*zip(*noisy), marker="x", s=80, color="crimson", zorder=3,
                       label=f"unreliable timing (spread > {100 * RUNTIME_SPREAD:.0f}%)")
        ax.set_title("Runtime per iteration (TNGD: digital measured + analog from the timing model)", fontsize=8)
        ax.legend(fontsize=7)
    else:
        metrics = tuple(METRIC_LABELS)
        fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.8))
        wall = cfg.experiment == "wallclock"
        drawn: dict[str, list[float]] = {m: [] for m in metrics}
        for (variant, value) in dict.fromkeys((r["variant"], float(r["value"])) for r in rows):
            ok = [r for r in rows if r["variant"] == variant and float(r["value"]) == value and str(r["status"]) == "ok"]
            if not ok:
                continue
            curves = [json.loads(r["curve"]) for r in ok]
            scale = float(ok[0]["step_s"]) * 1e3 if wall else 1.0
            color = None
            for ax, metric in zip(axes, metrics):
                if metric == "batch_loss":  # step k's minibatch loss is taken before its update: at k - 1 updates
                    length = min(len(c["batch_loss"]) for c in curves)
                    x = np.arange(length, dtype=float) * scale
                    y = np.array([c["batch_loss"][:length] for c in curves])
                else:
                    length = min(len(c["step"]) for c in curves)
                    x = np.asarray(curves[0]["step"][:length], dtype=float) * scale
                    y = np.array([c[metric][:length] for c in curves])
                if not length:
                    continue
                mean = y.mean(0)
                line = ax.plot(x, mean, marker="." if metric != "batch_loss" else None, lw=0.8 if metric == "batch_loss"
                               else 1.5, color=color, label=_label(cfg, variant, value))
                color = line[0].get_color()
                if len(curves) > 1:
                    ax.fill_between(x, y.min(0), y.max(0), color=color, alpha=0.15, lw=0)
                drawn[metric] += [*y.min(0), *y.max(0)]
        for ax, metric in zip(axes, metrics):
            ax.set_xlabel("projected wall-clock time (ms)" if wall else "iteration (steps)")
            ax.set_ylabel(METRIC_LABELS[metric])
            if "loss" in metric:  # losses stored to 5 decimals can reach 0: symlog then
                set_scale(ax, "y", drawn[metric], allow_symlog=True)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{cfg.stem} on {cfg.task} ({cfg.seeds} seeds: mean, band = min..max; every recorded point)",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def report(cfg: TNGDStudyConfig, rows: list[dict[str, Any]], summary: list[dict[str, Any]], path: Path) -> None:
    agrees, evidence = agreement(cfg, rows, summary)
    verdict = verdict_text(agrees)
    lines = [f"# Thermodynamic NGD: {cfg.experiment}", "", f"![{cfg.experiment}]({path.with_suffix('.png').name})", "",
             "## Published outcome and ours", "", f"- Published (Donatella et al. 2024, on MNIST): {EXPERIMENTS[cfg.experiment]}",
             f"- Ours ({'digits MLP' if cfg.experiment == 'runtime' else cfg.task}): {evidence}.", f"- Verdict: **{verdict}**.", "", "## Assumptions"]
    if cfg.experiment == "runtime":
        lines += [f"- Digits MLP 64-w-10 (d_z = 10), batch {cfg.runtime_batch}, widths {list(cfg.widths)}; median of "
                  f"{cfg.runtime_repeats} to {3 * cfg.runtime_repeats} iterations after a warm-up (until their spread "
                  f"(p90 - p10) / median is within {100 * RUNTIME_SPREAD:.0f}%), on this machine's CPU. Dense NGD up to N = "
                  f"{cfg.dense_max_n}; NGD-CG runs {cfg.cg_iterations} iterations (the paper's c).",
                  f"- TNGD: the digital part (gradient and the Gram of the GGN, measured) plus the analog part from the "
                  f"co-simulation, priced by thermo.cost on {describe_system(_system(cfg))} (the r (r + 2N) array "
                  f"values and the gradient through the link and the DACs, t = {cfg.analog_time_tau:g} tau, readout, "
                  f"read-back); the simulation of the device itself is not counted."]
    else:
        lines += [f"- {cfg.task}, batch 64, {cfg.epochs} epochs, {cfg.seeds} seeds; 95% Student-t intervals over seeds.",
                  f"- TNGD: eta {cfg.lr:g}, lambda {cfg.damping:g}, warm start from x0 = g, no momentum, noise kappa_0 "
                  f"{cfg.kappa:g} unless swept, exact propagation of the device between uploads; Adam eta {cfg.adam_lr:g}.",
                  "- Our digits CNN and data set stand in for the paper's MNIST CNN: compare shapes, not digits."]
        if cfg.experiment == "wallclock":
            lines.append(f"- Projected TNGD step by phase: {_phases(cfg)}.")
            lines.append(f"- Wall-clock per step from the co-simulation of {cfg.task} on {describe_system(_system(cfg))}: "
                         "Adam and TNGD (gradient, GGN factor on the GPU, upload, relaxation, read-back).")
    lines += ["", "## Results", ""]
    if cfg.experiment == "runtime":
        lines += ["| method | N | digital (ms) | spread of the digital timing | analog (ms) | per iteration (ms) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {s['variant']} | {int(s['n_params'])} | {s['digital_s'] * 1e3:.3g} | "
                  f"{_spread_text(s.get('spread'))} | {s['analog_s'] * 1e3:.3g} | {s['iteration_s'] * 1e3:.3g} |"
                  for s in sorted(summary, key=lambda s: (s["variant"], s["n_params"]))]
    else:
        lines += ["| run | train loss | test loss | train accuracy | test accuracy | failed |", "|---|---|---|---|---|---|"]
        lines += [f"| {_label(cfg, s['variant'], s['value'])} | {_cell(s, 'train_loss', '.4g')} | "
                  f"{_cell(s, 'test_loss', '.4g')} | {_cell(s, 'train_accuracy', '.4f', ci=False)} | "
                  f"{_cell(s, 'test_accuracy', '.4f')} | {s['failed']} |" for s in summary]
        sim = [float(r["sim_s"]) for r in rows if r["variant"] == "tngd"]
        if sim:
            lines += ["", f"Simulation cost: {np.mean(sim):.3g} s per TNGD run on this machine."]
    path.write_text("\n".join(lines) + "\n")


class TNGDStudy(Study[TNGDStudyConfig]):
    """One published experiment (``experiment``, a key of :data:`EXPERIMENTS`) as a study,
    ``tcd study tngd-<experiment>``; each part hands over to this module's function of the same
    name (which tests and notebooks call directly)."""

    config_type = TNGDStudyConfig
    swept = ("experiment", "seeds", "analog_times", "delays", "kappas", "bits", "widths")

    def __init__(self, experiment: str) -> None:
        if experiment not in EXPERIMENTS:
            raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got {experiment!r}")
        self.experiment = experiment
        self.name = study_name(experiment)
        self.help = f"thermodynamic NGD on the digits CNN, published experiment '{experiment}'"
        self.description = (f"Published outcome: {EXPERIMENTS[experiment]} Runs over seeds with 95%% confidence "
                            "intervals and reports whether ours agrees. Finished points are kept; a rerun skips them.")
        # timings run on one worker unless told otherwise, so that they do not disturb each other
        self.timed = experiment == "runtime"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--full", action="store_true", help="the full size (20 epochs, 5 seeds, wider runtime sweep)")
        parser.add_argument("--epochs", type=positive_int, default=None, help="training epochs per run (default 10)")
        parser.add_argument("--seeds", type=positive_int, default=None, help="seeds per variant (default 3)")
        parser.add_argument("--task", default=None, help="model and data (default digits-cnn)")
        parser.add_argument("--hardware", default=None, help=HARDWARE_HELP + " TNGD trains on (default ideal; its kT is kappa)")
        parser.add_argument("--device", default=None, help=DEVICE_HELP + " of the co-simulated wall-clock (default "
                            "paper-2024-tngd, the paper's own procedure)")
        parser.add_argument("--system", default=None, help=SYSTEM_HELP + " of the co-simulated wall-clock")
        add_sweep_arguments(parser, f"results/{self.name}")

    def config_from_args(self, args: argparse.Namespace) -> TNGDStudyConfig:
        overrides = {**sweep_options(args), **given(args, "epochs", "seeds", "task", "hardware", "device", "system")}
        return self.config(args.full, **overrides)

    def config(self, full: bool = False, **overrides: Any) -> TNGDStudyConfig:
        """This experiment's default config (``full``: the full size) with ``overrides``."""
        if full:
            return TNGDStudyConfig.full(self.experiment, **overrides)
        return TNGDStudyConfig(experiment=self.experiment, **overrides)

    def points(self, cfg: TNGDStudyConfig) -> list[dict[str, Any]]:
        return points(cfg)

    def evaluate(self, cfg: TNGDStudyConfig, point: dict[str, Any]) -> dict[str, Any]:
        return evaluate(cfg, point)

    def analyse(self, cfg: TNGDStudyConfig, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows (the learning curves) and their summary over seeds (:func:`summarize`)."""
        return rows, summarize(rows)

    def plot(self, cfg: TNGDStudyConfig, results: Any, path: Path) -> Any:
        rows, summary = results
        return plot(cfg, rows, summary, path)

    def report(self, cfg: TNGDStudyConfig, results: Any, path: Path) -> None:
        rows, summary = results
        report(cfg, rows, summary, path)

    def run(self, cfg: TNGDStudyConfig, progress: bool = True) -> Path:
        if cfg.experiment != self.experiment:
            raise ValueError(f"{self.name} runs the {self.experiment!r} experiment, not {cfg.experiment!r}; "
                             f"run it with tngd.run(cfg)")
        return super().run(cfg, progress)

    def outcome(self, cfg: TNGDStudyConfig, csv_path: Path) -> list[str]:
        """The published outcome, ours, and the verdict."""
        rows = sweep.read_rows(csv_path, last_run=True)
        agrees, evidence = agreement(cfg, rows, summarize(rows))
        return [f"published: {EXPERIMENTS[self.experiment]}", f"ours: {evidence}", f"verdict: {verdict_text(agrees)}"]


VARIANTS: dict[str, TNGDStudy] = {experiment: TNGDStudy(experiment) for experiment in EXPERIMENTS}
"""One study per published experiment, in the order of :data:`EXPERIMENTS`."""
