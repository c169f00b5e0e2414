"""Study: accuracy of a thermodynamic linear solve against simulated analog time (``tcd study solver``).

For one random SPD system (size ``d``, condition number ``kappa``) and each hardware preset,
solve ``A x = b`` with sampling windows from ``windows_tau`` (burn-in planned by the timing
model) over several seeds, and record the relative error against ``numpy.linalg.solve``, the
analog time and the error the OU theory predicts. Points run through :mod:`studies.sweep` (a
local process pool or a Dask cluster), are appended to the CSV as they finish, and a restarted
run skips the points already in the CSV.
Writes ``solver.csv``, ``solver.png`` and ``solver.md`` into ``out_dir``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thermo import SolverConfig, ThermodynamicSolver
from thermo.config_files import is_config_path
from thermo.hardware import PRESETS, preset
from thermo.matrices import random_spd

from . import checks, sweep
from .options import HARDWARE_HELP, add_sweep_arguments, given, positive_float, positive_floats, positive_int, strings, sweep_options
from .protocol import Study

NAME = "solver"
"""``tcd study solver``: the stem of the study's files and the folder of its results."""

BURN_IN_TARGET = 1e-4
"""Relative error that the planned burn-in reduces the initial transient to."""


@dataclass(frozen=True)
class SolverStudyConfig:
    size: int = 64
    condition_number: float = 100.0
    presets: tuple[str, ...] = ("ideal", "published", "noisy")
    windows_tau: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0, 256.0)
    seeds: int = 3
    matrix_seed: int = 0
    workers: int | None = None
    scheduler: str | None = None
    out_dir: Path = field(default=Path("results") / NAME)

    @classmethod
    def full(cls, **overrides: Any) -> SolverStudyConfig:
        return cls(**{"windows_tau": (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0), "seeds": 5,
                      **overrides})

    def __post_init__(self) -> None:
        owner = "SolverStudyConfig"
        checks.store(
            self,
            size=checks.integer(owner, "size", self.size),
            condition_number=checks.real(owner, "condition_number", self.condition_number, low=1.0),
            windows_tau=checks.reals(owner, "windows_tau", self.windows_tau, 0.0, low_open=True),
            seeds=checks.integer(owner, "seeds", self.seeds),
            matrix_seed=checks.integer(owner, "matrix_seed", self.matrix_seed, minimum=0),
            workers=checks.workers(owner, self.workers),
        )
        unknown = [p for p in self.presets if not is_config_path(p) and p not in PRESETS]
        if unknown:
            raise ValueError(f"unknown presets {sorted(unknown)}; choose from {', '.join(PRESETS)} or give "
                             ".toml/.yaml hardware files")
        for p in self.presets:  # a hardware file is read now: a typo stops here, not in a worker
            preset(p)


def _problem(cfg: SolverStudyConfig) -> tuple[np.ndarray, np.ndarray]:
    a = random_spd(cfg.size, cfg.condition_number, seed=cfg.matrix_seed)
    b = np.random.default_rng(cfg.matrix_seed + 1).standard_normal(cfg.size)
    return a, b


def run_point(cfg: SolverStudyConfig, preset_name: str, window_tau: float, seed: int) -> dict:
    """One solve; returns a CSV row."""
    a, b = _problem(cfg)
    exact = np.linalg.solve(a, b)
    # Burn-in planned for 1e-4 so the residual transient stays below the window's noise error.
    config = SolverConfig(window_tau=window_tau, target_rel_error=BURN_IN_TARGET)
    solver = ThermodynamicSolver(preset(preset_name), config, seed=seed)
    result = solver.solve(a, b)
    diag = result.diagnostics
    return {
        "preset": preset_name,
        "window_tau": window_tau,
        "seed": seed,
        "rel_error": float(np.linalg.norm(result.x - exact) / np.linalg.norm(exact)),
        "predicted_rel_error": diag.predicted_rel_error,
        "estimated_rel_error": diag.estimated_rel_error,
        "analog_time_s": diag.analog_time_s,
        "analog_time_tau": diag.analog_time_tau,
        "burn_in_tau": diag.burn_in_tau,
        "n_samples": diag.n_samples,
        "method": diag.method,
        "device_total_s": None if diag.device_time is None else diag.device_time.total_s,
    }


def _evaluate(cfg: SolverStudyConfig, point: dict) -> dict:
    """The measured fields of one sweep point (the point's own fields removed)."""
    row = run_point(cfg, point["preset"], point["window_tau"], point["seed"])
    return {k: v for k, v in row.items() if k not in point}


def read_rows(path: Path) -> list[dict]:
    return sweep.read_rows(path)


def points(cfg: SolverStudyConfig) -> list[dict[str, Any]]:
    """One solve per preset, window and noise seed."""
    return [{"preset": p, "window_tau": float(w), "seed": s} for p in cfg.presets for w in cfg.windows_tau
            for s in range(cfg.seeds)]


def run(cfg: SolverStudyConfig, progress: bool = True) -> Path:
    """Run the missing points (local process pool, or the config's Dask ``scheduler``), then
    write the plot and report; return the CSV path."""
    return STUDY.run(cfg, progress)


