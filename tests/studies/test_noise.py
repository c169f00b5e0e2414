"""The noise-tolerance study end to end at a tiny size, and its automatic smallest precision."""

from __future__ import annotations

import math

import pytest

from studies import noise
from studies.plotting import figure_problems
from studies.sweep import read_rows


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("noise")
    cfg = noise.NoiseConfig(tasks=("digits-mlp",), methods=("solve",), steps=15, seeds=2, bits=(4, 16), kT=(1e-6,),
                            mismatch_sigma=(0.0,), window_tau=(1.0,), planned_errors=(0.05,), workers=1, out_dir=out)
    path = noise.run(cfg, progress=False)
    return read_rows(path), cfg, path


def test_every_point_is_in_the_csv_with_sane_values(result) -> None:
    rows, cfg, path = result
    assert len(rows) == len(noise.points(cfg))
    assert {"task", "method", "variant", "value", "seed", "train_loss", "test_accuracy", "fallbacks", "status"} <= set(rows[0])
    for r in rows:
        assert r["status"] == "ok" and 0 <= r["test_accuracy"] <= 1 and math.isfinite(r["train_loss"])
        if r["variant"] in ("adam", "exact"):
            assert r["analog_time_s"] == 0
        else:
            assert r["analog_time_s"] > 0
    assert path.with_suffix(".png").stat().st_size > 0
    report = path.with_suffix(".md").read_text()
    assert "| model | method | smallest bit width | largest planned error |" in report and "| digits-mlp | solve |" in report


def test_confidence_intervals_and_the_exact_reference(result) -> None:
    rows, _, _ = result
    summary = noise.summarize(rows)
    exact = next(s for s in summary if s["variant"] == "exact")
    sixteen = next(s for s in summary if s["variant"] == "bits" and s["value"] == 16)
    assert exact["n"] == 2 and exact["train_loss_ci"] >= 0
    # 16-bit converters are as good as exact arithmetic for training, within the seeds' spread
    assert abs(sixteen["train_loss"] - exact["train_loss"]) <= 0.1 * exact["train_loss"] + exact["train_loss_ci"]


def test_smallest_precision_is_the_start_of_the_run_of_widths_that_beat_adam() -> None:
    summary = [{"task": "t", "variant": "adam", "value": 0.0, "train_loss": 1.0}] + [
        {"task": "t", "variant": "bits", "value": float(b), "train_loss": loss}
        for b, loss in ((4, 1.5), (6, 0.9), (8, 1.1), (10, 0.8), (12, 0.7))
    ]
    assert noise.smallest_precision(summary, "t") == 10  # 8 bits lost the benefit again
    summary[4]["fallbacks"] = 3  # 10 bits only kept up through the exact fallback
    assert noise.smallest_precision(summary, "t") == 12
    summary[-1]["train_loss"] = 2.0
    assert noise.smallest_precision(summary, "t") is None


def test_largest_error_is_the_end_of_the_run_of_planned_errors_that_beat_adam_per_method() -> None:
    summary = [{"task": "t", "variant": "adam", "value": 0.0, "train_loss": 1.0, "method": "-"}] + [
        {"task": "t", "variant": "target_rel_error", "value": e, "train_loss": loss, "method": m}
        for m, rows in (("solve", ((0.01, 0.5), (0.05, 0.7), (0.2, 0.9), (0.5, 1.2))),
                        ("inverse", ((0.01, 0.8), (0.05, 1.1), (0.2, 0.9), (0.5, 2.0))))
        for e, loss in rows
    ]
    assert noise.largest_error(summary, "t", "solve") == 0.2  # 0.5 loses the benefit
    assert noise.largest_error(summary, "t", "inverse") == 0.01  # 0.05 lost it; 0.2 regaining it does not count
    summary[1]["train_loss"] = 1.5
    assert noise.largest_error(summary, "t", "solve") is None


def test_the_default_sweeps_every_knob_on_the_mlp_and_bit_widths_on_the_cnn() -> None:
    cfg = noise.NoiseConfig()
    variants = {(p["task"], p["variant"]) for p in noise.points(cfg)}
    assert {("digits-mlp", k) for k in noise.KNOBS} <= variants
    assert {v for t, v in variants if t == "digits-cnn"} == {"adam", "exact", "bits", "target_rel_error"}
    # both published methods by default, each with its own exact reference; Adam once per task and seed
    assert {(p["method"], p["variant"]) for p in noise.points(cfg) if p["variant"] in ("adam", "exact")} == {
        ("-", "adam"), ("solve", "exact"), ("inverse", "exact")}
    assert set(full_tasks := noise.NoiseConfig.full().tasks) >= {"digits-vit", "graphs-gnn"}, full_tasks
    # each method sweeps its own widths on the CNN: the inverse method's bracket the dither condition
    for method in noise.METHODS:
        cnn_bits = sorted({p["value"] for p in noise.points(cfg)
                           if (p["task"], p["method"], p["variant"]) == ("digits-cnn", method, "bits")})
        assert cnn_bits == [float(b) for b in cfg.bits_only["digits-cnn"][method]], method
    assert cfg.bits_only["digits-cnn"]["inverse"] != cfg.bits_only["digits-cnn"]["solve"]
    full = noise.NoiseConfig.full()
    assert {v for p in noise.points(full) if p["task"] == "digits-cnn" for v in [p["variant"]]} >= set(noise.KNOBS)
    with pytest.raises(ValueError, match="bit widths"):
        noise.NoiseConfig(bits_only={"digits-cnn": (1,)})
    with pytest.raises(ValueError, match="among solve, inverse"):
        noise.NoiseConfig(bits_only={"digits-cnn": {"invert": (8,)}})


