"""The results store: one SQLite database per sweep directory.

One table, `runs`: a row per run with its config, status, metrics and provenance (code version, mask
file hashes, timings, host), all JSON. Every change is one `BEGIN IMMEDIATE` transaction in WAL mode
with a busy timeout, so any number of sweep processes can share a store: a process *claims* a run
(status `running`, its host and pid, a heartbeat) before starting it, nobody else starts a run that is
claimed by a live process, and a run whose owner died (dead pid on this host, or no heartbeat for
`stale_after` seconds) is claimed again. A run is marked `done` only after its artefacts are in
place, so killing a sweep at any moment loses nothing finished and repeats nothing finished.

Every statement goes through one path (`transaction` for writes, `_read` for reads) that turns an
SQLite error (a full disk, a corrupt file) into one `TicketlabError` naming the store; a row whose
JSON cannot be read names the store and its run id (`runs()` leaves it out with a warning, `get()`
refuses it). A store opened with `readonly=True` writes nothing (a dry run, `--status`, a report).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import TicketlabError
from ..core.files.atomic import HOST, to_json
from ..core.files.inputs import check_regular_unopened
from .records import DB_NAME, META_SHAPES, STALE_AFTER, RunRecord, owner_gone
from .run_ids import IDS_VERSION
from .store_schema import SCHEMA_VERSION, check_tables, copy_store, read_only_uri, statements

__all__ = ["DB_NAME", "SCHEMA_VERSION", "IdsSchemeError", "RunRecord", "Store", "copy_store", "owner_gone"]


class IdsSchemeError(TicketlabError):
    """A store whose run ids another scheme made (`Store._check_ids`)."""


class Store:
    """A sweep's results database. Each process (and thread) opens its own `Store`."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        stale_after: float = STALE_AFTER,
        timeout: float = 120.0,
        readonly: bool = False,
    ):
        """`readonly`: read what is there and write nothing (a store that does not exist reads as
        empty)."""
        path = Path(path)
        if path.is_dir() or (readonly and not path.exists()):  # a dry run: the directory may be to come
            path = path / DB_NAME
        self.path, self.stale_after, self.readonly = path, stale_after, readonly
        self.unreadable: dict[str, str] = {}  # run id -> why `runs()` left its row out
        if not path.parent.is_dir() and not readonly:
            raise TicketlabError(f"{path.parent}: sweep directory not found")
        if path.exists() or path.is_symlink():  # SQLite would wait forever on a FIFO planted there
            check_regular_unopened(path, "results store")  # SQLite locks it
        try:
            self.db = sqlite3.connect(
                read_only_uri(path) if readonly and path.is_file() else path if not readonly else ":memory:",
                timeout=timeout,
                isolation_level=None,
                uri=readonly and path.is_file(),
            )
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if path.is_file():  # another's file, or a store of another schema: refused before any write
                self._check_ours()
                self._check_version()
                self._check_ids()
            if readonly and path.is_file():
                self.db.execute("PRAGMA query_only = ON")  # SQLite itself refuses any write
            elif readonly:
                for statement in statements():  # an empty store, in memory
                    self.db.execute(statement)
            else:
                self._setup(timeout)
        except sqlite3.OperationalError as e:  # a full disk, no permission, locked for too long
            raise TicketlabError(f"{path}: cannot use the results store ({e})") from None
        except sqlite3.DatabaseError as e:
            raise TicketlabError(f"{path}: not a ticketlab results store ({e})") from None

    # ------------------------------------------------------------------ plumbing
    def _setup(self, timeout: float) -> None:
        """WAL mode, the schema and, in a new store, its marks (schema version, ids scheme). Switching
        to WAL takes an exclusive lock for which SQLite does not always wait (two processes opening a
        new store at once get "database is locked" at once), so this retries until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = FULL")
                with self.transaction():
                    for statement in statements():
                        self.db.execute(statement)
                    self._check_version()  # another process may have made the store meanwhile
                    self._check_ids()
                    marks = [("schema_version", str(SCHEMA_VERSION)), ("ids", str(IDS_VERSION))]
                    self.db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", marks)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """An SQLite error as one line naming the store (a full disk, a corrupt file)."""
        try:
            yield
        except sqlite3.Error as e:
            raise TicketlabError(f"{self.path}: cannot use the results store ({e})") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: the lock is taken up front, so it never fails half-way."""
        with self._errors():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                if self.db.in_transaction:  # SQLite may have rolled back already (a full disk)
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _read(self, sql: str, args: tuple | list = ()) -> list[sqlite3.Row]:
        """Every read: its rows, or one line naming the store."""
        with self._errors():
            return self.db.execute(sql, args).fetchall()

    def _check_ours(self) -> None:
        check_tables(self.db, self.path)

    def _check_version(self) -> None:
        """The store's schema is this ticketlab's (SCHEMA_VERSION): a store of another, newer or
        earlier, is refused in one line and never converted (an earlier one's runs are also of an
        earlier ids scheme). A store without a version is a new one (`_setup` marks it)."""
        if not self._has_meta():
            return
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            return
        if not str(row[0]).isdigit():
            raise TicketlabError(f"{self.path}: corrupt schema version {row[0]!r}")
        if int(row[0]) != SCHEMA_VERSION:
            which = "a newer" if int(row[0]) > SCHEMA_VERSION else "an earlier"
            raise TicketlabError(
                f"{self.path}: written by {which} ticketlab (store schema {row[0]}; this one reads "
                f"schema {SCHEMA_VERSION}): sweep into a new directory"
            )

    def _has_meta(self) -> bool:
        """Whether the database has its `meta` table yet (a new, empty file has none)."""
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is not None

    def _check_ids(self) -> None:
        """A store's run ids are of one scheme (`run_ids.IDS_VERSION`, its meta `ids`): a new store is
        marked with today's (`_setup`); one holding runs of another scheme is refused, as its finished
        runs would show as pending and run again (docs/explanation/run-ids.md)."""
        if not self._has_meta():
            return
        row = self.db.execute("SELECT value FROM meta WHERE key = 'ids'").fetchone()
        scheme = None if row is None else self.parse_meta("ids", row[0])  # an integer, or refused
        if scheme == IDS_VERSION:
            return
        if scheme is None and self.db.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is None:
            return  # a new store, or one with no runs yet: `_setup` marks it
        scheme = "no ids scheme" if scheme is None else f"ids scheme {scheme}"
        raise IdsSchemeError(
            f"{self.path}: its run ids are of {scheme}, this ticketlab's are of scheme {IDS_VERSION}: "
            "sweep into a new directory, or re-key the store once (docs/explanation/run-ids.md)"
        )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows:
            return default
        return self.parse_meta(key, rows[0][0])

    def parse_meta(self, key: str, text: Any) -> Any:
        """The value of meta entry `key` stored as `text`, or one `TicketlabError` naming the store
        and the entry when it is not JSON or not of its shape (`plan` a list of run ids, ...)."""
        try:
            value = json.loads(text)
        except (TypeError, ValueError, RecursionError):
            raise TicketlabError(f"{self.path}: corrupt entry {key!r} (not JSON)") from None
        shape = META_SHAPES.get(key)
        if shape is not None and not shape[0](value):
            raise TicketlabError(f"{self.path}: corrupt entry {key!r} (not {shape[1]})")
        return value

    def add_runs(self, runs: Iterable[Any]) -> int:
        """Insert planned runs as `pending`; runs already in the store are left as they are."""
        now, n = time.time(), 0
        with self.transaction():
            for r in runs:
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO runs (id, kind, name, config, deps, status, created) "
                    "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                    (
                        r.id,
                        r.kind,
                        r.name,
                        json.dumps(r.config, sort_keys=True),
                        json.dumps(list(r.deps)),
                        now,
                    ),
                )
                n += cur.rowcount
        return n

    def _claimable(self, row: sqlite3.Row, now: float) -> bool:
        if row["status"] in ("pending", "failed"):
            return True
        return row["status"] == "running" and owner_gone(row, now, self.stale_after)

    def claim(self, run_id: str) -> bool:
        """Mark a run as ours (`running`) unless it is done or held by a live process."""
        now = time.time()
        with self.transaction():
            row = self.db.execute(
                "SELECT status, host, pid, heartbeat FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise KeyError(run_id)
            if not self._claimable(row, now):
                return False
            self.db.execute(
                "UPDATE runs SET status = 'running', host = ?, pid = ?, started = ?, heartbeat = ?, "
                "attempts = attempts + 1, error = NULL, job = NULL, log = NULL WHERE id = ?",
                (HOST, os.getpid(), now, now, run_id),
            )
        return True

    def set_job(self, run_id: str, job: str, log: str | None, *, retry: bool = False) -> None:
        """Record the launcher's job id and log of a claimed run (`retry`: one more attempt)."""
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET job = ?, log = ?, attempts = attempts + ? "
                "WHERE id = ? AND status = 'running'",
                (job, log, int(retry), run_id),
            )

    def heartbeat(self, run_id: str) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET heartbeat = ? WHERE id = ? AND status = 'running' AND pid = ?",
                (time.time(), run_id, os.getpid()),
            )

    def finish(
        self,
        run_id: str,
        metrics: dict[str, Any],
        provenance: dict[str, Any],
        predictions: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> bool:
        """Record a finished run, with its per-example (predictions, labels) where it has them, in one
        transaction. Returns False if the run was already done (by another process)."""
        with self.transaction():
            cur = self.db.execute(
                "UPDATE runs SET status = 'done', metrics = ?, provenance = ?, error = NULL, finished = ?, "
                "heartbeat = NULL WHERE id = ? AND status != 'done'",
                (to_json(metrics), to_json(provenance), time.time(), run_id),
            )
            if cur.rowcount == 1 and predictions is not None:
                preds, labels = (np.ascontiguousarray(a) for a in predictions)
                self.db.execute(
                    "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?)",
                    (run_id, preds.tobytes(), preds.dtype.str, labels.tobytes(), labels.dtype.str),
                )
        return cur.rowcount == 1

    def predictions(self, run_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """A run's per-example (predictions, labels) on its reported dev examples, in the dev set's
        order (None: none kept)."""
        rows = self._read("SELECT * FROM predictions WHERE id = ?", (run_id,))
        if not rows:
            return None
        r = rows[0]
        return np.frombuffer(r["preds"], r["preds_dtype"]), np.frombuffer(r["labels"], r["labels_dtype"])

    def fail(self, run_id: str, error: str, provenance: dict[str, Any] | None = None) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET status = 'failed', error = ?, provenance = ?, finished = ?, "
                "heartbeat = NULL WHERE id = ? AND status != 'done'",
                (error, json.dumps(provenance or {}), time.time(), run_id),
            )

    def release(self, run_id: str) -> None:
        """Give a claimed run back (e.g. on Ctrl-C) so the next sweep starts it at once."""
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET status = 'pending', heartbeat = NULL WHERE id = ? AND status = 'running' "
                "AND host = ? AND pid = ?",
                (run_id, HOST, os.getpid()),
            )

    def reopen(self, run_id: str, *, finished: float | None) -> bool:
        """Put a done run back to `pending` (its artefacts are gone) unless it finished again since
        `finished` (another process re-ran it); its old metrics and provenance stay until it does."""
        with self.transaction():
            cur = self.db.execute(
                "UPDATE runs SET status = 'pending' WHERE id = ? AND status = 'done' AND finished IS ?",
                (run_id, finished),
            )
        return cur.rowcount == 1

    # ------------------------------------------------------------------ reading
    def get(self, run_id: str) -> RunRecord | None:
        """The run's record (None: not in the store); a corrupt row is refused in one line."""
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        return RunRecord.from_row(rows[0], self.path) if rows else None

    def runs(self, kind: str | None = None, status: str | None = None) -> list[RunRecord]:
        """The records, oldest first. A corrupt row is left out with a warning naming it (one bad
        row must not hide a whole sweep's results); `unreadable` keeps why."""
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        out = []
        for row in self._read(sql + " ORDER BY created, rowid", args):
            try:
                out.append(RunRecord.from_row(row, self.path))
            except TicketlabError as e:
                if row["id"] not in self.unreadable:
                    print(f"warning: {e}; left out", file=sys.stderr)
                self.unreadable[row["id"]] = str(e)
        return out

    def statuses(self, ids: Iterable[str] | None = None) -> dict[str, str]:
        rows = self._read("SELECT id, status FROM runs")
        out = {r["id"]: r["status"] for r in rows}
        return out if ids is None else {i: out[i] for i in ids if i in out}

    def held_elsewhere(self, run_id: str) -> bool:
        """True if another live process is running it now."""
        rows = self._read("SELECT status, host, pid, heartbeat FROM runs WHERE id = ?", (run_id,))
        return bool(rows) and rows[0]["status"] == "running" and not self._claimable(rows[0], time.time())
