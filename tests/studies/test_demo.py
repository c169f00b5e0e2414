"""``tcd demo`` end to end at a tiny size: four methods trained and co-simulated, the report, the reruns."""

from __future__ import annotations

import csv
import re

import pytest

from studies import demo, sweep
from tcd.cli import main

EPOCHS = "0.2"  # 4 steps of the digits MLP per method


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    args = ["demo", "--epochs", EPOCHS, "--workers", "1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    return out


def _results(run_dir, **overrides):
    cfg = demo.DemoConfig(epochs=float(EPOCHS), workers=1, out_dir=run_dir, **overrides)
    return cfg, demo.analyse(cfg, sweep.read_rows(run_dir / "demo-runs.csv"))


def test_the_demo_writes_its_files_and_prints_the_table(run_dir, capsys) -> None:
    for name in ("demo.csv", "demo.png", "demo.md", "demo-runs.csv", "demo-runs.sqlite"):
        assert (run_dir / name).stat().st_size > 0, name
    rows = list(csv.DictReader((run_dir / "demo.csv").open()))
    assert tuple(rows[0]) == demo.CSV_COLUMNS
    assert sorted({r["method"] for r in rows}) == sorted(demo.METHODS)
    for method in demo.METHODS:
        times = [float(r["projected_time_s"]) for r in rows if r["method"] == method]
        assert len(times) == 4 and all(0 < a < b for a, b in zip(times, times[1:]))  # a clock that runs forward
    # the report's first table has the columns asked for, one row per method
    text = (run_dir / "demo.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert tuple(c.strip() for c in header.strip("|").split("|")) == demo.TABLE_HEADER
    assert "## Assumptions" in text and "Loss target:" in text and "demo.png" in text


def test_a_rerun_reuses_every_finished_method(run_dir, monkeypatch, capsys) -> None:
    before = sweep.read_rows(run_dir / "demo-runs.csv")

    def must_not_run(cfg, point):
        raise AssertionError(f"{point} was recomputed")

    monkeypatch.setattr(demo, "evaluate", must_not_run)
    # another loss target is an analysis of the same runs: nothing retrains either
    assert main(["demo", "--epochs", EPOCHS, "--workers", "1", "--out", str(run_dir), "--no-progress",
                 "--loss-target", "2.1"]) == 0
    out = capsys.readouterr().out
    assert "loss target 2.1 nats (given (--loss-target))" in out
    assert all(label in out for label in demo.METHODS.values())
    after = sweep.read_rows(run_dir / "demo-runs.csv")
    assert [r["curve"] for r in after] == [r["curve"] for r in before]
    # another training setting is another sweep: refused in the same folder, not mixed in
    assert main(["demo", "--epochs", "0.3", "--workers", "1", "--out", str(run_dir), "--no-progress"]) == 2


def test_adam_is_the_reference_and_thermodynamic_kfac_respects_its_amdahl_bound(run_dir) -> None:
    _, results = _results(run_dir)
    adam = results.methods["adam"]
    assert adam.steps_to_target == adam.steps  # the default target: the loss Adam ends at
    assert adam.speedup_to_target == 1.0 and adam.speedup_per_step == 1.0
    # the device can remove at most the phases it replaces: thermodynamic K-FAC's projected run is
    # no shorter than digital K-FAC's over the same steps less those phases
    assert results.bound is not None and 0 < results.bound.share < 1
    assert results.methods["tkfac"].total_s >= results.digital_rest_s > 0
    assert all(o.status == "ok" for o in results.methods.values())


def test_the_break_even_search_starts_from_the_projected_runs(run_dir) -> None:
    # a target every method reaches within its first steps: every search runs
    cfg, results = _results(run_dir, loss_target=2.1)
    assert all(o.time_to_target_s is not None for o in results.methods.values())
    for method in demo.THERMODYNAMIC:
        m = results.methods[method]
        # at the base device (scale 1) the search sees the time the table reports
        seconds, _ = demo._scaled_time_s(cfg, method, results.step_models, m.time_to_target_s, m.steps_to_target,
                                         "tau_scale", 1.0)
        assert seconds == pytest.approx(m.time_to_target_s, rel=1e-5)
        for baseline in demo.BASELINES:
            found = results.breakeven_of(method, baseline)
            assert found is not None and found.result is not None
            if found.result.reachable:
                assert 1e-4 <= found.result.value <= 1.0
                seconds, _ = demo._scaled_time_s(cfg, method, results.step_models, m.time_to_target_s,
                                                 m.steps_to_target, "tau_scale", found.result.value)
                assert seconds <= results.methods[baseline].time_to_target_s * (1 + 1e-9)
            else:
                assert found.text().startswith("never (")


def test_the_figure_puts_loss_against_log_time_first(run_dir, tmp_path) -> None:
    from studies.plotting import figure_problems

    cfg, results = _results(run_dir)
    fig = demo.plot(cfg, results, tmp_path / "demo.png")
    assert figure_problems(fig) == []
    first = fig.axes[0]
    assert first.get_xscale() == "log" and "(s)" in first.get_xlabel() and "loss" in first.get_ylabel()
    curves = [line.get_label() for line in first.get_lines() if line.get_transform() == first.transData]
    assert curves == list(demo.METHODS.values())  # one curve per method (the target line aside)


@pytest.mark.parametrize("bad, field", [(dict(epochs=0), "epochs"), (dict(seed=-1), "seed"), (dict(batch_size=0), "batch_size"),
                                        (dict(loss_target=0.0), "loss_target"), (dict(device="quantum"), "device"),
                                        (dict(gpu="Z80"), "gpu"), (dict(workers=0), "workers"),
                                        (dict(knobs=(("replicas", "sometimes"),)), "knobs")])
def test_bad_configurations_name_the_field(bad, field) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        demo.DemoConfig(**bad)
