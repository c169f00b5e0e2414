"""Study: the hardware design space, projected speedup against accuracy loss, with its Pareto front.

Each design is a device (``published`` preset by default) with a converter bit width (matrix
DAC, input DAC and readout ADC together), the accuracy its solves are planned for
(``target_rel_error``: it sets the readout window, so it trades time for precision), a static
component mismatch (fabrication precision: it costs accuracy, not time) and a time constant
(it costs time, not accuracy: the dynamics run in units of tau). For every design, over seeds:

- accuracy: K-FAC trains each small model of ``tasks`` (the digits MLP and CNN; with ``--full``
  the digits ViT and the graph GNN too) with its factor solves or inversions on that device (both
  published methods, ``solve`` and ``inverse``, each a design of its own); the accuracy loss is
  the exact backend's mean test accuracy (in the same mode) minus the design's (a positive loss
  is worse than digital K-FAC), and Adam trains each model too, for the advantage verdict below;
- speed: the same device, in the system of the projections study, projects the time to target
  of an AlgoPerf workload (ViT-S/16 by default) with the same method; the speedup is digital
  K-FAC's time over thermodynamic K-FAC's (both at the same step ratio), and over Adam's.

A design whose runs needed the exact fallback (quantization broke the factor's definiteness) or
failed is infeasible: the device alone did not train. The Pareto front (per model and method) is
the feasible designs that no other feasible design beats in both speedup and accuracy loss. Per
model and method the report gives the smallest converter width and the largest planned error that
keep K-FAC's advantage over Adam (:mod:`studies.advantage`: mean final training loss below
Adam's, no fallback), each swept with the other axes at their most favourable values (no
mismatch, the tightest planned error, resp. the widest converters). Writes
``designspace.csv`` (every seed of every design), ``designspace.png`` and ``designspace.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thermo import preset

from . import checks, sweep
from .advantage import kept_from, keeps_advantage
from .intervals import mean_ci
from .noise import train_variant
from .options import (
    HARDWARE_HELP,
    SYSTEM_HELP,
    add_sweep_arguments,
    given,
    non_negative_floats,
    positive_floats,
    positive_int,
    positive_ints,
    strings,
    sweep_options,
)
from .plotting import set_scale
from .projections import (
    KERNELS_HELP,
    WORKLOADS,
    base_system,
    calibrated,
    describe_system,
    kernel_rates,
    kernels_option,
    project_methods,
)
from .protocol import Study

NAME = "designspace"
"""``tcd study designspace``: the stem of the study's files and the folder of its results."""

AXES = ("bits", "target_rel_error", "mismatch_sigma", "tau_scale")
"""The hardware parameters of a design."""


METHODS = ("solve", "inverse")
"""The published thermodynamic K-FAC methods, each trained and projected as its own designs."""


DEFAULT_TASKS = ("digits-mlp", "digits-cnn")
FULL_TASKS = (*DEFAULT_TASKS, "digits-vit", "graphs-gnn")


