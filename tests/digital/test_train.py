"""The training loop: resume equals uninterrupted, non-finite handling, configuration errors,
and the headline comparisons of second-order training on the digits MLP."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import re
import signal

import numpy as np
import pytest
import torch

train_module = importlib.import_module("digital.train")
from digital.errors import (
    NoEvaluationError,
    TrainingDiverged,
    TrainingInterrupted,
    TrainingStopped,
    UnknownSolverError,
    UnsupportedConfigurationError,
)
from digital.solvers import LinearSolver, SolverDiagnostics
from digital.train import (
    DIVERGENCE_SMOOTHING,
    EVALUATION_HEADER,
    TrainConfig,
    _DivergenceMonitor,
    format_evaluation,
    sidecar_path,
    train,
)
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


def test_a_nonfinite_loss_stops_with_a_clear_message_and_hands_back_the_history(tmp_path) -> None:
    """With the divergence check off, lr 1e3 on the linear MSE task runs into infinity; the stop
    names the step, the tensor and the fix, and its result holds every step before it."""
    config = TrainConfig(task="digits-linear-mse", optimizer="sgd", lr=1e3, steps=50, eval_every=0,
                         divergence_factor=None)
    with pytest.raises(TrainingStopped, match=r"step \d+: the (loss is|gradient of parameter).*lower the learning rate") as info:
        train(config)
    assert not isinstance(info.value, TrainingDiverged)
    result = info.value.result
    stopped_at = int(re.search(r"step (\d+)", str(info.value)).group(1))
    assert result.status.startswith(f"stopped: step {stopped_at}: the ")
    assert [r["step"] for r in result.history] == list(range(1, stopped_at))
    with pytest.raises(NoEvaluationError, match="no step of this run was evaluated"):
        _ = result.final
    csv_path = result.to_csv(tmp_path / "stopped.csv")
    assert len(csv_path.read_text().splitlines()) == stopped_at  # header + the steps before the stop
    assert json.loads(sidecar_path(csv_path).read_text())["status"] == result.status


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
    with pytest.raises(TrainingStopped, match="non-finite.*on_nonfinite='fallback'") as info:
        train(TrainConfig(**base))
    assert info.value.result.status.startswith("stopped: step 1: the 'test-nan' backend returned a non-finite")
    assert info.value.result.history == []
    result = train(TrainConfig(**base, on_nonfinite="fallback"))
    assert result.status == "completed"
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


# -- divergence ------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "ngd"])
def test_an_exploding_loss_stops_within_a_few_steps_with_the_history(optimizer: str) -> None:
    """lr 1e6 used to run to a loss of about 2e30 and return normally. The batch loss jumps from
    2.3 to 2e5-8e6 at step 2, so the smoothed loss (0.1 of that jump) is 1e4-3e5 times its best."""
    config = TrainConfig(task="digits-mlp", optimizer=optimizer, lr=1e6, steps=20, eval_every=0)
    with pytest.raises(TrainingDiverged, match=r"step [23]: the smoothed loss .* grew past divergence_factor 100 x its "
                       r"best .*; lower the learning rate, or raise divergence_factor") as info:
        train(config)
    assert isinstance(info.value, TrainingStopped)  # callers that catch stops catch divergence too
    result = info.value.result
    assert result.status.startswith("diverged: step ") and "smoothed loss" in result.status
    stopped_at = int(re.search(r"step (\d+)", str(info.value)).group(1))
    assert [r["step"] for r in result.history] == list(range(1, stopped_at + 1))  # the diverged step is recorded
    assert result.history[-1]["loss"] > 1e4


@pytest.mark.parametrize(
    ("optimizer", "lr", "options", "steps"),
    [("sgd", 1.0, {}, 200), ("adam", 0.1, {}, 200), ("kfac", 1.0, {"kl_clip": 1e-2, "damping": 1e-2}, 200),
     ("ngd", 0.1, {}, 60)],
    ids=["sgd", "adam", "kfac", "ngd"],
)
def test_tuned_runs_do_not_trip_the_divergence_check(optimizer: str, lr: float, options: dict, steps: int) -> None:
    """The largest learning rates of the digits-MLP grids (the noisiest runs that still train)
    complete, and their smoothed loss stays within a few times its best: far from the factor."""
    result = train(TrainConfig(task="digits-mlp", optimizer=optimizer, lr=lr, optimizer_options=options,
                               steps=steps, eval_every=0))
    assert result.status == "completed"
    monitor = _DivergenceMonitor(None)
    ratios = [(monitor.update(r["step"], r["loss"]), monitor.smoothed / monitor.best)[1] for r in result.history]
    assert max(ratios) < 5.0


def test_the_divergence_statistic_ignores_noise_and_catches_growth() -> None:
    """Synthetic loss sequences, seeded. A converged run: 2.3 decaying to 1e-3 with log-normal
    batch noise (sigma 1, wider than any measured run) and a batch of loss 5 (twice the start)
    every 500 steps. Its smoothed loss stays below 2.3 * 1.2 (the EMA of the noise averages
    about 1e-3 * e^0.5, a spike adds 0.1 * 5 = 0.5), while a trip needs 100 x the floored best
    (2.3 / 100), i.e. 2.3: it never trips. A loss that doubles every step makes the EMA about
    0.1 / (1 - 0.9 / 2) = 0.18 of the current loss, which passes 100 x the start when
    2^k > 100 / 0.18, k > 9.1: it trips at step 10 or 11."""
    assert DIVERGENCE_SMOOTHING == 0.9  # the derivation above
    rng = np.random.default_rng(0)
    steps = np.arange(1, 10_001)
    losses = 1e-3 + 2.3 * np.exp(-steps / 100) * 1.0
    losses = losses * np.exp(rng.standard_normal(len(steps)) - 0.5)
    losses[0] = 2.3
    losses[499::500] = 5.0
    monitor = _DivergenceMonitor(100.0)
    assert all(monitor.update(int(k), float(v)) is None for k, v in zip(steps, losses))
    assert monitor.best < 2e-3  # the best got tiny: only the floor kept the spikes from tripping

    growing = _DivergenceMonitor(100.0)
    tripped = next(k for k in range(1, 40) if growing.update(k, 2.3 * 2.0 ** (k - 1)) is not None)
    assert tripped in (10, 11)
    off = _DivergenceMonitor(None)
    assert all(off.update(k, 2.3 * 2.0 ** k) is None for k in range(1, 60))


def test_a_resumed_run_diverges_where_the_uninterrupted_one_does(tmp_path) -> None:
    """The monitor replays the checkpoint's history, so a resume trips at the same step."""
    config = TrainConfig(task="digits-mlp", optimizer="sgd", lr=2.0, steps=60, eval_every=0, checkpoint_every=2,
                         divergence_factor=3.0)  # the loss creeps up from 2.3 and trips at step 12
    with pytest.raises(TrainingDiverged) as straight:
        train(config)
    stop = len(straight.value.result.history)
    assert stop > 4
    path = tmp_path / "run.pt"

    def crash(row: dict) -> None:  # a crash (not Ctrl-C) at step 5: the checkpoint holds step 4
        if row["step"] == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, checkpoint=path, callback=crash)
    with pytest.raises(TrainingDiverged) as resumed:
        train(config, checkpoint=path)
    assert str(resumed.value) == str(straight.value)
    assert resumed.value.result.resumed_from == 4 and len(resumed.value.result.history) == stop


