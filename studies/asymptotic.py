"""Study: asymptotic per-layer speedup of thermodynamic over digital K-FAC against layer width n.

For a square layer of width ``n`` K-FAC inverts (or solves with) two ``n x n`` damped factors.
Per layer and per refresh this study compares

- ``digital-measured``: two float32 Cholesky inversions timed on this machine (``torch``),
  up to ``measure_max_n``;
- ``digital-roofline``: the same two inversions projected by the roofline model of a named GPU
  (``cosim.roofline``: ``d^3`` flops each);
- ``thermo-inverse``: two inversions on the analog device (thermo timing model: programming,
  equilibration, the samples for the target accuracy, readout, transfers), for each condition
  number of the factors (assumed geometric chip spectrum, ``cosim.step_graphs.factor_spectrum``);
- ``thermo-solve``: the solve variant, ``G X = grad`` and ``A Y = X^T`` with ``n`` right-hand
  sides each.

It fits the exponent ``p`` of ``time ~ n^p`` over the largest sizes of each series and prints it
beside the theory's: ``3`` for a dense digital inversion, ``2`` for the thermodynamic per-layer
runtime ``O(n^2 kappa^2)`` of Donatella et al. 2025 (arXiv 2502.08603, abstract); and the
exponent ``q`` of ``time ~ kappa^q`` at the largest ``n`` beside the paper's 2. Each fit gets a
verdict and, where it does not agree, the assumption of the device model that decides it. The
device is a :class:`thermo.DeviceSpec` preset or file with its knobs (``converter_channels=1``
reads the ``n`` node voltages one after another, the published count of ``n`` conversions per
sample). Writes ``asymptotic.csv``, ``asymptotic.png`` and ``asymptotic.md``.
"""

from __future__ import annotations

import argparse
import functools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cosim.roofline import MeasurementWarning, RooflineModel, cholesky_inverse, measure_stable
from cosim.step_graphs import factor_spectrum
from cosim.system import GPU_PRESETS, SystemSpec, gpu_preset
from thermo import DeviceSpec, cost, device_preset, preset

from . import checks, sweep
from .options import (
    DEVICE_HELP,
    HARDWARE_HELP,
    SYSTEM_HELP,
    add_sweep_arguments,
    positive_float,
    positive_floats,
    positive_int,
    positive_ints,
    sweep_options,
)
from .protocol import Study

NAME = "asymptotic"
"""``tcd study asymptotic``: the stem of the study's files and the folder of its results."""

KINDS = ("digital-measured", "digital-roofline", "thermo-inverse", "thermo-solve")
THEORY_EXPONENT = {"digital-measured": 3.0, "digital-roofline": 3.0, "thermo-inverse": 2.0, "thermo-solve": 2.0}