def test_bits_only_takes_one_tuple_for_every_method_or_widths_per_method() -> None:
    shared = noise.NoiseConfig(bits_only={"digits-cnn": (6, 10)})
    assert shared.bits_only == {"digits-cnn": {"solve": (6, 10), "inverse": (6, 10)}}
    solve_only = noise.NoiseConfig(tasks=("digits-cnn",), seeds=1, bits_only={"digits-cnn": {"solve": (6,)}})
    inverse_bits = [p for p in noise.points(solve_only) if p["method"] == "inverse" and p["variant"] == "bits"]
    assert inverse_bits == []
    assert noise._bits_verdict(solve_only, "digits-cnn", "inverse", None) == "not swept (--full sweeps it)"
    assert noise._bits_verdict(solve_only, "digits-cnn", "solve", 6) == "6 (of 6)"
    assert noise._bits_verdict(noise.NoiseConfig(), "digits-mlp", "solve", None) == "none (of 4, 6, 8, 12, 16)"


def _summary_entry(task, variant, value, loss, fallbacks=0, ci=0.002):
    return {"task": task, "method": "solve", "variant": variant, "value": float(value), "n": 3, "train_loss": loss,
            "train_loss_ci": ci,
            "test_accuracy": 0.9, "test_accuracy_ci": 0.01, "fallbacks": fallbacks, "failed": 0}


def test_the_figure_marks_exact_fallbacks_labels_units_and_picks_log_axes(tmp_path) -> None:
    # before: fallbacks were invisible, axes had no units and every loss axis was logarithmic
    cfg = noise.NoiseConfig(tasks=("digits-mlp",), methods=("solve",), bits_only={}, workers=1, out_dir=tmp_path)
    summary = [_summary_entry("digits-mlp", "adam", 0, 0.04), _summary_entry("digits-mlp", "exact", 0, 0.022)]
    summary += [_summary_entry("digits-mlp", "bits", b, loss, fallbacks=3 if b == 4 else 0)
                for b, loss in ((4, 0.035), (6, 0.023), (16, 0.022))]
    summary += [_summary_entry("digits-mlp", "target_rel_error", e, 0.022 + e / 10) for e in (0.01, 0.1, 0.5)]
    summary += [_summary_entry("digits-mlp", "kT", k, 0.022 + k) for k in (1e-6, 1e-4, 1e-2)]
    summary += [_summary_entry("digits-mlp", "mismatch_sigma", m, 0.023) for m in (0.0, 0.001, 0.05)]
    summary += [_summary_entry("digits-mlp", "window_tau", w, 0.022) for w in (1.0, 10.0, 100.0)]
    fig = noise.plot(summary, tmp_path / "noise.png", cfg)
    assert figure_problems(fig) == []
    bits, error, kT, mismatch, window = fig.axes
    assert error.get_xscale() == "log" and error.get_xlabel() == "planned relative error of the analog results (fraction)"
    assert bits.get_xscale() == "linear" and kT.get_xscale() == "log" and window.get_xscale() == "log"
    assert mismatch.get_xscale() == "symlog"  # zero mismatch among values spanning decades
    assert bits.get_yscale() == "linear"  # 0.022..0.04: less than a decade
    assert kT.get_xlabel().endswith("(V^2)") and bits.get_ylabel() == "final training loss (nats)"
    crosses = [line for line in bits.get_lines() if line.get_marker() == "X"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [4.0]  # only the width that fell back
    assert "runs fell back to the exact solver" in [t.get_text() for t in bits.get_legend().get_texts()]
    assert not any(line.get_marker() == "X" for line in kT.get_lines())


@pytest.mark.parametrize("bad, field", [(dict(steps=0), "steps"), (dict(seeds=0), "seeds"), (dict(steps=True), "steps"),
                                        (dict(bits=(4.5, 8)), r"bits\[0\]"), (dict(bits=(1,)), "bits"),
                                        (dict(kT=(-1e-6,)), "kT"), (dict(mismatch_sigma=(1.0,)), "mismatch_sigma"),
                                        (dict(window_tau=(0.0,)), "window_tau"), (dict(workers=0), "workers"),
                                        (dict(target_rel_error=0.0), "target_rel_error"), (dict(steps=2.5), "steps"),
                                        (dict(planned_errors=(1.5,)), "planned_errors"), (dict(methods=("both",)), "methods")])
def test_bad_configurations_name_the_field_and_value(bad, field) -> None:
    with pytest.raises(ValueError, match=field) as err:
        noise.NoiseConfig(**bad)
    assert repr(next(iter(bad.values()))).split(",")[0].strip("(") in str(err.value)  # the value is named
    assert noise.NoiseConfig(bits=(4.0, 8)).bits == (4, 8)  # a whole float is kept as the integer, not truncated
