"""The transactional store of a sweep's finished points: one sqlite file beside the sweep's CSV.

Each finished point is one row of the ``points`` table (its key fields as columns, the whole
row as JSON, the package version that computed it and the UTC time it finished), committed the
moment the point finishes, so a killed process loses at most the point it was writing and never
leaves half a row. The file is in WAL mode with a busy timeout, so several processes may write
to one store at once (two sweeps into one folder, a sweep and a reader). ``runs`` records which
points each run asked for, in order; ``meta`` keeps the sweep's key, its CSV columns and its
context (the settings every point shares). The CSV beside the store is an export of it (see
:mod:`studies.sweep`).

Standard library only (``thermo.provenance`` is imported when a point is written), so that pool
workers importing this module start without numerical libraries.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

Row = dict[str, Any]

BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another one's transaction before giving up (seconds)."""

SCHEMA_VERSION = 1
_FIXED_COLUMNS = ("seq", "point_key", "row_json", "package_version", "finished_utc")


class SweepError(ValueError):
    """A sweep that cannot run or resume: bad points, a CSV or store from another sweep, an
    unreachable scheduler, an unwritable output folder, a failed point."""


class SweepWarning(UserWarning):
    """Something a sweep repaired on its own, e.g. a torn last CSV row it dropped."""


def store_path_for(csv_path: str | os.PathLike[str]) -> Path:
    """The store beside a sweep CSV: ``noise.csv`` -> ``noise.sqlite``."""
    path = Path(csv_path)
    return path.with_suffix(".sqlite") if path.suffix else path.with_name(path.name + ".sqlite")


def canonical(value: Any) -> str:
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


def point_key(row: Mapping[str, Any], key: Sequence[str]) -> str:
    """The identity of a point as one text: the canonical key values, as a JSON list."""
    return json.dumps([canonical(row[k]) for k in key])


