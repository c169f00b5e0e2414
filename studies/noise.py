"""Study: how much analog imprecision K-FAC training tolerates.

K-FAC trains small models (the digits MLP and CNN by default; with ``--full`` also the digits ViT
and the graph GCN) with its factor inversions or solves on the simulated device (both published
methods: ``inverse``, the factors inverted on the device, and ``solve``), starting from the
``published`` hardware and varying one non-ideality at a time: converter bit widths (DAC of the
matrix and inputs and ADC of the readout together), the planned relative error of the analog
results, thermal noise ``kT``, static mismatch, and the readout window. Every point is repeated
over seeds; the final training loss and test accuracy are set against the exact backend (in the
same mode) and Adam (their settings: the tuned grids of ``digital.tuning``) with 95% confidence
intervals, and per method and model the smallest bit width and the largest planned error whose
mean training loss stays below Adam's (the second-order benefit kept) are found automatically.
Writes ``noise.csv``, ``noise.png`` and ``noise.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digital.errors import TrainingStopped
from digital.train import TrainConfig, train
from thermo import preset
from thermo.errors import ThermoError

from . import checks, sweep
from .advantage import kept_from, keeps_advantage
from .intervals import mean_ci
from .options import HARDWARE_HELP, add_sweep_arguments, given, positive_int, positive_ints, strings, sweep_options
from .plotting import set_scale
from .protocol import Study

NAME = "noise"
"""``tcd study noise``: the stem of the study's files and the folder of its results."""

KNOBS = ("bits", "target_rel_error", "kT", "mismatch_sigma", "window_tau")
"""The non-idealities swept, one at a time."""

METHODS = ("solve", "inverse")
"""K-FAC's published thermodynamic methods (``KFAC(mode=...)``): solve with the gradient on the
device every step, or invert the factors on the device at the inverse interval."""

REDUCED_KNOBS = ("bits", "target_rel_error")
"""The knobs a task of ``NoiseConfig.bits_only`` sweeps (the two the report's verdicts read)."""

KFAC_SETTINGS = {"lr": 0.3, "damping": 1e-2, "kl_clip": 1e-2, "mode": "solve"}
"""K-FAC's settings (the best point of ``digital.tuning.DIGITS_MLP_GRIDS``) for every variant."""
ADAM_LR = 0.03
"""Adam's best learning rate on the same grid."""