@dataclass(frozen=True)
class AsymptoticConfig:
    """Sizes and assumptions; ``full()`` gives the real-hardware size of the study."""

    sizes: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    condition_numbers: tuple[float, ...] = (10.0, 100.0, 1000.0)
    measure_max_n: int = 1024
    gpu: str = "A100"
    device: str = "published"
    """A device preset or ``.toml``/``.yaml`` device file (:func:`thermo.device_preset`)."""
    hardware: str | None = None
    """A hardware preset or file replacing the device's chip (None: the device's own)."""
    n_chips: int | None = None
    """Chips replacing the device's count (None: the device's own)."""
    converter_channels: int | None = None
    """DAC and ADC channels per chip replacing the device's (None: the device's own; 1: serial)."""
    system: str | None = None
    """A system file (``.toml``/``.yaml``) whose GPU is projected and whose device is timed,
    replacing ``gpu``, ``device``, ``hardware`` and ``n_chips`` (``converter_channels`` still applies)."""
    target_rel_error: float = 1e-2
    repeats: int = 5
    """Least timed calls of each measured inversion (at least 3: a spread needs them)."""
    max_repeats: int = 30
    """Most timed calls of a measured inversion whose spread stays above ``spread_tolerance``."""
    spread_tolerance: float = 0.25
    """Largest ``(p90 - p10) / median`` of a measured point's repeats that the fit trusts."""
    measure_budget_s: float = 10.0
    """Seconds of timed calls per measured point after which its repeats stop."""
    measure_threads: int = 1
    """torch threads of the measured inversions (on a shared small machine, two threads on two
    busy cores made a 1.4 ms K-FAC step take 440 ms; one thread is steadier)."""
    fit_points: int = 3
    """Largest sizes of each series that the exponent is fitted on."""
    workers: int | None = None
    scheduler: str | None = None
    out_dir: Path = field(default=Path("results") / NAME)

    def __post_init__(self) -> None:
        owner = "AsymptoticConfig"
        checks.store(
            self,
            sizes=checks.integers(owner, "sizes", self.sizes, minimum=2, distinct=True),
            condition_numbers=checks.reals(owner, "condition_numbers", self.condition_numbers, low=1.0),
            measure_max_n=checks.integer(owner, "measure_max_n", self.measure_max_n),
            n_chips=None if self.n_chips is None else checks.integer(owner, "n_chips", self.n_chips),
            converter_channels=(None if self.converter_channels is None
                                else checks.integer(owner, "converter_channels", self.converter_channels)),
            target_rel_error=checks.real(owner, "target_rel_error", self.target_rel_error, 0.0, 1.0, True, True),
            repeats=checks.integer(owner, "repeats", self.repeats, minimum=3),
            max_repeats=checks.integer(owner, "max_repeats", self.max_repeats, minimum=3),
            spread_tolerance=checks.positive(owner, "spread_tolerance", self.spread_tolerance),
            measure_budget_s=checks.positive(owner, "measure_budget_s", self.measure_budget_s),
            measure_threads=checks.integer(owner, "measure_threads", self.measure_threads),
            fit_points=checks.integer(owner, "fit_points", self.fit_points, minimum=2),
            workers=checks.workers(owner, self.workers),
        )
        if self.max_repeats < self.repeats:
            raise checks.StudyConfigError(f"AsymptoticConfig.max_repeats ({self.max_repeats}) is below repeats "
                                          f"({self.repeats}); give max_repeats >= repeats")
        if self.gpu.upper() not in {k.upper() for k in GPU_PRESETS}:
            raise ValueError(f"unknown gpu {self.gpu!r}; choose from {sorted(GPU_PRESETS)}")
        checks.device(owner, "device", self.device)
        if self.hardware is not None:
            checks.hardware(owner, "hardware", self.hardware)
        checks.system_file(owner, "system", self.system)

    @classmethod
    def full(cls, **overrides: Any) -> AsymptoticConfig:
        return cls(**{"sizes": tuple(2**k for k in range(6, 15)), "measure_max_n": 4096, **overrides})


def points(cfg: AsymptoticConfig) -> list[dict[str, Any]]:
    """One point per (series, n, condition number); digital series do not depend on kappa (0)."""
    out: list[dict[str, Any]] = []
    for n in sorted(cfg.sizes):
        if n <= cfg.measure_max_n:
            out.append({"kind": "digital-measured", "n": n, "kappa": 0.0})
        out.append({"kind": "digital-roofline", "n": n, "kappa": 0.0})
        for kappa in cfg.condition_numbers:
            out.append({"kind": "thermo-inverse", "n": n, "kappa": float(kappa)})
            out.append({"kind": "thermo-solve", "n": n, "kappa": float(kappa)})
    return out


NOT_MEASURED = {"spread": math.nan, "repeats": 0, "load": math.nan, "cores": 0}
"""The timing columns of a point that was not timed on this machine (a model's projection)."""


def evaluate(cfg: AsymptoticConfig, point: dict[str, Any]) -> dict[str, Any]:
    """Per-layer time (seconds) of one point, with what it rests on; a measured point adds the
    spread of its repeats (``(p90 - p10) / median``), their count and the load average on
    ``cores`` cores when it was timed."""
    n, kind = int(point["n"]), point["kind"]
    if kind == "digital-measured":
        timing = _measure_cholesky_inverse(cfg, n)
        return {"time_s": 2 * timing.median_s, "analog_time_s": 0.0,
                "source": f"measured (cpu, {cfg.measure_threads} thread{'s' if cfg.measure_threads > 1 else ''})",
                "spread": timing.spread, "repeats": timing.repeats,
                "load": math.nan if timing.load is None else timing.load, "cores": timing.cores}
    if kind == "digital-roofline":
        gpu = SystemSpec.load(cfg.system).gpu if cfg.system is not None else gpu_preset(cfg.gpu)
        seconds = RooflineModel(gpu).time_s(cholesky_inverse(n, precision="float32"))
        return {"time_s": 2 * seconds, "analog_time_s": 0.0, "source": f"roofline {gpu.name}", **NOT_MEASURED}
    hw = device_of(cfg)
    spectrum = factor_spectrum(hw.chip, n, float(point["kappa"]))
    if kind == "thermo-inverse":
        t = cost.estimate_inverse(hw, spectrum, target_rel_error=cfg.target_rel_error)
    else:
        t = cost.estimate_solve(hw, spectrum, target_rel_error=cfg.target_rel_error, n_rhs=n)
    return {"time_s": 2 * t.total_s, "analog_time_s": 2 * t.analog_time_s,
            "source": f"thermo.cost on {cfg.system or device_label(cfg)}", **NOT_MEASURED}


