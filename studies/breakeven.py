"""Study: the break-even frontier, the device that would make thermodynamic K-FAC pay.

For each AlgoPerf workload (:data:`studies.projections.WORKLOADS`, the GPU anchored to the
published Adam step), each published thermodynamic K-FAC method (inverse, solve) and each
baseline (digital K-FAC at the same intervals, Adam), and each target speedup (1x, 2x, 10x):
per device knob, the value at which the projected speedup reaches the target with every other
knob at the base device, found by bisection (:func:`studies.crossing.crossing`) between the
base value and the knob's most favourable value in the range searched, or "never" with its
reason: the Amdahl bound (:func:`cosim.runs.offload_bound`) is below the target, or the
speedup saturates first because another resource rules.

Writes ``breakeven.csv`` (one row per workload, method, baseline, target and knob: ``workload,
method, baseline, target_speedup, knob, value_at_target, reachable, limit`` and the base and
bound figures), ``breakeven.png`` and ``breakeven.md``.
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thermo import cost
from thermo.device import CouplingDelivery

from . import checks, sweep
from .crossing import crossing
from .options import (
    DEVICE_HELP,
    SYSTEM_HELP,
    add_sweep_arguments,
    given,
    positive_floats,
    positive_ints,
    strings,
    sweep_options,
)
from .projections import (
    KERNELS_HELP,
    WORKLOADS,
    base_system,
    calibrated,
    config_kernels,
    describe_system,
    kernels_option,
    project_methods,
    project_tngd,
    published_step_s,
    workload_shape,
)
from .protocol import Study

NAME = "breakeven"
"""``tcd study breakeven``: the stem of the study's files and the folder of its results."""


@dataclass(frozen=True)
class Knob:
    """A device knob searched: its label and unit, its value on a system, its most favourable
    value in the range searched, and how a value is applied (``integer``: whole values)."""

    label: str
    base: Callable[[Any, float], float]
    best: float
    apply: Callable[[Any, float], Any]
    integer: bool = False


def _tau(system: Any, value: float) -> Any:
    return system.replace(device=system.device.with_chip(tau_s=system.device.chip.tau_s * value))


def _link(system: Any, value: float) -> Any:
    link = system.device.link
    return system.replace(device=system.device.replace(link=link.replace(bandwidth_bps=link.bandwidth_bps * value)))


def _chips(system: Any, value: float) -> Any:
    return system.replace(device=system.device.replace(n_chips=int(value)))


def _bits(system: Any, value: float) -> Any:
    return system.replace(device=system.device.replace(chip=system.device.chip.with_converter_bits(int(value))))


KNOBS: dict[str, Knob] = {
    "tau_scale": Knob("device time constant (x the base device's tau)", lambda s, e: 1.0, 1e-4, _tau),
    "link_scale": Knob("link bandwidth (x the base device's)", lambda s, e: 1.0, 1e3, _link),
    "n_chips": Knob("analog chips (count)", lambda s, e: float(s.device.n_chips), 4096.0, _chips, integer=True),
    "bits": Knob("converter bit width (bits)", lambda s, e: float(s.device.chip.bits_A or 32), 4.0, _bits, integer=True),
    "target_rel_error": Knob("planned relative error of the analog results", lambda s, e: e, 0.3, lambda s, v: s),
}
"""The continuous knobs and their search ranges (assumptions of this study: from the base value
to the most favourable value named here)."""

DELIVERIES = tuple(d.value for d in CouplingDelivery)


@dataclass(frozen=True)
class Choice:
    """A device knob that is a choice, not a number: its label, the values tried (in order: the
    first that reaches a target is the answer), the base device's value, and how one is applied
    (raising ``ValueError`` where the base device cannot take it)."""

    label: str
    values: tuple[str, ...]
    base: Callable[[Any], str]
    apply: Callable[[Any, str], Any]


def _device(system: Any, **changes: Any) -> Any:
    return system.replace(device=system.device.replace(**changes))


def _channels_of(system: Any) -> str:
    d = system.device
    return "one-per-unit" if d.dac_channels is None and d.adc_channels is None else f"{d.dac_channels}/{d.adc_channels}"