@dataclass(frozen=True)
class NoiseConfig:
    tasks: tuple[str, ...] = ("digits-mlp", "digits-cnn")
    methods: tuple[str, ...] = METHODS
    bits_only: dict[str, dict[str, tuple[int, ...]]] = field(
        default_factory=lambda: {"digits-cnn": {"solve": (4, 8), "inverse": (8, 12, 16)}})
    """Tasks that sweep only these bit widths, per method, and the planned errors
    (:data:`REDUCED_KNOBS`, with their Adam and exact references): the digits CNN's 513-wide
    factor makes each simulated run several times slower than the MLP's. A task may give one
    tuple of widths for every method. The inverse method's widths bracket the covariance law's
    dither condition: at 12 bits and below the ADC step exceeds it on every CNN factor (at 14 bits
    still on the 513 x 513 one), so their inversions sample the path at the million-sample cap
    (an 8-bit, 100-step run: 316 s on one core here); at 16 bits, the published width, every
    inversion is drawn from the law.
    ``full()`` sweeps every knob on every task and method."""
    steps: int = 100
    seeds: int = 3
    bits: tuple[int, ...] = (4, 6, 8, 12, 16)
    planned_errors: tuple[float, ...] = (0.01, 0.05, 0.2, 0.5)
    """The ``target_rel_error`` knob's values: the relative error the analog results are planned
    for (the sampling window grows as its inverse square)."""
    kT: tuple[float, ...] = (1e-6, 1e-4, 1e-2)
    mismatch_sigma: tuple[float, ...] = (0.0, 0.01, 0.05)
    window_tau: tuple[float, ...] = (1.0, 10.0)
    noise_window_tau: float = 10.0
    """Readout window of the ``kT`` points: at a fixed analog time the noise shows in training
    (a window planned to the target accuracy would grow with ``kT`` instead, as in the paper's
    noise sweep at fixed ``t``)."""
    hardware: str = "published"
    target_rel_error: float = 5e-2
    workers: int | None = None
    scheduler: str | None = None
    out_dir: Path = field(default=Path("results") / NAME)

    def __post_init__(self) -> None:
        owner = "NoiseConfig"
        checks.hardware(owner, "hardware", self.hardware)
        if not self.tasks:
            raise checks.StudyConfigError(f"{owner}.tasks must name at least one built-in task")
        object.__setattr__(self, "tasks", tuple(checks.task(owner, "tasks", t) for t in self.tasks))
        if not self.methods or set(self.methods) - set(METHODS):
            raise checks.StudyConfigError(f"{owner}.methods must be among {', '.join(METHODS)}, got {self.methods!r}")
        if not isinstance(self.bits_only, dict):
            raise checks.StudyConfigError(f"{owner}.bits_only must map a task to its bit widths, got {self.bits_only!r}")
        checks.store(
            self,
            steps=checks.integer(owner, "steps", self.steps),
            seeds=checks.integer(owner, "seeds", self.seeds),
            bits=checks.integers(owner, "bits", self.bits, minimum=2),
            bits_only={task: _widths_per_method(owner, task, widths) for task, widths in self.bits_only.items()},
            planned_errors=checks.reals(owner, "planned_errors", self.planned_errors, 0.0, 1.0, True, True),
            kT=checks.reals(owner, "kT", self.kT, low=0.0),
            mismatch_sigma=checks.reals(owner, "mismatch_sigma", self.mismatch_sigma, 0.0, 1.0, high_open=True),
            window_tau=checks.reals(owner, "window_tau", self.window_tau, 0.0, low_open=True),
            noise_window_tau=checks.positive(owner, "noise_window_tau", self.noise_window_tau),
            target_rel_error=checks.real(owner, "target_rel_error", self.target_rel_error, 0.0, 1.0, True, True),
            workers=checks.workers(owner, self.workers),
        )

    @classmethod
    def full(cls, **overrides: Any) -> NoiseConfig:
        return cls(**{"tasks": ("digits-mlp", "digits-cnn", "digits-vit", "graphs-gnn"), "bits_only": {}, "steps": 600, "seeds": 5,
                      "bits": (3, 4, 5, 6, 7, 8, 10, 12, 14, 16), "window_tau": (1.0, 10.0, 100.0), **overrides})


def _widths_per_method(owner: str, task: str, widths: Any) -> dict[str, tuple[int, ...]]:
    """``NoiseConfig.bits_only[task]`` as ``{method: widths}`` (one tuple serves every method)."""
    if not isinstance(widths, dict):
        widths = {method: widths for method in METHODS}
    unknown = set(widths) - set(METHODS)
    if unknown:
        raise checks.StudyConfigError(f"{owner}.bits_only[{task!r}] names methods {sorted(unknown)}; "
                                      f"they must be among {', '.join(METHODS)}")
    return {method: checks.integers(owner, f"bits_only[{task!r}][{method!r}] (bit widths)", widths[method], minimum=2)
            for method in METHODS if method in widths}


def _values(cfg: NoiseConfig, knob: str) -> tuple[float, ...]:
    return cfg.planned_errors if knob == "target_rel_error" else getattr(cfg, knob)


def _grids(cfg: NoiseConfig, task: str, method: str) -> dict[str, tuple[float, ...]]:
    """The knob values ``method`` sweeps on ``task``: every knob, or on a ``bits_only`` task its
    widths for the method (none when it names none) and the planned errors."""
    if task not in cfg.bits_only:
        return {k: _values(cfg, k) for k in KNOBS}
    return {"bits": cfg.bits_only[task].get(method, ()), **{k: _values(cfg, k) for k in REDUCED_KNOBS if k != "bits"}}