@dataclass(frozen=True)
class DesignSpaceConfig:
    tasks: tuple[str, ...] = DEFAULT_TASKS
    """The models trained through each design (accuracy side); ``full()`` adds the digits ViT and
    the graph GNN."""
    methods: tuple[str, ...] = METHODS
    inverse_tasks: tuple[str, ...] | None = None
    """The models the inverse method trains (None: every model of ``tasks``). On the digits CNN
    the planned windows at a 0.3 error hold fewer than the covariance law's ``20 d`` effective
    samples of its 513 x 513 factors, so those inversions sample the readout's path (12 steps
    of such a design: 28 s here; the designs at 0.1 and tighter are drawn from the law, about a
    second); ``inverse_tasks=("digits-mlp",)`` leaves the CNN to the solve method."""
    steps: int = 100
    seeds: int = 3
    bits: tuple[int, ...] = (4, 6, 8, 12)
    inverse_bits: tuple[int, ...] | None = (16,)
    """The inverse method's bit widths (None: ``bits``). Outside the covariance law's dither
    condition (on the published device: 12 bits and below on every digits-CNN factor, 14 bits
    on its 513 x 513 one) an inversion samples the readout's path, seconds per factor and
    minutes per run on two cores, so the default gives the inverse method the width where the
    law holds; ``full()`` sweeps ``bits`` for both methods."""
    target_rel_error: tuple[float, ...] = (0.3, 0.1, 0.03, 0.01)
    mismatch_sigma: tuple[float, ...] = (0.0, 0.05)
    """Relative standard deviations of the static coupling mismatch."""
    hardware: str = "published"
    """The preset (or hardware file) every design starts from; with ``system``, the system's hardware."""
    workload: str = "vit-imagenet"
    """The AlgoPerf workload of the speed side (:data:`studies.projections.WORKLOADS`)."""
    step_ratio: float = 0.5
    """K-FAC's steps over Adam's baseline (published 0.5-0.75); the same for both K-FACs."""
    tau_scale: tuple[float, ...] = (1.0, 0.1, 0.01)
    """Multiply the preset's time constant in the projection (training runs in units of tau)."""
    gpu: str = "V100"
    n_gpus: int = 8
    link: str = "paper-50gbps"
    n_chips: int = 16
    system: str | None = None
    """A system file (``.toml``/``.yaml``) that replaces ``gpu``, ``link``, ``hardware`` and ``n_chips``."""
    inv_update_steps: int = 10
    kernels: str = "measure"
    """The GPU's kernel rates relative to a GEMM, as in the projections study."""
    workers: int | None = None
    scheduler: str | None = None
    out_dir: Path = field(default=Path("results") / NAME)

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str) or not self.tasks:
            raise checks.StudyConfigError("DesignSpaceConfig.tasks must name at least one built-in task")
        object.__setattr__(self, "tasks", tuple(dict.fromkeys(checks.task("DesignSpaceConfig", "tasks", t)
                                                              for t in self.tasks)))
        if self.inverse_tasks is not None:
            object.__setattr__(self, "inverse_tasks", tuple(dict.fromkeys(
                checks.task("DesignSpaceConfig", "inverse_tasks", t) for t in self.inverse_tasks)))
        if not self.methods or set(self.methods) - set(METHODS):
            raise checks.StudyConfigError(f"DesignSpaceConfig.methods must be among {', '.join(METHODS)}, "
                                          f"got {self.methods!r}")
        if self.workload not in WORKLOADS:
            raise ValueError(f"unknown workload {self.workload!r}; known: {', '.join(WORKLOADS)}")
        owner = "DesignSpaceConfig"
        checks.hardware(owner, "hardware", self.hardware)
        checks.system_file(owner, "system", self.system)
        checks.store(
            self,
            steps=checks.integer(owner, "steps", self.steps),
            seeds=checks.integer(owner, "seeds", self.seeds),
            bits=checks.integers(owner, "bits", self.bits, minimum=2),
            inverse_bits=None if self.inverse_bits is None else checks.integers(owner, "inverse_bits", self.inverse_bits,
                                                                                 minimum=2),
            target_rel_error=checks.reals(owner, "target_rel_error", self.target_rel_error, 0.0, 1.0, True, True),
            mismatch_sigma=checks.reals(owner, "mismatch_sigma", self.mismatch_sigma, 0.0, 1.0, high_open=True),
            tau_scale=checks.reals(owner, "tau_scale", self.tau_scale, 0.0, low_open=True),
            step_ratio=checks.positive(owner, "step_ratio", self.step_ratio),
            n_gpus=checks.integer(owner, "n_gpus", self.n_gpus),
            n_chips=checks.integer(owner, "n_chips", self.n_chips),
            inv_update_steps=checks.integer(owner, "inv_update_steps", self.inv_update_steps),
            workers=checks.workers(owner, self.workers),
        )
        kernels_option(owner, self.kernels)

    @classmethod
    def full(cls, **overrides: Any) -> DesignSpaceConfig:
        return cls(**{"tasks": FULL_TASKS, "inverse_tasks": None, "steps": 600, "seeds": 5, "bits": (4, 5, 6, 7, 8, 10, 12, 16), "inverse_bits": None,
                      "target_rel_error": (0.3, 0.1, 0.03, 0.01, 0.003), "mismatch_sigma": (0.0, 0.01, 0.05, 0.1),
                      "tau_scale": (1.0, 0.3, 0.1, 0.03, 0.01), **overrides})


def bits_of(cfg: DesignSpaceConfig, method: str) -> tuple[int, ...]:
    """The bit widths of ``method``'s designs (``inverse_bits`` for the inverse method when set)."""
    return cfg.inverse_bits if method == "inverse" and cfg.inverse_bits is not None else cfg.bits


def methods_of(cfg: DesignSpaceConfig, task: str) -> tuple[str, ...]:
    """The methods trained on ``task`` (the inverse method only on ``inverse_tasks`` when set)."""
    return tuple(m for m in cfg.methods if m != "inverse" or cfg.inverse_tasks is None or task in cfg.inverse_tasks)


def training_points(cfg: DesignSpaceConfig) -> list[dict[str, Any]]:
    """Every (task, method, device setting, seed) trained; the exact backend (digital K-FAC, in the
    same mode) and Adam (method ``-``, once per task and seed) have zeros on every axis."""
    out = []
    zeros = {"bits": 0, "target_rel_error": 0.0, "mismatch_sigma": 0.0}
    for task in cfg.tasks:
        for seed in range(cfg.seeds):
            out.append({"task": task, "method": "-", "design": "adam", **zeros, "seed": seed})
        for method in methods_of(cfg, task):
            for seed in range(cfg.seeds):
                out.append({"task": task, "method": method, "design": "exact", **zeros, "seed": seed})
                for bits, target, mismatch in itertools.product(bits_of(cfg, method), cfg.target_rel_error,
                                                                cfg.mismatch_sigma):
                    out.append({"task": task, "method": method, "design": "device", "bits": int(bits),
                                "target_rel_error": float(target), "mismatch_sigma": float(mismatch), "seed": seed})
    return out


