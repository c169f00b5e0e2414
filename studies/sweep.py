"""Resumable parameter sweeps on a local process pool or a Dask cluster, with the same code.

:func:`run_sweep` evaluates ``fn(point)`` for every point (a dict of scalars) and appends each
result to a CSV the moment it finishes, so a killed sweep loses nothing; a restarted sweep reads
the CSV and skips the points already there. When every point is done the CSV is rewritten in the
order of ``points``, so a sweep interrupted and restarted any number of times ends with the same
file as one uninterrupted run (``fn`` must be deterministic given its point: put seeds in it).

Executors: ``workers=1`` runs in this process (debugging, tests); otherwise a
``ProcessPoolExecutor`` of ``workers`` processes (default: the CPU count); with ``scheduler``
the points go to a Dask cluster (``"tcp://host:8786"``), or ``scheduler="local"`` starts an
in-process Dask cluster. ``fn`` must be importable (a module-level function) for the pool and
for Dask.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

Point = dict[str, Any]
Row = dict[str, Any]


class SweepError(ValueError):
    """A sweep that cannot run or resume: bad points, a CSV from another sweep, a failed point."""


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


def read_rows(path: str | os.PathLike[str]) -> list[Row]:
    """Every row of a sweep CSV, numbers as numbers (``[]`` if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return [{k: _coerce(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _key_of(row: Row, key: Sequence[str]) -> tuple[str, ...]:
    return tuple(_canonical(row[k]) for k in key)


def _canonical(value: Any) -> str:
    """One text per value, so 1, 1.0 and "1.0" read back from a CSV match."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return repr(float(value)) if math.isfinite(float(value)) else str(float(value))
    text = str(value)
    try:
        return repr(float(text))
    except ValueError:
        return text


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
) -> list[Row]:
    """Run ``fn`` on every point not yet in ``csv_path``; return all rows in point order.

    ``key`` names the point fields that identify a point (default: all of the first point's).
    A row is the point merged with ``fn``'s result (result fields must not repeat point fields).
    ``context`` holds the settings every point shares but no point names (training steps, the
    hardware preset...): it is kept beside the CSV (``<csv>.context.json``), and resuming a CSV
    computed under another context is refused, naming what differs, instead of mixing rows.
    """
    points = [dict(p) for p in points]
    if not points:
        raise SweepError("the sweep has no points")
    key = tuple(key) if key is not None else tuple(points[0])
    for p in points:
        missing = [k for k in key if k not in p]
        if missing:
            raise SweepError(f"point {p} lacks the key field(s) {missing}")
    keys = [_key_of(p, key) for p in points]
    if len(set(keys)) != len(keys):
        raise SweepError("two points share the same key: give each point a distinct key (add a seed field?)")
    path = Path(csv_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = read_rows(path)
    if existing and any(k not in existing[0] for k in key):
        raise SweepError(f"{path} holds another sweep (its columns lack {list(key)}); use another path")
    _check_context(path, context, resuming=bool(existing))
    done = {_key_of(r, key): r for r in existing}
    pending = [p for p, k in zip(points, keys) if k not in done]
    columns = list(existing[0]) if existing else None
    bar = _progress(len(points), len(points) - len(pending), progress, description)
    try:
        for point, result in _execute(fn, pending, workers, scheduler):
            overlap = set(point) & set(result)
            if overlap:
                raise SweepError(f"the result repeats point field(s) {sorted(overlap)}")
            row = {**point, **result}
            if columns is None:
                columns = list(row)
            extra = [c for c in row if c not in columns]
            if extra:
                raise SweepError(f"a result has columns {extra} that the CSV's header lacks")
            _append(path, columns, row)
            done[_key_of(row, key)] = row
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    rows = [done[k] for k in keys]
    if columns is not None:
        _rewrite(path, columns, rows)
    return rows


def context_of(config: Any, exclude: Sequence[str]) -> dict[str, Any]:
    """A dataclass config's fields except ``exclude`` (its swept axes and where it runs), as a
    sweep ``context``."""
    import dataclasses

    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in exclude}


def _context_path(path: Path) -> Path:
    return path.with_name(path.name + ".context.json")


def _check_context(path: Path, context: Mapping[str, Any] | None, resuming: bool) -> None:
    if context is None:
        return
    wanted = json.loads(json.dumps(dict(context), default=str, sort_keys=True))
    sidecar = _context_path(path)
    if resuming and sidecar.exists():
        kept = json.loads(sidecar.read_text())
        differ = sorted(k for k in set(kept) | set(wanted) if kept.get(k) != wanted.get(k))
        if differ:
            changes = ", ".join(f"{k}: {kept.get(k)!r} there, {wanted.get(k)!r} now" for k in differ)
            raise SweepError(f"{path} was computed with other settings ({changes}); write to another folder "
                             f"(--out) or delete it to start over")
    sidecar.write_text(json.dumps(wanted, indent=1, sort_keys=True) + "\n")


def _execute(
    fn: Callable[[Point], Row], points: list[Point], workers: int | None, scheduler: str | None
) -> Iterator[tuple[Point, Row]]:
    if not points:
        return
    if scheduler is not None:
        yield from _execute_dask(fn, points, scheduler)
        return
    if workers is not None and workers < 1:
        raise SweepError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        for p in points:
            yield p, fn(p)
        return
    n_workers = workers or os.cpu_count() or 1
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    with ProcessPoolExecutor(max_workers=n_workers, initializer=_limit_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(fn, p): p for p in points}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _limit_threads(threads: int) -> None:
    """Worker start-up: share the cores instead of oversubscribing them (several workers each
    running torch's and numba's full thread pools on a small machine made every point ~100x
    slower through OpenMP spinning)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


def _execute_dask(fn: Callable[[Point], Row], points: list[Point], scheduler: str) -> Iterator[tuple[Point, Row]]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SweepError("a Dask scheduler was given but dask.distributed is not installed (pip install distributed)") from err
    client = Client(processes=False, dashboard_address=None) if scheduler == "local" else Client(scheduler)
    try:
        futures = {client.submit(fn, p, pure=False): i for i, p in enumerate(points)}
        for future in dask_completed(list(futures)):
            yield points[futures[future]], future.result()
    finally:
        client.close()


def _append(path: Path, columns: list[str], row: Row) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())  # a kill right after loses nothing that was reported done


def _rewrite(path: Path, columns: list[str], rows: list[Row]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _progress(total: int, initial: int, enabled: bool, description: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="point")
