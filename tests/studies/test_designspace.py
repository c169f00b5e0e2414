"""The design-space study end to end at a tiny size, its Pareto front and its restart."""

from __future__ import annotations

import math

import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb

from studies import designspace
from studies.designspace import pareto_front
from studies.plotting import figure_problems
from studies.sweep import read_rows


def _config(out):
    return designspace.DesignSpaceConfig(kernels="none", tasks=("digits-mlp",), methods=("solve",), steps=10, seeds=2,
                                         bits=(4, 12), target_rel_error=(0.3, 0.03),
                                         mismatch_sigma=(0.0,), tau_scale=(1.0, 0.1), workload="gnn-molpcba",
                                         workers=1, out_dir=out)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    cfg = _config(tmp_path_factory.mktemp("designspace"))
    path = designspace.run(cfg, progress=False)
    return read_rows(path), cfg, path


def test_every_design_is_in_the_table_with_sane_values(result) -> None:
    rows, cfg, path = result
    assert rows[0]["design"] == "exact" and rows[0]["speedup_vs_kfac"] == 1.0
    devices = rows[1:]
    assert len(devices) == len(cfg.bits) * len(cfg.target_rel_error) * len(cfg.mismatch_sigma) * len(cfg.tau_scale)
    expected = {"bits", "target_rel_error", "mismatch_sigma", "tau_scale", "test_accuracy", "test_accuracy_ci",
                "accuracy_loss", "speedup_vs_kfac", "speedup_vs_adam", "feasible", "pareto"}
    assert expected <= set(rows[0])
    for r in rows:
        assert 0 <= r["test_accuracy"] <= 1 and r["speedup_vs_kfac"] > 0 and r["speedup_vs_adam"] > 0
        assert -1 <= r["accuracy_loss"] <= 1
    training = read_rows(cfg.out_dir / "designspace_training.csv")
    assert len(training) == len(designspace.training_points(cfg))  # every seed of every setting is kept
    assert sum(r["design"] == "adam" for r in training) == cfg.seeds  # Adam once per task and seed
    adam = sum(r["train_loss"] for r in training if r["design"] == "adam") / cfg.seeds
    for r in rows:
        assert r["task"] == "digits-mlp" and r["adam_train_loss"] == pytest.approx(adam)
        assert r["beats_adam"] == (r["train_loss"] < adam and r["fallbacks"] == 0 and r["failed"] == 0)
    assert len(read_rows(cfg.out_dir / "designspace_projections.csv")) == len(designspace.projection_points(cfg))
    assert path.with_suffix(".png").stat().st_size > 0
    text = path.with_suffix(".md").read_text()
    assert "Pareto front" in text and "keep K-FAC's advantage over Adam" in text
    limit = designspace.advantage_limits(rows, "digits-mlp", "solve")
    assert limit["smallest_bits"] in (None, 4, 12) and limit["at_error"] == 0.03 and limit["at_bits"] == 12
    assert f"| digits-mlp | solve | {designspace._limit_text(limit, 'smallest_bits')} (at error 0.03)" in text


def test_speed_is_monotone_where_the_timing_model_says(result) -> None:
    rows, _, _ = result
    speed = {(r["bits"], r["target_rel_error"], r["tau_scale"]): r["speedup_vs_kfac"] for r in rows[1:]}
    for bits in (4, 12):
        for tau in (1.0, 0.1):
            # a looser target shortens the readout window
            assert speed[(bits, 0.3, tau)] > speed[(bits, 0.03, tau)]
        for target in (0.3, 0.03):
            # the device runs in units of tau: a faster device is never slower
            assert speed[(bits, target, 0.1)] > speed[(bits, target, 1.0)]


def test_the_front_holds_only_feasible_undominated_designs(result) -> None:
    rows, _, _ = result
    four_bits = [r for r in rows if r["bits"] == 4]
    assert all(r["fallbacks"] > 0 and not r["feasible"] for r in four_bits)  # 4-bit factors lose definiteness
    front = [r for r in rows if r["pareto"]]
    assert front and all(r["feasible"] for r in front)
    feasible = [r for r in rows[1:] if r["feasible"]]
    for r in front:
        assert not any(o["speedup_vs_kfac"] > r["speedup_vs_kfac"] and o["accuracy_loss"] < r["accuracy_loss"]
                       for o in feasible)