def points(cfg: NoiseConfig) -> list[dict[str, Any]]:
    """Adam once per task and seed; per method, the exact backend and every knob value."""
    out = []
    for task in cfg.tasks:
        for seed in range(cfg.seeds):
            out.append({"task": task, "method": "-", "variant": "adam", "value": 0.0, "seed": seed})
            for method in cfg.methods:
                out.append({"task": task, "method": method, "variant": "exact", "value": 0.0, "seed": seed})
                for knob, values in _grids(cfg, task, method).items():
                    for value in values:
                        out.append({"task": task, "method": method, "variant": knob, "value": float(value), "seed": seed})
    return out


def _hardware(cfg: NoiseConfig, knob: str, value: float) -> Any:
    hw = preset(cfg.hardware)
    if knob == "bits":
        return hw.with_converter_bits(int(value))
    if knob in ("kT", "mismatch_sigma"):
        return dataclasses.replace(hw, **{knob: value})
    return hw


def evaluate(cfg: NoiseConfig, point: dict[str, Any]) -> dict[str, Any]:
    """Train one variant for one seed; final training loss, test accuracy and what went wrong."""
    variant, value, mode = point["variant"], float(point["value"]), str(point["method"])
    if variant == "adam":
        return train_variant(point["task"], cfg.steps, int(point["seed"]), optimizer="adam")
    if variant == "exact":
        return train_variant(point["task"], cfg.steps, int(point["seed"]), mode=mode)
    error = value if variant == "target_rel_error" else cfg.target_rel_error
    solver_options: dict[str, Any] = {"hardware": _hardware(cfg, variant, value), "target_rel_error": error}
    if variant == "window_tau":
        solver_options["window_tau"] = value
    elif variant == "kT":
        solver_options["window_tau"] = cfg.noise_window_tau
    return train_variant(point["task"], cfg.steps, int(point["seed"]), solver="thermo", solver_options=solver_options,
                         mode=mode)


