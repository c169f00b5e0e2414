"""The sweep store: concurrent writers lose nothing, runs are recorded, foreign files are refused."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time

import numpy as np
import pytest

from studies.store import SweepError, SweepStore, point_key, store_path_for
from studies.sweep import read_rows, run_sweep

N_EACH = 60


def _write_points(path: str, offset: int, barrier) -> None:
    """One writer: its own connection, ``N_EACH`` points committed one by one, plus points the
    other writer also writes (the first one committed stays)."""
    with SweepStore.open(path) as store:
        store.set_key(("i",))
        barrier.wait()  # start together, so the transactions really interleave
        for i in range(N_EACH):
            store.add({"i": offset + i, "writer": offset}, package_version="test")
            time.sleep(0.002)  # a point's work between commits: lets the other writer's retry in
        for i in range(5):
            store.add({"i": 10_000 + i, "writer": offset}, package_version="test")


def test_two_writers_at_once_lose_nothing(tmp_path) -> None:
    path = str(tmp_path / "s.sqlite")
    ctx = multiprocessing.get_context("fork")  # each opens its own connection after the fork
    barrier = ctx.Barrier(2)
    writers = [ctx.Process(target=_write_points, args=(path, offset, barrier)) for offset in (0, 1000)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=60)
    assert [w.exitcode for w in writers] == [0, 0]  # no "database is locked"
    with SweepStore.open(path, create=False) as store:
        rows = store.finished()
        assert store.count() == 2 * N_EACH + 5
    assert sorted(r["i"] for r in rows.values()) == [*range(N_EACH), *range(1000, 1000 + N_EACH),
                                                     *range(10_000, 10_005)]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def square(point: dict) -> dict:
    return {"y": point["i"] ** 2}


def _sweep(csv_path: str, start: int, stop: int, barrier) -> None:
    barrier.wait()
    run_sweep(square, [{"i": i} for i in range(start, stop)], csv_path, workers=1, progress=False)


def test_two_sweeps_into_one_folder_at_once_keep_every_point(tmp_path) -> None:
    csv_path = str(tmp_path / "s.csv")
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    sweeps = [ctx.Process(target=_sweep, args=(csv_path, start, stop, barrier)) for start, stop in ((0, 40), (20, 60))]
    for s in sweeps:
        s.start()
    for s in sweeps:
        s.join(timeout=60)
    assert [s.exitcode for s in sweeps] == [0, 0]
    rows = read_rows(csv_path)  # the last export: whole, and holding every point of both
    assert sorted(r["i"] for r in rows) == list(range(60))
    assert all(r["y"] == r["i"] ** 2 for r in rows)


def test_runs_are_recorded_with_their_points_in_order(tmp_path) -> None:
    csv_path = tmp_path / "s.csv"
    run_sweep(square, [{"i": i} for i in range(3)], csv_path, workers=1, progress=False)
    run_sweep(square, [{"i": 7}, {"i": 1}], csv_path, workers=1, progress=False)
    with SweepStore.open(store_path_for(csv_path), create=False) as store:
        assert store.last_run_keys() == [point_key({"i": 7}, ["i"]), point_key({"i": 1}, ["i"])]
        assert [(r["status"], r["n_points"]) for r in store.runs()] == [("done", 3), ("done", 2)]
        assert store.key == ("i",) and store.columns == ["i", "y"]


def test_numpy_scalars_are_stored_as_numbers(tmp_path) -> None:
    with SweepStore.open(tmp_path / "s.sqlite") as store:
        store.set_key(("i",))
        assert store.add({"i": np.int64(3), "y": np.float32(0.5), "ok": np.bool_(True)}, package_version="test")
        assert not store.add({"i": 3, "y": 9.0, "ok": False}, package_version="test")  # same key: first stays
        assert list(store.finished().values()) == [{"i": 3, "y": 0.5, "ok": True}]


def test_a_store_of_another_sweep_or_no_store_is_refused(tmp_path) -> None:
    with SweepStore.open(tmp_path / "s.sqlite") as store:
        store.set_key(("i",))
    with pytest.raises(SweepError, match=r"holds another sweep \(its key is \['i'\], not \['j'\]\)"):
        run_sweep(square, [{"j": 1, "i": 1}], tmp_path / "s.csv", key=["j"], workers=1, progress=False)
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SweepError, match=r"junk\.sqlite is not a sweep store"):
        run_sweep(square, [{"i": 1}], tmp_path / "junk.csv", workers=1, progress=False)
    with pytest.raises(SweepError, match="no sweep store at"):
        SweepStore.open(tmp_path / "none.sqlite", create=False)


def test_the_store_lives_beside_the_csv() -> None:
    assert store_path_for("results/noise/noise.csv").as_posix() == "results/noise/noise.sqlite"