# -- interruption ----------------------------------------------------------------------------------
INTERRUPT_CONFIG = TrainConfig(task="digits-mlp", optimizer="adam", lr=0.01, steps=8, batch_size=32, eval_every=4,
                               checkpoint_every=3)


def _steps(rows: list[dict]) -> list[tuple]:
    return [(r["step"], r["loss"], r.get("train_loss")) for r in rows]


def test_ctrl_c_hands_back_the_history_and_saves_the_checkpoint(tmp_path) -> None:
    """A SIGINT (what Ctrl-C sends) during step 5 takes effect once step 5 is done: the checkpoint
    holds step 5 and the resumed run equals the uninterrupted one."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("the test runner replaced Python's SIGINT handler")
    straight = train(INTERRUPT_CONFIG).history
    calls = {"n": 0}
    original = train_module._params_finite

    def sigint_inside_step_5(model):  # called inside the step, after the update
        calls["n"] += 1
        if calls["n"] == 5:
            signal.raise_signal(signal.SIGINT)
        return original(model)

    path = tmp_path / "run.pt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "_params_finite", sigint_inside_step_5)
        with pytest.raises(TrainingInterrupted, match=r"after step 5 of 8; checkpoint .* saved at step 5") as info:
            train(INTERRUPT_CONFIG, checkpoint=path)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the loop's handler is gone
    assert isinstance(info.value, KeyboardInterrupt) and info.value.checkpoint_step == 5
    result = info.value.result
    assert result.status == "interrupted" and _steps(result.history) == _steps(straight[:5])
    resumed = train(INTERRUPT_CONFIG, checkpoint=path)
    assert resumed.resumed_from == 5 and _steps(resumed.history) == _steps(straight)


def test_an_interrupt_inside_a_step_keeps_the_last_whole_checkpoint(tmp_path) -> None:
    """A KeyboardInterrupt raised inside step 5 (a second Ctrl-C) leaves that step's state torn:
    the loop does not save it, the checkpoint keeps step 3, and resuming from it is exact."""
    straight = train(INTERRUPT_CONFIG).history
    calls = {"n": 0}
    original = train_module._params_finite

    def interrupt_inside_step_5(model):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(model)

    path = tmp_path / "run.pt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "_params_finite", interrupt_inside_step_5)
        with pytest.raises(TrainingInterrupted, match=r"after step 4 of 8; interrupted inside step 5: .* keeps step 3") as info:
            train(INTERRUPT_CONFIG, checkpoint=path)
    assert info.value.checkpoint_step == 3 and len(info.value.result.history) == 4
    resumed = train(INTERRUPT_CONFIG, checkpoint=path)
    assert resumed.resumed_from == 3 and _steps(resumed.history) == _steps(straight)
    # without a checkpoint the history still comes back, and the message says how to make it resumable
    def stop_at_2(row: dict) -> None:
        if row["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match=r"after step 2 of 8; no checkpoint was asked for") as info:
        train(INTERRUPT_CONFIG, callback=stop_at_2)
    assert info.value.checkpoint_step is None and _steps(info.value.result.history) == _steps(straight[:2])


# -- names, provenance, progress, counts -----------------------------------------------------------
def test_run_names_are_readable_and_collision_free() -> None:
    base = TrainConfig(task="digits-mlp", optimizer="kfac", lr=0.3, solver="thermo",
                       solver_options={"hardware": "published", "target_rel_error": 0.05},
                       optimizer_options={"damping": 1e-2, "kl_clip": 1e-2})
    assert re.fullmatch(r"digits-mlp_kfac-thermo-published_lr0\.3_seed0_[0-9a-f]{8}", base.run_name())
    # the same configuration (options in another order, lr as an int or a float) gets the same name
    same = TrainConfig(task="digits-mlp", optimizer="kfac", lr=0.3, solver="thermo",
                       solver_options={"target_rel_error": 0.05, "hardware": "published"},
                       optimizer_options={"kl_clip": 1e-2, "damping": 1e-2})
    assert same.run_name() == base.run_name()
    assert TrainConfig(optimizer="sgd", lr=1).run_name() == TrainConfig(optimizer="sgd", lr=1.0).run_name()
    # a configuration that differs in any one field, options included, gets another name
    variants = {
        "task": "digits-cnn", "optimizer": "ngd", "lr": 0.31, "optimizer_options": {"damping": 1e-2, "kl_clip": 1e-3},
        "solver": "cg", "solver_options": {"hardware": "published", "target_rel_error": 0.01}, "steps": 201,
        "batch_size": 32, "seed": 1, "eval_every": 10, "checkpoint_every": 10, "on_nonfinite": "fallback",
        "dtype": "float64", "device": "cuda", "divergence_factor": 1e3,
    }
    assert set(variants) == {f.name for f in dataclasses.fields(TrainConfig)}  # every field is varied
    names = {base.run_name()} | {dataclasses.replace(base, **{k: v}).run_name() for k, v in variants.items()}
    assert len(names) == len(variants) + 1
    # the solver appears only for optimizers that use one; the hardware whenever one is set
    assert re.fullmatch(r"digits-mlp_sgd_lr1e6_seed0_[0-9a-f]{8}", TrainConfig(optimizer="sgd", lr=1e6).run_name())
    assert re.fullmatch(r"digits-mlp_ngd-exact_lr0\.1_seed2_[0-9a-f]{8}", TrainConfig(optimizer="ngd", seed=2).run_name())
    tngd = TrainConfig(task="digits-cnn", optimizer="tngd", optimizer_options={"hardware": "ideal"})
    assert re.fullmatch(r"digits-cnn_tngd-ideal_lr0\.1_seed0_[0-9a-f]{8}", tngd.run_name())
    # a spec object: the preset it equals, else custom; a hardware file: its stem
    from thermo import HardwareSpec

    spec = dataclasses.replace(tngd, optimizer_options={"hardware": HardwareSpec.ideal()})
    assert spec.run_name().startswith("digits-cnn_tngd-ideal_lr0.1_seed0_") and spec.run_name() != tngd.run_name()
    bits = dataclasses.replace(tngd, optimizer_options={"hardware": HardwareSpec.ideal(bits_b=4, bits_adc=4, v_range_v=1.0)})
    assert bits.run_name().startswith("digits-cnn_tngd-custom_lr0.1_seed0_")
    chip = TrainConfig(solver="thermo", solver_options={"hardware": "chips/my chip.toml"})
    assert re.fullmatch(r"digits-mlp_kfac-thermo-my-chip_lr0\.1_seed0_[0-9a-f]{8}", chip.run_name())


def test_the_csv_has_a_provenance_sidecar_that_round_trips_the_configuration(tmp_path) -> None:
    config = TrainConfig(task="digits-mlp", optimizer="kfac", lr=0.3, steps=3, eval_every=2,
                         optimizer_options={"damping": 1e-2, "kl_clip": 1e-2, "fisher_type": "mc"})
    result = train(config)
    csv_path = result.to_csv(tmp_path / f"{config.run_name()}.csv")
    side = json.loads((tmp_path / f"{config.run_name()}.json").read_text())
    assert sidecar_path(csv_path) == tmp_path / f"{config.run_name()}.json"
    assert TrainConfig.from_dict(side["config"]) == config
    assert side["run_name"] == config.run_name() and side["status"] == "completed"
    assert side["steps_recorded"] == 3 and side["last_step"] == 3 and side["resumed_from"] == 0
    prov = side["provenance"]
    assert prov["package"] == "thermo-codesign" and prov["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert {"version", "python", "numpy", "written_utc"} <= set(prov)
    with pytest.raises(UnsupportedConfigurationError, match=r"unknown TrainConfig field\(s\) \['colour'\]"):
        TrainConfig.from_dict({**side["config"], "colour": "red"})


def test_progress_prints_each_evaluation_as_it_happens(capsys) -> None:
    seen: list[int] = []
    printed_by_step_6: list[str] = []

    def look(row: dict) -> None:
        if row["step"] == 6:
            printed_by_step_6.extend(capsys.readouterr().out.splitlines())

    result = train(TrainConfig(task="digits-mlp", optimizer="sgd", lr=0.3, steps=10, eval_every=5),
                   progress=True, callback=look, on_evaluation=lambda row: seen.append(row["step"]))
    assert seen == [5, 10]
    evaluated = [r for r in result.history if "train_loss" in r]
    assert printed_by_step_6 == [EVALUATION_HEADER, format_evaluation(evaluated[0])]
    assert capsys.readouterr().out.splitlines() == [format_evaluation(evaluated[1])]
    line = format_evaluation(evaluated[0])
    assert len(line) == len(EVALUATION_HEADER)  # aligned under the header
    step, train_loss, test_loss, test_acc = line.split()
    assert (int(step), float(train_loss), float(test_loss), float(test_acc)) == pytest.approx(
        (5, evaluated[0]["train_loss"], evaluated[0]["test_loss"], evaluated[0]["test_accuracy"]), abs=1e-4)
    # a diverging loss keeps its column
    huge = format_evaluation({"step": 12, "train_loss": 2.7e30, "test_loss": 3.1e6, "test_accuracy": 0.1})
    assert len(huge) == len(EVALUATION_HEADER)


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 2.5), ("steps", True), ("steps", 0), ("steps", "10"), ("batch_size", 0), ("batch_size", 2.5),
     ("batch_size", True), ("eval_every", -1), ("eval_every", 1.5), ("checkpoint_every", -1), ("checkpoint_every", 2.0),
     ("seed", -1), ("seed", 0.5), ("seed", False), ("lr", True), ("lr", "0.1"), ("lr", math.inf),
     ("divergence_factor", 1.0), ("divergence_factor", 0.5), ("divergence_factor", math.nan),
     ("divergence_factor", True), ("optimizer_options", [("damping", 1e-2)]), ("solver", None)],
)
def test_bad_counts_and_values_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(UnsupportedConfigurationError, match=rf"^{field} must be"):
        TrainConfig(**{field: value})


def test_integer_like_counts_become_plain_ints() -> None:
    config = TrainConfig(steps=np.int64(5), seed=np.int32(3), lr=1)
    assert type(config.steps) is int and type(config.seed) is int and type(config.lr) is float
    json.dumps(config.to_dict())  # the sidecar and the run name need plain JSON types
