"""Resumable parameter sweeps on a local process pool or a Dask cluster, with the same code.

:func:`run_sweep` evaluates ``fn(point)`` for every point (a dict of scalars). Each finished
point is committed at once to a sqlite store beside the CSV (``noise.csv`` -> ``noise.sqlite``,
see :mod:`studies.store`), so a killed sweep loses nothing and never leaves a torn row; a
restarted sweep skips the points already in the store. The CSV is an export of the store, written
atomically (a temporary file, then ``os.replace``) when a run ends, is interrupted or fails. It
holds every finished point: this run's in the order of ``points``, then the others in the order
they finished, so a sweep interrupted and restarted any number of times ends with the same file
as one uninterrupted run (``fn`` must be deterministic given its point: put seeds in it).
:func:`read_rows` reads them back (``last_run=True``: only the latest run's points).

A CSV from an older version with no store beside it is imported into a new store once (a torn
last row, left by a killed process, is dropped with a :class:`SweepWarning`).

Executors: ``workers=1`` runs in this process (debugging, tests); otherwise a
``ProcessPoolExecutor`` of ``workers`` processes (default: the CPU count), each pinned to
``cpu_count // workers`` threads (:func:`pin_threads`), ignoring Ctrl-C (the parent handles it)
and dying with the parent; with ``scheduler`` the points go to a Dask cluster
(``"tcp://host:8786"``), or ``scheduler="local"`` starts an in-process Dask cluster. ``fn`` must
be importable (a module-level function) for the pool and for Dask.

Ctrl-C during a sweep stops the pool at once, exports the CSV and raises
:class:`SweepInterrupted` (a ``KeyboardInterrupt``) saying how many points are saved; a point
that fails raises :class:`SweepError` naming it, its error chained.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import dataclasses
import io
import json
import multiprocessing
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .store import SweepError, SweepStore, SweepWarning, point_key, store_path_for

__all__ = ["SweepError", "SweepInterrupted", "SweepWarning", "check_output_folder", "context_of", "pin_threads",
           "read_rows", "run_sweep", "store_path_for"]

Point = dict[str, Any]
Row = dict[str, Any]

SCHEDULER_TIMEOUT_S = 10.0
"""How long to try to reach a Dask scheduler (seconds); ``TCD_SCHEDULER_TIMEOUT_S`` overrides it."""

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS")
"""The variables numerical libraries read their thread count from when they load."""

_PARENT_POLL_S = 0.5  # how often a worker checks that its parent still lives (fallback to prctl)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; what finished is saved and a rerun resumes.

    ``saved``: this run's points finished in the store (including ones from earlier runs);
    ``total``: this run's points; ``store_path``, ``csv_path``: where they are.
    """

    def __init__(self, saved: int, total: int, store_path: Path, csv_path: Path) -> None:
        self.saved, self.total, self.store_path, self.csv_path = saved, total, store_path, csv_path
        super().__init__(f"interrupted: {saved} of {total} points are saved in {store_path}; "
                         f"rerun the same command to resume")

    def __str__(self) -> str:
        return str(self.args[0])


class _PointFailed(Exception):
    """Internal: ``fn`` raised on ``point`` (run_sweep turns it into a SweepError)."""

    def __init__(self, point: Point, error: BaseException) -> None:
        super().__init__(point, error)
        self.point, self.error = point, error


# ---------------------------------------------------------------------------------------- CSV
def _coerce(text: str) -> Any:
    """CSV text back to int, float or str (what a row held before it was written)."""
    if text == "":
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text in ("True", "False"):
        return text == "True"
    return text