def summarize(rows: list[dict]) -> list[dict]:
    """Mean over seeds of each (preset, window)."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["preset"], float(r["window_tau"])), []).append(r)
    out = []
    for (p, w), rs in sorted(groups.items()):
        errs = np.array([float(r["rel_error"]) for r in rs])
        out.append(
            {
                "preset": p,
                "window_tau": w,
                "rel_error_rms": float(np.sqrt(np.mean(errs**2))),
                "predicted_rel_error": float(rs[0]["predicted_rel_error"]),
                "analog_time_us": float(np.mean([float(r["analog_time_s"]) for r in rs])) * 1e6,
                "seeds": len(rs),
            }
        )
    return out


def plot(rows: list[dict], path: Path, cfg: SolverStudyConfig) -> Any:
    """Relative error against the window, log-log, measured and OU theory per preset; returns the
    (closed) Figure."""
    # matplotlib is imported where a figure is drawn: at module level it would slow every
    # `tcd` command (even --help) by about half a second
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    summary = summarize(rows)
    for p in cfg.presets:
        pts = [s for s in summary if s["preset"] == p]
        if not pts:
            continue
        w = [s["window_tau"] for s in pts]
        line = ax.loglog(w, [s["rel_error_rms"] for s in pts], "o-", label=f"{p}: measured (rms over seeds)")
        ax.loglog(w, [s["predicted_rel_error"] for s in pts], "--", color=line[0].get_color(), alpha=0.7, label=f"{p}: OU theory (noise only)")
    ax.set_xlabel("sampling window T (units of tau)")
    ax.set_ylabel("relative error of x vs numpy.linalg.solve (dimensionless)")
    ax.set_title(f"Thermodynamic solve, d={cfg.size}, kappa={cfg.condition_number:g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return fig


def report(rows: list[dict], path: Path, cfg: SolverStudyConfig) -> None:
    lines = [
        "# Thermodynamic solve: accuracy against analog time",
        "",
        f"Problem: random SPD matrix, d = {cfg.size}, condition number {cfg.condition_number:g}, "
        f"Gaussian right-hand side (matrix seed {cfg.matrix_seed}); {cfg.seeds} noise seeds per point.",
        f"Burn-in planned by the timing model to reduce the start-up transient to {BURN_IN_TARGET:g}; window "
        "as listed. Theory line: thermal-noise error of the time average, (2 kT tr(A_hat^-2) / T)^(1/2) / "
        "|x_hat| with discrete sampling; it excludes converter and mismatch errors, which set the floor of "
        "the non-ideal presets (the noisy preset's 8-bit couplings and 2% mismatch move the realized "
        "matrix's own solution away from the true one).",
        "",
        "| preset | window (tau) | rms rel. error | OU theory | analog time (us) |",
        "|---|---|---|---|---|",
    ]
    for s in summarize(rows):
        lines.append(
            f"| {s['preset']} | {s['window_tau']:g} | {s['rel_error_rms']:.3e} | "
            f"{s['predicted_rel_error']:.3e} | {s['analog_time_us']:.1f} |"
        )
    lines.append("")
    lines.append("Hardware presets: see `thermo.hardware.HardwareSpec` (ideal, published, noisy).")
    path.write_text("\n".join(lines) + "\n")



class SolverStudy(Study[SolverStudyConfig]):
    """The solver sweep under the study protocol; each part hands over to this module's function
    of the same name (which tests and notebooks call directly)."""

    name = NAME
    help = "solve a random SPD system on simulated hardware presets: accuracy against analog time"
    description = ("Accuracy of a thermodynamic solve against the sampling window for hardware presets, with the "
                   "OU theory's prediction. Finished points are kept; a rerun skips them.")
    config_type = SolverStudyConfig
    swept = ("presets", "windows_tau", "seeds")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--full", action="store_true", help="the full size (11 windows, 5 seeds)")
        parser.add_argument("--size", type=positive_int, default=None, help="matrix size d (default 64)")
        parser.add_argument("--kappa", type=positive_float, default=None, help="condition number (default 100)")
        parser.add_argument("--presets", type=strings, default=None,
                            help=f"comma-separated hardware, each {HARDWARE_HELP} (default ideal,published,noisy)")
        parser.add_argument("--windows", type=positive_floats, default=None, help="sampling windows in tau, comma-separated")
        parser.add_argument("--seeds", type=positive_int, default=None, help="noise seeds per point (default 3)")
        add_sweep_arguments(parser, f"results/{self.name}")

    def config_from_args(self, args: argparse.Namespace) -> SolverStudyConfig:
        overrides = {**sweep_options(args), **given(args, "size", "presets", "seeds")}
        if args.kappa is not None:
            overrides["condition_number"] = args.kappa
        if args.windows is not None:
            overrides["windows_tau"] = args.windows
        return self.config(args.full, **overrides)

    def points(self, cfg: SolverStudyConfig) -> list[dict[str, Any]]:
        return points(cfg)

    def evaluate(self, cfg: SolverStudyConfig, point: dict[str, Any]) -> dict[str, Any]:
        return _evaluate(cfg, point)

    def plot(self, cfg: SolverStudyConfig, results: Any, path: Path) -> Any:
        return plot(results, path, cfg)

    def report(self, cfg: SolverStudyConfig, results: Any, path: Path) -> None:
        report(results, path, cfg)

    def outcome(self, cfg: SolverStudyConfig, csv_path: Path) -> list[str]:
        """The summary table: rms error, OU theory and analog time per preset and window."""
        lines = [f"{'preset':<10} {'window/tau':>10} {'rms rel err':>12} {'theory':>10} {'analog us':>10}"]
        for s in summarize(sweep.read_rows(csv_path, last_run=True)):
            lines.append(f"{s['preset']:<10} {s['window_tau']:>10g} {s['rel_error_rms']:>12.3e} "
                         f"{s['predicted_rel_error']:>10.3e} {s['analog_time_us']:>10.1f}")
        return lines


STUDY = SolverStudy()