CHOICES: dict[str, Choice] = {
    "coupling_delivery": Choice("how the couplings reach the chips", DELIVERIES,
                                lambda s: s.device.coupling_delivery.value,
                                lambda s, v: _device(s, coupling_delivery=v)),
    "converter_channels": Choice("DAC and ADC channels per chip", ("one-per-unit",), _channels_of,
                                 lambda s, v: s.replace(device=s.device.with_converter_channels(None))),
    "resident_couplings": Choice("couplings stay on the chip until they change", ("off", "on"),
                                 lambda s: "on" if s.device.resident_couplings else "off",
                                 lambda s, v: _device(s, resident_couplings=v == "on")),
    "replicas": Choice("copies of a small matrix on a larger chip", ("off", "on"),
                       lambda s: "on" if s.device.replicas else "off", lambda s, v: _device(s, replicas=v == "on")),
}
"""The choice knobs, tried value by value."""

METHODS = ("inverse", "solve", "tngd")
"""The methods searched: thermodynamic K-FAC's inverse and solve methods, and TNGD."""

BASELINES = ("kfac", "adam")
"""Digital K-FAC at the same factor and inverse interval, and Adam."""


@dataclass(frozen=True)
class BreakevenConfig:
    workloads: tuple[str, ...] = ("vit-imagenet", "gnn-molpcba")
    methods: tuple[str, ...] = ("inverse", "solve", "tngd")
    """The two published thermodynamic K-FAC methods, and thermodynamic NGD (its ``r (r + 2N)``
    programmed values per iteration, ``r = b d_z``; :func:`studies.projections.project_tngd`)."""
    baselines: tuple[str, ...] = BASELINES
    targets: tuple[float, ...] = (1.0, 2.0, 10.0)
    knobs: tuple[str, ...] = (*KNOBS, *CHOICES)
    gpu: str = "V100"
    n_gpus: int = 8
    device: str = "published"
    n_chips: int | None = None
    system: str | None = None
    """A system file replacing ``gpu``, ``device`` and ``n_chips``."""
    step_ratio: float = 0.5
    """K-FAC's steps over the baseline's (the published 0.5-0.75 range's favourable end)."""
    intervals: tuple[int, ...] = (1, 10)
    """Factor and inverse intervals of both K-FACs: 1, the frequent-inversion setting the paper's
    claims rest on (its digital breakdown has inversion dominating), and 10, K-FAC's usual one."""
    target_rel_error: float = 1e-2
    kernels: str = "measure"
    """The GPU's kernel rates relative to a GEMM, as in the projections study (``measure``,
    ``none`` or a kernel calibration file)."""
    rel_tol: float = 0.02
    """The bisection stops when its bracket's ratio is within ``1 + rel_tol``."""
    scan: int = 6
    """Values tried along each knob before bisecting (geometric from the base value to the best):
    a knob whose speedup peaks inside its range (more chips waiting on one shared link) is found."""
    map_knobs: tuple[str, ...] = ("tau_scale", "n_chips")
    """The two knobs of the 2-D maps (the two that move the speedup most in the 1-D searches)."""
    map_points: int = 7
    """Values per knob of a map (geometric from the base value to the knob's best)."""
    map_method: str = "solve"
    map_interval: int = 1
    workers: int | None = None
    scheduler: str | None = None
    out_dir: Path = field(default=Path("results") / NAME)

    @classmethod
    def full(cls, **overrides: Any) -> BreakevenConfig:
        return cls(**{"rel_tol": 0.005, **overrides})

    def __post_init__(self) -> None:
        owner = "BreakevenConfig"
        for name, allowed in (("workloads", tuple(WORKLOADS)), ("methods", METHODS),
                              ("baselines", BASELINES), ("knobs", (*KNOBS, *CHOICES))):
            values = getattr(self, name)
            if not values or set(values) - set(allowed):
                raise checks.StudyConfigError(f"{owner}.{name} must be among {', '.join(allowed)}, got {values!r}")
        if len(self.map_knobs) != 2 or set(self.map_knobs) - set(KNOBS) or len(set(self.map_knobs)) != 2:
            raise checks.StudyConfigError(f"{owner}.map_knobs must be two different knobs among {', '.join(KNOBS)}, "
                                          f"got {self.map_knobs!r}")
        if self.map_method not in ("inverse", "solve"):
            raise checks.StudyConfigError(f"{owner}.map_method must be inverse or solve, got {self.map_method!r}")
        checks.device(owner, "device", self.device)
        checks.system_file(owner, "system", self.system)
        kernels_option(owner, self.kernels)
        checks.store(
            self,
            targets=checks.reals(owner, "targets", self.targets, 0.0, low_open=True),
            n_gpus=checks.integer(owner, "n_gpus", self.n_gpus),
            n_chips=None if self.n_chips is None else checks.integer(owner, "n_chips", self.n_chips),
            step_ratio=checks.real(owner, "step_ratio", self.step_ratio, 0.0, math.inf, True),
            intervals=checks.integers(owner, "intervals", self.intervals, distinct=True),
            target_rel_error=checks.real(owner, "target_rel_error", self.target_rel_error, 0.0, 1.0, True, True),
            rel_tol=checks.real(owner, "rel_tol", self.rel_tol, 0.0, 1.0, True, True),
            map_points=checks.integer(owner, "map_points", self.map_points, minimum=2),
            scan=checks.integer(owner, "scan", self.scan, minimum=0),
            map_interval=checks.integer(owner, "map_interval", self.map_interval),
            workers=checks.workers(owner, self.workers),
        )