@functools.lru_cache(maxsize=8)
def device_of(cfg: AsymptoticConfig) -> DeviceSpec:
    """The device the analog series are priced on: the system file's, or the ``device`` preset
    with ``hardware`` and ``n_chips`` where given; ``converter_channels`` applies to either."""
    if cfg.system is not None:
        device = SystemSpec.load(cfg.system).device
    else:
        device = device_preset(cfg.device)
        if cfg.hardware is not None:
            device = device.replace(chip=preset(cfg.hardware))
        if cfg.n_chips is not None:
            device = device.replace(n_chips=cfg.n_chips)
    if cfg.converter_channels is not None:
        device = device.with_converter_channels(cfg.converter_channels)
    return device


def device_label(cfg: AsymptoticConfig) -> str:
    """``device published, hardware noisy, 4 chips, 1 converter channel(s)``: what was chosen."""
    parts = [f"device {cfg.device}"]
    if cfg.hardware is not None:
        parts.append(f"hardware {cfg.hardware}")
    if cfg.n_chips is not None:
        parts.append(f"{cfg.n_chips} chip(s)")
    if cfg.converter_channels is not None:
        parts.append(f"{cfg.converter_channels} converter channel(s) per chip")
    return ", ".join(parts)


def _measure_cholesky_inverse(cfg: AsymptoticConfig, n: int) -> Any:
    """:class:`cosim.roofline.Timing` of one float32 Cholesky inversion of an ``n x n`` SPD
    matrix, on ``cfg.measure_threads`` torch threads, repeated until the spread is within
    ``cfg.spread_tolerance`` (no warning here: the study flags the point in its report)."""
    gen = torch.Generator().manual_seed(n)
    m = torch.randn(n, n, generator=gen)
    a = m @ m.mT / n + 1e-3 * torch.eye(n)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.measure_threads)
    try:
        return measure_stable(lambda: torch.cholesky_inverse(torch.linalg.cholesky(a)), f"a {n} x {n} inversion",
                              tolerance=cfg.spread_tolerance, min_repeats=cfg.repeats, max_repeats=cfg.max_repeats,
                              budget_s=cfg.measure_budget_s, warn=False)
    finally:
        torch.set_num_threads(threads)


def unreliable(row: dict[str, Any], tolerance: float) -> str:
    """Why a measured row's time cannot be trusted (``""`` when it can, or was not measured):
    its repeats spread more than ``tolerance``, or the load average exceeded the cores."""
    if row["kind"] != "digital-measured":
        return ""
    reasons = []
    spread = float(row["spread"])
    if not spread <= tolerance:  # NaN counts as unreliable
        reasons.append(f"spread {100 * spread:.0f}% > {100 * tolerance:.0f}%")
    load, cores = float(row["load"]), int(row["cores"])
    if math.isfinite(load) and cores and load > cores:
        reasons.append(f"load {load:.1f} on {cores} cores")
    return ", ".join(reasons)


def _series(rows: list[dict[str, Any]]) -> dict[tuple[str, float], list[tuple[int, float]]]:
    """``(n, time_s)`` points sorted by ``n``, per (series, condition number), in sorted order."""
    series: dict[tuple[str, float], list[tuple[int, float]]] = {}
    for r in rows:
        series.setdefault((r["kind"], float(r["kappa"])), []).append((int(r["n"]), float(r["time_s"])))
    return {k: sorted(v) for k, v in sorted(series.items())}


