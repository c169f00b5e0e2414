"""Resumable sweeps: restart equals uninterrupted, process pool and Dask give the same CSV."""

from __future__ import annotations

import math

import pytest

from studies.sweep import SweepError, read_rows, run_sweep

FAIL_AT: list[int] = []


def model(point: dict) -> dict:
    """A deterministic 'experiment' with a seed, as a study point would be."""
    if point["x"] in FAIL_AT:
        raise RuntimeError(f"killed at x={point['x']}")
    value = math.sin(point["x"] * 1.3 + point["seed"]) * 10 ** point["seed"]
    return {"y": value, "label": f"x{point['x']}"}


POINTS = [{"x": x, "seed": s} for x in range(6) for s in range(2)]


def test_a_killed_sweep_restarted_writes_the_same_csv(tmp_path) -> None:
    straight = tmp_path / "straight.csv"
    run_sweep(model, POINTS, straight, workers=1, progress=False)
    resumed = tmp_path / "resumed.csv"
    FAIL_AT.append(3)
    try:
        with pytest.raises(RuntimeError, match="killed at x=3"):
            run_sweep(model, POINTS, resumed, workers=1, progress=False)
    finally:
        FAIL_AT.clear()
    partial = read_rows(resumed)
    assert 0 < len(partial) < len(POINTS)  # what finished before the kill was kept
    rows = run_sweep(model, POINTS, resumed, workers=1, progress=False)
    assert resumed.read_text() == straight.read_text()
    assert [(r["x"], r["seed"]) for r in rows] == [(p["x"], p["seed"]) for p in POINTS]
    # nothing left to do: a third run changes nothing
    run_sweep(model, POINTS, resumed, workers=1, progress=False)
    assert resumed.read_text() == straight.read_text()


def test_process_pool_and_dask_give_the_same_csv(tmp_path) -> None:
    pytest.importorskip("distributed")
    reference = tmp_path / "inline.csv"
    run_sweep(model, POINTS, reference, workers=1, progress=False)
    pool = tmp_path / "pool.csv"
    run_sweep(model, POINTS, pool, workers=2, progress=False)
    dask = tmp_path / "dask.csv"
    run_sweep(model, POINTS, dask, scheduler="local", progress=False)
    assert pool.read_text() == reference.read_text() == dask.read_text()


def test_rows_read_back_with_their_types(tmp_path) -> None:
    path = tmp_path / "s.csv"
    run_sweep(model, POINTS[:2], path, workers=1, progress=False)
    row = read_rows(path)[1]
    assert isinstance(row["x"], int) and isinstance(row["y"], float) and row["label"] == "x0"


def test_bad_sweeps_are_refused(tmp_path) -> None:
    with pytest.raises(SweepError, match="no points"):
        run_sweep(model, [], tmp_path / "a.csv", workers=1)
    with pytest.raises(SweepError, match="same key"):
        run_sweep(model, [{"x": 1, "seed": 0}, {"x": 1, "seed": 0}], tmp_path / "a.csv", workers=1)
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(SweepError, match="another sweep"):
        run_sweep(model, POINTS, other, workers=1, progress=False)


def test_a_csv_computed_under_other_settings_is_refused_not_mixed(tmp_path) -> None:
    path = tmp_path / "s.csv"
    run_sweep(model, POINTS[:3], path, workers=1, progress=False, context={"steps": 100, "gpu": "A100"})
    assert (tmp_path / "s.csv.context.json").exists()
    # more points under the same settings: only the new ones run
    rows = run_sweep(model, POINTS, path, workers=1, progress=False, context={"steps": 100, "gpu": "A100"})
    assert len(rows) == len(POINTS)
    with pytest.raises(SweepError, match=r"gpu: 'A100' there, 'V100' now"):
        run_sweep(model, POINTS, path, workers=1, progress=False, context={"steps": 100, "gpu": "V100"})
    assert len(read_rows(path)) == len(POINTS)  # nothing was written
