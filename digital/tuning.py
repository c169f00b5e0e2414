"""Small documented hyperparameter grids, so that comparisons between optimizers are between
tuned optimizers. A grid maps a :class:`~digital.train.TrainConfig` field (``lr``) or an
optimizer option (``optimizer_options.damping``) to the values to try; every combination is
trained and ranked by a metric of its final evaluation (default the full training loss). The grids
are keyed by registered optimizer names (:data:`~digital.optimizers.OPTIMIZERS`)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

from .errors import TrainingStopped, UnsupportedConfigurationError
from .optimizers import OPTIMIZERS
from .train import TrainConfig, train

DIGITS_MLP_GRIDS: dict[str, dict[str, list[Any]]] = {
    "adam": {"lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]},
    "sgd": {"lr": [0.03, 0.1, 0.3, 1.0]},
    "kfac": {"lr": [0.1, 0.3, 1.0], "optimizer_options.damping": [1e-2, 1e-1]},
}
"""The grids of the K-FAC-against-Adam comparison on the digits MLP (tests and docs): 200 steps
of batch 64, every other option at its default except K-FAC's ``kl_clip = 1e-2``
(:data:`DIGITS_MLP_FIXED`)."""

DIGITS_MLP_FIXED: dict[str, dict[str, Any]] = {"kfac": {"kl_clip": 1e-2}}


def with_values(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """``base`` with grid values applied (``optimizer_options.X`` sets one optimizer option)."""
    fields: dict[str, Any] = {}
    options = dict(base.optimizer_options)
    for key, value in values.items():
        if key.startswith("optimizer_options."):
            options[key.split(".", 1)[1]] = value
        elif key in {f.name for f in dataclasses.fields(TrainConfig)}:
            fields[key] = value
        else:
            raise UnsupportedConfigurationError(f"grid key {key!r} is neither a TrainConfig field nor optimizer_options.<name>")
    return dataclasses.replace(base, optimizer_options=options, **fields)


def grid_search(
    base: TrainConfig, grid: dict[str, list[Any]], metric: str = "train_loss"
) -> tuple[TrainConfig, list[dict[str, Any]]]:
    """Train every combination of ``grid`` on ``base``; return the best configuration (lowest
    ``metric``; a diverged run counts as infinite) and one row per combination."""
    if not grid:
        raise UnsupportedConfigurationError("the grid is empty")
    keys = list(grid)
    rows: list[dict[str, Any]] = []
    best: tuple[float, TrainConfig] | None = None
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        config = with_values(base, values)
        try:
            score = float(train(config).final[metric])
        except TrainingStopped:  # a diverged point ranks last
            score = math.inf
        if not math.isfinite(score):
            score = math.inf
        rows.append({**values, metric: score})
        if best is None or score < best[0]:
            best = (score, config)
    assert best is not None
    return best[1], rows


def digits_mlp_grid(optimizer: str) -> dict[str, list[Any]]:
    """The documented digits-MLP grid of ``optimizer`` (any case, see
    :data:`~digital.optimizers.OPTIMIZERS`); an optimizer without one raises
    UnsupportedConfigurationError naming those that have one."""
    name = OPTIMIZERS.canonical(optimizer)
    if name not in DIGITS_MLP_GRIDS:
        raise UnsupportedConfigurationError(
            f"optimizer {name!r} has no digits-MLP grid; the grids cover {', '.join(DIGITS_MLP_GRIDS)}"
        )
    return DIGITS_MLP_GRIDS[name]


def compare_on_digits_mlp(optimizers: tuple[str, ...] = ("adam", "kfac"), steps: int = 200) -> dict[str, list[dict[str, Any]]]:
    """Tune each optimizer (any case) on its documented grid (same steps, batch, seed) and return
    the rows, keyed by the optimizers' registered names."""
    out = {}
    for optimizer in optimizers:
        name, grid = OPTIMIZERS.canonical(optimizer), digits_mlp_grid(optimizer)
        base = TrainConfig(task="digits-mlp", optimizer=name, steps=steps, eval_every=0,
                           optimizer_options=DIGITS_MLP_FIXED.get(name, {}))
        out[name] = grid_search(base, grid)[1]
    return out


if __name__ == "__main__":  # python -m digital.tuning: the table quoted in docs/training.md
    for name, rows in compare_on_digits_mlp().items():
        best = min(rows, key=lambda r: r["train_loss"])
        for row in rows:
            mark = "  <- best" if row is best else ""
            settings = ", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in row.items() if k != "train_loss")
            print(f"{name:>5}  {settings:<28} train loss {row['train_loss']:.4f}{mark}")
