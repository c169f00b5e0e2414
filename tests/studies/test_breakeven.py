"""The break-even study end to end at a tiny size: its table, its reasons, its crossings."""

from __future__ import annotations

import dataclasses

import pytest

from studies import breakeven
from studies.plotting import figure_problems
from studies.sweep import read_rows


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("breakeven")
    cfg = breakeven.BreakevenConfig(kernels="none", workloads=("gnn-molpcba",), methods=("solve",), targets=(1.0, 2.0),
                                    knobs=("tau_scale", "n_chips", "coupling_delivery"), intervals=(1,), map_points=3,
                                    workers=1, out_dir=out)
    path = breakeven.STUDY.run(cfg, progress=False)
    return cfg, path, read_rows(path)


def test_one_row_per_workload_method_baseline_target_and_knob(run):
    cfg, path, rows = run
    assert len(rows) == 1 * 1 * 2 * 2 * 3
    for column in ("workload", "method", "baseline", "target_speedup", "knob", "value_at_target", "reachable", "limit"):
        assert column in rows[0]
    assert path.with_suffix(".png").stat().st_size > 0 and "Break-even frontier" in path.with_suffix(".md").read_text()


def test_a_reached_target_is_reached_at_its_value_and_never_says_why(run):
    cfg, _, rows = run
    for r in rows:
        target, bound = float(r["target_speedup"]), float(r["bound"])
        if bound < target:  # Amdahl rules it out before any projection
            assert str(r["reachable"]) == "False" and r["limit"].startswith("bound: no device beats")
        elif str(r["reachable"]) == "True" and r["knob"] == "tau_scale":
            at = breakeven.projected(cfg, r["workload"], r["method"], 1, "tau_scale", float(r["value_at_target"]))
            assert at[f"speedup_vs_{r['baseline']}"] >= target
            # just short of the value found (2% search tolerance) the target is missed
            short = breakeven.projected(cfg, r["workload"], r["method"], 1, "tau_scale", float(r["value_at_target"]) * 1.03)
            assert short[f"speedup_vs_{r['baseline']}"] < target
        elif str(r["reachable"]) == "False":
            assert ("saturates" in r["limit"] or "peaks" in r["limit"]) and "bound)" in r["limit"]
    assert any(str(r["reachable"]) == "True" for r in rows)
    assert any(r["limit"].startswith("bound") for r in rows)


def test_the_figures_are_labelled(run, tmp_path):
    cfg, path, rows = run
    fig = breakeven.plot(rows, tmp_path / "b.png")
    assert figure_problems(fig) == []
    maps = read_rows(breakeven.map_path(path))
    assert figure_problems(breakeven.plot_maps(maps, tmp_path / "m.png", cfg)) == []


def test_the_map_is_the_grid_of_both_knobs_and_improves_towards_the_best_corner(run):
    cfg, path, _ = run
    maps = read_rows(breakeven.map_path(path))
    assert len(maps) == 3 * 3 and {r["n_chips"] for r in maps} == {1.0, 64.0, 4096.0}
    by = {(r["tau_scale"], r["n_chips"]): r["speedup_vs_kfac"] for r in maps}
    assert by[(1e-4, 1.0)] > by[(1.0, 1.0)]  # a faster device helps
    assert "## Maps: tau_scale against n_chips" in path.with_suffix(".md").read_text()
    assert breakeven.map_path(path).with_suffix(".png").stat().st_size > 0


@pytest.mark.parametrize("bad, field", [(dict(methods=("both",)), "methods"), (dict(knobs=("tau",)), "knobs"),
                                        (dict(targets=(0.0,)), "targets"), (dict(intervals=(0,)), "intervals"),
                                        (dict(map_knobs=("tau_scale", "tau_scale")), "map_knobs")])
def test_bad_configurations_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        breakeven.BreakevenConfig(**bad)


def test_tngd_limits_are_the_cost_models_figures(run):
    cfg, path, _ = run
    (limit,) = breakeven.tngd_limits(cfg)
    assert limit["values"] == limit["rank"] * (limit["rank"] + 2 * limit["n_params"])
    assert limit["device_s"] > limit["adam_step_s"]  # programming alone outlasts Adam's step
    assert limit["link_needed_bps"] > limit["link_bps"]
    assert "## Thermodynamic NGD: what it programs, and its digital floor" in path.with_suffix(".md").read_text()


def test_choice_knobs_say_what_the_base_device_cannot_take_and_what_a_choice_gives():
    cfg = breakeven.BreakevenConfig(kernels="none", workloads=("gnn-molpcba",), methods=("solve",), targets=(1e-6,),
                                    intervals=(10,), knobs=tuple(breakeven.CHOICES))
    point = {"workload": "gnn-molpcba", "method": "solve", "interval": 10, "baseline": "kfac"}
    # a target the base device already reaches is reached at the base device's own value
    replicas = breakeven.evaluate(cfg, {**point, "target_speedup": 1e-6, "knob": "replicas"})
    assert replicas["base_value"] == "off" and replicas["value_at_target"] == "off"
    # the published chip is unbounded: it has no spare units to hold replicas, and says so
    refused = breakeven._choose(cfg, "gnn-molpcba", "solve", 10, "replicas", "speedup_vs_kfac", 1e3, 1e9)
    assert not refused["reachable"] and "on not possible" in refused["limit"] and "n_units" in refused["limit"]
    # resident couplings let the solve method program its factors once per interval, not every
    # step, but only with a chip for every factor: on the one-chip base device they change nothing
    one_chip = [breakeven.projected(cfg, "gnn-molpcba", "solve", 10, "resident_couplings", v) for v in ("off", "on")]
    assert one_chip[0]["tkfac_s"] == pytest.approx(one_chip[1]["tkfac_s"], rel=1e-12)
    cfg = dataclasses.replace(cfg, n_chips=2 * 33)  # the GNN has 33 K-FAC layers
    off = breakeven.projected(cfg, "gnn-molpcba", "solve", 10, "resident_couplings", "off")
    on = breakeven.projected(cfg, "gnn-molpcba", "solve", 10, "resident_couplings", "on")
    assert on["tkfac_s"] < off["tkfac_s"] and on["kfac_s"] == pytest.approx(off["kfac_s"])
    target = (on["speedup_vs_kfac"] * off["speedup_vs_kfac"]) ** 0.5  # between the two: only "on" reaches it
    found = breakeven._choose(cfg, "gnn-molpcba", "solve", 10, "resident_couplings", "speedup_vs_kfac", target, 1e9)
    assert found["reachable"] and found["value_at_target"] == "on"


def test_tngd_is_searched_like_the_k_facs_and_its_digital_floor_rules_it_out_on_vit():
    cfg = breakeven.BreakevenConfig(kernels="none", workloads=("vit-imagenet",), methods=("tngd",), intervals=(1,),
                                    knobs=("link_scale",))
    found = breakeven.evaluate(cfg, {"workload": "vit-imagenet", "method": "tngd", "interval": 1, "baseline": "adam",
                                     "target_speedup": 1.0, "knob": "link_scale"})
    # d_z = 1000 backward passes for the Jacobian of each step: no device can bring TNGD to Adam
    assert not found["reachable"] and found["limit"].startswith("bound") and found["bound"] < 0.01
    row = breakeven.projected(cfg, "vit-imagenet", "tngd", 1, "base", 0.0)
    assert row["speedup_vs_adam"] < row["bound_vs_adam"] and row["bottleneck"] == "link"