def to_json(row: Mapping[str, Any]) -> str:
    """A row as JSON; numpy scalars become Python numbers, anything else unknown its ``str``."""
    def default(value: Any) -> Any:
        item = getattr(value, "item", None)
        if callable(item):
            try:
                return item()
            except (TypeError, ValueError):
                pass
        return str(value)

    return json.dumps(dict(row), default=default)


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _enable_wal(db: sqlite3.Connection) -> None:
    """WAL journal (readers never block the writer, writers queue). Switching to it needs a lock
    that sqlite does not wait for through the busy timeout, so two processes creating one store at
    once retry here until the timeout; once set, WAL persists in the file and this is a no-op."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SweepStore:
    """An open store (see the module's docstring). Use :meth:`open`; close it when done (or use
    it as a context manager). Every write is its own committed transaction."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> SweepStore:
        """Open the store at ``path``; with ``create`` make it if needed (or else only read it).

        Raises :class:`SweepError` when the file is not a sweep store or cannot be opened.
        """
        path = Path(path)
        if not create and not path.exists():
            raise SweepError(f"no sweep store at {path}; run the sweep first")
        try:
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as err:
            raise SweepError(f"cannot open the sweep store {path} ({err}); check the folder's permissions") from err
        store = cls(path, db)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if create:
                _enable_wal(db)
                with store._write():
                    db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
                    db.execute("CREATE TABLE IF NOT EXISTS runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, "
                               "started_utc TEXT NOT NULL, ended_utc TEXT, status TEXT NOT NULL, pid INTEGER, "
                               "package_version TEXT, keys_json TEXT NOT NULL)")
                    db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            version = store._meta("schema_version")
        except sqlite3.OperationalError as err:  # locked past the busy timeout, unreadable, read-only...
            db.close()
            raise SweepError(f"cannot use the sweep store {path} ({err}); check the file and its folder, or write "
                             f"to another folder") from err
        except sqlite3.DatabaseError as err:
            db.close()
            raise SweepError(f"{path} is not a sweep store ({err}); delete it or write to another folder") from err
        if version != str(SCHEMA_VERSION):
            db.close()
            raise SweepError(f"{path} is a sweep store of schema {version}, this version reads {SCHEMA_VERSION}; "
                             f"write to another folder or delete it")
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> Any:
        """A write transaction that takes the write lock at once (BEGIN IMMEDIATE), so two writers
        queue on the busy timeout instead of failing on a lock upgrade."""
        db = self._db

        class _Tx:
            def __enter__(self) -> sqlite3.Connection:
                db.execute("BEGIN IMMEDIATE")
                return db

            def __exit__(self, kind: object, *rest: object) -> None:
                db.execute("COMMIT" if kind is None else "ROLLBACK")

        return _Tx()

    # ------------------------------------------------------------------ meta
    def _meta(self, name: str) -> str | None:
        found = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if found is None else found[0]

    @property
    def key(self) -> tuple[str, ...] | None:
        """The point fields that identify a point (``None`` before the sweep set them)."""
        text = self._meta("key")
        return None if text is None else tuple(json.loads(text))

    @property
    def columns(self) -> list[str] | None:
        """The CSV's columns, in order (``None`` before the first row)."""
        text = self._meta("columns")
        return None if text is None else json.loads(text)

    @property
    def context(self) -> dict[str, Any] | None:
        """The settings every point was computed under (``None`` if the sweep gave none)."""
        text = self._meta("context")
        return None if text is None else json.loads(text)

    def set_key(self, key: Sequence[str]) -> None:
        """Fix the sweep's key (the first time) and make its fields columns of ``points``.

        Raises :class:`SweepError` when the store holds a sweep with another key.
        """
        key = tuple(key)
        clash = [k for k in key if k in _FIXED_COLUMNS]
        if clash:
            raise SweepError(f"the key field(s) {clash} clash with the store's own columns; rename them")
        with self._write() as db:
            kept = self.key
            if kept is None:
                db.execute("INSERT INTO meta VALUES ('key', ?)", (json.dumps(list(key)),))
                key_columns = "".join(f", {_quote(k)}" for k in key)
                db.execute("CREATE TABLE IF NOT EXISTS points (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                           f"point_key TEXT NOT NULL UNIQUE{key_columns}, row_json TEXT NOT NULL, "
                           "package_version TEXT, finished_utc TEXT NOT NULL)")
        if kept is not None and kept != key:
            raise SweepError(f"{self.path} holds another sweep (its key is {list(kept)}, not {list(key)}); "
                             f"use another path")

    def set_columns(self, columns: Sequence[str]) -> list[str]:
        """Fix the CSV's columns (the first time); return the columns the store keeps."""
        with self._write() as db:
            kept = self.columns
            if kept is None:
                db.execute("INSERT INTO meta VALUES ('columns', ?)", (json.dumps(list(columns)),))
                kept = list(columns)
        return kept

    def set_context(self, context: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
        """Keep the context (and the provenance of whoever set it last)."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('context', ?)", (json.dumps(dict(context), sort_keys=True),))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('provenance', ?)", (json.dumps(dict(provenance)),))

    # ------------------------------------------------------------------ points
    def _require_key(self) -> tuple[str, ...]:
        key = self.key
        if key is None:
            raise SweepError(f"{self.path} has no key yet; call set_key first")
        return key

    def count(self) -> int:
        """How many points are finished."""
        if self.key is None:
            return 0
        return int(self._db.execute("SELECT COUNT(*) FROM points").fetchone()[0])

    def finished(self) -> dict[str, Row]:
        """Every finished point's row by its :func:`point_key`, in the order they finished."""
        if self.key is None:
            return {}
        return {k: json.loads(r) for k, r in self._db.execute("SELECT point_key, row_json FROM points ORDER BY seq")}

    def add(self, row: Mapping[str, Any], package_version: str) -> bool:
        """Commit one finished point; ``False`` if the store already had it (the first one stays:
        a point is a deterministic function of its fields)."""
        return self.add_many([row], package_version) == 1

    def add_many(self, rows: Iterable[Mapping[str, Any]], package_version: str) -> int:
        """Commit several points in one transaction; return how many were new."""
        key = self._require_key()
        columns = ", ".join(_quote(k) for k in key)
        marks = ", ".join("?" for _ in key)
        sql = (f"INSERT OR IGNORE INTO points (point_key, {columns}, row_json, package_version, finished_utc) "
               f"VALUES (?, {marks}, ?, ?, ?)")
        added = 0
        with self._write() as db:
            for row in rows:
                values = [row[k] if isinstance(row[k], (int, float, str)) or row[k] is None else str(row[k])
                          for k in key]
                cursor = db.execute(sql, (point_key(row, key), *values, to_json(row), package_version, _utc_now()))
                added += cursor.rowcount
        return added

    # ------------------------------------------------------------------ runs
    def begin_run(self, keys: Sequence[str], package_version: str) -> int:
        """Record a run asking for the points ``keys`` (their :func:`point_key`, in order)."""
        with self._write() as db:
            cursor = db.execute("INSERT INTO runs (started_utc, status, pid, package_version, keys_json) "
                                "VALUES (?, 'running', ?, ?, ?)", (_utc_now(), os.getpid(), package_version,
                                                                  json.dumps(list(keys))))
        return int(cursor.lastrowid)

    def end_run(self, run_id: int, status: str) -> None:
        """Mark a run ``done``, ``interrupted`` or ``failed``."""
        with self._write() as db:
            db.execute("UPDATE runs SET status = ?, ended_utc = ? WHERE run_id = ?", (status, _utc_now(), run_id))

    def last_run_keys(self) -> list[str] | None:
        """The point keys the latest run asked for, in its order (``None`` if none ran)."""
        found = self._db.execute("SELECT keys_json FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
        return None if found is None else json.loads(found[0])

    def runs(self) -> list[dict[str, Any]]:
        """Every recorded run, oldest first (``run_id``, ``status``, times, ``n_points``)."""
        out = []
        for run_id, started, ended, status, pid, version, keys in self._db.execute(
                "SELECT run_id, started_utc, ended_utc, status, pid, package_version, keys_json FROM runs "
                "ORDER BY run_id"):
            out.append({"run_id": run_id, "started_utc": started, "ended_utc": ended, "status": status, "pid": pid,
                        "package_version": version, "n_points": len(json.loads(keys))})
        return out