def _parse_csv(path: Path) -> tuple[list[str] | None, list[Row]]:
    """The header and rows of a sweep CSV, numbers as numbers.

    Every row this project writes ends with a line break, so a last record without one (or with
    the wrong number of fields, or unparsable) was torn by a killed process: it is dropped with a
    :class:`SweepWarning` naming the file and line. A record with the wrong number of fields
    anywhere else is a :class:`SweepError` naming the file and line.
    """
    with path.open(newline="") as fh:  # keep the line breaks as written
        text = fh.read()
    torn_tail = bool(text) and not text.endswith(("\n", "\r"))
    records: list[tuple[int, list[str] | None, str | None]] = []  # (first line, fields or None, error)
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 0
    while True:
        start = line + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            records.append((start, None, str(err)))
        else:
            if fields:  # csv gives [] for a blank line
                records.append((start, fields, None))
        line = reader.line_num
    if not records:
        return None, []
    last_line, last_fields, last_error = records[-1]
    header_fields = records[0][1]
    last_is_torn = torn_tail or last_error is not None or (
        len(records) > 1 and last_fields is not None and header_fields is not None
        and len(last_fields) != len(header_fields))
    if last_is_torn:
        what = "header" if len(records) == 1 else "last row"
        warnings.warn(SweepWarning(f"{path}, line {last_line}: dropped a torn {what} (a process killed while "
                                   f"writing it?); its point will run again"), stacklevel=3)
        records.pop()
        if not records:
            return None, []
    first_line, header, error = records[0]
    if header is None:
        raise SweepError(f"{path}, line {first_line}: unreadable header ({error}); repair the line or delete the file")
    rows = []
    for number, fields, error in records[1:]:
        if fields is None:
            raise SweepError(f"{path}, line {number}: unreadable row ({error}); repair or delete the line")
        if len(fields) != len(header):
            raise SweepError(f"{path}, line {number}: {len(fields)} fields where the header has {len(header)}; "
                             f"repair or delete the line")
        rows.append({k: _coerce(v) for k, v in zip(header, fields)})
    return header, rows


def _as_read_back(row: Mapping[str, Any], columns: Sequence[str]) -> Row:
    """A stored row as :func:`read_rows` would read it from the CSV (same text, same types)."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerow([row.get(c, "") for c in columns])
    fields = next(csv.reader(io.StringIO(buffer.getvalue(), newline="")))
    return {c: _coerce(v) for c, v in zip(columns, fields)}


def read_rows(path: str | os.PathLike[str], *, last_run: bool = False) -> list[Row]:
    """The rows of a sweep CSV, numbers as numbers (``[]`` if there is neither CSV nor store).

    Every row of the CSV, or of the store when the CSV is missing. With ``last_run``, only the
    points the latest run asked for that are finished, in that run's point order (every row
    when the store records no run, e.g. a CSV from an older version).
    """
    path = Path(path)
    store_path = store_path_for(path)
    if last_run and store_path.exists():
        with SweepStore.open(store_path, create=False) as store:
            keys, columns = store.last_run_keys(), store.columns
            if keys is not None and columns is not None:
                finished = store.finished()
                return [_as_read_back(finished[k], columns) for k in keys if k in finished]
            if keys is not None:
                return []
    if path.exists():
        return _parse_csv(path)[1]
    if store_path.exists():
        with SweepStore.open(store_path, create=False) as store:
            columns = store.columns
            return [] if columns is None else [_as_read_back(r, columns) for r in store.finished().values()]
    return []


def _atomic_write(path: Path, write: Callable[[io.TextIOBase], None]) -> None:
    """Write ``path`` through a uniquely named temporary file and ``os.replace``: readers (and a
    concurrent writer) see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("x", newline="") as fh:  # "x": created with the umask's permissions
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _export(store: SweepStore, path: Path, first: Sequence[str], finished: Mapping[str, Row]) -> None:
    """Write the CSV from the store's ``finished`` rows: the points ``first`` (those finished) in
    that order, then the others in the order they finished."""
    columns = store.columns
    if columns is None:
        return
    wanted = set(first)
    rows = [finished[k] for k in first if k in finished] + [r for k, r in finished.items() if k not in wanted]
    _write_csv(path, columns, rows)


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """``rows`` under a header of ``columns``, written atomically (:func:`_atomic_write`)."""

    def write(fh: io.TextIOBase) -> None:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)

    _atomic_write(path, write)


def _jsonable(context: Mapping[str, Any]) -> dict[str, Any]:
    """``context`` as it reads back from JSON (non-JSON values as text), so that a kept context
    and a wanted one compare equal when they hold the same settings."""
    return json.loads(json.dumps(dict(context), default=str, sort_keys=True))