def train_variant(
    task: str, steps: int, seed: int, *, optimizer: str = "kfac", solver: str = "exact",
    solver_options: dict[str, Any] | None = None, mode: str = KFAC_SETTINGS["mode"],
) -> dict[str, Any]:
    """Train ``task`` for ``steps`` with Adam (lr :data:`ADAM_LR`) or K-FAC (:data:`KFAC_SETTINGS`,
    in ``mode``: ``solve`` or ``inverse``) whose factor solves or inversions go to ``solver``; the
    thermo solver's noise is seeded with ``seed``.
    Returns the final training loss, test accuracy, exact fallbacks, warnings, analog time (s)
    and a status (``ok``, or ``failed: <error>`` for a diverged or refused run, which is a result)."""
    common = dict(task=task, steps=steps, seed=seed, eval_every=0, checkpoint_every=0)
    if optimizer == "adam":
        config = TrainConfig(optimizer="adam", lr=ADAM_LR, **common)
    else:
        options = {**{k: v for k, v in KFAC_SETTINGS.items() if k != "lr"}, "mode": mode}
        solver_options = dict(solver_options or {})
        if solver == "thermo":
            solver_options.setdefault("seed", seed)
        config = TrainConfig(optimizer="kfac", lr=KFAC_SETTINGS["lr"], optimizer_options=options, solver=solver,
                             solver_options=solver_options, **common)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = train(config)
        except (TrainingStopped, ThermoError) as err:
            return {"train_loss": math.inf, "test_accuracy": 0.0, "fallbacks": 0, "warnings": len(caught),
                    "analog_time_s": 0.0, "status": f"failed: {type(err).__name__}"}
    fallbacks = sum(int(r.get("fallbacks", 0)) for r in result.history)
    analog = sum(float(r.get("analog_time_s", 0.0)) for r in result.history)
    return {"train_loss": result.final["train_loss"], "test_accuracy": result.final["test_accuracy"],
            "fallbacks": fallbacks, "warnings": len(caught), "analog_time_s": analog, "status": "ok"}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and 95% confidence half-width (Student t) over seeds per (task, method, variant, value)."""
    groups: dict[tuple[str, str, str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], str(r.get("method", "solve")), r["variant"], float(r["value"])), []).append(r)
    out = []
    for (task, method, variant, value), rs in sorted(groups.items()):
        entry: dict[str, Any] = {"task": task, "method": method, "variant": variant, "value": value, "n": len(rs)}
        for metric in ("train_loss", "test_accuracy"):
            entry[metric], entry[f"{metric}_ci"] = mean_ci([float(r[metric]) for r in rs])
        entry["fallbacks"] = sum(int(r["fallbacks"]) for r in rs)
        entry["failed"] = sum(1 for r in rs if str(r["status"]) != "ok")
        out.append(entry)
    return out


def _keeps_benefit(summary: list[dict[str, Any]], task: str, method: str | None, knob: str,
                   descending: bool) -> float | None:
    """The start of the run of ``knob`` values, from its most favourable end, that keep K-FAC's
    advantage over Adam (:mod:`studies.advantage`); None if even the most favourable does not."""
    adam = next(s["train_loss"] for s in summary if s["task"] == task and s["variant"] == "adam")
    return kept_from(
        ((s["value"], keeps_advantage(s["train_loss"], adam, s.get("fallbacks", 0) + s.get("failed", 0)))
         for s in summary if s["task"] == task and s["variant"] == knob
         and (method is None or s.get("method", "solve") == method)),
        descending,
    )


def smallest_precision(summary: list[dict[str, Any]], task: str, method: str | None = None) -> int | None:
    """Smallest bit width from which on every larger width keeps K-FAC's mean final training
    loss below Adam's (the second-order benefit kept) with ``method`` (None: the only one in
    ``summary``). None if even the widest does not."""
    keeps = _keeps_benefit(summary, task, method, "bits", descending=True)
    return None if keeps is None else int(keeps)


def largest_error(summary: list[dict[str, Any]], task: str, method: str | None = None) -> float | None:
    """Largest planned relative error up to which every smaller planned error keeps K-FAC's mean
    final training loss below Adam's with ``method``. None if even the smallest does not."""
    return _keeps_benefit(summary, task, method, "target_rel_error", descending=False)


def _bits_verdict(cfg: NoiseConfig, task: str, method: str, smallest: int | None) -> str:
    """The smallest-width verdict as the report states it, with the widths swept."""
    widths = _grids(cfg, task, method)["bits"]
    if not widths:
        return "not swept (--full sweeps it)"
    swept = ", ".join(str(int(b)) for b in sorted(widths))
    return f"{smallest if smallest is not None else 'none'} (of {swept})"


def run(cfg: NoiseConfig, progress: bool = True) -> Path:
    """Run the missing points, summarize over seeds, plot and report; return the CSV path."""
    return STUDY.run(cfg, progress)


AXIS_LABELS = {
    "bits": "converter bit width (bits)",
    "target_rel_error": "planned relative error of the analog results (fraction)",
    "kT": "thermal noise kT (V^2)",
    "mismatch_sigma": "static mismatch sigma (relative)",
    "window_tau": "readout window (tau)",
}
"""The x label of each knob's panel, with its unit."""


