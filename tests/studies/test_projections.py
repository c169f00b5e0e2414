"""The AlgoPerf projection study end to end at a tiny size."""

from __future__ import annotations

import pytest

from studies import projections
from studies.plotting import figure_problems
from studies.sweep import read_rows


def slow_factorizations(path, rate: float = 0.1):
    """A hand-made kernel calibration: Cholesky inverses at ``rate`` of the GEMM's FLOP rate."""
    from cosim.kernels import KernelCalibration, KernelTiming
    from cosim.roofline import cholesky_inverse, gemm

    timings = (KernelTiming("gemm", 256, 1e-3, 0.0, 3, gemm(256, 256, 256).flops),
               KernelTiming("cholesky_inverse", 256, cholesky_inverse(256).flops / (gemm(256, 256, 256).flops / 1e-3) / rate,
                            0.0, 3, cholesky_inverse(256).flops))
    return KernelCalibration(timings, "a hand-made machine").save(path)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("proj")
    cfg = projections.ProjectionConfig(workloads=("gnn-molpcba",), step_ratios=(0.5, 0.75), knobs=("n_chips", "link_scale"),
                                       measure_ratio=False, intervals=(1, 2), inv_update_steps=2, workers=1, out_dir=out,
                                       kernels=str(slow_factorizations(out / "rates.json")))
    path = projections.run(cfg, progress=False)
    assert path.with_suffix(".png").stat().st_size > 0
    assert "Baseline steps" in path.with_suffix(".md").read_text()
    return read_rows(path)


def test_every_point_has_positive_times_and_speedups_below_the_bound(rows) -> None:
    assert len(rows) == 2 * (2 * 2 + 3 + 3)  # ratios x (intervals x methods + two knobs of three values)
    for r in rows:
        assert r["adam_s"] > 0 and r["kfac_s"] > 0 and r["tkfac_s"] > 0
        assert r["speedup_vs_adam"] > 0 and r["speedup_vs_kfac"] > 0
        assert 0 < r["replaced_share"] < 1 and r["speedup_vs_kfac"] < r["bound_vs_kfac"]
        assert r["bound_vs_adam"] == pytest.approx(r["bound_vs_kfac"] * r["kfac_vs_adam"], rel=1e-9)
    methods = {(r["interval"], r["method"]) for r in rows if r["knob"] == "base"}
    assert methods == {(1, "inverse"), (1, "solve"), (2, "inverse"), (2, "solve")}
    # the solve method also hands the device the preconditioning products: a larger share
    share = {(r["interval"], r["method"]): r["replaced_share"] for r in rows if r["knob"] == "base" and r["step_ratio"] == 0.5}
    assert share[(1, "solve")] > share[(1, "inverse")] > share[(2, "inverse")]


def test_the_anchored_adam_step_is_algoperfs_and_the_roofline_figure_is_kept(rows) -> None:
    published = projections.published_step_s("gnn-molpcba")
    assert published == pytest.approx(7_696.0 / 24_123)
    steps = projections.WORKLOADS["gnn-molpcba"]()["baseline_steps"]
    for r in rows:
        assert r["adam_s"] / steps == pytest.approx(published, rel=0.01)
        # the GNN's anchor is a residual: the kernels keep their roofline, the step holds unmodelled work
        assert r["anchor_mode"] == "residual" and r["anchor_scale"] == 1.0
        assert r["roofline_adam_s"] + r["unmodelled_step_s"] * steps == pytest.approx(r["adam_s"], rel=1e-6)
    assert rows[0]["unmodelled_step_s"] * steps > 10 * rows[0]["roofline_adam_s"]  # the layer model leaves most of it out