# ------------------------------------------------------------------------------------ context
def context_of(config: Any, exclude: Sequence[str]) -> dict[str, Any]:
    """A dataclass config's fields except ``exclude`` (its swept axes and where it runs), as a
    sweep ``context``."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in exclude}


def _context_path(path: Path) -> Path:
    return path.with_name(path.name + ".context.json")


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The context kept in ``<csv>.context.json`` (the flat form of older versions too)."""
    sidecar = _context_path(path)
    if not sidecar.exists():
        return None
    try:
        kept = json.loads(sidecar.read_text())
    except (OSError, ValueError) as err:
        raise SweepError(f"cannot read {sidecar} ({err}); repair it or delete it") from err
    if isinstance(kept, dict) and set(kept) == {"context", "provenance"}:
        kept = kept["context"]
    if not isinstance(kept, dict):
        raise SweepError(f"{sidecar} does not hold a context (a JSON object); repair it or delete it")
    return kept


def _check_context(path: Path, wanted: Mapping[str, Any], kept: Mapping[str, Any] | None) -> None:
    if kept is None:
        return
    differ = sorted(k for k in set(kept) | set(wanted) if kept.get(k) != wanted.get(k))
    if differ:
        changes = ", ".join(f"{k}: {kept.get(k)!r} there, {wanted.get(k)!r} now" for k in differ)
        raise SweepError(f"{path} was computed with other settings ({changes}); write to another folder (--out) "
                         f"or delete {path}, {store_path_for(path)} and {_context_path(path)} to start over")


def _write_sidecar(path: Path, wanted: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
    text = json.dumps({"context": dict(wanted), "provenance": dict(provenance)}, indent=1, sort_keys=True) + "\n"
    _atomic_write(_context_path(path), lambda fh: fh.write(text))


def write_table(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], context: Mapping[str, Any]) -> Path:
    """A derived table (not a sweep: e.g. a per-design summary) written atomically as a CSV, with
    ``context`` and the provenance beside it in the sweeps' ``<csv>.context.json`` format."""
    # thermo (and with it torch and numba) is imported when a result is written, not when this
    # module is: pin_threads must run before the numerical libraries load (pool workers,
    # benchmarks/_timing.py)
    from thermo.provenance import provenance

    path = Path(path)
    if not rows:
        raise SweepError(f"no rows to write to {path}")
    _write_csv(path, list(dict.fromkeys(k for row in rows for k in row)), rows)
    _write_sidecar(path, _jsonable(context), provenance())
    return path


# ------------------------------------------------------------------------------ output folder
def check_output_folder(folder: str | os.PathLike[str]) -> None:
    """Make ``folder`` (and its parents) and make sure it takes new files, or raise
    :class:`SweepError` naming the problem: a file where a folder should be, a folder that
    cannot be created or written. Sweeps call it before any point runs; call it before
    creating a study's output folder to get the same message."""
    folder = Path(folder)
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise SweepError(f"cannot use the folder {folder}: {ancestor} is a file, not a folder; choose another "
                                 f"output folder (--out) or move the file away")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SweepError(f"cannot create the folder {folder} ({err.strerror or err}); choose a writable "
                         f"output folder (--out)") from err
    try:  # root ignores permission bits, so only an actual file says whether the folder takes one
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".tcd-write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise SweepError(f"the folder {folder} is not writable ({err.strerror or err}); choose a writable "
                         f"output folder (--out) or fix its permissions") from err


def _check_output(path: Path) -> None:
    """Refuse, before any point runs, a CSV path that cannot be written."""
    if path.is_dir():
        raise SweepError(f"{path} is a folder, not a CSV file; pass a file path such as {path / 'sweep.csv'}")
    check_output_folder(path.parent)