def projection_points(cfg: DesignSpaceConfig) -> list[dict[str, Any]]:
    """Every (method, bits, target error, time constant) projected: mismatch does not change the timing model."""
    return [{"method": m, "bits": int(b), "target_rel_error": float(e), "tau_scale": float(t)}
            for m in cfg.methods for b, e, t in itertools.product(bits_of(cfg, m), cfg.target_rel_error, cfg.tau_scale)]


def _hardware(cfg: DesignSpaceConfig, bits: int, mismatch_sigma: float = 0.0) -> Any:
    base = _system(cfg).device.chip if cfg.system is not None else preset(cfg.hardware)
    return base.with_converter_bits(bits).replace(mismatch_sigma=mismatch_sigma)


def _kernels(cfg: DesignSpaceConfig) -> Any:
    return kernel_rates(cfg.kernels, cfg.out_dir, (cfg.workload,), cfg.n_gpus)


def _system(cfg: DesignSpaceConfig) -> Any:
    return base_system(cfg.gpu, cfg.link, cfg.hardware, cfg.n_chips, cfg.system)


def train_design(cfg: DesignSpaceConfig, point: dict[str, Any]) -> dict[str, Any]:
    """Train K-FAC through one device setting (or the exact backend), or Adam, for one seed."""
    task, seed, mode = str(point["task"]), int(point["seed"]), str(point.get("method", "solve"))
    if point["design"] == "adam":
        return train_variant(task, cfg.steps, seed, optimizer="adam")
    if point["design"] == "exact":
        return train_variant(task, cfg.steps, seed, mode=mode)
    options = {"hardware": _hardware(cfg, int(point["bits"]), float(point["mismatch_sigma"])),
               "target_rel_error": float(point["target_rel_error"])}
    return train_variant(task, cfg.steps, seed, solver="thermo", solver_options=options, mode=mode)


def project_design(cfg: DesignSpaceConfig, point: dict[str, Any]) -> dict[str, Any]:
    """Projected times to target (s) and speedups of one design in the projections' system."""
    system = calibrated(_system(cfg), _kernels(cfg))
    hw = _hardware(cfg, int(point["bits"]))
    hw = hw.replace(tau_s=hw.tau_s * float(point["tau_scale"]))
    system = dataclasses.replace(system, device=system.device.replace(chip=hw))
    projected = project_methods(cfg.workload, system, cfg.step_ratio, n_gpus=cfg.n_gpus, interval=cfg.inv_update_steps,
                                analog_op=str(point.get("method", "solve")), target_rel_error=float(point["target_rel_error"]))
    keep = ("adam_s", "kfac_s", "tkfac_s", "speedup_vs_kfac", "speedup_vs_adam", "kfac_vs_adam", "tkfac_bottleneck",
            "bound_vs_kfac", "bound_vs_adam")
    return {k: projected[k] for k in keep}


def pareto_front(speedups: list[float], losses: list[float]) -> list[bool]:
    """True where no other point has a speedup at least as high and an accuracy loss at least as
    low, one of them strictly (maximize speedup, minimize loss)."""
    if len(speedups) != len(losses):
        raise ValueError("speedups and losses must have the same length")
    front = []
    for i, (s, l) in enumerate(zip(speedups, losses)):
        dominated = any(
            s2 >= s and l2 <= l and (s2 > s or l2 < l) for j, (s2, l2) in enumerate(zip(speedups, losses)) if j != i
        )
        front.append(not dominated)
    return front


