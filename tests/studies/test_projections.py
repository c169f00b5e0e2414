"""The AlgoPerf projection study end to end at a tiny size."""

from __future__ import annotations

import pytest

from studies import projections
from studies.sweep import read_rows


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("proj")
    cfg = projections.ProjectionConfig(workloads=("gnn-molpcba",), step_ratios=(0.5, 0.75), knobs=("n_chips", "link_scale"),
                                       measure_ratio=False, workers=1, out_dir=out)
    path = projections.run(cfg, progress=False)
    assert path.with_suffix(".png").stat().st_size > 0
    assert "Baseline steps" in path.with_suffix(".md").read_text()
    return read_rows(path)


def test_every_point_has_positive_times_and_speedups(rows) -> None:
    assert len(rows) == 2 * (1 + 3 + 3)
    for r in rows:
        assert r["adam_s"] > 0 and r["kfac_s"] > 0 and r["tkfac_s"] > 0
        assert r["speedup_vs_adam"] > 0 and r["speedup_vs_kfac"] > 0


def test_fewer_kfac_steps_and_more_chips_help_the_thermodynamic_run(rows) -> None:
    base = {r["step_ratio"]: r for r in rows if r["knob"] == "base"}
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