def test_a_restart_recomputes_nothing_and_writes_the_same_table(result, monkeypatch) -> None:
    rows, cfg, path = result
    first = path.read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("a finished point was computed again")

    monkeypatch.setattr(designspace, "train_design", refuse)
    monkeypatch.setattr(designspace, "project_design", refuse)
    assert designspace.run(cfg, progress=False) == path
    assert path.read_text() == first


def _entry(bits, error, loss, mismatch=0.0, fallbacks=0, adam=1.0):
    return {"task": "t", "method": "solve", "design": "device", "bits": bits, "target_rel_error": error,
            "mismatch_sigma": mismatch, "tau_scale": 1.0, "train_loss": loss, "fallbacks": fallbacks, "failed": 0,
            "adam_train_loss": adam, "beats_adam": loss < adam and fallbacks == 0}


def test_advantage_limits_read_the_grid_at_the_most_favourable_other_axes() -> None:
    exact = {**_entry(0, 0.0, 0.5), "design": "exact"}
    grid = [_entry(b, e, loss) for (b, e, loss) in [
        (4, 0.01, 2.0), (6, 0.01, 1.5), (8, 0.01, 0.8), (12, 0.01, 0.6),  # 6 bits loses it: from 8 on
        (4, 0.1, 2.0), (6, 0.1, 0.9), (8, 0.1, 1.2), (12, 0.1, 0.7),  # at the widest: 0.1 kept
        (4, 0.3, 2.0), (6, 0.3, 0.9), (8, 0.3, 0.9), (12, 0.3, 1.1),  # 0.3 lost at 12 bits
    ]] + [_entry(12, 0.3, 0.2, mismatch=0.05)]  # a mismatched design is not read
    limit = designspace.advantage_limits([exact, *grid], "t", "solve")
    assert (limit["smallest_bits"], limit["largest_error"]) == (8, 0.1)
    assert (limit["at_error"], limit["at_bits"], limit["mismatch_sigma"]) == (0.01, 12, 0.0)
    fell_back = [exact, *(_entry(g["bits"], g["target_rel_error"], g["train_loss"],
                                 fallbacks=int(g["bits"] == 12)) for g in grid[:12])]
    none = designspace.advantage_limits(fell_back, "t", "solve")  # the widest fell back: no width keeps it
    assert none["smallest_bits"] is None and none["largest_error"] is None and none["exact_beats_adam"]
    assert designspace._limit_text(none, "smallest_bits") == "none: even the widest converters lose it"
    slow = {**exact, "train_loss": 1.5, "beats_adam": False}
    assert "digital K-FAC itself does not beat Adam" in designspace._limit_text(
        designspace.advantage_limits([slow, *fell_back[1:]], "t", "solve"), "largest_error")


def test_the_full_size_adds_the_vit_and_the_gnn_and_tasks_are_checked() -> None:
    assert designspace.DesignSpaceConfig().tasks == ("digits-mlp", "digits-cnn")
    assert designspace.DesignSpaceConfig.full().tasks == ("digits-mlp", "digits-cnn", "digits-vit", "graphs-gnn")
    with pytest.raises(ValueError, match="tasks"):
        designspace.DesignSpaceConfig(tasks=())
    cfg = designspace.DesignSpaceConfig(kernels="none")
    trained = {(p["task"], p["method"]) for p in designspace.training_points(cfg)}
    assert trained == {("digits-mlp", "-"), ("digits-mlp", "solve"), ("digits-mlp", "inverse"),
                       ("digits-cnn", "-"), ("digits-cnn", "solve"), ("digits-cnn", "inverse")}
    only_mlp = designspace.DesignSpaceConfig(kernels="none", inverse_tasks=("digits-mlp",))
    assert {(p["task"], p["method"]) for p in designspace.training_points(only_mlp)} == trained - {("digits-cnn", "inverse")}
    full = designspace.DesignSpaceConfig.full(kernels="none")
    assert {m for t, m in ((p["task"], p["method"]) for p in designspace.training_points(full)) if t == "graphs-gnn"} == {
        "-", "solve", "inverse"}


