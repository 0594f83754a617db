"""The results store's file: its schema (the tables a store holds and the columns each has had),
the check that a database is one, and reading or copying one without writing beside it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from ..core.errors import TicketlabError
from ..core.files.atomic import temp_file, writing
from ..core.files.inputs import check_regular_unopened

SCHEMA_VERSION = 3  # the schema below; a store of another version is refused (`Store._check_version`)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,   -- content hash of the resolved config
    kind        TEXT NOT NULL,      -- search | pretrain-eval | finetune
    name        TEXT NOT NULL,
    config      TEXT NOT NULL,      -- JSON
    deps        TEXT NOT NULL,      -- JSON list of run ids
    status      TEXT NOT NULL,      -- pending | running | done | failed
    metrics     TEXT,               -- JSON
    provenance  TEXT,               -- JSON
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    host        TEXT,
    pid         INTEGER,
    created     REAL NOT NULL,
    started     REAL,
    heartbeat   REAL,
    finished    REAL,
    job         TEXT,               -- launcher job id of the current / last attempt (Slurm, local)
    log         TEXT                -- its log file
);
CREATE INDEX IF NOT EXISTS runs_kind_status ON runs (kind, status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    id          TEXT PRIMARY KEY,   -- the run's id
    preds       BLOB NOT NULL,      -- per dev example: class ids (int8) or regression outputs (float32)
    preds_dtype TEXT NOT NULL,      -- numpy's dtype string
    labels      BLOB NOT NULL,
    labels_dtype TEXT NOT NULL
);
"""

# The tables a store holds and the columns each has had since the first schema: a database with any
# other table, or without these, is not ticketlab's (`Store._check_ours`).
OWN_TABLES = {
    "runs": {"id", "kind", "name", "config", "deps", "status", "metrics", "provenance", "error", "attempts"}
    | {"host", "pid", "created", "started", "heartbeat", "finished"},
    "meta": {"key", "value"},
}
# Tables a store of an earlier schema lacks: it is still ticketlab's, and its version (not this check)
# refuses it, in words that say so.
LATER_TABLES = {"predictions": {"id", "preds", "preds_dtype", "labels", "labels_dtype"}}


def read_only_uri(path: Path) -> str:
    """An SQLite URI that reads `path` and writes nothing beside it. A store in WAL mode read with a
    plain or even a `mode=ro` connection leaves `-wal` and `-shm` files beside it (a committed store in
    a checkout would show as changed); with no `-wal` file there, no writer is at work and the file is
    read as immutable: no locks, no side files. With one there (a sweep running), `mode=ro` reads
    through the writer's log as SQLite's readers do."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    return uri if Path(f"{path}-wal").exists() else uri + "&immutable=1"


def copy_store(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy the store `source` (consistent while sweeps write it: SQLite's backup API reads through
    their log) to `target` as one file: the copy leaves WAL mode, so reading it later makes no `-wal`
    and `-shm` files beside it (what a store committed to git must be). Written atomically."""
    source, target = Path(source), Path(target)
    check_regular_unopened(source, "results store")  # SQLite locks it
    tmp = temp_file(target.parent, target.name)
    try:
        src = contextlib.closing(sqlite3.connect(read_only_uri(source), uri=True))
        with src as reader, contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as dst:
            reader.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # the copy's header says WAL until now
        with writing(target):
            os.replace(tmp, target)
    except sqlite3.Error as e:
        raise TicketlabError(f"{source}: cannot copy the results store ({e})") from None
    finally:
        tmp.unlink(missing_ok=True)


def check_tables(db: sqlite3.Connection, path: Path) -> None:
    """An existing database is a ticketlab store only when its tables are the store's own: a
    user's `results.sqlite` (their own `meta` table, say) is never written into. A new, empty
    database is ours to make."""
    tables = {
        r[0]: r[1]
        for r in db.execute("SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        if r[1] in ("table", "view", "trigger")
    }
    if not tables:
        return
    columns = {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")} for t in OWN_TABLES}
    foreign = sorted(set(tables) - set(OWN_TABLES) - set(LATER_TABLES))
    wrong = [t for t, need in OWN_TABLES.items() if tables.get(t) != "table" or not need <= columns[t]]
    if foreign:
        what = f"a table {foreign[0]!r} is not ticketlab's"
    elif wrong:  # a user's own `meta` table and no `runs`: say what is missing, not that it is wrong
        what = (
            f"its table {wrong[0]!r} is not ticketlab's" if wrong[0] in tables else f"no table {wrong[0]!r}"
        )
    else:
        return
    raise TicketlabError(f"{path}: not a ticketlab results store ({what})")


def statements() -> list[str]:
    return [s.strip() for s in SCHEMA.split(";") if s.strip()]