# ---------------------------------------------------------------------------------- the sweep
def run_sweep(
    fn: Callable[[Point], Row],
    points: Sequence[Point],
    csv_path: str | os.PathLike[str],
    *,
    key: Sequence[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    description: str = "sweep",
    context: Mapping[str, Any] | None = None,
    scheduler_timeout_s: float | None = None,
) -> list[Row]:
    """Run ``fn`` on every point not yet in the store; return this run's rows in point order.

    ``key`` names the point fields that identify a point (default: all of the first point's).
    A row is the point merged with ``fn``'s result (result fields must not repeat point fields).
    ``context`` holds the settings every point shares but no point names (training steps, the
    hardware preset...): it is kept in the store and beside the CSV (``<csv>.context.json``,
    with the provenance), and resuming a sweep computed under another context is refused,
    naming what differs, instead of mixing rows. ``scheduler_timeout_s``: how long to try to
    reach a Dask scheduler (default :data:`SCHEDULER_TIMEOUT_S`).

    Rows computed now are returned as ``fn`` made them; rows from earlier runs as
    :func:`read_rows` reads them. Raises :class:`SweepError` for bad input, a store or CSV of
    another sweep, an unwritable output, an unreachable scheduler and a failed point (the points
    finished before it stay saved); :class:`SweepInterrupted` on Ctrl-C.
    """
    points = [dict(p) for p in points]
    if not points:
        raise SweepError("the sweep has no points")
    key = tuple(key) if key is not None else tuple(points[0])
    for p in points:
        missing = [k for k in key if k not in p]
        if missing:
            raise SweepError(f"point {p} lacks the key field(s) {missing}")
    keys = [point_key(p, key) for p in points]
    if len(set(keys)) != len(keys):
        raise SweepError("two points share the same key: give each point a distinct key (add a seed field?)")
    if scheduler is None and workers is not None and (isinstance(workers, bool) or workers < 1):
        raise SweepError(f"workers must be >= 1, got {workers}")
    timeout_s = _scheduler_timeout(scheduler_timeout_s)
    path = Path(csv_path)
    _check_output(path)
    from thermo.provenance import package_version, provenance  # lazy: see write_table

    version = package_version()
    wanted = None if context is None else _jsonable(context)
    store = _open_checked(path, key, wanted)
    try:
        if wanted is not None:
            info = provenance()
            store.set_context(wanted, info)
            _write_sidecar(path, wanted, info)
        return _run(store, fn, points, keys, path, workers, scheduler, timeout_s, progress, description, version)
    finally:
        store.close()


def _scheduler_timeout(given: float | None) -> float:
    source = "scheduler_timeout_s"
    if given is None:
        text = os.environ.get("TCD_SCHEDULER_TIMEOUT_S")
        if text is None:
            return SCHEDULER_TIMEOUT_S
        source = "TCD_SCHEDULER_TIMEOUT_S"
        try:
            given = float(text)
        except ValueError:
            raise SweepError(f"TCD_SCHEDULER_TIMEOUT_S={text!r} is not a number of seconds; set it to e.g. 10") from None
    if not given > 0 or given == float("inf"):
        raise SweepError(f"{source} must be a positive number of seconds, got {given!r}")
    return float(given)


def _open_checked(path: Path, key: tuple[str, ...], wanted: Mapping[str, Any] | None) -> SweepStore:
    """The sweep's store, refused (before anything is written) when it or the CSV holds another
    sweep or other settings; a CSV of an older version with no store is imported into a new one."""
    store_path = store_path_for(path)
    if store_path.exists():
        store = SweepStore.open(store_path)
        try:
            store.set_key(key)
            if wanted is not None and store.count():
                _check_context(path, wanted, store.context)
        except BaseException:
            store.close()
            raise
        return store
    header, legacy = _parse_csv(path) if path.exists() else (None, [])
    if legacy and any(k not in header for k in key):
        raise SweepError(f"{path} holds another sweep (its columns lack {list(key)}); use another path")
    if wanted is not None and legacy:
        _check_context(path, wanted, _read_sidecar(path))
    store = SweepStore.open(store_path)
    try:
        store.set_key(key)
        if legacy:
            store.set_columns(header)
            store.add_many(legacy, package_version=f"imported from {path.name}")
    except BaseException:
        store.close()
        raise
    return store


def _run(store: SweepStore, fn: Callable[[Point], Row], points: list[Point], keys: list[str], path: Path,
         workers: int | None, scheduler: str | None, timeout_s: float, progress: bool, description: str,
         version: str) -> list[Row]:
    finished = store.finished()
    pending = [p for p, k in zip(points, keys) if k not in finished]
    fresh: dict[str, Row] = {}
    run_id = store.begin_run(keys, version)
    bar = _progress(len(points), len(points) - len(pending), progress, description)
    columns = store.columns
    key = store.key
    assert key is not None
    status, failure, in_flight, export_note = "failed", None, None, None
    execution = _execute(fn, pending, workers, scheduler, timeout_s)
    try:
        for point, result in execution:
            overlap = set(point) & set(result)
            if overlap:
                raise SweepError(f"the result of point {point} repeats point field(s) {sorted(overlap)}; rename them")
            row = {**point, **result}
            if columns is None:
                columns = store.set_columns(list(row))
            extra = [c for c in row if c not in columns]
            if extra:
                raise SweepError(f"the result of point {point} has columns {extra} that the sweep's CSV lacks; "
                                 f"write to another folder (--out) or delete {path} and {store.path}")
            store.add(row, version)
            fresh[point_key(row, key)] = row
            if bar is not None:
                bar.update(1)
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
    except _PointFailed as failed:
        failure = failed
    except BaseException as err:
        in_flight = err
        raise
    finally:
        with _sigint_ignored():  # a second Ctrl-C must not tear the clean-up
            execution.close()  # stops the pool / the Dask futures at once
            if bar is not None:
                bar.close()
            try:
                finished = store.finished()
                _export(store, path, keys, finished)
            except Exception as err:
                if status == "done":
                    raise
                export_note = f"(the CSV {path} could not be exported: {err})"
                if in_flight is not None:
                    _note(in_flight, export_note)
            finally:
                store.end_run(run_id, status)
    saved = sum(k in finished for k in keys)
    if status == "interrupted":
        interrupted = SweepInterrupted(saved, len(points), store.path, path)
        _note(interrupted, export_note)
        raise interrupted from None
    if failure is not None:
        error = failure.error
        problem = SweepError(f"point {failure.point} failed: {type(error).__name__}: {error}; {saved} of "
                             f"{len(points)} points are saved in {store.path}: fix the cause and rerun to resume")
        _note(problem, export_note)
        raise problem from error
    read_back = store.columns or []
    return [fresh[k] if k in fresh else _as_read_back(finished[k], read_back) for k in keys]


def _note(error: BaseException, text: str | None) -> None:
    if text is not None and hasattr(error, "add_note"):  # Python >= 3.11
        error.add_note(text)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------------------- executors
def _execute(fn: Callable[[Point], Row], points: list[Point], workers: int | None, scheduler: str | None,
             timeout_s: float) -> Iterator[tuple[Point, Row]]:
    """Yield ``(point, fn(point))`` as points finish; raise :class:`_PointFailed` for the first
    point that fails. Closing the generator stops the remaining work at once."""
    if not points:
        return
    if scheduler is not None:
        yield from _execute_dask(fn, points, scheduler, timeout_s)
    elif workers == 1:
        for p in points:
            try:
                result = fn(p)
            except Exception as err:
                raise _PointFailed(p, err) from err
            yield p, result
    else:
        yield from _execute_pool(fn, points, workers)


def _execute_pool(fn: Callable[[Point], Row], points: list[Point], workers: int | None) -> Iterator[tuple[Point, Row]]:
    # imported here, not at module level: pin_threads must be callable before numpy loads
    from cosim.roofline import usable_cores

    cores = usable_cores()
    n_workers = min(workers or cores, len(points))
    threads = max(1, cores // n_workers)
    mp_context = multiprocessing.get_context()
    # fork and spawn workers are children of this process; forkserver ones of the server, which
    # exits with this process: each worker watches whichever parent it has
    parent = None if mp_context.get_start_method() == "forkserver" else os.getpid()
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=mp_context, initializer=_init_worker,
                               initargs=(threads, parent))
    futures: dict[Any, Point] = {}
    try:
        for p in points:
            futures[pool.submit(fn, p)] = p
        for future in as_completed(futures):
            error = future.exception()
            if error is not None:
                raise _PointFailed(futures[future], error) from error
            yield futures[future], future.result()
    except BaseException:  # failure, Ctrl-C, or the consumer closing us: stop now, not after the running points
        with _sigint_ignored():
            _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """End the pool now: its workers ignore SIGINT, so SIGTERM ends the running points. The
    futures are not cancelled: the pool marks them broken itself (cancelling them first races
    with that in Python 3.11 and prints an InvalidStateError traceback)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5.0)
        if process.is_alive():  # pragma: no cover - a point that traps SIGTERM
            process.kill()
            process.join(timeout=5.0)
    pool.shutdown(wait=True)


def _init_worker(threads: int, parent_pid: int | None) -> None:
    """Pool worker start-up: only the parent reacts to Ctrl-C (no worker tracebacks), the worker
    dies with its parent, and it uses its share of the cores."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(os.getppid() if parent_pid is None else parent_pid)
    pin_threads(threads)


def _die_with_parent(parent_pid: int) -> None:
    """Kill this process when ``parent_pid`` (its parent) dies, even by SIGKILL: Linux's
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, plus a thread polling ``os.getppid()`` where prctl is
    missing. (The death signal follows the thread that forked us: the pool starts its workers
    from the thread that runs the sweep, which outlives the pool.)"""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(_PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="tcd-parent-watch", daemon=True).start()


def pin_threads(threads: int) -> None:
    """Limit this process's numerical thread pools to ``threads`` threads each.

    Sets :data:`THREAD_ENV_VARS` (read by OpenMP, OpenBLAS, MKL and numba when they load, so call
    this before importing them where possible), then resizes the pools of the libraries already
    loaded: ``torch.set_num_threads``, ``numba.set_num_threads`` (at most numba's
    ``NUMBA_NUM_THREADS`` at import) and threadpoolctl's limits for the loaded BLAS and OpenMP
    libraries. Libraries not yet imported are not imported (a worker that never needs torch
    does not pay for it); they pick the count up from the environment. Torch with two threads on
    two busy cores turned a 1.4 ms K-FAC step into 440 ms.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SweepError(f"threads must be a positive integer, got {threads!r}")
    numba = sys.modules.get("numba")
    numba_pool = getattr(getattr(numba, "config", None), "NUMBA_NUM_THREADS", None)
    for var in THREAD_ENV_VARS:
        # numba read its pool size at import: it refuses a different NUMBA_NUM_THREADS at its
        # next config reload (the next compilation) once its threads run, so a loaded numba
        # keeps its own value there and gets the count from set_num_threads below
        os.environ[var] = str(numba_pool if var == "NUMBA_NUM_THREADS" and numba_pool is not None else threads)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(threads)
    if numba_pool is not None and hasattr(numba, "set_num_threads"):
        numba.set_num_threads(min(threads, int(numba_pool)))
    threadpool_limits(limits=threads)


def _execute_dask(fn: Callable[[Point], Row], points: list[Point], scheduler: str,
                  timeout_s: float) -> Iterator[tuple[Point, Row]]:
    try:  # dask.distributed takes a second to import: only a sweep given a scheduler pays for it
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SweepError("a Dask scheduler was given but dask.distributed is not installed "
                         "(pip install distributed)") from err
    try:
        client = (Client(processes=False, dashboard_address=None) if scheduler == "local"
                  else Client(scheduler, timeout=timeout_s))
    except (OSError, TimeoutError, ValueError) as err:
        raise SweepError(f"cannot reach the Dask scheduler at {scheduler}: {err}; start one (`dask scheduler`) or "
                         f"drop --scheduler to use the local process pool") from err
    futures: dict[Any, int] = {}
    try:
        futures = {client.submit(fn, p, pure=False): i for i, p in enumerate(points)}
        for future in dask_completed(list(futures)):
            point = points[futures[future]]
            try:
                result = future.result()
            except Exception as err:
                raise _PointFailed(point, err) from err
            yield point, result
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(futures))
        raise
    finally:
        client.close()


def _progress(total: int, initial: int, enabled: bool, description: str) -> Any:
    if not enabled:
        return None
    return tqdm(total=total, initial=initial, desc=description, unit="point")