def plot(summary: list[dict[str, Any]], path: Path, cfg: NoiseConfig) -> Any:
    """Final training loss against each knob, one panel per knob, with the exact and Adam
    references; a point whose runs fell back to the exact solver gets a red cross (named in the
    legend). Axes are logarithmic where their values span more than a decade. Returns the
    (closed) Figure."""
    # matplotlib is imported where a figure is drawn: at module level it would slow every
    # `tcd` command (even --help) by about half a second
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(KNOBS), figsize=(4 * len(KNOBS), 3.6), squeeze=False)
    for ax, knob in zip(axes[0], KNOBS):
        xs: list[float] = []
        ys: list[float] = []
        fell_back: list[tuple[float, float]] = []
        for task in cfg.tasks:
            adam = next(s["train_loss"] for s in summary if s["task"] == task and s["variant"] == "adam")
            drawn = False
            for method in cfg.methods:
                entries = sorted((s for s in summary if s["task"] == task and s["variant"] == knob
                                  and s.get("method", "solve") == method and math.isfinite(s["train_loss"])),
                                 key=lambda s: s["value"])
                if not entries:
                    continue
                x = [s["value"] for s in entries]
                y = [s["train_loss"] for s in entries]
                e = [0 if math.isnan(s["train_loss_ci"]) else s["train_loss_ci"] for s in entries]
                line = ax.errorbar(x, y, yerr=e, marker="o" if method == "solve" else "s", capsize=3,
                                   label=f"{task} {method}")
                xs += x
                ys += y
                fell_back += [(s["value"], s["train_loss"]) for s in entries if s.get("fallbacks", 0) > 0]
                exact = next(s["train_loss"] for s in summary if s["task"] == task and s["variant"] == "exact"
                             and s.get("method", "solve") == method)
                ax.axhline(exact, ls="--", color=line[0].get_color(), lw=1, label=f"{task} exact ({method})")
                ys.append(exact)
                drawn = True
            if drawn:
                ax.axhline(adam, ls=":", color="grey", lw=1, label=f"{task} adam")
                ys.append(adam)
        if fell_back:
            ax.plot(*zip(*fell_back), ls="none", marker="X", ms=10, mfc="none", mec="crimson", mew=1.5, zorder=5,
                    label="runs fell back to the exact solver")
        set_scale(ax, "x", xs, allow_symlog=True)  # a zero (no mismatch) is a point of the sweep
        set_scale(ax, "y", ys)
        ax.set_xlabel(AXIS_LABELS[knob])
        ax.set_ylabel("final training loss (nats)")
        if ax.lines or ax.collections:
            ax.legend(fontsize=6)
    fig.suptitle(f"K-FAC through the {cfg.hardware} device, one non-ideality at a time ({cfg.steps} steps)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def report(summary: list[dict[str, Any]], path: Path, cfg: NoiseConfig) -> None:
    lines = [
        "# Noise tolerance of thermodynamic K-FAC", "",
        f"![final training loss against each non-ideality]({path.with_suffix('.png').name})", "",
        "## Assumptions",
        f"- Start from hardware `{cfg.hardware}`; vary one knob at a time (bits: DAC of A and b and the ADC together; "
        "target_rel_error: the relative error the analog results are planned for).",
        f"- K-FAC methods: {', '.join(cfg.methods)} (`KFAC(mode=...)`: the device solves with the gradient every step, "
        "or inverts the factors at the inverse interval); the exact reference runs in the same mode.",
        f"- K-FAC settings { {k: v for k, v in KFAC_SETTINGS.items() if k != 'mode'} } (mode: the method); Adam lr = {ADAM_LR} (best points of the digits-MLP grids); "
        f"{cfg.steps} steps, {cfg.seeds} seeds, solver target relative error {cfg.target_rel_error:g}; "
        f"the kT points read a fixed window of {cfg.noise_window_tau:g} tau, and the window points their own (for "
        "the inverse method, whose covariance needs far more samples than a solve, such windows are far shorter "
        "than planned: those rows show the cost of an unplanned window).",
        "- Confidence intervals: 95%, Student t over seeds. A solver failure falls back to the exact backend "
        "(counted in `fallbacks`).", "",
    ]
    lines += ["## What keeps K-FAC ahead of Adam, per method and model", "",
              "| model | method | smallest bit width | largest planned error |", "|---|---|---|---|"]
    for task in cfg.tasks:
        for method in cfg.methods:
            bits, error = smallest_precision(summary, task, method), largest_error(summary, task, method)
            bits_text = _bits_verdict(cfg, task, method, bits)
            lines.append(f"| {task} | {method} | {bits_text} | "
                         f"{f'{error:g}' if error is not None else 'none in the sweep'} |")
    lines.append("")
    for task in cfg.tasks:
        lines += [f"## {task}", "", "| method | variant | value | train loss (95% CI) | test accuracy (95% CI) | fallbacks | failed |",
                  "|---|---|---|---|---|---|---|"]
        for s in summary:
            if s["task"] == task:
                lines.append(f"| {s['method']} | {s['variant']} | {s['value']:g} | {s['train_loss']:.4g} ± {s['train_loss_ci']:.2g} | "
                             f"{s['test_accuracy']:.4f} ± {s['test_accuracy_ci']:.2g} | {s['fallbacks']} | {s['failed']} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


class NoiseStudy(Study[NoiseConfig]):
    """The noise study under the study protocol; each part hands over to this module's function
    of the same name (which tests and notebooks call directly)."""

    name = NAME
    help = "K-FAC through the simulated device across bit widths, kT, mismatch and windows vs exact and Adam"
    description = ("Final loss and accuracy with seeds and 95%% confidence intervals, and the smallest bit width "
                   "that keeps K-FAC ahead of Adam. Finished points are kept; a rerun skips them.")
    config_type = NoiseConfig
    swept = ("bits", "planned_errors", "kT", "mismatch_sigma", "window_tau", "tasks", "methods", "seeds", "bits_only")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--full", action="store_true", help="the full size (every knob on MLP and CNN, 600 steps, 5 seeds, more widths)")
        parser.add_argument("--tasks", type=strings, default=None, help="tasks, comma-separated (default digits-mlp,digits-cnn; "
                            "the CNN sweeps bit widths and planned errors only)")
        parser.add_argument("--steps", type=positive_int, default=None, help="training steps per run")
        parser.add_argument("--seeds", type=positive_int, default=None, help="seeds per point")
        parser.add_argument("--methods", type=strings, default=None, help="K-FAC methods through the device: "
                            f"{','.join(METHODS)} (default both)")
        parser.add_argument("--bits", type=positive_ints, default=None, help="bit widths, comma-separated whole numbers")
        parser.add_argument("--hardware", default=None, help=HARDWARE_HELP + " the sweeps start from (default published)")
        add_sweep_arguments(parser, f"results/{self.name}")

    def config_from_args(self, args: argparse.Namespace) -> NoiseConfig:
        overrides = {**sweep_options(args), **given(args, "tasks", "steps", "seeds", "hardware", "methods")}
        if args.bits is not None:  # every task sweeps the widths given
            overrides["bits"] = args.bits
            overrides["bits_only"] = {task: args.bits for task in NoiseConfig().bits_only}
        return self.config(args.full, **overrides)

    def points(self, cfg: NoiseConfig) -> list[dict[str, Any]]:
        return points(cfg)

    def evaluate(self, cfg: NoiseConfig, point: dict[str, Any]) -> dict[str, Any]:
        return evaluate(cfg, point)

    def analyse(self, cfg: NoiseConfig, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Mean and 95% interval over seeds per (task, variant, value) (:func:`summarize`)."""
        return summarize(rows)

    def plot(self, cfg: NoiseConfig, results: Any, path: Path) -> Any:
        return plot(results, path, cfg)

    def report(self, cfg: NoiseConfig, results: Any, path: Path) -> None:
        report(results, path, cfg)

    def outcome(self, cfg: NoiseConfig, csv_path: Path) -> list[str]:
        summary = summarize(sweep.read_rows(csv_path, last_run=True))
        lines = []
        for task in cfg.tasks:
            for method in cfg.methods:
                smallest, error = smallest_precision(summary, task, method), largest_error(summary, task, method)
                lines.append(f"{task} ({method}): smallest bit width keeping K-FAC ahead of Adam: "
                             f"{_bits_verdict(cfg, task, method, smallest)}; "
                             "largest planned error: "
                             f"{f'{error:g}' if error is not None else 'none'}")
        return lines


STUDY = NoiseStudy()
