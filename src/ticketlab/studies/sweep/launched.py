"""The launched half of a sweep's `Runner` (runner.py): runs submitted through a launcher (local
subprocesses, Slurm jobs, launchers.py), this process coordinating. It alone writes the store (SQLite's
locks are not safe on a cluster's network file system): it claims and submits what is ready, keeps
the heartbeats of what it submitted, records what comes back, submits again a job killed without a
result, adopts the Slurm jobs of a coordinator that died and collects a run that finished before its
coordinator could record it.

A `Coordinator` serves one sweep's `Runner` (runner.py) through its public face: its store, plan
(`runs`), log, `work`, `busy`, `mask_provenance` and `mask_dir_of`; rows are recorded as
`rows.execute` records them (`rows.finish`, `rows.fail`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ...core.errors import TicketlabError
from .. import rows
from ..rows import error_text
from ..run_ids import Run
from ..store import Store
from .launchers import Handle, Outcome, SubmititLauncher
from .provenance import code_version
from .status import SweepResult
from .work import Work, run_dir, summary


class Sweep(Protocol):
    """What a coordinator uses of the sweep it serves (runner.py's `Runner`)."""

    store: Store
    runs: list[Run]
    dir: Path
    work: Work
    log: Callable[[str], None]
    heartbeat_every: float
    poll: float
    may_start: Callable[[], bool]

    def busy(self, run: Run) -> bool: ...
    def forget_busy(self, run_id: str) -> None: ...
    def mask_provenance(self, run: Run, metrics: dict[str, Any]) -> dict[str, Any]: ...
    def mask_dir_of(self, run: Run) -> Path | None: ...


class Coordinator:
    """Runs submitted through a launcher for a sweep's runner, this process coordinating (see the
    module docstring)."""

    def __init__(
        self, runner: Sweep, launcher: SubmititLauncher, retries: int, runs: list[Run] | None = None
    ):
        """`runs`: those this coordinator may submit (default: all of the runner's)."""
        self.runner, self.launcher, self.retries = runner, launcher, retries
        self.store, self.log = runner.store, runner.log
        self.runs = runner.runs if runs is None else runs
        self.inflight: dict[str, tuple[Run, Handle, float]] = {}
        self.tries: dict[str, int] = {}  # submissions per run in this sweep

    def run(self, result: SweepResult, max_runs: int | None) -> None:
        """Submit every run whose masks are there, as many at once as the launcher takes; record
        what comes back. Only this process writes the store: it claims the runs it submits and
        keeps their heartbeats while they are queued or running."""
        launcher, inflight, beat = self.launcher, self.inflight, time.monotonic()
        try:
            while True:
                self._collect(result)
                waiting = busy = False  # past `start_for`: only what is under way is waited for
                if self.runner.may_start():
                    waiting, busy = self._submit_ready(max_runs, result)
                elsewhere = waiting and (busy or any(self.store.held_elsewhere(r.id) for r in self.runs))
                if not inflight and not elsewhere:
                    break
                if time.monotonic() - beat > self.runner.heartbeat_every:
                    for run_id in inflight:
                        self.store.heartbeat(run_id)
                    beat = time.monotonic()
                time.sleep(self.runner.poll)
        except BaseException:  # Ctrl-C, or an error (a full disk): local workers end with us
            for run, handle, _ in inflight.values():
                if launcher.cluster == "local":  # Slurm jobs run on; the next sweep adopts them
                    launcher.cancel(handle)
                    with contextlib.suppress(TicketlabError):
                        self.store.release(run.id)
            raise
        finally:
            launcher.close()

    def _collect(self, result: SweepResult) -> None:
        """Record the jobs that ended; submit again those killed without a result."""
        launcher, inflight, tries = self.launcher, self.inflight, self.tries
        for run_id, (run, handle, t0) in list(inflight.items()):
            outcome = launcher.poll(handle)
            if outcome is None:
                continue
            del inflight[run_id]
            if outcome.ok and "busy" in outcome.value:  # its directory was held: wait, do not fail
                self.store.release(run_id)
                del tries[run_id]
                self.runner.forget_busy(run_id)
            elif outcome.killed and tries[run_id] <= self.retries:
                self.log(f"    {run.name}: job {handle.job_id} ended without a result; retrying")
                retry = self._submit(run, result, retry=True)
                if retry is not None:
                    inflight[run_id], tries[run_id] = (run, retry, t0), tries[run_id] + 1
            else:
                self._record(run, handle, outcome, result, t0)

    def _submit_ready(self, max_runs: int | None, result: SweepResult) -> tuple[bool, bool]:
        """Claim and submit the runs whose inputs are done, while the launcher takes more; collect
        those finished but not recorded. Returns whether some wait for runs not done yet, and
        whether some wait for a directory another process holds."""
        launcher, inflight, tries = self.launcher, self.inflight, self.tries
        statuses, waiting, busy = self.store.statuses(), False, False
        for run in self.runs:
            if launcher.free == 0 or (max_runs is not None and len(tries) >= max_runs):
                break
            if run.id in tries or (ready := self.runner.ready(run, statuses)) is None:
                continue
            if not ready:
                waiting = True  # its mask is not there yet, or another coordinator has it
                continue
            previous = self.store.get(run.id)
            adoptable = launcher.cluster == "slurm" and previous is not None and previous.job
            if not adoptable and self.runner.busy(run):  # (a Slurm job of ours holding it is adopted)
                waiting = busy = True
                continue
            if not self.store.claim(run.id):
                waiting = True  # another coordinator has it
                continue
            tries[run.id] = 1
            handle = self._adopt(run, previous)
            if handle is None and self._collect_saved(run, result):
                continue
            handle = handle or self._submit(run, result)
            if handle is not None:
                inflight[run.id] = (run, handle, time.perf_counter())
        return waiting, busy

    def _collect_saved(self, run: Run, result: SweepResult) -> bool:
        """Record a claimed run whose result file is there (it finished, its coordinator died
        before recording it) without launching it again; False: nothing usable there."""
        work = run_dir(self.runner.dir, run)
        saved = work.file(work.result)
        if not saved.is_file():
            return False
        try:
            done = work.finished()
            metrics = done["metrics"]
            provenance = {**self._provenance(run, metrics), **done["where"], "collected": str(saved)}
        except Exception:  # e.g. its mask is gone: a worker runs it and reports why
            return False
        metrics = rows.finish(self.store, run.id, metrics, provenance)
        result.ran.append(run.id)
        self.log(f"    {run.name}: finished before, collected from {saved}{summary(run, metrics)}")
        return True

    def _provenance(self, run: Run, metrics: dict[str, Any]) -> dict[str, Any]:
        """A launched run's provenance as `rows.execute` records a run's, made here (the worker's
        host, pid, start and wall time replace this process's where it reported them)."""
        return {**rows.ran_here(0.0, 0.0), **self.runner.mask_provenance(run, metrics)}

    def _submit(self, run: Run, result: SweepResult, *, retry: bool = False) -> Handle | None:
        """Submit one claimed run; a submission the scheduler refuses fails the run (the sweep goes on)."""
        runner = self.runner
        try:
            handle = self.launcher.submit(run.kind, runner.work.in_worker, run, runner.mask_dir_of(run))
        except Exception as e:  # e.g. sbatch: invalid partition
            rows.fail(self.store, run.id, f"submission failed: {error_text(e)}", {"code": code_version()})
            result.failed.append(run.id)
            self.log(f"    {run.kind} {run.name}: submission FAILED: {error_text(e).splitlines()[-1]}")
            return None
        self.store.set_job(run.id, handle.job_id, handle.log, retry=retry)
        self.log(f"    {run.kind} {run.name} -> job {handle.job_id}")
        return handle

    def _adopt(self, run: Run, previous) -> Handle | None:
        """A job of an earlier coordinator of this sweep that is still queued or running (Slurm)."""
        if previous is None or previous.status != "running" or not previous.job:
            return None
        handle = self.launcher.attach(run.kind, previous.job)
        if handle is not None:
            self.store.set_job(run.id, handle.job_id, handle.log)
            self.log(f"    {run.kind} {run.name}: job {handle.job_id} still runs; waiting for it")
        return handle

    def _record(self, run: Run, handle: Handle, outcome: Outcome, result: SweepResult, t0: float) -> None:
        """Store what a launched run handed back: its metrics, or its error and log."""
        value = outcome.value if outcome.ok else {"error": outcome.value}
        job = {
            "job": handle.job_id,
            "log": outcome.log,
            "launcher": f"submitit-{handle.job.__class__.__name__}",
        }
        where = {k: value[k] for k in ("host", "device", "pid", "started") if k in value}  # the worker's
        if "metrics" in value:
            try:
                provenance = {**self._provenance(run, value["metrics"]), **where, **job}
                provenance["wall_s"] = value.get("wall_s")
                metrics = rows.finish(self.store, run.id, value["metrics"], provenance)
            except Exception as e:  # e.g. the mask it reports is not there
                value = {"error": error_text(e)}
            else:
                result.ran.append(run.id)
                self.log(f"    {run.name} done in {time.perf_counter() - t0:.1f}s{summary(run, metrics)}")
                return
        error = f"{value['error']}\n(log: {outcome.log})"
        rows.fail(self.store, run.id, error, {"code": code_version(), **where, **job})
        result.failed.append(run.id)
        self.log(f"    {run.name} FAILED: {value['error'].strip().splitlines()[-1]} (log: {outcome.log})")