@functools.lru_cache(maxsize=8)
def _system(cfg: BreakevenConfig) -> Any:
    """The base system (read once per configuration: every search and map point starts from it)."""
    return calibrated(base_system(cfg.gpu, None, None, cfg.n_chips, cfg.system, device=cfg.device), config_kernels(cfg))


@functools.lru_cache(maxsize=4096)
def projected(cfg: BreakevenConfig, workload: str, method: str, interval: int, knob: str, value: float | str) -> dict[str, Any]:
    """:func:`studies.projections.project_methods` on the base system with one knob moved
    (cached: the searches of one process share their projections)."""
    system, error = _system(cfg), cfg.target_rel_error
    if knob in CHOICES:
        system = CHOICES[knob].apply(system, str(value))
    elif knob == "target_rel_error":
        error = float(value)
    elif knob != "base":
        system = KNOBS[knob].apply(system, float(value))
    if method == "tngd":
        return project_tngd(workload, system, cfg.step_ratio, n_gpus=cfg.n_gpus, interval=interval)
    return project_methods(workload, system, cfg.step_ratio, n_gpus=cfg.n_gpus, interval=interval,
                           analog_op=method, target_rel_error=error)


def map_values(cfg: BreakevenConfig, knob: str) -> list[float]:
    """The values of ``knob`` on a map's axis: geometric from its base value to its best."""
    spec = KNOBS[knob]
    values = np.geomspace(spec.base(_system(cfg), cfg.target_rel_error), spec.best, cfg.map_points)
    return sorted(dict.fromkeys(float(round(v)) if spec.integer else float(v) for v in values))


def speedup_map(cfg: BreakevenConfig, workload: str) -> list[dict[str, Any]]:
    """The projected speedups over digital K-FAC and over Adam on the grid of the two map knobs
    (``map_method`` at ``map_interval``), one row per grid point."""
    x_knob, y_knob = cfg.map_knobs
    rows = []
    for x in map_values(cfg, x_knob):
        for y in map_values(cfg, y_knob):
            system, error = _system(cfg), cfg.target_rel_error
            for knob, value in ((x_knob, x), (y_knob, y)):
                if knob == "target_rel_error":
                    error = value
                else:
                    system = KNOBS[knob].apply(system, value)
            row = project_methods(workload, system, cfg.step_ratio, n_gpus=cfg.n_gpus, interval=cfg.map_interval,
                                  analog_op=cfg.map_method, target_rel_error=error)
            rows.append({"workload": workload, x_knob: x, y_knob: y, "speedup_vs_kfac": row["speedup_vs_kfac"],
                         "speedup_vs_adam": row["speedup_vs_adam"], "bound_vs_kfac": row["bound_vs_kfac"],
                         "bottleneck": row["bottleneck"]})
    return rows