def summarize(training: list[dict[str, Any]], projections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task and method, one entry per design (and one for the exact backend in that mode,
    first): mean test accuracy and training loss with 95% confidence half-widths over seeds, the
    accuracy loss against the exact backend (its half-width combines both intervals in
    quadrature), the projected speedups, feasibility, Pareto membership (among that task's and
    method's designs), Adam's mean final training loss on the task (``adam_train_loss``) and
    whether the entry keeps K-FAC's advantage over it (``beats_adam``)."""
    tasks = list(dict.fromkeys(str(r["task"]) for r in training))
    out = []
    for task in tasks:
        mine = [r for r in training if str(r["task"]) == task]
        adam = [float(r["train_loss"]) for r in mine if r["design"] == "adam"]
        if not adam:
            raise ValueError(f"the training rows of {task} hold no Adam reference")
        adam_loss = mean_ci(adam)[0]
        methods = list(dict.fromkeys(str(r.get("method", "solve")) for r in mine if r["design"] != "adam"))
        for method in methods:
            for entry in _summarize_method(method, [r for r in mine if str(r.get("method", "solve")) == method],
                                           [p for p in projections if str(p.get("method", "solve")) == method]):
                problems = int(entry["fallbacks"]) + int(entry["failed"])
                out.append({"task": task, **entry, "adam_train_loss": adam_loss,
                            "beats_adam": keeps_advantage(float(entry["train_loss"]), adam_loss, problems)})
    return out


def advantage_limits(summary: list[dict[str, Any]], task: str, method: str) -> dict[str, Any]:
    """Per task and method, where the designs keep K-FAC's advantage over Adam
    (:mod:`studies.advantage`): ``smallest_bits``, the smallest converter width from which every
    wider one does, at no mismatch (the smallest swept) and the tightest planned error; and
    ``largest_error``, the largest planned error up to which every tighter one does, at no
    mismatch and the widest converters. None where even the most favourable setting does not
    (``exact_beats_adam`` then says whether digital K-FAC itself does). Accuracy does not depend
    on the time constant, so one tau scale's entries are read."""
    mine = [s for s in summary if s["task"] == task and s.get("method", "solve") == method]
    devices = [s for s in mine if s["design"] == "device"]
    exact = next(s for s in mine if s["design"] == "exact")
    out: dict[str, Any] = {"task": task, "method": method, "adam_train_loss": exact["adam_train_loss"],
                           "exact_train_loss": exact["train_loss"], "exact_beats_adam": bool(exact["beats_adam"]),
                           "smallest_bits": None, "largest_error": None, "mismatch_sigma": math.nan,
                           "at_error": math.nan, "at_bits": 0}
    if not devices:
        return out
    tau, least = devices[0]["tau_scale"], min(d["mismatch_sigma"] for d in devices)
    grid = {(s["bits"], s["target_rel_error"]): bool(s["beats_adam"]) for s in devices
            if s["tau_scale"] == tau and s["mismatch_sigma"] == least}
    tightest = min(e for _, e in grid)
    widest = max(b for b, _ in grid)
    bits = kept_from(((b, keeps) for (b, e), keeps in grid.items() if e == tightest), descending=True)
    error = kept_from(((e, keeps) for (b, e), keeps in grid.items() if b == widest), descending=False)
    out.update(smallest_bits=None if bits is None else int(bits), largest_error=error,
               mismatch_sigma=least, at_error=tightest, at_bits=widest)
    return out


def _summarize_method(method: str, training: list[dict[str, Any]], projections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[int, float], dict[float, list[dict[str, Any]]]] = {}
    exact = []
    for r in training:
        if r["design"] == "exact":
            exact.append(r)
        else:
            setting = groups.setdefault((int(r["bits"]), float(r["target_rel_error"])), {})
            setting.setdefault(float(r["mismatch_sigma"]), []).append(r)
    if not exact:
        raise ValueError(f"the training rows of the {method} method hold no exact-backend reference")
    exact_acc, exact_ci = mean_ci([float(r["test_accuracy"]) for r in exact])

    def accuracy(rs: list[dict[str, Any]]) -> dict[str, Any]:
        acc, acc_ci = mean_ci([float(r["test_accuracy"]) for r in rs])
        loss, loss_ci = mean_ci([float(r["train_loss"]) for r in rs])
        fallbacks = sum(int(r["fallbacks"]) for r in rs)
        failed = sum(1 for r in rs if str(r["status"]) != "ok")
        return {"n": len(rs), "test_accuracy": acc, "test_accuracy_ci": acc_ci, "train_loss": loss,
                "train_loss_ci": loss_ci, "accuracy_loss": exact_acc - acc, "accuracy_loss_ci": math.hypot(acc_ci, exact_ci),
                "fallbacks": fallbacks, "failed": failed, "feasible": fallbacks + failed == 0}

    reference = {"method": method, "design": "exact", "bits": 0, "target_rel_error": 0.0, "mismatch_sigma": 0.0,
                 "tau_scale": 0.0, **accuracy(exact),
                 "speedup_vs_kfac": 1.0, "speedup_vs_adam": float(projections[0]["kfac_vs_adam"]) if projections else math.nan,
                 "bottleneck": "gpu", "pareto": False}
    out = []
    for p in projections:
        key = (int(p["bits"]), float(p["target_rel_error"]))
        for mismatch, rs in sorted(groups.get(key, {}).items()):
            out.append({"method": method, "design": "device", "bits": key[0], "target_rel_error": key[1],
                        "mismatch_sigma": mismatch, "tau_scale": float(p["tau_scale"]), **accuracy(rs),
                        "speedup_vs_kfac": float(p["speedup_vs_kfac"]), "speedup_vs_adam": float(p["speedup_vs_adam"]),
                        "bottleneck": p["tkfac_bottleneck"], "bound_vs_kfac": float(p["bound_vs_kfac"]), "pareto": False})
    feasible = [s for s in out if s["feasible"]]
    for s, on_front in zip(feasible, pareto_front([s["speedup_vs_kfac"] for s in feasible],
                                                  [s["accuracy_loss"] for s in feasible])):
        s["pareto"] = on_front
    return [reference, *out]


def sweep_paths(out_dir: Path) -> tuple[Path, Path]:
    """The CSVs of the two sweeps (every point): the training runs, and the projections."""
    return Path(out_dir) / f"{NAME}_training.csv", Path(out_dir) / f"{NAME}_projections.csv"


def run(cfg: DesignSpaceConfig, progress: bool = True) -> Path:
    """Both sweeps (resumable: ``designspace_training.csv``, ``designspace_projections.csv``), then
    the per-design table ``designspace.csv``, the plot and the report; returns the table's path."""
    return STUDY.run(cfg, progress)


def plot(summary: list[dict[str, Any]], path: Path, cfg: DesignSpaceConfig) -> Any:
    """Speedup over digital K-FAC against accuracy loss, one panel per time constant; colour:
    bits, marker: target error, filled: no mismatch; designs whose runs fell back to the exact
    solver a red cross, failed ones a grey cross. Each panel rings and joins its own members of
    the (global) Pareto front: no marker is drawn in another design's panel. Returns the
    (closed) Figure."""
    # matplotlib is imported where a figure is drawn: at module level it would slow every
    # `tcd` command (even --help) by about half a second
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted(cfg.tau_scale, reverse=True)
    pairs = [(t, m) for t in cfg.tasks for m in methods_of(cfg, t)] or [("", "solve")]
    pairs = [p for p in pairs if any(s["task"] == p[0] and s.get("method", "solve") == p[1] for s in summary)] or pairs
    fig, axes = plt.subplots(len(pairs), len(scales), figsize=(4.6 * len(scales), 3.9 * len(pairs)), sharey=True,
                             squeeze=False)
    markers = dict(zip(sorted(cfg.target_rel_error), "osD^v<>p*h"))
    widths = sorted({b for m in cfg.methods for b in bits_of(cfg, m)})
    cmap = plt.get_cmap("viridis")
    colors = {b: cmap(i / max(1, len(widths) - 1)) for i, b in enumerate(widths)}
    devices = [s for s in summary if s["design"] == "device"]
    for row, (task, method) in zip(axes, pairs):
        for ax, scale in zip(row, scales):
            mine = [s for s in devices if s["tau_scale"] == scale and s.get("method", "solve") == method
                    and s["task"] == task]
            for s in mine:
                x, y = 100 * s["accuracy_loss"], s["speedup_vs_kfac"]
                if int(s["fallbacks"]) > 0:
                    ax.scatter(x, y, marker="X", color="crimson", s=45, zorder=2)
                    continue
                if not s["feasible"]:
                    ax.scatter(x, y, marker="x", color="0.5", s=30, zorder=2)
                    continue
                if not math.isnan(s["accuracy_loss_ci"]):
                    ax.errorbar(x, y, xerr=100 * s["accuracy_loss_ci"], fmt="none", ecolor=colors[s["bits"]], alpha=0.3,
                                lw=0.8, zorder=1)
                filled = s["mismatch_sigma"] == min(cfg.mismatch_sigma)
                ax.scatter(x, y, marker=markers[s["target_rel_error"]], s=40, zorder=3, lw=1.0,
                           facecolor=colors[s["bits"]] if filled else "none", edgecolor=colors[s["bits"]])
            front = sorted((100 * s["accuracy_loss"], s["speedup_vs_kfac"]) for s in mine if s["pareto"])
            if front:
                ax.step(*zip(*front), where="post", color="crimson", lw=1.2, zorder=4)
                ax.scatter(*zip(*front), s=140, facecolor="none", edgecolor="crimson", lw=1.5, zorder=4)
            ax.scatter([0.0], [1.0], marker="*", s=120, color="k", zorder=5)
            ax.axhline(1.0, color="k", lw=0.6, ls=":")
            ax.axvline(0.0, color="k", lw=0.6, ls=":")
            ax.set_title(f"{task}, {method} method, time constant x{scale:g}", fontsize=9)
            ax.set_xlabel(f"accuracy loss vs exact K-FAC, {task} (pp)", fontsize=8)
        row[0].set_ylabel(f"projected speedup over digital K-FAC, {cfg.workload} (x)", fontsize=8)
    set_scale(axes[0][0], "y", [1.0, *(s["speedup_vs_kfac"] for s in devices)])
    from matplotlib.lines import Line2D  # lazy, as pyplot above

    handles = [Line2D([], [], color="crimson", marker="o", mfc="none", ms=10, label="Pareto front (rings: members)"),
               Line2D([], [], color="k", marker="*", ls="none", ms=10, label="digital K-FAC")]
    handles += [Line2D([], [], color=colors[b], marker="o", ls="none", label=f"{b} bits") for b in widths]
    handles += [Line2D([], [], color="0.3", marker=m, ls="none", label=f"target error {e:g}") for e, m in markers.items()]
    handles += [Line2D([], [], color="0.3", marker="o", mfc="none", ls="none",
                       label=f"hollow: mismatch > {min(cfg.mismatch_sigma):g}"),
                Line2D([], [], color="crimson", marker="X", ls="none", label="runs fell back to the exact solver"),
                Line2D([], [], color="0.5", marker="x", ls="none", label="runs failed")]
    axes[0][-1].legend(handles=handles, fontsize=6, loc="best")
    fig.suptitle(f"Design space of the {cfg.system or cfg.hardware} device", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def _limit_text(limit: dict[str, Any], key: str) -> str:
    """One verdict of :func:`advantage_limits` in words; where it is None, what decides it."""
    value = limit[key]
    if value is not None:
        return f"{value} bits" if key == "smallest_bits" else f"{value:g}"
    if not limit["exact_beats_adam"]:
        return "none: digital K-FAC itself does not beat Adam here (the training budget and settings decide it)"
    return ("none: even the widest converters lose it" if key == "smallest_bits"
            else "none: even the tightest planned error loses it")


def report(summary: list[dict[str, Any]], path: Path, cfg: DesignSpaceConfig) -> None:
    exacts = {(s["task"], s.get("method", "solve")): s for s in summary if s["design"] == "exact"}
    devices = sorted((s for s in summary if s["design"] == "device"), key=lambda s: -s["speedup_vs_kfac"])
    front = [s for s in devices if s["pareto"]]
    lines = [
        "# Design space: projected speedup against accuracy loss", "",
        f"![design space]({path.with_suffix('.png').name})", "",
        "## Assumptions",
        f"- Designs: the `{cfg.system or cfg.hardware}` hardware with converter bits "
        + "; ".join(f"{m} method {list(bits_of(cfg, m))}" for m in cfg.methods) + " (matrix DAC, input DAC and ADC "
        f"together), solves planned for a relative error of {list(cfg.target_rel_error)} (this sets the readout "
        f"window), static mismatch {list(cfg.mismatch_sigma)} (relative) and time constants x"
        f"{', x'.join(f'{t:g}' for t in cfg.tau_scale)} of the preset's; the rest of the preset is kept.",
        f"- Accuracy: K-FAC on {', '.join(f'`{t}`' for t in cfg.tasks)} for {cfg.steps} steps over {cfg.seeds} seeds "
        f"with its factor solves (solve method) or inversions (inverse method) on the design (settings of the noise "
        f"study), against the exact backend in the same mode; accuracy loss = exact mean test accuracy ("
        + ", ".join(f"{t} {m}: {e['test_accuracy']:.4f}" for (t, m), e in exacts.items())
        + ") minus the design's; 95% Student-t intervals over seeds, combined in quadrature.",
        *([f"- The inverse method trains only {', '.join(f'`{t}`' for t in cfg.inverse_tasks)} here (`inverse_tasks`): on "
           "the digits CNN's 513 x 513 factors most planned windows hold fewer than the covariance law's 20 d effective "
           "samples, so each inversion samples the readout's path (minutes per run); `--full` trains it on every model."]
          if cfg.inverse_tasks is not None and "inverse" in cfg.methods
          and set(cfg.tasks) - set(cfg.inverse_tasks) else []),
        "- Advantage over Adam (studies.advantage, the noise study's rule): a design keeps it when its mean final "
        "training loss stays below Adam's on the same model and step budget with no fallback; the smallest width is "
        "read at no mismatch and the tightest planned error, the largest planned error at no mismatch and the widest "
        "converters.",
        f"- Speed: `{cfg.workload}` time to target on {cfg.n_gpus} GPUs of the system {describe_system(_system(cfg))}, "
        f"at the design's time constant; both K-FACs take {cfg.step_ratio:g} x the AlgoPerf baseline's steps, "
        f"thermodynamic K-FAC solves both factors on the device every step (solve method) or inverts them every "
        f"{cfg.inv_update_steps} steps (inverse method), factors every {cfg.inv_update_steps} steps, "
        f"digital K-FAC updates and inverts its factors every {cfg.inv_update_steps} steps; the GPU anchored to "
        "AlgoPerf's published Adam step; the device priced by thermo.cost at the design's target error.",
        "- The accuracy is measured on a small model and stands in for the large workload's: the speed and accuracy "
        "sides share the device, not the model.",
        "- Infeasible: a design whose runs fell back to the exact backend (red crosses in the plot) or failed "
        "(grey crosses).", "",
        "## Converter width and planned error that keep K-FAC's advantage over Adam", "",
        "| model | method | smallest converter width | of the widths | largest planned error | of the errors | "
        "Adam train loss | exact K-FAC train loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, method in exacts:
        limit = advantage_limits(summary, task, method)
        lines.append(f"| {task} | {method} | {_limit_text(limit, 'smallest_bits')} (at error {limit['at_error']:g}) | "
                     f"{', '.join(map(str, bits_of(cfg, method)))} | "
                     f"{_limit_text(limit, 'largest_error')} (at {limit['at_bits']} bits) | "
                     f"{', '.join(f'{e:g}' for e in cfg.target_rel_error)} | "
                     f"{limit['adam_train_loss']:.4g} | {limit['exact_train_loss']:.4g} |")
    lines += [
        "",
        f"## Pareto fronts, one per model and method ({len(front)} of {len(devices)} designs)", "",
        "| model | method | bits | target error | mismatch | tau scale | speedup vs digital K-FAC | speedup vs Adam | "
        "accuracy loss (pp, 95% CI) | bottleneck |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {s['task']} | {s.get('method', 'solve')} | {s['bits']} | {s['target_rel_error']:g} | {s['mismatch_sigma']:g} | "
              f"{s['tau_scale']:g} | {s['speedup_vs_kfac']:.3g}x | "
              f"{s['speedup_vs_adam']:.3g}x | {100 * s['accuracy_loss']:.2f} ± {100 * s['accuracy_loss_ci']:.2f} | "
              f"{s['bottleneck']} |" for s in front]
    lines.append("")
    for task, method in exacts:
        mine = [s for s in devices if s.get("method", "solve") == method and s["task"] == task]
        feasible = [s for s in mine if s["feasible"]]
        within = sum(1 for s in feasible if abs(s["accuracy_loss"]) <= s["accuracy_loss_ci"])
        lines.append(f"- {task}, {method} method: {len(feasible)} of {len(mine)} designs are feasible; the accuracy loss of {within} "
                     f"of them lies within its 95% interval of zero (indistinguishable from exact K-FAC at {cfg.seeds} "
                     f"seeds). The fastest feasible design reaches "
                     f"{max((s['speedup_vs_kfac'] for s in feasible), default=math.nan):.3g}x digital K-FAC, against the "
                     f"{max((s['bound_vs_kfac'] for s in mine), default=math.nan):.3g}x that no device can beat (the share "
                     "of digital K-FAC it replaces, Amdahl).")
    lines += ["", "## Every design", "",
              "| model | method | bits | target error | mismatch | tau scale | speedup vs digital K-FAC | "
              "test accuracy (95% CI) | train loss | beats Adam | fallbacks | feasible | Pareto |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {s['task']} | {s.get('method', 'solve')} | {s['bits']} | {s['target_rel_error']:g} | {s['mismatch_sigma']:g} | {s['tau_scale']:g} | {s['speedup_vs_kfac']:.3g}x | "
              f"{s['test_accuracy']:.4f} ± {s['test_accuracy_ci']:.2g} | {s['train_loss']:.4g} | "
              f"{'yes' if s['beats_adam'] else 'no'} | {s['fallbacks']} | "
              f"{'yes' if s['feasible'] else 'no'} | {'yes' if s['pareto'] else ''} |" for s in devices]
    lines += [""] + [f"Digital K-FAC on {t} (exact backend, {m} mode): test accuracy {e['test_accuracy']:.4f} ± "
                     f"{e['test_accuracy_ci']:.2g}, train loss {e['train_loss']:.4g}; "
                     f"{e['speedup_vs_adam']:.3g}x Adam's projected time; Adam's train loss "
                     f"{e['adam_train_loss']:.4g}." for (t, m), e in exacts.items()]
    path.write_text("\n".join(lines) + "\n")


class DesignSpaceStudy(Study[DesignSpaceConfig]):
    """The design-space study under the study protocol. Its flow is two sweeps joined into one
    table, so it runs them itself (:meth:`run`); :meth:`points` and :meth:`evaluate` are its
    training sweep, whose designs the projection sweep times. The other parts hand over to
    this module's functions of the same name (which tests and notebooks call directly)."""

    name = NAME
    help = "hardware design space: projected speedup against accuracy loss, with the Pareto front"
    description = ("Each design (converter bits, planned solve error, mismatch, time constant) trains K-FAC through "
                   "the device for its accuracy loss against the exact backend and projects an AlgoPerf workload's time to "
                   "target for its speedup over digital K-FAC. Finished points are kept; a rerun skips them.")
    config_type = DesignSpaceConfig

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--full", action="store_true", help="the full size (600 steps, 5 seeds, a denser grid)")
        parser.add_argument("--tasks", type=strings, default=None,
                            help="models trained through each design, comma-separated (default digits-mlp,digits-cnn; "
                                 "--full adds digits-vit,graphs-gnn)")
        parser.add_argument("--methods", type=strings, default=None,
                            help=f"thermodynamic K-FAC methods: {','.join(METHODS)} (default both)")
        parser.add_argument("--steps", type=positive_int, default=None, help="training steps per run")
        parser.add_argument("--seeds", type=positive_int, default=None, help="seeds per design")
        parser.add_argument("--bits", type=positive_ints, default=None, help="converter bit widths, comma-separated whole numbers")
        parser.add_argument("--target-errors", type=positive_floats, default=None, help="planned relative errors of the solves")
        parser.add_argument("--mismatch", type=non_negative_floats, default=None, help="static mismatch sigmas, comma-separated")
        parser.add_argument("--tau-scales", type=positive_floats, default=None, help="time-constant multipliers, comma-separated")
        parser.add_argument("--workload", default=None, help="vit-imagenet or gnn-molpcba (default vit-imagenet)")
        parser.add_argument("--hardware", default=None, help=HARDWARE_HELP + " every design starts from (default published)")
        parser.add_argument("--system", default=None, help=SYSTEM_HELP)
        parser.add_argument("--kernels", default=None, help=KERNELS_HELP)
        add_sweep_arguments(parser, f"results/{self.name}")

    def config_from_args(self, args: argparse.Namespace) -> DesignSpaceConfig:
        overrides = {**sweep_options(args), **given(args, "tasks", "steps", "seeds", "workload", "bits", "hardware", "system",
                                                    "kernels", "methods")}
        for flag, name in (("target_errors", "target_rel_error"), ("mismatch", "mismatch_sigma"), ("tau_scales", "tau_scale")):
            if getattr(args, flag) is not None:
                overrides[name] = getattr(args, flag)
        return self.config(args.full, **overrides)

    def points(self, cfg: DesignSpaceConfig) -> list[dict[str, Any]]:
        """The training sweep's points (:func:`training_points`)."""
        _kernels(cfg)  # measured here, once, before the pool's workers read it
        return training_points(cfg)

    def evaluate(self, cfg: DesignSpaceConfig, point: dict[str, Any]) -> dict[str, Any]:
        """Train one design for one seed (:func:`train_design`)."""
        return train_design(cfg, point)

    def plot(self, cfg: DesignSpaceConfig, results: Any, path: Path) -> Any:
        return plot(results, path, cfg)

    def report(self, cfg: DesignSpaceConfig, results: Any, path: Path) -> None:
        report(results, path, cfg)

    def run(self, cfg: DesignSpaceConfig, progress: bool = True) -> Path:
        """Both sweeps (resumable), then the per-design table ``designspace.csv``, the plot and
        the report; returns the table's path."""
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        training_csv, projections_csv = sweep_paths(cfg.out_dir)
        common = dict(workers=self.workers(cfg), scheduler=cfg.scheduler, progress=progress)
        training = sweep.run_sweep(functools.partial(train_design, cfg), training_points(cfg), training_csv,
                                   description="design space: training",
                                   context={"tasks": list(cfg.tasks), "steps": cfg.steps, "hardware": cfg.hardware,
                                            "system": cfg.system},
                                   **common)
        projections = sweep.run_sweep(functools.partial(project_design, cfg), projection_points(cfg), projections_csv,
                                      description="design space: projections",
                                      context=sweep.context_of(cfg, exclude=(*AXES, "methods", "tasks", "steps", "seeds", "workers",
                                                                             "scheduler", "out_dir")), **common)
        summary = summarize(training, projections)
        csv_path = sweep.write_table(self.csv_path(cfg.out_dir), summary,
                                     sweep.context_of(cfg, exclude=("workers", "scheduler", "out_dir")))
        self.plot(cfg, summary, csv_path.with_suffix(".png"))
        self.report(cfg, summary, csv_path.with_suffix(".md"))
        return csv_path

    def outcome(self, cfg: DesignSpaceConfig, csv_path: Path) -> list[str]:
        """Per model and method, the width and planned error that keep the advantage over Adam;
        then the Pareto front, fastest design first."""
        rows = sweep.read_rows(csv_path)
        lines = ["Keeps K-FAC's advantage over Adam: smallest converter width, largest planned error"]
        for r in (r for r in rows if r["design"] == "exact"):
            limit = advantage_limits(rows, r["task"], r.get("method", "solve"))
            lines.append(f"  {r['task']:<11} {r.get('method', 'solve'):<7} {_limit_text(limit, 'smallest_bits')}; "
                         f"{_limit_text(limit, 'largest_error')}")
        front = [r for r in rows if r["pareto"]]
        lines += [f"Pareto front ({len(front)} designs): speedup over digital K-FAC, accuracy loss (percentage points)"]
        lines += [f"  {r['task']:<11} {r.get('method', 'solve'):<7} {r['bits']:>2} bits, target error {r['target_rel_error']:<5g} mismatch {r['mismatch_sigma']:<5g} "
                  f"tau x{r['tau_scale']:<5g}: {r['speedup_vs_kfac']:.3g}x, {100 * r['accuracy_loss']:+.2f} pp"
                  for r in sorted(front, key=lambda r: -r["speedup_vs_kfac"])]
        return lines

    def written(self, cfg: DesignSpaceConfig, csv_path: Path) -> list[str]:
        training_csv, projections_csv = sweep_paths(cfg.out_dir)
        return [f"{csv_path} (per design)", str(training_csv), f"{projections_csv} (every point)",
                str(csv_path.with_suffix(".png")), str(csv_path.with_suffix(".md"))]


STUDY = DesignSpaceStudy()
