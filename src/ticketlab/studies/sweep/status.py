"""`ticketlab sweep --status DIR`: what a sweep directory's store says, read only (counts per run kind
and status, the running and failed runs with their jobs and logs, the next queued ones), and
`SweepResult`, what a sweep that ran says of them (`run_sweep` returns it; `launched` fills it too).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...core.checks import is_int
from ...core.errors import TicketlabError
from ...core.files.inputs import read_json, read_tail
from ..records import KINDS, STALE_AFTER, owner_gone, store_in
from ..run_ids import Run, run_dirname
from ..store import Store


@dataclass
class SweepResult:
    total: int
    done: int  # done at the end (this sweep or before)
    ran: list[str] = field(default_factory=list)  # run ids finished by this sweep
    failed: list[str] = field(default_factory=list)  # failed in this sweep
    blocked: list[str] = field(default_factory=list)  # not run: a run they need failed
    names: dict[str, str] = field(default_factory=dict)  # run id -> readable name
    # chosen run id -> the id of an input of it neither done nor chosen (`--only` / `--runs`): not run
    unready: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked and self.done == self.total

    def settle(self, runs: list[Run], chosen: list[Run], statuses: dict[str, str]) -> None:
        """What the sweep left, from the store's `statuses` at its end: how many runs are done, the
        runs an input of which failed, and the chosen runs waiting for an input that was not chosen
        (a search left for another piece): a part of a sweep cannot make those."""
        self.done = sum(statuses[r.id] == "done" for r in runs)
        self.blocked = [
            r.id for r in runs if statuses[r.id] != "done" and any(statuses[d] == "failed" for d in r.deps)
        ]
        picked = {r.id for r in chosen}
        for r in chosen:
            missing = [d for d in r.deps if d not in picked and statuses[d] not in ("done", "failed")]
            if statuses[r.id] != "done" and missing:
                self.unready[r.id] = missing[0]

    def unready_line(self) -> str | None:
        """One line on the chosen runs that could not run (`unready`), or None."""
        if not self.unready:
            return None
        run, need = next(iter(self.unready.items()))
        return (
            f"{len(self.unready)} chosen run(s) not run: a run they need is not done and was not chosen "
            f"(e.g. {self.names[run]} needs {self.names[need]}); run those first, or the whole sweep"
        )


def sweep_status(sweep_dir: str | os.PathLike, *, limit: int = 20) -> str:
    """What `ticketlab sweep --status DIR` prints: counts per run kind and status, then the running
    and failed runs with their job ids and logs, and the next queued ones."""
    path = Path(sweep_dir)
    store_in(path)
    with Store(path, readonly=True) as store:
        runs = store.runs()
        plan = store.get_meta("plan")
    if plan is not None:  # the runs of the last spec started here (older plans stay in the store)
        wanted = set(plan)
        runs = [r for r in runs if r.id in wanted]
    shown = {"pending": "queued", "running": "running", "done": "done", "failed": "failed"}
    counts = {s: sum(r.status == s for r in runs) for s in shown}
    lines = [
        f"sweep in {path.resolve()}: {len(runs)} runs: "
        + ", ".join(f"{n} {shown[s]}" for s, n in counts.items())
    ]
    lines.append(f"  {'kind':<14} {'queued':>7} {'running':>8} {'done':>6} {'failed':>7}")
    for kind in KINDS:
        of_kind = [r for r in runs if r.kind == kind]
        if of_kind:
            n = [sum(r.status == s for r in of_kind) for s in shown]
            lines.append(f"  {kind:<14} {n[0]:>7} {n[1]:>8} {n[2]:>6} {n[3]:>7}")
    now = time.time()
    for status, title in (("running", "running"), ("failed", "failed"), ("pending", "queued")):
        chosen = [r for r in runs if r.status == status]
        if not chosen:
            continue
        lines.append(f"\n{title}:")
        for r in chosen[:limit]:
            line = f"  {r.id}  {r.kind:<13} {r.name}"
            if r.job:
                line += f"  job {r.job}"
            if r.attempts > 1:
                line += f"  attempt {r.attempts}"
            if status == "running" and owner_gone(r, now, STALE_AFTER):
                beat = f"{_duration(now - r.heartbeat)} ago" if r.heartbeat else "never"
                line += f"  claimed on {r.host}, its process gone (heartbeat {beat}): a sweep takes it over"
            elif status == "running" and r.started:
                line += f"  for {_duration(now - r.started)} on {r.host}{_progress(path, r)}"
            if r.log and status != "pending":
                line += f"\n      log: {r.log}"
            if status == "failed" and r.error:
                line += f"\n      error: {r.error.strip().splitlines()[0][:200]}"
            lines.append(line)
        if len(chosen) > limit:
            lines.append(f"  ... and {len(chosen) - limit} more")
    return "\n".join(lines)


def _progress(sweep_dir: Path, r) -> str:
    """What a running run has done: ", step N of M", N the last step it logged (the newest `log.jsonl`
    under its mask or run directory), M a search's steps (its config) or a fine-tuning's (the
    `config.json` beside its log: `resolved.max_steps`); "" where it has logged none yet. Read only."""
    try:
        name = run_dirname(r.name, r.id)
    except TicketlabError:  # a corrupt row: its directory cannot be named
        return ""
    log = _newest_log([sweep_dir / "masks" / name, sweep_dir / "runs" / name])
    step = _last_step(log) if log is not None else None
    if log is None or step is None:
        return ""
    total = r.config.get("steps") if isinstance(r.config, dict) else None
    if total is None:
        with contextlib.suppress(TicketlabError, KeyError, TypeError):
            total = read_json(log.parent / "config.json", "run config")["resolved"]["max_steps"]
    count = is_int(total)  # `steps: true` is no budget
    return f", step {step}" + (f" of {total}" if count else "")


def _newest_log(dirs: list[Path]) -> Path | None:
    """The newest `log.jsonl` file under `dirs`: what cannot be read (a file or directory removed
    while it is listed, a link to nowhere) and what is no file are passed over."""
    found: list[tuple[float, Path]] = []
    for d in dirs:
        with contextlib.suppress(OSError):
            for p in d.rglob("log.jsonl"):
                with contextlib.suppress(OSError):
                    if stat.S_ISREG((st := p.stat()).st_mode):
                        found.append((st.st_mtime, p))
    return max(found)[1] if found else None


def _last_step(log: Path) -> int | None:
    """The `step` of the last complete line of a JSON-lines log (its tail only: logs grow long)."""
    try:
        lines = read_tail(log, 4096).decode(errors="replace").splitlines()
    except (OSError, TicketlabError):
        return None
    for line in reversed(lines):
        try:
            step = json.loads(line).get("step")
        except (ValueError, AttributeError, RecursionError):
            continue
        if is_int(step):
            return step
    return None


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
