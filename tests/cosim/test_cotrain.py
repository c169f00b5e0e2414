"""Co-simulated training: a real run through the simulated device, projected from its calls."""

from __future__ import annotations

import warnings

import pytest

from cosim import SystemSpec
from cosim.cotrain import cosimulate_training
from digital.train import TrainConfig


@pytest.fixture(scope="module")
def report():
    config = TrainConfig(task="digits-mlp", optimizer="kfac", lr=0.3, steps=12, eval_every=0,
                         optimizer_options={"damping": 1e-2, "kl_clip": 1e-2, "mode": "solve"},
                         solver_options={"target_rel_error": 5e-2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cosimulate_training(config, SystemSpec.from_presets(n_chips=2))


def test_every_recorded_device_call_becomes_a_device_job(report) -> None:
    sched = report.thermo_schedule
    analog = [r for r in sched.records if r.phase == "analog"]
    # solve mode: two solves per layer per step, 2 layers, 12 steps
    assert len(analog) == 2 * 2 * 12 and sched.n_steps == 12
    # the jobs carry the simulated analog time (plus the last ADC conversion of each run)
    assert sum(r.duration_s for r in analog) >= report.analog_time_s
    assert sum(r.duration_s for r in analog) == pytest.approx(report.analog_time_s, rel=0.05)
    assert report.fallbacks == 0


def test_the_two_runs_train_alike_and_both_are_projected(report) -> None:
    assert report.thermo_final["train_loss"] == pytest.approx(report.exact_final["train_loss"], rel=0.1)
    assert report.exact_projection.n_steps == 12 and report.exact_projection.total_s > 0
    assert report.speedup == pytest.approx(report.exact_projection.total_s / report.thermo_schedule.makespan_s)
    table = report.table()
    assert "thermodynamic K-FAC" in table and "speedup" in table
    assert report.assumptions["gpu"] == "A100"
    # the run used the system's device, not the configuration's
    assert report.config.solver == "thermo" and report.config.solver_options["hardware"].n_chips == 2


def test_only_kfac_runs_are_cosimulated() -> None:
    with pytest.raises(ValueError, match="K-FAC runs"):
        cosimulate_training(TrainConfig(optimizer="adam"), SystemSpec.default())
