"""The plots that ``tcd train`` and ``tcd project`` write (the studies draw their own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Batch loss of every step and the evaluated train/test loss, log scale (losses span decades)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    finite = [r for r in history if r.get("loss") is not None and 0 < float(r["loss"]) < float("inf")]
    ax.plot([r["step"] for r in finite], [r["loss"] for r in finite], lw=0.8, alpha=0.6, label="batch loss")
    evals = [r for r in history if "train_loss" in r]
    ax.plot([r["step"] for r in evals], [r["train_loss"] for r in evals], "o-", label="train loss")
    ax.plot([r["step"] for r in evals], [r["test_loss"] for r in evals], "s-", label="test loss")
    if finite or evals:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per example; MSE for regression)")
    ax.set_title(title, fontsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_projection(projections: list[Any], path: Path) -> Path:
    """Busy time per phase (stacked) and the step time of each projected method."""
    plt = _pyplot()
    phases = sorted({k for p in projections for k in p.phase_s})
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0.0] * len(projections)
    for phase in phases:
        # busy time per phase, summed over tasks (phases overlap, so bars can exceed the makespan)
        values = [p.phase_s.get(phase, 0.0) / p.n_steps * 1e3 for p in projections]
        ax.bar([p.label for p in projections], values, bottom=bottom, label=phase)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.scatter([p.label for p in projections], [p.time_per_step_s * 1e3 for p in projections], color="k", zorder=3,
               marker="_", s=600, label="time per step")
    ax.set_xlabel("method")
    ax.set_ylabel("busy time per step (ms)")
    ax.set_title("projected step: busy time per phase and the step time")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
