"""Resumable sweeps: restart equals uninterrupted, process pool and Dask give the same CSV; the
store keeps every point, old CSVs migrate, Ctrl-C and SIGKILL leave nothing running, workers pin
their threads, unreachable schedulers and unwritable folders are refused up front."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from studies.sweep import (
    SweepError,
    SweepInterrupted,
    SweepWarning,
    check_output_folder,
    pin_threads,
    read_rows,
    run_sweep,
)

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
        with pytest.raises(SweepError, match=r"point \{'x': 3, 'seed': 0\} failed: RuntimeError: killed at x=3; "
                                             r"6 of 12 points are saved in .*resumed\.sqlite") as failed:
            run_sweep(model, POINTS, resumed, workers=1, progress=False)
    finally:
        FAIL_AT.clear()
    assert isinstance(failed.value.__cause__, RuntimeError)  # the point's own error, chained
    partial = read_rows(resumed)  # exported on failure too
    assert len(partial) == 6  # what finished before the failure was kept
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


CALLS: list[dict] = []


def counted(point: dict) -> dict:
    """``model``, recording each call (inline sweeps only: workers=1)."""
    CALLS.append(dict(point))
    return model(point)


def _keys(rows: list[dict]) -> list[tuple]:
    return [(r["x"], r["seed"]) for r in rows]


def test_a_narrower_rerun_keeps_every_point_in_the_csv(tmp_path) -> None:
    # `--bits 4,8,16` then `--bits 8` used to rewrite the CSV with the 8-bit points only
    path = tmp_path / "s.csv"
    run_sweep(model, POINTS, path, workers=1, progress=False)
    narrow = [POINTS[7], POINTS[2]]
    rows = run_sweep(model, narrow, path, workers=1, progress=False)
    assert _keys(rows) == [(3, 1), (1, 0)]  # this run's rows, in its point order
    every = read_rows(path)
    assert len(every) == len(POINTS)
    # this run's points first, then the others in the order they finished
    assert _keys(every) == [(3, 1), (1, 0)] + [k for k in _keys(POINTS) if k not in {(3, 1), (1, 0)}]
    assert read_rows(path, last_run=True) == every[:2]
    # once more with the full set: the CSV is back in point order, and nothing ran again
    CALLS.clear()
    run_sweep(counted, POINTS, path, workers=1, progress=False)
    assert CALLS == [] and _keys(read_rows(path)) == _keys(POINTS)
    assert _keys(read_rows(path, last_run=True)) == _keys(POINTS)


def test_last_run_rows_read_back_like_the_csv_rows(tmp_path) -> None:
    path = tmp_path / "s.csv"
    run_sweep(model, POINTS[:4], path, workers=1, progress=False)
    assert read_rows(path, last_run=True) == read_rows(path)
    path.unlink()  # the CSV is an export: the store still answers
    assert _keys(read_rows(path)) == _keys(POINTS[:4])
    assert read_rows(path, last_run=True)[0]["label"] == "x0"


def _legacy_csv(tmp_path: Path, name: str = "old.csv") -> tuple[Path, str]:
    """A CSV as an older version left it: appended row by row, no store beside it."""
    reference = tmp_path / "reference" / name
    run_sweep(model, POINTS, reference, workers=1, progress=False)
    old = tmp_path / "old" / name
    old.parent.mkdir()
    return old, reference.read_text()


def test_an_old_csv_with_a_torn_last_row_is_imported_without_it(tmp_path) -> None:
    old, full = _legacy_csv(tmp_path)
    lines = full.splitlines(keepends=True)
    torn = lines[8][: len(lines[8]) // 2]  # a process killed mid-row: half a line, no line break
    old.write_text("".join(lines[:8]) + torn, newline="")
    with pytest.warns(SweepWarning, match=r"old\.csv, line 9: dropped a torn last row"):
        assert len(read_rows(old)) == 7
    CALLS.clear()
    with pytest.warns(SweepWarning, match=r"old\.csv, line 9"):
        run_sweep(counted, POINTS, old, workers=1, progress=False)
    assert len(CALLS) == len(POINTS) - 7  # the 7 whole rows were imported, the torn one ran again
    assert old.read_text() == full
    assert old.with_suffix(".sqlite").exists()
    # imported once: the store answers from now on, even with the CSV gone
    old.unlink()
    CALLS.clear()
    run_sweep(counted, POINTS, old, workers=1, progress=False)
    assert CALLS == [] and old.read_text() == full


def test_a_short_row_inside_an_old_csv_is_an_error_naming_file_and_line(tmp_path) -> None:
    old, full = _legacy_csv(tmp_path)
    lines = full.splitlines(keepends=True)
    lines[3] = "2,0\r\n"
    old.write_text("".join(lines), newline="")
    with pytest.raises(SweepError, match=r"old\.csv, line 4: 2 fields where the header has 4"):
        run_sweep(model, POINTS, old, workers=1, progress=False)
    with pytest.raises(SweepError, match=r"old\.csv, line 4"):
        read_rows(old)
    assert not old.with_suffix(".sqlite").exists()  # refused before anything was written


def test_the_store_keeps_the_context_and_the_sidecar_its_provenance(tmp_path) -> None:
    path = tmp_path / "s.csv"
    run_sweep(model, POINTS[:3], path, workers=1, progress=False, context={"steps": 100})
    sidecar = json.loads((tmp_path / "s.csv.context.json").read_text())
    assert sidecar["context"] == {"steps": 100}
    assert sidecar["provenance"]["package"] == "thermo-codesign" and sidecar["provenance"]["torch"]
    (tmp_path / "s.csv.context.json").unlink()
    path.unlink()
    with pytest.raises(SweepError, match=r"steps: 100 there, 200 now.*s\.sqlite"):
        run_sweep(model, POINTS, path, workers=1, progress=False, context={"steps": 200})


def test_an_old_flat_sidecar_still_guards_an_old_csv(tmp_path) -> None:
    old, full = _legacy_csv(tmp_path)
    old.write_text(full)
    (old.parent / "old.csv.context.json").write_text(json.dumps({"steps": 100}))
    with pytest.raises(SweepError, match=r"steps: 100 there, 200 now"):
        run_sweep(model, POINTS, old, workers=1, progress=False, context={"steps": 200})
    assert not old.with_suffix(".sqlite").exists()
    run_sweep(model, POINTS, old, workers=1, progress=False, context={"steps": 100})
    assert old.read_text() == full


def interrupted_at_3(point: dict) -> dict:
    if point["x"] == 3:
        raise KeyboardInterrupt
    return model(point)


def test_ctrl_c_inline_saves_exports_and_says_how_to_resume(tmp_path) -> None:
    path = tmp_path / "s.csv"
    with pytest.raises(SweepInterrupted) as stopped:
        run_sweep(interrupted_at_3, POINTS, path, workers=1, progress=False)
    err = stopped.value
    assert isinstance(err, KeyboardInterrupt)
    assert (err.saved, err.total, err.store_path, err.csv_path) == (6, 12, tmp_path / "s.sqlite", path)
    assert str(err) == (f"interrupted: 6 of 12 points are saved in {tmp_path / 's.sqlite'}; "
                        f"rerun the same command to resume")
    assert len(read_rows(path)) == 6  # the CSV was exported on the way out


def failing_in_a_worker(point: dict) -> dict:
    if point["x"] == 0:
        raise ZeroDivisionError("bad point")
    return model(point)


def test_a_point_failing_in_a_worker_names_the_point(tmp_path) -> None:
    # both points fail; whichever worker reports first is named
    with pytest.raises(SweepError, match=r"point \{'x': 0, 'seed': [01]\} failed: ZeroDivisionError: bad point") as failed:
        run_sweep(failing_in_a_worker, POINTS[:2], tmp_path / "s.csv", workers=2, progress=False)
    assert isinstance(failed.value.__cause__, ZeroDivisionError)


# ------------------------------------------------------------------ processes: Ctrl-C, SIGKILL
CHILD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from studies.sweep import SweepInterrupted, run_sweep

    OUT = Path(sys.argv[1])

    def point(p):
        (OUT / f"pid-{p['x']}-{os.getpid()}").write_text("")
        if p["x"] >= 2:
            time.sleep(120)
        return {"y": 2 * p["x"]}

    if __name__ == "__main__":
        try:
            run_sweep(point, [{"x": x} for x in range(6)], OUT / "s.csv", workers=2, progress=False)
        except SweepInterrupted as err:
            print(json.dumps({"message": str(err), "saved": err.saved, "total": err.total}))
            sys.exit(130)
""")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _start_child(tmp_path: Path) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path])}
    return subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def _wait_for_sleepers(tmp_path: Path, child: subprocess.Popen) -> list[int]:
    """Both workers asleep in points x >= 2, the fast points 0 and 1 committed; the workers' pids."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sleepers = [p for p in tmp_path.glob("pid-*") if int(p.name.split("-")[1]) >= 2]
        if len(sleepers) == 2 and len(read_rows(tmp_path / "s.csv")) == 2:
            return sorted({int(p.name.split("-")[2]) for p in tmp_path.glob("pid-*")})
        assert child.poll() is None, child.communicate()
        time.sleep(0.05)
    raise AssertionError("the child's workers never started their slow points")


def _reap(child: subprocess.Popen, pids: list[int]) -> None:
    """Leave nothing running, whatever the test found."""
    with __import__("contextlib").suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.communicate()
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def children(tmp_path_factory) -> dict[str, tuple[subprocess.Popen, Path]]:
    """Two sweeping child processes, started together so that their start-up (importing torch
    through thermo, ~2 s each) overlaps: one for Ctrl-C, one for SIGKILL."""
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    started = {}
    for name in ("sigint", "sigkill"):
        folder = tmp_path_factory.mktemp(name)
        started[name] = (_start_child(folder), folder)
    yield started
    for child, folder in started.values():
        _reap(child, sorted({int(p.name.split("-")[2]) for p in folder.glob("pid-*")}))


def test_ctrl_c_stops_the_pool_at_once_without_worker_tracebacks(children) -> None:
    child, folder = children["sigint"]
    pids = _wait_for_sleepers(folder, child)
    assert len(pids) == 2
    started = time.monotonic()
    os.killpg(child.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    out, err = child.communicate(timeout=30)
    took = time.monotonic() - started
    assert child.returncode == 130, (out, err)
    assert "Traceback" not in err, err  # neither the parent's nor the workers'
    report = json.loads(out)
    assert report == {"message": f"interrupted: 2 of 6 points are saved in {folder / 's.sqlite'}; "
                                 f"rerun the same command to resume", "saved": 2, "total": 6}
    assert took < 10  # the sleeping points (120 s) were stopped, not waited for
    assert [r["x"] for r in read_rows(folder / "s.csv")] == [0, 1]  # exported
    assert not any(_alive(p) for p in pids)


def test_workers_die_with_a_killed_parent(children) -> None:
    child, folder = children["sigkill"]
    pids = _wait_for_sleepers(folder, child)
    os.kill(child.pid, signal.SIGKILL)  # the parent only: its workers get no signal from us
    child.wait(timeout=10)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)], "pool workers outlived their killed parent"


# ------------------------------------------------------------------------------ thread pinning
def thread_report(point: dict) -> dict:
    """What the worker's numerical libraries say about their thread pools."""
    import numba
    import numpy  # noqa: F401 - loads OpenBLAS
    import threadpoolctl
    import torch

    blas = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    return {"torch": torch.get_num_threads(), "numba": numba.get_num_threads(), "blas": max(blas, default=-1),
            "numba_pool": numba.config.NUMBA_NUM_THREADS,
            **{var: os.environ.get(var, "") for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                        "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}}


def test_pool_workers_pin_every_thread_pool(tmp_path) -> None:
    rows = run_sweep(thread_report, [{"i": 0}, {"i": 1}], tmp_path / "t.csv", workers=2, progress=False)
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    for row in rows:
        assert row["torch"] == row["numba"] == threads, row
        assert row["blas"] in (threads, -1), row  # -1: numpy without a BLAS threadpoolctl knows
        assert row["OMP_NUM_THREADS"] == row["OPENBLAS_NUM_THREADS"] == row["MKL_NUM_THREADS"] == str(threads), row
        # numba keeps the pool size it read at import in the environment (another value there
        # fails its next compilation); its active count is the pinned one (above)
        assert row["NUMBA_NUM_THREADS"] == str(row["numba_pool"]) and row["numba_pool"] >= threads, row


def test_pin_threads_refuses_a_bad_count() -> None:
    for bad in (0, -2, 1.5, True):
        with pytest.raises(SweepError, match="threads must be a positive integer"):
            pin_threads(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------ refused before any point runs
def test_an_unreachable_dask_scheduler_is_a_clear_error_within_the_timeout(tmp_path) -> None:
    pytest.importorskip("distributed")
    started = time.monotonic()
    with pytest.raises(SweepError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1: .*start one "
                                         r"\(`dask scheduler`\) or drop --scheduler"):
        run_sweep(model, POINTS, tmp_path / "s.csv", scheduler="tcp://127.0.0.1:1", scheduler_timeout_s=1.0,
                  progress=False)
    assert time.monotonic() - started < 8  # the 1 s timeout, not distributed's 30 s default
    with pytest.raises(SweepError, match="positive number of seconds"):
        run_sweep(model, POINTS, tmp_path / "s.csv", scheduler="tcp://127.0.0.1:1", scheduler_timeout_s=0)


def test_an_output_under_a_file_is_refused(tmp_path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    CALLS.clear()
    with pytest.raises(SweepError, match=rf"cannot use the folder {blocker}/noise: {blocker} is a file, not a folder"):
        run_sweep(counted, POINTS, blocker / "noise" / "noise.csv", workers=1, progress=False)
    with pytest.raises(SweepError, match=rf"cannot use the folder {blocker}: {blocker} is a file"):
        check_output_folder(blocker)
    assert CALLS == []
    with pytest.raises(SweepError, match="is a folder, not a CSV file"):
        run_sweep(counted, POINTS, tmp_path, workers=1, progress=False)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs procfs")
def test_an_output_folder_that_takes_no_files_is_refused(tmp_path) -> None:
    # procfs refuses new files even to root (which permission bits do not stop)
    CALLS.clear()
    with pytest.raises(SweepError, match=r"the folder /proc/self is not writable .*choose a writable output folder"):
        run_sweep(counted, POINTS, "/proc/self/noise.csv", workers=1, progress=False)
    assert CALLS == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes through permission bits")
def test_a_read_only_output_folder_is_refused(tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(SweepError, match=rf"the folder {folder} is not writable"):
            run_sweep(counted, POINTS, folder / "s.csv", workers=1, progress=False)
    finally:
        folder.chmod(0o700)


def test_a_derived_table_keeps_its_settings_and_provenance_beside_it(tmp_path) -> None:
    import json

    from studies.sweep import write_table
    from thermo.provenance import package_version

    path = write_table(tmp_path / "t.csv", [{"a": 1, "b": 2.5}, {"a": 2, "c": "x"}], {"steps": 10})
    assert path.read_text().splitlines() == ["a,b,c", "1,2.5,", "2,,x"]
    sidecar = json.loads((tmp_path / "t.csv.context.json").read_text())
    assert sidecar["context"] == {"steps": 10} and sidecar["provenance"]["version"] == package_version()
    with pytest.raises(SweepError, match="no rows"):
        write_table(tmp_path / "empty.csv", [], {})


def test_pinning_after_numba_loaded_survives_its_next_compilation():
    """numba reads NUMBA_NUM_THREADS at import and refuses another value at its next config
    reload once its pool runs (a fresh machine compiles in the workers: every study's first
    points failed there); pin_threads leaves numba's own value in the environment."""
    script = (
        "import numba, numpy as np\n"
        "from studies.sweep import pin_threads\n"
        "pool = numba.config.NUMBA_NUM_THREADS\n"
        "pin_threads(1)\n"
        "@numba.njit(parallel=True, cache=False)\n"
        "def f(x):\n"
        "    s = 0.0\n"
        "    for i in numba.prange(x.size):\n"
        "        s += x[i]\n"
        "    return s\n"
        "f(np.ones(8))\n"
        "numba.core.config.reload_config()\n"
        "@numba.njit(cache=False)\n"
        "def g(x):\n"
        "    return x + 1\n"
        "g(1.0)\n"
        "assert numba.get_num_threads() == 1 and numba.config.NUMBA_NUM_THREADS == pool\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env["NUMBA_NUM_THREADS"] = "2"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