def test_pareto_front_on_hand_built_points() -> None:
    speedups = [1.0, 2.0, 2.0, 0.5, 3.0]
    losses = [0.0, 0.01, 0.02, 0.0, 0.05]
    # (2, .02) is beaten by (2, .01); (.5, 0) by (1, 0); the rest trade speed for accuracy
    assert pareto_front(speedups, losses) == [True, True, False, False, True]
    assert pareto_front([1.0, 1.0], [0.1, 0.1]) == [True, True]  # ties dominate nobody
    with pytest.raises(ValueError, match="same length"):
        pareto_front([1.0], [])


@pytest.mark.parametrize("bad", [dict(bits=(1,)), dict(target_rel_error=(1.5,)), dict(mismatch_sigma=(-0.1,)),
                                 dict(tau_scale=()), dict(workload="resnet"), dict(tasks=("nope",)), dict(seeds=0)])
def test_bad_configurations_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        designspace.DesignSpaceConfig(**bad)


@pytest.mark.parametrize("bad, field", [(dict(steps=0), "steps"), (dict(seeds=False), "seeds"),
                                        (dict(bits=(4, 4.5)), r"bits\[1\]"), (dict(n_gpus=0), "n_gpus"),
                                        (dict(n_chips=2.5), "n_chips"), (dict(inv_update_steps=0), "inv_update_steps"),
                                        (dict(workers=-1), "workers"), (dict(step_ratio=0.0), "step_ratio"),
                                        (dict(tau_scale=(0.0,)), "tau_scale")])
def test_bad_counts_and_widths_name_the_field_and_value(bad, field) -> None:
    # before: 4.5 bits became 4 and steps=0 trained nothing
    with pytest.raises(ValueError, match=field) as err:
        designspace.DesignSpaceConfig(**bad)
    value = next(iter(bad.values()))
    assert repr(value[-1] if isinstance(value, tuple) else value) in str(err.value)


def test_the_figure_keeps_each_marker_in_its_own_panel_and_marks_fallbacks(result, tmp_path) -> None:
    rows, cfg, _ = result
    fig = designspace.plot(rows, tmp_path / "d.png", cfg)
    assert figure_problems(fig) == []
    panels = fig.axes[: len(cfg.tau_scale)]
    for ax, scale in zip(panels, sorted(cfg.tau_scale, reverse=True)):
        own = {(round(100 * r["accuracy_loss"], 9), round(r["speedup_vs_kfac"], 9)) for r in rows[1:]
               if r["tau_scale"] == scale} | {(0.0, 1.0)}  # and digital K-FAC, the reference of every panel
        scatters = [c for c in ax.collections if isinstance(c, PathCollection)]  # markers, not error bars
        drawn = {(round(x, 9), round(y, 9)) for c in scatters for x, y in c.get_offsets()}
        assert drawn <= own, f"panel x{scale:g} draws {drawn - own}, which belong to other panels"
        # the 4-bit designs fell back to the exact solver: red crosses, one per design of this panel
        red = [c for c in scatters if len(c.get_facecolor()) and tuple(c.get_facecolor()[0][:3]) == to_rgb("crimson")]
        crosses = [c for c in red if len(c.get_offsets()) == 1]
        assert len(crosses) == sum(1 for r in rows[1:] if r["tau_scale"] == scale and r["fallbacks"] > 0)
    labels = [t.get_text() for t in panels[-1].get_legend().get_texts()]
    assert "runs fell back to the exact solver" in labels


