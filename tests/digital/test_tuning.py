"""Grid search: every combination trained, the best chosen, diverged points ranked last."""

from __future__ import annotations

import math

import pytest

from digital.errors import UnsupportedConfigurationError
from digital.train import TrainConfig
from digital.tuning import grid_search, with_values


def test_grid_values_reach_config_fields_and_optimizer_options() -> None:
    base = TrainConfig(optimizer="kfac", optimizer_options={"kl_clip": 1e-2})
    config = with_values(base, {"lr": 0.3, "optimizer_options.damping": 1e-1})
    assert config.lr == 0.3 and config.optimizer_options == {"kl_clip": 1e-2, "damping": 1e-1}
    with pytest.raises(UnsupportedConfigurationError, match="grid key 'dampng'"):
        with_values(base, {"dampng": 1.0})


def test_best_point_is_the_lowest_loss_and_divergence_ranks_last() -> None:
    base = TrainConfig(task="digits-linear-mse", optimizer="sgd", steps=20, eval_every=0)
    best, rows = grid_search(base, {"lr": [1e-3, 0.1, 1e3]})
    assert [r["lr"] for r in rows] == [1e-3, 0.1, 1e3]
    assert math.isinf(rows[2]["train_loss"])  # lr = 1000 diverges: stopped, ranked last
    assert best.lr == 0.1 and rows[1]["train_loss"] < rows[0]["train_loss"]


def test_the_grids_are_keyed_by_registered_optimizer_names() -> None:
    from digital.optimizers import OPTIMIZERS
    from digital.tuning import DIGITS_MLP_FIXED, DIGITS_MLP_GRIDS, digits_mlp_grid

    for name in (*DIGITS_MLP_GRIDS, *DIGITS_MLP_FIXED):
        assert OPTIMIZERS.canonical(name) == name
    assert digits_mlp_grid("KFAC") is DIGITS_MLP_GRIDS["kfac"]
    with pytest.raises(UnsupportedConfigurationError, match="'ngd' has no digits-MLP grid; the grids cover adam, sgd, kfac"):
        digits_mlp_grid("ngd")
    with pytest.raises(UnsupportedConfigurationError, match="unknown optimizer 'lbfgs'"):
        digits_mlp_grid("lbfgs")