def plot_maps(maps: list[dict[str, Any]], path: Path, cfg: BreakevenConfig) -> Any:
    """Per workload, the speedup over digital K-FAC on the two map knobs (log axes, log colour)
    with the 1x and 2x contours where the map reaches them. Returns the (closed) Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    x_knob, y_knob = cfg.map_knobs
    workloads = sorted({r["workload"] for r in maps})
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.6 * len(workloads), 3.8), squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        rows = [r for r in maps if r["workload"] == workload]
        xs, ys = sorted({r[x_knob] for r in rows}), sorted({r[y_knob] for r in rows})
        z = np.array([[next(r["speedup_vs_kfac"] for r in rows if r[x_knob] == x and r[y_knob] == y) for x in xs]
                      for y in ys])
        mesh = ax.pcolormesh(xs, ys, z, shading="nearest", norm=LogNorm(vmin=z.min(), vmax=max(z.max(), 1.0)))
        fig.colorbar(mesh, ax=ax, label="speedup over digital K-FAC (x)")
        levels = [v for v in (1.0, 2.0) if z.min() < v < z.max()]
        if levels:
            contours = ax.contour(xs, ys, z, levels=levels, colors="w", linewidths=1.2)
            ax.clabel(contours, fmt=lambda v: f"{v:g}x", fontsize=7)
        else:
            ax.text(0.5, 0.9, f"no 1x contour: at most {z.max():.3g}x (bound {rows[0]['bound_vs_kfac']:.3g}x)",
                    transform=ax.transAxes, ha="center", fontsize=7, color="w")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(KNOBS[x_knob].label, fontsize=7)
        ax.set_ylabel(KNOBS[y_knob].label, fontsize=7)
        ax.set_title(f"{workload}, {cfg.map_method} method, interval {cfg.map_interval}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def tngd_limits(cfg: BreakevenConfig) -> list[dict[str, Any]]:
    """Per workload, what TNGD's ``r (r + 2N)`` programmed values ask of the device: the device
    part of one iteration on the base device (``thermo.cost``; t = 50 tau), against Adam's
    published step, and the link at which the arrays and the gradient alone fit in that step."""
    device = _system(cfg).device
    out = []
    for workload in cfg.workloads:
        shape = workload_shape(workload, cfg.n_gpus)
        rank = shape.batch_size * shape.output_dim
        adam_s = published_step_s(workload)
        t = cost.estimate_tngd_iteration(device, n_params=shape.n_params, rank=rank, analog_time_tau=50.0)
        need = cost.tngd_link_needed_bps(device, n_params=shape.n_params, rank=rank, within_s=adam_s)
        out.append({"workload": workload, "n_params": shape.n_params, "rank": rank,
                    "values": cost.tngd_array_values(shape.n_params, rank), "device_s": t.total_s, "adam_step_s": adam_s,
                    "link_needed_bps": need, "link_bps": device.link.bandwidth_bps})
    return out


def map_path(csv_path: Path) -> Path:
    """The maps' table beside the study's CSV (``breakeven_map.csv``; its figure ``.png``)."""
    return csv_path.with_name(f"{NAME}_map.csv")


def points(cfg: BreakevenConfig) -> list[dict[str, Any]]:
    return [{"workload": w, "method": m, "interval": i, "baseline": b, "target_speedup": float(t), "knob": k}
            for w in cfg.workloads for m in cfg.methods for i in cfg.intervals for b in cfg.baselines
            for t in cfg.targets for k in cfg.knobs]


def evaluate(cfg: BreakevenConfig, point: dict[str, Any]) -> dict[str, Any]:
    """The knob value at which one target is reached, or never with its reason."""
    workload, method, baseline, knob = point["workload"], point["method"], point["baseline"], point["knob"]
    interval = int(point["interval"])
    target = float(point["target_speedup"])
    key = f"speedup_vs_{baseline}"
    base = projected(cfg, workload, method, interval, "base", 0.0)
    bound = float(base[f"bound_vs_{baseline}"])
    out = {"base_speedup": float(base[key]), "bound": bound, "base_bottleneck": base["bottleneck"]}
    if knob in CHOICES:
        return {**out, **_choose(cfg, workload, method, interval, knob, key, target, bound)}
    spec = KNOBS[knob]
    published = spec.base(_system(cfg), cfg.target_rel_error)

    def speedup(value: float) -> tuple[float, str]:
        row = projected(cfg, workload, method, interval, knob, float(value))
        return float(row[key]), str(row["bottleneck"])

    found = crossing(speedup, target, published, spec.best, bound=bound, rel_tol=cfg.rel_tol, integer=spec.integer,
                     scan=cfg.scan)
    return {**out, "value_at_target": "" if found.value is None else found.value, "reachable": found.reachable,
            "limit": found.limit, "base_value": published}


def _choose(cfg: BreakevenConfig, workload: str, method: str, interval: int, knob: str, key: str, target: float,
            bound: float) -> dict[str, Any]:
    """A choice knob: the first of its values that reaches ``target``, or never with its reason."""
    choice = CHOICES[knob]
    base_value = choice.base(_system(cfg))
    if bound < target:
        return {"value_at_target": "", "reachable": False, "limit": f"bound: no device beats {bound:.3g}x",
                "base_value": base_value}
    runs, refused = {}, {}
    for value in choice.values:
        try:
            runs[value] = projected(cfg, workload, method, interval, knob, value)
        except ValueError as exc:  # the base device cannot take this value
            refused[value] = str(exc).split(":")[0] if len(str(exc)) > 90 else str(exc)
    reached = next((v for v in choice.values if v in runs and runs[v][key] >= target), None)
    if reached is not None:
        return {"value_at_target": reached, "reachable": True, "limit": "", "base_value": base_value}
    if not runs:
        return {"value_at_target": "", "reachable": False, "base_value": base_value,
                "limit": "; ".join(f"{v} not possible: {why}" for v, why in refused.items())}
    best = max(runs, key=lambda v: runs[v][key])
    limit = f"saturates at {runs[best][key]:.3g}x with {best} ({runs[best]['bottleneck']} bound)"
    limit += "".join(f"; {v} not possible: {why}" for v, why in refused.items())
    return {"value_at_target": "", "reachable": False, "limit": limit, "base_value": base_value}


def _factor(value: float, base: float) -> float:
    """How far a knob moved from its base value, either way (a factor >= 1)."""
    return max(value / base, base / value)


def _improvement(row: dict[str, Any]) -> float:
    """How far a reached knob moved from its base value, for the figure."""
    return _factor(float(row["value_at_target"]), float(row["base_value"]))


def plot(rows: list[dict[str, Any]], path: Path) -> Any:
    """Per workload and method, the factor by which each knob must move from the base device to
    reach each target (log axis), over digital K-FAC and over Adam; a knob that never reaches a
    target is marked at the top. Returns the (closed) Figure."""
    # matplotlib is imported where a figure is drawn: at module level it would slow every
    # `tcd` command (even --help) by about half a second
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["workload"], r["method"], int(r["interval"])) for r in rows})
    knobs = [k for k in KNOBS if any(r["knob"] == k for r in rows)]
    columns = min(4, max(1, len(panels)))
    n_rows = math.ceil(max(1, len(panels)) / columns)
    fig, grid = plt.subplots(n_rows, columns, figsize=(4.2 * columns, 3.6 * n_rows), squeeze=False)
    axes = [list(grid.ravel())]
    for ax in axes[0][len(panels):]:
        ax.set_visible(False)
    for ax, (workload, method, interval) in zip(axes[0], panels):
        ys: list[float] = [1.0]
        for (baseline, target), marker in zip(sorted({(r["baseline"], float(r["target_speedup"])) for r in rows}),
                                             "osD^v<>ph*"):
            pts = [(knobs.index(r["knob"]), _improvement(r)) for r in rows
                   if (r["workload"], r["method"], int(r["interval"]), r["baseline"], float(r["target_speedup"]))
                   == (workload, method, interval, baseline, target)
                   and r["knob"] in knobs and str(r["reachable"]) == "True"]
            if pts:
                ax.plot(*zip(*pts), marker=marker, ls="none", label=f"{target:g}x over {baseline}")
                ys += [p[1] for p in pts]
        never = [knobs.index(r["knob"]) for r in rows if (r["workload"], r["method"], int(r["interval"])) == (workload, method, interval)
                 and r["knob"] in knobs and str(r["reachable"]) != "True"]
        top = max(10.0, max(ys) * 3)
        if never:
            ax.plot(never, [top] * len(never), "x", color="grey", ls="none", label="never (bound or saturation)")
        if len(ys) == 1:
            ax.text(0.5, 0.5, "no target reached by any knob", transform=ax.transAxes, ha="center", fontsize=7)
        ax.set_xticks(range(len(knobs)), knobs, rotation=30, fontsize=7)
        ax.set_yscale("log")  # factors of change from x1 to x10^4: always decades
        ax.set_ylim(0.8, top * 2)
        ax.set_xlabel("device knob (name)", fontsize=8)
        ax.set_ylabel("change from the base device to reach the target (x)", fontsize=7)
        ax.set_title(f"{workload}, TNGD (K-FAC interval {interval})" if method == "tngd"
                     else f"{workload}, {method} method, interval {interval}", fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def _kernel_note(cfg: BreakevenConfig) -> str:
    calibration = config_kernels(cfg)
    if calibration is None:
        return "every GPU kernel at the GEMM's FLOP rate (uncalibrated)"
    rates = ", ".join(f"{k} {v:.3g}" for k, v in calibration.relative().items())
    return f"GPU kernel rates relative to a GEMM measured on {calibration.machine} ({rates}), assumed to carry to the GPU"


def _cell(row: dict[str, Any]) -> str:
    if str(row["reachable"]) == "True":
        value = row["value_at_target"]
        return f"{value:.3g}" if isinstance(value, float) else str(value)
    return f"never ({row['limit']})"


def report(rows: list[dict[str, Any]], path: Path, cfg: BreakevenConfig, maps: list[dict[str, Any]] | None = None) -> None:
    knobs = [k for k in cfg.knobs if any(r["knob"] == k for r in rows)]
    lines = ["# Break-even frontier: the device that makes thermodynamic K-FAC and NGD pay", "",
             f"![knob changes to break even]({path.with_suffix('.png').name})", "", "## Assumptions",
             f"- Base system: {describe_system(_system(cfg))}; {cfg.n_gpus} data-parallel GPUs; the GPU anchored to "
             "AlgoPerf's published Adam step (see the projections study); " + _kernel_note(cfg) + ".",
             f"- Both K-FACs take {cfg.step_ratio:g} x the AlgoPerf baseline's steps at factor and inverse intervals "
             f"{', '.join(map(str, cfg.intervals))} (1: the frequent-inversion setting the paper's claims rest on); "
             f"planned analog error {cfg.target_rel_error:g} unless the knob is that error."
             + (" TNGD takes as many steps as K-FAC (an assumption), t = 50 tau per iteration; its bound is its "
                "digital floor (gradient and the d_z backward passes of its Jacobian with the device taking no time); "
                "its interval is only digital K-FAC's." if "tngd" in cfg.methods else ""),
             f"- Each knob moves alone, the others at the base device; the search tries {cfg.scan} values geometric from "
             "the base value to the best, then bisects the first bracket that reaches the target (a speedup that "
             f"peaks inside the range, as with more chips on one shared link, is found), and stops within "
             f"{100 * cfg.rel_tol:g}%. Ranges searched: "
             + "; ".join(f"{k}: base to {KNOBS[k].best:g}" for k in knobs if k in KNOBS)
             + "".join(f"; {k}: {', '.join(CHOICES[k].values)}" for k in knobs if k in CHOICES) + ".",
             "- never (bound): the share of digital K-FAC the device replaces caps every device's speedup below the "
             "target (Amdahl); never (saturates / peaks): the knob's best value, or its best value tried, leaves "
             "another resource in charge.", ""]
    for workload in cfg.workloads:
        for method, interval in ((m, i) for m in cfg.methods for i in cfg.intervals):
            sub = [r for r in rows if (r["workload"], r["method"], int(r["interval"])) == (workload, method, interval)]
            if not sub:
                continue
            first = sub[0]
            title = (f"TNGD (digital K-FAC at interval {interval})" if method == "tngd"
                     else f"{method} method, interval {interval}")
            lines += [f"## {workload}, {title}", "",
                      f"At the base device: {float(next(r['base_speedup'] for r in sub if r['baseline'] == 'kfac')):.3g}x "
                      f"digital K-FAC" if any(r["baseline"] == "kfac" for r in sub) else f"At the base device: "
                      f"{float(first['base_speedup']):.3g}x over {first['baseline']}", "",
                      "| baseline | target | bound | " + " | ".join(knobs) + " |",
                      "|---|---|---|" + "---|" * len(knobs)]
            for baseline in cfg.baselines:
                for target in cfg.targets:
                    cells = {r["knob"]: r for r in sub if r["baseline"] == baseline and float(r["target_speedup"]) == target}
                    if not cells:
                        continue
                    bound = float(next(iter(cells.values()))["bound"])
                    lines.append(f"| {baseline} | {target:g}x | {bound:.3g}x | "
                                 + " | ".join(_cell(cells[k]) if k in cells else "-" for k in knobs) + " |")
            lines.append("")
    limits = tngd_limits(cfg)
    floors = {w: max((float(r["bound"]) for r in rows if r["method"] == "tngd" and r["workload"] == w
                      and r["baseline"] == "adam"), default=None) for w in cfg.workloads}
    floor_text = "; ".join(f"{w}: no device brings it past {b:.3g}x Adam" for w, b in floors.items() if b is not None)
    lines += ["## Thermodynamic NGD: what it programs, and its digital floor", "",
              (f"Its digital floor (the gradient and the d_z backward passes of its Jacobian, with the device taking "
               f"no time) already rules TNGD out: {floor_text}. " if floor_text else "")
              + "TNGD reprograms its arrays J_f, H_L and J_f^T, r (r + 2N) values with r = b d_z, on every iteration. "
              "The device part of one iteration on the base device (priced by thermo.cost, t = 50 tau), against "
              "Adam's published step, and the link on which the arrays and the gradient alone would fit in that step:",
              "", "| workload | N | r = b d_z (per GPU) | programmed values | device part of one iteration | Adam step | "
              "link needed | x the base link |", "|---|---|---|---|---|---|---|---|"]
    for t in limits:
        lines.append(f"| {t['workload']} | {t['n_params']:,} | {t['rank']:,} | {t['values']:.3g} | {t['device_s']:.3g} s | "
                     f"{t['adam_step_s']:.3g} s | {t['link_needed_bps']:.3g} bit/s | "
                     f"{t['link_needed_bps'] / t['link_bps']:.3g} |")
    lines.append("")
    if maps:
        x_knob, y_knob = cfg.map_knobs
        lines += [f"## Maps: {x_knob} against {y_knob}", "",
                  f"![speedup maps]({map_path(path).with_suffix('.png').name})", "",
                  f"The {cfg.map_method} method at interval {cfg.map_interval}, {cfg.map_points} values of each knob "
                  f"(table: `{map_path(path).name}`). Per workload, the largest speedup on the map and where the 1x "
                  "contour starts:", "", "| workload | largest speedup over digital K-FAC | at | bound | 1x first reached at |",
                  "|---|---|---|---|---|"]
        base_x, base_y = (KNOBS[k].base(_system(cfg), cfg.target_rel_error) for k in (x_knob, y_knob))
        for workload in sorted({r["workload"] for r in maps}):
            ws = [r for r in maps if r["workload"] == workload]
            top = max(ws, key=lambda r: r["speedup_vs_kfac"])
            reached = [r for r in ws if r["speedup_vs_kfac"] >= 1.0]
            # the grid point reaching 1x whose knobs move least from the base device (product of the factors)
            cheapest = min(reached, key=lambda r: _factor(r[x_knob], base_x) * _factor(r[y_knob], base_y), default=None)
            where = "-" if cheapest is None else f"{x_knob} {cheapest[x_knob]:.3g}, {y_knob} {cheapest[y_knob]:.3g}"
            lines.append(f"| {workload} | {top['speedup_vs_kfac']:.3g}x | {x_knob} {top[x_knob]:.3g}, {y_knob} "
                         f"{top[y_knob]:.3g} | {top['bound_vs_kfac']:.3g}x | {where} |")
    path.write_text("\n".join(lines) + "\n")


class BreakevenStudy(Study[BreakevenConfig]):
    """The break-even study under the study protocol."""

    name = NAME
    help = "break-even frontier: per device knob, the value at which thermodynamic K-FAC reaches 1x, 2x, 10x"
    description = ("For each AlgoPerf workload, thermodynamic K-FAC method and baseline, the value of each device knob "
                   "(time constant, link bandwidth, chips, bits, planned error, coupling delivery, converter channels, "
                   "resident couplings, replicas) at which the "
                   "projected speedup reaches each target, or never with its reason (the Amdahl bound, or another "
                   "resource that saturates). Finished points are kept; a rerun skips them.")
    config_type = BreakevenConfig
    swept = ("workloads", "methods", "intervals", "baselines", "targets", "knobs")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--full", action="store_true", help="a finer search (0.5%% instead of 2%%)")
        parser.add_argument("--workloads", type=strings, default=None, help="vit-imagenet,gnn-molpcba (default both)")
        parser.add_argument("--methods", type=strings, default=None, help=f"{','.join(METHODS)} (default all)")
        parser.add_argument("--targets", type=positive_floats, default=None, help="target speedups (default 1,2,10)")
        parser.add_argument("--knobs", type=strings, default=None,
                            help=f"knobs searched: {', '.join((*KNOBS, *CHOICES))} (default all)")
        parser.add_argument("--intervals", type=positive_ints, default=None,
                            help="factor and inverse intervals of both K-FACs (default 1,10)")
        parser.add_argument("--gpu", default="V100", help="GPU preset (default V100, AlgoPerf's reference)")
        parser.add_argument("--device", default="published", help=DEVICE_HELP + " of the base system (default published)")
        parser.add_argument("--system", default=None, help=SYSTEM_HELP)
        parser.add_argument("--kernels", default=None, help=KERNELS_HELP)
        add_sweep_arguments(parser, f"results/{self.name}")

    def config_from_args(self, args: argparse.Namespace) -> BreakevenConfig:
        overrides = {**sweep_options(args), **given(args, "workloads", "methods", "targets", "knobs", "intervals", "device",
                                                    "system", "kernels"), "gpu": args.gpu}
        return self.config(args.full, **overrides)

    def points(self, cfg: BreakevenConfig) -> list[dict[str, Any]]:
        config_kernels(cfg)  # measured here, once, before the pool's workers read it
        return points(cfg)

    def evaluate(self, cfg: BreakevenConfig, point: dict[str, Any]) -> dict[str, Any]:
        return evaluate(cfg, point)

    def analyse(self, cfg: BreakevenConfig, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows, and the 2-D maps (a grid of projections per workload, written beside the CSV)."""
        maps = [r for w in cfg.workloads for r in speedup_map(cfg, w)]
        sweep.write_table(map_path(self.csv_path(cfg.out_dir)), maps, self.context(cfg))
        return rows, maps

    def plot(self, cfg: BreakevenConfig, results: Any, path: Path) -> Any:
        rows, maps = results
        plot_maps(maps, map_path(path).with_suffix(".png"), cfg)
        return plot(rows, path)

    def report(self, cfg: BreakevenConfig, results: Any, path: Path) -> None:
        rows, maps = results
        report(rows, path, cfg, maps)

    def written(self, cfg: BreakevenConfig, csv_path: Path) -> list[str]:
        return [*super().written(cfg, csv_path), str(map_path(csv_path)), str(map_path(csv_path).with_suffix(".png"))]

    def outcome(self, cfg: BreakevenConfig, csv_path: Path) -> list[str]:
        rows = sweep.read_rows(csv_path, last_run=True)
        out = []
        for r in rows:
            if float(r["target_speedup"]) in (1.0, 2.0):
                out.append(f"{r['workload']:<13} {r['method']:<8} interval {int(r['interval']):<4} "
                           f"{float(r['target_speedup']):g}x over {r['baseline']:<5} "
                           f"{r['knob']:<17} {_cell(r)}")
        return out


STUDY = BreakevenStudy()