def test_accuracy_loss_interval_combines_both_in_quadrature() -> None:
    def row(design, acc, seed, bits=8):
        return {"task": "digits-mlp", "design": design, "bits": bits, "target_rel_error": 0.1, "mismatch_sigma": 0.0,
                "seed": seed, "test_accuracy": acc, "train_loss": 0.1, "fallbacks": 0, "status": "ok"}

    training = [row("exact", 0.9, 0), row("exact", 0.92, 1), row("device", 0.85, 0), row("device", 0.89, 1),
                {**row("adam", 0.8, 0, bits=0), "method": "-", "train_loss": 0.3}]
    projections = [{"bits": 8, "target_rel_error": 0.1, "tau_scale": 1.0, "speedup_vs_kfac": 2.0, "speedup_vs_adam": 1.5,
                    "kfac_vs_adam": 0.75, "tkfac_bottleneck": "analog", "bound_vs_kfac": 1.2}]
    exact, device = designspace.summarize(training, projections)
    assert device["accuracy_loss"] == pytest.approx(0.91 - 0.87)
    assert device["accuracy_loss_ci"] == pytest.approx(math.hypot(exact["test_accuracy_ci"], device["test_accuracy_ci"]))
    assert device["pareto"] and device["feasible"] and exact["speedup_vs_adam"] == 0.75
    assert device["adam_train_loss"] == 0.3 and device["beats_adam"] and exact["task"] == "digits-mlp"
    with pytest.raises(ValueError, match="no Adam reference"):
        designspace.summarize(training[:-1], projections)


def test_each_method_has_its_own_exact_reference_and_pareto_front(tmp_path) -> None:
    def run(method, design, bits, acc, seed):
        return {"task": "digits-mlp", "method": method, "design": design, "bits": bits,
                "target_rel_error": 0.0 if design == "exact" else 0.1,
                "mismatch_sigma": 0.0, "seed": seed, "test_accuracy": acc, "train_loss": 1 - acc, "fallbacks": 0,
                "status": "ok"}

    training = [run(m, "exact", 0, ref, s) for m, ref in (("solve", 0.95), ("inverse", 0.90)) for s in (0, 1)]
    training += [run(m, "device", b, acc, s) for m, b, acc in (("solve", 4, 0.93), ("solve", 8, 0.95),
                                                              ("inverse", 4, 0.90), ("inverse", 8, 0.80)) for s in (0, 1)]
    training += [run("-", "adam", 0, 0.9, s) for s in (0, 1)]
    projections = [{"method": m, "bits": b, "target_rel_error": 0.1, "tau_scale": 1.0, "speedup_vs_kfac": v,
                    "speedup_vs_adam": v, "kfac_vs_adam": 1.5, "tkfac_bottleneck": "analog", "bound_vs_kfac": 1.1}
                   for m, b, v in (("solve", 4, 0.5), ("solve", 8, 0.4), ("inverse", 4, 0.01), ("inverse", 8, 0.005))]
    summary = designspace.summarize(training, projections)
    refs = {s["method"]: s for s in summary if s["design"] == "exact"}
    assert refs["solve"]["test_accuracy"] == pytest.approx(0.95) and refs["inverse"]["test_accuracy"] == pytest.approx(0.90)
    loss = {(s["method"], s["bits"]): s["accuracy_loss"] for s in summary if s["design"] == "device"}
    assert loss[("solve", 4)] == pytest.approx(0.02) and loss[("inverse", 8)] == pytest.approx(0.10)  # against its own mode
    pareto = {(s["method"], s["bits"]) for s in summary if s["pareto"]}
    # inverse's 8-bit design is dominated within its method; solve's two designs trade speed for accuracy
    assert pareto == {("solve", 4), ("solve", 8), ("inverse", 4)}
    cfg = designspace.DesignSpaceConfig(kernels="none", tasks=("digits-mlp",), bits=(4, 8), target_rel_error=(0.1,),
                                        mismatch_sigma=(0.0,), tau_scale=(1.0,), workers=1, out_dir=tmp_path)
    fig = designspace.plot(summary, tmp_path / "d.png", cfg)
    assert figure_problems(fig) == [] and [ax.get_title() for ax in fig.axes[:2]] == [
        "digits-mlp, solve method, time constant x1", "digits-mlp, inverse method, time constant x1"]
