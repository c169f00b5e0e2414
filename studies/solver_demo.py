"""Demo study: accuracy of a thermodynamic linear solve against simulated analog time.

For one random SPD system (size ``d``, condition number ``kappa``) and each hardware preset,
solve ``A x = b`` with sampling windows from ``windows_tau`` (burn-in planned by the timing
model) over several seeds, and record the relative error against ``numpy.linalg.solve``, the
analog time and the error the OU theory predicts. Points run through :mod:`studies.sweep` (a
local process pool or a Dask cluster), are appended to the CSV as they finish, and a restarted
run skips the points already in the CSV.
Writes ``solver_demo.csv``, ``solver_demo.png`` and ``solver_demo.md`` into ``out_dir``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thermo import SolverConfig, ThermodynamicSolver
from thermo.config_files import is_config_path
from thermo.hardware import PRESETS, preset
from thermo.matrices import random_spd

from . import checks, sweep

BURN_IN_TARGET = 1e-4
"""Relative error that the planned burn-in reduces the initial transient to."""


@dataclass(frozen=True)
class DemoConfig:
    size: int = 64
    condition_number: float = 100.0
    presets: tuple[str, ...] = ("ideal", "published", "noisy")
    windows_tau: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0, 256.0)
    seeds: int = 3
    matrix_seed: int = 0
    workers: int | None = None
    out_dir: Path = field(default=Path("results/demo"))

    def __post_init__(self) -> None:
        owner = "DemoConfig"
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


def _problem(cfg: DemoConfig) -> tuple[np.ndarray, np.ndarray]:
    a = random_spd(cfg.size, cfg.condition_number, seed=cfg.matrix_seed)
    b = np.random.default_rng(cfg.matrix_seed + 1).standard_normal(cfg.size)
    return a, b


def run_point(cfg: DemoConfig, preset_name: str, window_tau: float, seed: int) -> dict:
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


def _evaluate(cfg: DemoConfig, point: dict) -> dict:
    """The measured fields of one sweep point (the point's own fields removed)."""
    row = run_point(cfg, point["preset"], point["window_tau"], point["seed"])
    return {k: v for k, v in row.items() if k not in point}


def read_rows(path: Path) -> list[dict]:
    return sweep.read_rows(path)


def run(cfg: DemoConfig, progress: bool = True, scheduler: str | None = None) -> Path:
    """Run the missing points (local process pool, or a Dask ``scheduler``), then write the
    plot and report; return the CSV path."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = cfg.out_dir / "solver_demo.csv"
    points = [
        {"preset": p, "window_tau": float(w), "seed": s}
        for p in cfg.presets
        for w in cfg.windows_tau
        for s in range(cfg.seeds)
    ]
    workers = cfg.workers or min(len(points), os.cpu_count() or 1) or 1
    rows = sweep.run_sweep(
        functools.partial(_evaluate, cfg), points, csv_path, workers=workers, scheduler=scheduler,
        progress=progress, description="solves",
        context=sweep.context_of(cfg, exclude=("presets", "windows_tau", "seeds", "workers", "out_dir")),
    )
    plot(rows, cfg.out_dir / "solver_demo.png", cfg)
    report(rows, cfg.out_dir / "solver_demo.md", cfg)
    return csv_path


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


def plot(rows: list[dict], path: Path, cfg: DemoConfig) -> Any:
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


def report(rows: list[dict], path: Path, cfg: DemoConfig) -> None:
    lines = [
        "# Thermodynamic solve demo",
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

