"""Executing a row of a results store: the one way a run of a sweep, of a super-ticket study or of
ticket sharing becomes `done` or `failed` (`store.py` is the database, this its use).

`execute(store, run, work)` plans the row (kept if it is there), returns the stored metrics of a
row that is done, leaves a row another live process holds, and otherwise claims it (`running`,
with this process's host, pid and a heartbeat kept from a thread while it runs), runs `work` and
records what came of it: the metrics with the provenance (code version, host, pid, start, wall
time, and what the caller adds: mask hashes, the content keys of the inputs), or the error. Ctrl-C
gives the row back so the next run starts it at once.

A sweep's coordinator records what launched workers hand back through the same `finish` and `fail`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.digest import digest
from ..core.errors import TicketlabError
from ..core.files.atomic import HOST
from ..tasks.predictions import decode_predictions
from .records import RunRecord
from .run_ids import Run
from .store import Store
from .sweep.provenance import code_version, here

Work = Callable[[], dict[str, Any]]  # runs the row; its metrics


@dataclass
class Inputs:
    """What a study's rows read, by content key (`refuse_changed_inputs`): a done row whose inputs
    now hold other bytes is refused, and each finished row records the keys it ran on."""

    out: Path  # the study directory, named in the message
    keys: dict[str, str]  # content keys of the model, task data, ...
    where: dict[str, str]  # what each of them is, for the message


@dataclass
class Executed:
    """What `execute` did with a row."""

    # "done" (before: its stored metrics), "busy" (another live process holds it), "ran", "failed"
    status: str
    metrics: dict[str, Any] | None = None
    error: str | None = None
    wall_s: float = 0.0


class Heartbeat:
    """Refreshes a claimed run's heartbeat from a thread (with its own connection) while it runs, so
    no other process takes it over as stale (`Store.stale_after`)."""

    def __init__(self, db_path: Path, run_id: str, every: float):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, args=(db_path, run_id, every), daemon=True)

    def _beat(self, db_path: Path, run_id: str, every: float) -> None:
        store = Store(db_path)
        try:
            while not self.stop.wait(every):
                with contextlib.suppress(TicketlabError):  # a full disk: the run's own write says so
                    store.heartbeat(run_id)
        finally:
            store.close()

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def error_text(e: BaseException) -> str:
    """A user error's message, or the traceback of anything else."""
    return str(e) if isinstance(e, TicketlabError) else "".join(traceback.format_exception(e)).strip()


def ran_here(started: float, wall_s: float | None) -> dict[str, Any]:
    """The provenance every finished row records: the code, where and on what, when and how long it
    ran (a launched run's coordinator overwrites where and when with the worker's)."""
    return {"code": code_version(), **here(), "started": started, "wall_s": wall_s}


def finish(store: Store, run_id: str, metrics: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """Record a finished row; its metrics as stored (a run's history stays in its directory, its
    per-example predictions go to the store's `predictions` table)."""
    kept = metrics.get("predictions")
    metrics = {k: v for k, v in metrics.items() if k not in ("history", "predictions")}
    store.finish(run_id, metrics, provenance, None if kept is None else decode_predictions(kept))
    return metrics


def fail(store: Store, run_id: str, error: str, provenance: dict[str, Any]) -> None:
    """Record a failed row with its error."""
    store.fail(run_id, error, provenance)


def refuse_changed_inputs(out: Path, record: RunRecord, now: dict[str, str], where: dict[str, str]) -> None:
    """Refuse to reuse a finished row of a study whose inputs now hold other bytes (new weights at
    the same model path, edited task data): its metrics belong to the old ones. `now` holds the
    content keys of what the row reads, `where` their paths; the row recorded its own keys in its
    provenance when it finished (a row that recorded none has nothing to compare)."""
    saved = (record.provenance or {}).get("inputs")
    if not isinstance(saved, dict):
        return
    changed = [k for k in now if k in saved and saved[k] != now[k]]
    if changed:
        what = " and ".join(f"{where.get(k, k)}" for k in changed)
        raise TicketlabError(
            f"{out}: {what} changed since its run {record.name} finished; pass another output "
            "directory, or delete it to start over"
        )


def execute(
    store: Store,
    run: Run,
    work: Work,
    *,
    provenance: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    inputs: Inputs | None = None,
    on_start: Callable[[], None] | None = None,
    heartbeat_every: float = 30.0,
    keep_going: bool = False,
) -> Executed:
    """Run one row unless it is done or held by another live process (see the module docstring).

    `provenance`: what the row's metrics add to its provenance (mask hashes); `on_start`: called once
    the row is claimed (a sweep's progress line); `keep_going`: a failure is recorded and returned
    (a sweep goes on) instead of raised after it is recorded.
    """
    store.add_runs([run])
    record = store.get(run.id)
    if record is not None and record.status == "done":
        if inputs is not None:
            refuse_changed_inputs(inputs.out, record, inputs.keys, inputs.where)
        return Executed("done", record.metrics)
    if not store.claim(run.id):
        return Executed("busy")
    if on_start is not None:
        on_start()
    t0, started = time.perf_counter(), time.time()
    try:
        with Heartbeat(store.path, run.id, heartbeat_every):
            metrics = work()
            prov = ran_here(started, round(time.perf_counter() - t0, 3))
            prov.update(provenance(metrics) if provenance is not None else {})
            if inputs is not None:
                prov["inputs"] = inputs.keys
        return Executed("ran", finish(store, run.id, metrics, prov), wall_s=prov["wall_s"])
    except KeyboardInterrupt:
        store.release(run.id)
        raise
    except Exception as e:  # recorded; a sweep goes on (one bad run must not sink it), a study stops
        msg = error_text(e)
        fail(store, run.id, msg, {"code": code_version(), "host": HOST, "started": started})
        if not keep_going:
            raise
        return Executed("failed", error=msg, wall_s=time.perf_counter() - t0)


def record_study(
    store: Store, name: str, run_ids: Sequence[str], spec: dict[str, Any], protocol: dict[str, Any]
) -> None:
    """Make a study's rows the ones `ticketlab report` shows for it (meta `studies`: name -> ids).

    Runs of the same `protocol` (the settings every row shares) add up: a second call with more
    levels, kinds or seeds extends the study. Another protocol replaces the study's rows, so a
    report never pools, say, two learning rates. In a sweep's store the sweep's spec and plan stay
    as they are and its report gains the study; in a store of its own, `spec` names it. One
    transaction, so studies written at once all stay.
    """
    protocol_id = digest(protocol)
    with store.transaction() as db:
        meta = dict(
            db.execute("SELECT key, value FROM meta WHERE key IN ('studies', 'study_protocols', 'spec')")
        )
        studies = store.parse_meta("studies", meta.get("studies", "{}"))
        protocols = store.parse_meta("study_protocols", meta.get("study_protocols", "{}"))
        old = studies.get(name, []) if protocols.get(name) == protocol_id else []
        studies[name], protocols[name] = list(dict.fromkeys([*old, *run_ids])), protocol_id
        db.execute("INSERT OR REPLACE INTO meta VALUES ('studies', ?)", (json.dumps(studies),))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('study_protocols', ?)", (json.dumps(protocols),))
        if "spec" not in meta:
            db.execute("INSERT INTO meta VALUES ('spec', ?)", (json.dumps(spec),))
