"""The training loop: resume equals uninterrupted, non-finite handling, configuration errors,
and the headline comparisons of second-order training on the digits MLP."""

from __future__ import annotations

import math

import pytest
import torch

from digital.errors import (
    TrainingStopped,
    UnknownSolverError,
    UnsupportedConfigurationError,
)
from digital.solvers import LinearSolver, SolverDiagnostics
from digital.train import TrainConfig, train
from digital.tuning import DIGITS_MLP_FIXED, DIGITS_MLP_GRIDS, grid_search


class Interrupt(Exception):
    pass


@pytest.mark.parametrize(
    ("optimizer", "options", "solver", "solver_options"),
    [
        ("kfac", {"fisher_type": "mc", "momentum": 0.5, "inv_update_steps": 2}, "exact", {}),
        ("kfac", {"fisher_type": "mc", "mode": "solve"}, "thermo", {"hardware": "published", "target_rel_error": 0.05}),
        ("adam", {}, "exact", {}),
    ],
    ids=["kfac-exact", "kfac-thermo", "adam"],
)
def test_resume_equals_uninterrupted(tmp_path, optimizer, options, solver, solver_options) -> None:
    config = TrainConfig(
        task="digits-mlp", optimizer=optimizer, lr=0.01 if optimizer == "adam" else 0.1,
        optimizer_options=options, solver=solver, solver_options=solver_options,
        steps=8, batch_size=32, eval_every=4, checkpoint_every=3,
    )
    straight = train(config).history

    def crash(row: dict) -> None:
        if row["step"] == 5:
            raise Interrupt

    path = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        train(config, checkpoint=path, callback=crash)
    resumed = train(config, checkpoint=path)
    assert resumed.resumed_from == 3
    keys = ("step", "loss", "batch_accuracy", "train_loss", "test_accuracy")
    strip = lambda rows: [{k: r.get(k) for k in keys} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(straight)
    # a finished run resumes to nothing new
    again = train(config, checkpoint=path)
    assert again.resumed_from == 8 and strip(again.history) == strip(straight)


def test_checkpoint_of_another_configuration_is_refused(tmp_path) -> None:
    path = tmp_path / "run.pt"
    train(TrainConfig(task="digits-mlp", optimizer="sgd", steps=2, eval_every=0), checkpoint=path)
    with pytest.raises(UnsupportedConfigurationError, match=r"different configuration.*'lr'"):
        train(TrainConfig(task="digits-mlp", optimizer="sgd", lr=0.5, steps=2, eval_every=0), checkpoint=path)


def test_divergence_stops_with_a_clear_message() -> None:
    config = TrainConfig(task="digits-linear-mse", optimizer="sgd", lr=1e3, steps=50, eval_every=0)
    with pytest.raises(TrainingStopped, match=r"step \d+: the (loss is|gradient of parameter)"):
        train(config)


class NaNSolver(LinearSolver):
    """A broken device: every result is NaN."""

    name = "test-nan"

    def _solve(self, A, B, damping, x0):  # type: ignore[no-untyped-def]
        return torch.full_like(B, float("nan")), SolverDiagnostics(self.name, 0.0), None

    def _inverse(self, A, damping):  # type: ignore[no-untyped-def]
        return torch.full_like(A, float("nan")), SolverDiagnostics(self.name, 0.0)


def test_nonfinite_solver_results_stop_or_fall_back_to_exact() -> None:
    from digital.solvers import register_solver

    register_solver(NaNSolver)
    base = dict(task="digits-mlp", optimizer="kfac", solver="test-nan", steps=3, eval_every=0,
                optimizer_options={"solver_fallback": "none", "fisher_type": "empirical"})
    with pytest.raises(TrainingStopped, match="non-finite"):
        train(TrainConfig(**base))
    result = train(TrainConfig(**base, on_nonfinite="fallback"))
    # the step that inverts the factors falls back; later steps reuse the cached inverses
    assert "fallback to exact" in result.history[0]["notes"]
    assert math.isfinite(result.final["train_loss"])
    reference = train(TrainConfig(**{**base, "solver": "exact"}))
    assert [r["loss"] for r in result.history] == pytest.approx([r["loss"] for r in reference.history], rel=1e-5)


def test_bad_configurations_are_named() -> None:
    with pytest.raises(UnsupportedConfigurationError, match="unknown task"):
        TrainConfig(task="imagenet-resnet")
    with pytest.raises(UnsupportedConfigurationError, match="unknown optimizer 'lbfgs'"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(UnsupportedConfigurationError, match="lr"):
        TrainConfig(lr=0.0)
    with pytest.raises(UnknownSolverError, match="unknown solver 'analog'"):
        train(TrainConfig(solver="analog", steps=1))
    with pytest.raises(UnsupportedConfigurationError, match="takes no solver"):
        train(TrainConfig(optimizer="adam", solver="thermo", steps=1))


@pytest.mark.parametrize("task", ["digits-cnn", "digits-vit", "graphs-gnn"])
def test_kfac_trains_every_model_family(task: str) -> None:
    """Conv2d, weight-shared token projections and node-shared graph layers all precondition;
    LayerNorm and position embeddings fall back to first-order (with the documented warning)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(TrainConfig(task=task, optimizer="kfac", lr=0.1, steps=30, eval_every=0,
                                   optimizer_options={"kl_clip": 1e-2, "damping": 1e-2}))
    losses = [r["loss"] for r in result.history]
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5
    assert result.final["precondition_s"] >= 0 and "factors_s" in result.final


def tuned(optimizer: str) -> tuple[float, list[dict]]:
    base = TrainConfig(task="digits-mlp", optimizer=optimizer, steps=200, eval_every=0,
                       optimizer_options=DIGITS_MLP_FIXED.get(optimizer, {}))
    best, rows = grid_search(base, DIGITS_MLP_GRIDS[optimizer])
    return min(r["train_loss"] for r in rows), rows


def test_kfac_reaches_a_lower_training_loss_than_adam_on_the_digits_mlp() -> None:
    """Both tuned on the documented grids (digital.tuning), same steps, batch and seed."""
    kfac, _ = tuned("kfac")
    adam, _ = tuned("adam")
    assert kfac < adam


def test_thermo_backend_at_ideal_settings_matches_exact_within_noise() -> None:
    """K-FAC trained through the ideal simulated device follows the exact backend: the device's
    solves are accurate to their target (1e-2), far below the step-to-step loss noise."""
    common = dict(task="digits-mlp", optimizer="kfac", lr=0.3, steps=100, eval_every=0,
                  optimizer_options={"kl_clip": 1e-2, "damping": 1e-2, "mode": "solve"})
    exact = train(TrainConfig(**common))
    thermo = train(TrainConfig(**common, solver="thermo", solver_options={"hardware": "ideal", "target_rel_error": 1e-2}))
    assert thermo.final["analog_time_s"] > 0
    e, t = exact.final["train_loss"], thermo.final["train_loss"]
    # noise scale: the batch-to-batch spread of the exact run's loss over its last 20 steps
    tail = torch.tensor([r["loss"] for r in exact.history[-20:]])
    assert abs(t - e) < float(tail.std())
    assert abs(t - e) / e < 0.2