def test_slower_factorizations_weigh_more_in_digital_kfac_and_raise_the_bound() -> None:
    system = projections.base_system("V100", None, None, 16)
    import tempfile
    from pathlib import Path

    from cosim.kernels import KernelCalibration

    with tempfile.TemporaryDirectory() as tmp:
        slow = KernelCalibration.load(slow_factorizations(Path(tmp) / "r.json", rate=0.1))
    assert slow.relative() == pytest.approx({"cholesky_inverse": 0.1})
    common = dict(n_gpus=8, interval=1, analog_op="inverse", target_rel_error=1e-2)
    gemm_rate = projections.project_methods("vit-imagenet", system, 0.5, **common)
    tenth = projections.project_methods("vit-imagenet", projections.calibrated(system, slow), 0.5, **common)
    assert tenth["inversion_share"] > gemm_rate["inversion_share"]
    assert tenth["bound_vs_kfac"] > gemm_rate["bound_vs_kfac"]
    assert tenth["adam_s"] == pytest.approx(gemm_rate["adam_s"], rel=1e-9)  # Adam does not factorize
    steps = projections.WORKLOADS["vit-imagenet"]()["baseline_steps"]
    assert tenth["adam_s"] / steps == pytest.approx(projections.published_step_s("vit-imagenet"), rel=0.01)
    assert tenth["anchor_mode"] == "scale" and tenth["anchor_scale"] > 1


def test_fewer_kfac_steps_and_more_chips_help_the_thermodynamic_run(rows) -> None:
    base = {r["step_ratio"]: r for r in rows if r["knob"] == "base" and r["interval"] == 2 and r["method"] == "solve"}
    assert base[0.5]["tkfac_s"] < base[0.75]["tkfac_s"]
    assert base[0.5]["adam_s"] == pytest.approx(base[0.75]["adam_s"])  # Adam's steps do not change
    chips = {r["value"]: r for r in rows if r["knob"] == "n_chips" and r["step_ratio"] == 0.5}
    assert chips[16.0]["tkfac_s"] < chips[1.0]["tkfac_s"]  # right-hand sides run in parallel on the chips
    # the couplings are sent to every chip used over one link (no broadcast): with many chips the
    # link, not the device, bounds the step
    assert chips[1.0]["tkfac_bottleneck"] == "analog" and chips[256.0]["tkfac_bottleneck"] == "link"


def test_the_measured_ratio_comes_from_real_training() -> None:
    ratio = projections.measured_step_ratio(steps=60)
    assert 0 < ratio <= 1


def test_the_figure_labels_units_and_uses_log_axes_only_across_decades(tmp_path) -> None:
    # before: no x labels, and the bits panel (8..16, under a decade) on a log axis
    rows = [{"workload": "gnn-molpcba", "knob": knob, "value": v, "step_ratio": 0.5, "speedup_vs_kfac": s}
            for knob, values in (("bits", ((8.0, 0.02), (12.0, 0.021), (16.0, 0.021))),
                                 ("n_chips", ((1.0, 1e-4), (16.0, 2e-2), (256.0, 1e-2))))
            for v, s in values]
    fig = projections.plot(rows, tmp_path / "p.png")
    assert figure_problems(fig) == []
    bits, chips = fig.axes
    assert bits.get_xscale() == "linear" and chips.get_xscale() == "log" and chips.get_yscale() == "log"
    assert bits.get_xlabel() == "converter bit width (bits)"


@pytest.mark.parametrize("bad, field", [(dict(n_gpus=0), "n_gpus"), (dict(n_chips=1.5), "n_chips"),
                                        (dict(measure_steps=0), "measure_steps"), (dict(step_ratios=(0.5, -1.0)), "step_ratios"),
                                        (dict(inv_update_steps=True), "inv_update_steps"), (dict(workers=0), "workers"),
                                        (dict(target_rel_error=2.0), "target_rel_error"),
                                        (dict(intervals=(1, 0)), "intervals"), (dict(methods=("both",)), "methods"),
                                        (dict(kernels="no-such-file.json"), "kernels")])
def test_bad_configurations_name_the_field_and_value(bad, field) -> None:
    with pytest.raises(ValueError, match=field):
        projections.ProjectionConfig(**bad)
