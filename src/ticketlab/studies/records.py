"""What a results store's rows are (`store.py` is the database): a `RunRecord` read from a row and
checked (a corrupt row is one line naming the store and the run), the shapes of the meta entries
ticketlab reads, and whether the process that claimed a running row is gone. Light (no numpy): the
command line checks a study's directory with `store_in` before a verb's imports."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.checks import is_int
from ..core.errors import TicketlabError
from ..core.files.atomic import HOST, pid_alive

STATUSES = ("pending", "running", "done", "failed")
KINDS = ("search", "pretrain-eval", "finetune")  # the run kinds of a sweep
DB_NAME = "results.sqlite"  # a sweep's or a study's results store, in its directory
STALE_AFTER = 600.0  # seconds without a heartbeat after which a running row's process counts as gone


@dataclass
class RunRecord:
    id: str
    kind: str
    name: str
    config: dict[str, Any]
    deps: list[str]
    status: str
    metrics: dict[str, Any] | None
    provenance: dict[str, Any] | None
    error: str | None
    attempts: int
    host: str | None
    pid: int | None
    created: float
    started: float | None
    heartbeat: float | None
    finished: float | None
    job: str | None = None
    log: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row, store: Path) -> RunRecord:
        """The record of a row, or one `TicketlabError` naming the store, the run and the column."""
        d = dict(row)
        for k, kind in (("config", dict), ("deps", list), ("metrics", dict), ("provenance", dict)):
            if d[k] is None and k in ("metrics", "provenance"):
                continue
            try:
                d[k] = json.loads(d[k])
            except (TypeError, ValueError, RecursionError):
                d[k] = None
            if not isinstance(d[k], kind):
                what = f"{k} is not a JSON {kind.__name__}"
                raise TicketlabError(f"{store}: run {d['id']}: corrupt row ({what})")
        wrong = _wrong_shape(d)
        if wrong:
            raise TicketlabError(f"{store}: run {d['id']}: corrupt row ({wrong})")
        return cls(**d)


def _ids(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(i, str) for i in v)


# The meta entries ticketlab reads (`Store.parse_meta`): what each must be, and its name in a message.
META_SHAPES: dict[str, tuple[Any, str]] = {
    "spec": (lambda v: isinstance(v, dict), "a mapping"),
    "plan": (_ids, "a list of run ids"),
    "studies": (
        lambda v: isinstance(v, dict) and all(_ids(ids) for ids in v.values()),
        "a mapping of study names to lists of run ids",
    ),
    "study_protocols": (lambda v: isinstance(v, dict), "a mapping"),
    "inputs": (lambda v: isinstance(v, dict), "a mapping"),
    "ids": (is_int, "an integer"),
}


def _wrong_shape(d: dict[str, Any]) -> str | None:
    """Why a row whose JSON reads holds no run (a status no writer sets, a finished run without
    metrics), or None. What a reader takes from a config is that reader's to check (the report's
    `results.unusable`)."""
    if d["status"] not in STATUSES:
        return f"status {d['status']!r} is not one of {', '.join(STATUSES)}"
    if d["status"] == "done" and d["metrics"] is None:
        return "a finished run without metrics"
    return None


def owner_gone(row: Any, now: float, stale_after: float) -> bool:
    """Whether the process that claimed a running run is gone: a dead pid on this machine, or no
    heartbeat for `stale_after` seconds (`row`: a database row or a `RunRecord`)."""
    get = row.__getitem__ if isinstance(row, sqlite3.Row) else lambda k: getattr(row, k)
    if get("host") == HOST and get("pid") is not None and not pid_alive(get("pid")):
        return True
    return get("heartbeat") is None or now - get("heartbeat") > stale_after


def store_in(
    directory: str | os.PathLike, what: str = "sweep directory", made_by: str = "ticketlab sweep"
) -> None:
    """Refuse, in one line, a `directory` that holds no results store `made_by` wrote."""
    path = Path(directory)
    if not (path / DB_NAME).is_file():
        raise TicketlabError(f"{path}: not a {what} (no {DB_NAME}; run `{made_by}` first)")


def study_in(directory: str | os.PathLike) -> None:
    """`store_in` for a super-ticket study's directory (`ticketlab super --out`)."""
    store_in(directory, what="super-ticket study directory", made_by="ticketlab super")