def fit_exponents(rows: list[dict[str, Any]], fit_points: int, tolerance: float = math.inf) -> list[dict[str, Any]]:
    """Least-squares slope of log(time) against log(n) over each series' largest sizes.

    Measured points that :func:`unreliable` flags at ``tolerance`` are left out before the
    largest sizes are taken; each fit lists the widths it left out in ``excluded``."""
    out = []
    flagged = {(r["kind"], float(r["kappa"]), int(r["n"])) for r in rows if "spread" in r and unreliable(r, tolerance)}
    for (kind, kappa), values in _series(rows).items():
        excluded = [n for n, _ in values if (kind, kappa, n) in flagged]
        values = [v for v in values if v[0] not in excluded][-fit_points:]
        if len(values) < 2:
            continue
        x = np.log([v[0] for v in values])
        y = np.log([v[1] for v in values])
        slope = float(np.polyfit(x, y, 1)[0])
        out.append({"kind": kind, "kappa": kappa, "exponent": slope, "theory": THEORY_EXPONENT[kind],
                    "n_range": f"{values[0][0]}-{values[-1][0]}", "excluded": excluded})
    return out


PAPER_KAPPA_EXPONENT = 2.0
"""The published per-layer runtime's exponent in the condition number, O(n^2 kappa^2)."""
AGREEMENT = 0.2
"""A fitted exponent agrees with the published one when they differ by at most this much."""


def fit_kappa_exponents(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per thermodynamic series, the slope of log(time) against log(kappa) at the largest ``n``
    that has at least two condition numbers."""
    out = []
    for kind in KINDS:
        if not kind.startswith("thermo"):
            continue
        by_n: dict[int, list[tuple[float, float]]] = {}
        for r in rows:
            if r["kind"] == kind:
                by_n.setdefault(int(r["n"]), []).append((float(r["kappa"]), float(r["time_s"])))
        sizes = [n for n, v in by_n.items() if len({k for k, _ in v}) >= 2]
        if not sizes:
            continue
        n = max(sizes)
        values = sorted(by_n[n])
        slope = float(np.polyfit(np.log([v[0] for v in values]), np.log([v[1] for v in values]), 1)[0])
        out.append({"kind": kind, "n": n, "exponent": slope, "theory": PAPER_KAPPA_EXPONENT,
                    "kappa_range": f"{values[0][0]:g}-{values[-1][0]:g}"})
    return out


def verdict(fitted: float, published: float) -> str:
    """``agrees`` when the fitted exponent is within :data:`AGREEMENT` of the published one."""
    return "agrees" if abs(fitted - published) <= AGREEMENT else "does not agree"


def serial_crossover(cfg: AsymptoticConfig, kappa: float) -> float:
    """The width past which reading the node voltages outlasts the slowest relaxation time
    ``kappa tau / coupling_range`` of a factor (:func:`thermo.cost.serial_readout_units`)."""
    device = device_of(cfg)
    return cost.serial_readout_units(device, kappa / device.chip.coupling_range)


def deciding_assumption(cfg: AsymptoticConfig, fit: dict[str, Any], axis: str) -> str:
    """Which assumption of the device model decides a fit that does not agree with the paper."""
    if verdict(fit["exponent"], fit["theory"]) == "agrees":
        return "-"
    if fit["kind"].startswith("digital"):
        return "at these sizes the inversion is not in its n^3 regime (launch, memory and small-matrix overheads)"
    if axis == "kappa":
        return ("burn-in and window follow the slowest relaxation time, which grows as kappa; correlated samples of "
                "the OU readout are averaged at no extra cost, so the sample count does not grow with kappa as well "
                "(the paper's derivation of kappa^2 is not in our sources: abstract only)")
    device = device_of(cfg)
    if device.adc_channels is None:
        return ("one ADC channel per unit reads all n node voltages in one conversion per sample, so the window is "
                "set by the relaxation time, not by n conversions per sample; --converter-channels 1 counts them")
    crossover = serial_crossover(cfg, float(fit["kappa"]))
    readout = (f"a serial readout (ceil(n / {device.adc_channels}) conversions of {device.chip.adc_conversion_s:g} s "
               f"per sample) outlasts the relaxation time kappa tau / coupling_range only past n* = {crossover:.3g}")
    smallest = int(str(fit["n_range"]).split("-")[0])
    if smallest < crossover:
        return f"{readout}: below it the extra samples are correlated and averaged at no cost"
    return (f"{readout}; the sizes fitted lie past it, but the phases that grow as n (burn-in, inputs and read-back "
            "of the right-hand sides) still weigh there: the exponent approaches 2 at larger n")


def speedups(rows: list[dict[str, Any]], baseline: str = "digital-roofline") -> list[dict[str, Any]]:
    """Digital time over thermodynamic time per (n, kappa, variant)."""
    base = {int(r["n"]): float(r["time_s"]) for r in rows if r["kind"] == baseline}
    return [
        {"n": int(r["n"]), "kappa": float(r["kappa"]), "variant": r["kind"], "speedup": base[int(r["n"])] / float(r["time_s"])}
        for r in rows
        if r["kind"].startswith("thermo") and int(r["n"]) in base
    ]


def run(cfg: AsymptoticConfig, progress: bool = True) -> Path:
    """Run the missing points, fit, plot and report; return the CSV path. A
    :class:`cosim.roofline.MeasurementWarning` lists the measured points whose timings are
    unreliable (the report flags them and the fit leaves them out)."""
    return STUDY.run(cfg, progress)


def plot(rows: list[dict[str, Any]], fits: list[dict[str, Any]], path: Path, cfg: AsymptoticConfig) -> Any:
    """Per-layer time against width, log-log; measured points carry their spread as error bars
    and unreliable ones a red cross. Returns the (closed) Figure."""
    # matplotlib is imported where a figure is drawn: at module level it would slow every
    # `tcd` command (even --help) by about half a second
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    slope = {(f["kind"], f["kappa"]): f["exponent"] for f in fits}
    for (kind, kappa), values in _series(rows).items():
        label = kind if kind.startswith("digital") else f"{kind}, kappa={kappa:g}"
        if (kind, kappa) in slope:
            label += f" (n^{slope[(kind, kappa)]:.2f})"
        style = "-" if kind.startswith("digital") else ("--" if kind == "thermo-inverse" else ":")
        ns, ts = [v[0] for v in values], [v[1] for v in values]
        line = ax.plot(ns, ts, style, marker="o", ms=3, label=label)
        if kind == "digital-measured":
            spread = {int(r["n"]): float(r["spread"]) for r in rows if r["kind"] == kind}
            half = [t * spread[n] / 2 for n, t in zip(ns, ts)]  # the p10..p90 width, centred on the median
            ax.errorbar(ns, ts, yerr=half, fmt="none", ecolor=line[0].get_color(), capsize=2, lw=0.8)
    bad = [(int(r["n"]), float(r["time_s"])) for r in rows if unreliable(r, cfg.spread_tolerance)]
    if bad:
        ax.plot(*zip(*bad), "x", color="crimson", ms=8, mew=1.5, ls="none",
                label=f"unreliable timing (spread > {100 * cfg.spread_tolerance:.0f}% or busy): not fitted")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("layer width n (units)")
    ax.set_ylabel("per-layer time (s)")
    ax.set_title("K-FAC per-layer inversion: digital vs thermodynamic "
                 f"({cfg.system if cfg.system else f'{device_label(cfg)}, {cfg.gpu}'})")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def report(rows: list[dict[str, Any]], fits: list[dict[str, Any]], path: Path, cfg: AsymptoticConfig) -> None:
    measured = [r for r in rows if r["kind"] == "digital-measured"]
    flagged = [r for r in measured if unreliable(r, cfg.spread_tolerance)]
    gpu = f"the system file {cfg.system}" if cfg.system else f"the {cfg.gpu} preset, datasheet peak"
    device = (f"the device of the system file `{cfg.system}`" if cfg.system
              else f"{device_label(cfg)} ({device_of(cfg).summary()})")
    lines = [
        "# Asymptotic per-layer speedup of thermodynamic K-FAC",
        "",
        "Per layer of width n: two n x n damped factors inverted (or solved with, n right-hand sides).",
        "",
        f"![per-layer time against n]({path.with_suffix('.png').name})",
        "",
        "## Assumptions",
        f"- digital: float32 Cholesky inversion, measured on this machine ({cfg.measure_threads} torch "
        f"thread{'s' if cfg.measure_threads > 1 else ''}) up to n = {cfg.measure_max_n}, "
        f"and projected by the roofline of {gpu} (d^3 flops per inversion).",
        f"- measured times: median of {cfg.repeats} to {cfg.max_repeats} repeats, repeated until the spread "
        f"(p90 - p10) / median is at most {100 * cfg.spread_tolerance:.0f}% or {cfg.measure_budget_s:g} s are spent; "
        "a point whose spread stays above it, or that was timed while the load average exceeded the cores, is "
        "flagged and left out of the fit.",
        f"- analog: {device}, target relative error {cfg.target_rel_error:g}, geometric chip spectrum with the "
        "given condition number (priced by thermo.cost).",
        "",
        "## Measured digital inversions",
        "",
        "| n | time per layer (s) | spread | repeats | load / cores | trusted |",
        "|---|---|---|---|---|---|",
    ]
    for r in measured:
        why = unreliable(r, cfg.spread_tolerance)
        load = f"{float(r['load']):.1f} / {int(r['cores'])}" if math.isfinite(float(r["load"])) else f"- / {int(r['cores'])}"
        lines.append(f"| {r['n']} | {float(r['time_s']):.3g} | {100 * float(r['spread']):.0f}% | {r['repeats']} | {load} | "
                     f"{'no: ' + why if why else 'yes'} |")
    if flagged:
        lines += ["", f"**{len(flagged)} of {len(measured)} measured points are unreliable** "
                  f"(n = {', '.join(str(r['n']) for r in flagged)}) and are left out of the fit: rerun on an idle machine."]
    lines += [
        "",
        "## Fitted exponents (time ~ n^p over the largest sizes)",
        "",
        f"A fitted exponent agrees with the theory's when they differ by at most {AGREEMENT:g}.",
        "",
        "| series | kappa | n | fitted p | theory p | verdict | what decides it | left out (unreliable) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in fits:
        kappa = "-" if f["kind"].startswith("digital") else f"{f['kappa']:g}"
        left_out = ", ".join(str(n) for n in f.get("excluded", [])) or "-"
        lines.append(f"| {f['kind']} | {kappa} | {f['n_range']} | {f['exponent']:.2f} | {f['theory']:g} | "
                     f"{verdict(f['exponent'], f['theory'])} | {deciding_assumption(cfg, f, 'n')} | {left_out} |")
    kappa_fits = fit_kappa_exponents(rows)
    if kappa_fits:
        lines += ["", "## Fitted exponents in the condition number (time ~ kappa^q at the largest n)", "",
                  "| series | n | kappa | fitted q | paper's q | verdict | what decides it |", "|---|---|---|---|---|---|---|"]
        for f in kappa_fits:
            lines.append(f"| {f['kind']} | {f['n']} | {f['kappa_range']} | {f['exponent']:.2f} | {f['theory']:g} | "
                         f"{verdict(f['exponent'], f['theory'])} | {deciding_assumption(cfg, f, 'kappa')} |")
    lines += ["", "## Speedup over the digital roofline projection", "", "| n | kappa | variant | speedup |", "|---|---|---|---|"]
    for s in speedups(rows):
        lines.append(f"| {s['n']} | {s['kappa']:g} | {s['variant']} | {s['speedup']:.3g} |")
    lines += ["", "The theory exponent 2 is the paper's O(n^2 kappa^2) (abstract); where a fitted exponent "
              "does not agree, the column \"what decides it\" names the assumption of this project's device model "
              "that makes the difference."]
    path.write_text("\n".join(lines) + "\n")


def summary(rows: list[dict[str, Any]], cfg: AsymptoticConfig) -> str:
    """The fitted exponents, one line per series, and a line per unreliable measured point.
    Rows of points outside ``cfg`` (an older run kept in the same store) are ignored."""
    wanted = {(p["kind"], int(p["n"]), float(p["kappa"])) for p in points(cfg)}
    rows = [r for r in rows if (r["kind"], int(r["n"]), float(r["kappa"])) in wanted]
    fits = fit_exponents(rows, cfg.fit_points, cfg.spread_tolerance)
    lines = [
        f"{f['kind']:<17} kappa={f['kappa']:<7g} n={f['n_range']:<10} fitted p={f['exponent']:.2f} (theory {f['theory']:g}, "
        f"{verdict(f['exponent'], f['theory'])})"
        + (f", left out n = {', '.join(map(str, f['excluded']))}" if f["excluded"] else "")
        for f in fits
    ]
    lines += [f"{f['kind']:<17} n={f['n']:<7} kappa={f['kappa_range']:<10} fitted q={f['exponent']:.2f} in kappa "
              f"(paper {f['theory']:g}, {verdict(f['exponent'], f['theory'])})" for f in fit_kappa_exponents(rows)]
    lines += [f"unreliable timing at n = {r['n']}: {unreliable(r, cfg.spread_tolerance)} (not fitted)"
              for r in rows if unreliable(r, cfg.spread_tolerance)]
    return "\n".join(lines)


class AsymptoticStudy(Study[AsymptoticConfig]):
    """The asymptotic study under the study protocol; each part hands over to this module's
    function of the same name (which tests and notebooks call directly)."""

    name = NAME
    help = "per-layer time of digital vs thermodynamic K-FAC against layer width n; fitted exponents"
    description = ("Digital inversion (measured here and projected for a GPU) against the analog device's timing "
                   "model, for layer widths and factor condition numbers. Finished points are kept; a rerun skips them.")
    config_type = AsymptoticConfig
    swept = ("sizes", "condition_numbers", "fit_points")
    timed = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--full", action="store_true", help="the real-hardware size (n up to 16,384)")
        parser.add_argument("--sizes", type=positive_ints, default=None, help="layer widths, comma-separated (overrides the default)")
        parser.add_argument("--kappas", type=positive_floats, default=None, help="factor condition numbers, comma-separated")
        parser.add_argument("--gpu", default="A100", help="GPU preset of the roofline projection (default A100)")
        parser.add_argument("--device", default="published", help=DEVICE_HELP + " (default published)")
        parser.add_argument("--hardware", default=None, help=HARDWARE_HELP + " replacing the device's chip")
        parser.add_argument("--chips", type=positive_int, default=None, help="analog chips (default: the device's)")
        parser.add_argument("--converter-channels", type=positive_int, default=None, metavar="N",
                            help="DAC and ADC channels per chip (1: serial, n conversions per sample; default: the "
                                 "device's, one per unit)")
        parser.add_argument("--system", default=None, help=SYSTEM_HELP)
        parser.add_argument("--target-rel-error", type=positive_float, default=1e-2, help="accuracy of the analog results (default 1e-2)")
        add_sweep_arguments(parser, f"results/{self.name}", workers=1,
                            workers_help="process-pool size (default 1: the measurements stay clean)")

    def config_from_args(self, args: argparse.Namespace) -> AsymptoticConfig:
        overrides: dict[str, Any] = dict(
            gpu=args.gpu, device=args.device, hardware=args.hardware, n_chips=args.chips,
            converter_channels=args.converter_channels, target_rel_error=args.target_rel_error,
            system=args.system, **sweep_options(args),
        )
        if args.sizes is not None:
            overrides["sizes"] = args.sizes
        if args.kappas is not None:
            overrides["condition_numbers"] = args.kappas
        return self.config(args.full, **overrides)

    def points(self, cfg: AsymptoticConfig) -> list[dict[str, Any]]:
        return points(cfg)

    def evaluate(self, cfg: AsymptoticConfig, point: dict[str, Any]) -> dict[str, Any]:
        return evaluate(cfg, point)

    def analyse(self, cfg: AsymptoticConfig, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows and the exponents fitted on the trusted ones."""
        return rows, fit_exponents(rows, cfg.fit_points, cfg.spread_tolerance)

    def plot(self, cfg: AsymptoticConfig, results: Any, path: Path) -> Any:
        rows, fits = results
        return plot(rows, fits, path, cfg)

    def report(self, cfg: AsymptoticConfig, results: Any, path: Path) -> None:
        rows, fits = results
        report(rows, fits, path, cfg)

    def check(self, cfg: AsymptoticConfig, results: Any) -> None:
        """A :class:`cosim.roofline.MeasurementWarning` naming the measured points whose timings are unreliable."""
        rows, _ = results
        flagged = [f"n = {r['n']} ({unreliable(r, cfg.spread_tolerance)})" for r in rows
                   if unreliable(r, cfg.spread_tolerance)]
        if flagged:
            # stacklevel 3: the caller of run()
            warnings.warn(f"timings of the measured digital inversions are unreliable at {'; '.join(flagged)}; the fit "
                          f"leaves them out; rerun on an idle machine", MeasurementWarning, stacklevel=3)

    def outcome(self, cfg: AsymptoticConfig, csv_path: Path) -> list[str]:
        return [summary(sweep.read_rows(csv_path, last_run=True), cfg)]


STUDY = AsymptoticStudy()
