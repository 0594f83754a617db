"""Running a sweep: expand the spec, record the plan in the store, run what is missing.

Searches run before the fine-tunings and evaluations that need their masks. Every run claims its row
in the store first, writes its artefacts atomically into the sweep directory (`masks/`, `runs/`) and
only then is marked done, so a sweep killed at any moment resumes where it was, and two sweeps on the
same directory share the work. A failed run is recorded with its error and the sweep goes on (runs
that need its mask are skipped); the result says what failed.

Runs execute here, one at a time (`Runner._run_here`), or through a launcher (launchers.py: local
subprocesses, Slurm jobs), this process then coordinating (`Runner._coordinate`): it alone writes
the store (SQLite's locks are not safe on a cluster's network file system), submits what is ready,
keeps the heartbeats of what it submitted, and records what comes back; a worker (`Work`) touches
only files. A job killed without a result is submitted again; a rerun adopts the Slurm jobs of a
coordinator that died and resumes the rest.

A run's directory (`runs/<run>/`, a `RunDir`) is held by whoever executes it: a rerun that finds
it held by a live process (a worker of a killed coordinator that has not ended yet) waits for it
instead of failing the run, and a run whose `sweep_result.json` is there (it finished, its
coordinator died before recording it) is collected from that file, not run again.

Layout of a sweep directory:
    results.sqlite            the store (see store.py)
    spec.json                 the resolved spec of the last sweep started here
    masks/<run>/              final mask of each search run; masks/<run>.stepNNNNNN/ along the way
    runs/<run>/               work directory of each run (checkpoints, logs, sweep_result.json)
    jobs/                     launched runs: submitit's job files and logs (<job id>_0_log.out)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError, TicketlabError
from ..files import atomic_write_json, read_json
from ..rundir import RunDir
from . import adapters
from .adapters import FinetuneFn, FinetuneJob, PretrainEvalFn, PretrainEvalJob
from .launchers import Handle, Outcome, SubmititLauncher
from .methods import METHODS, MethodSpec, SearchJob, base_method
from .plan import Run, expand, ids_outdated, input_keys, pct, rekey_store
from .spec import spec_json
from .store import HOST, RunRecord, Store
from .sweep_spec import SweepSpec

RESULT = "sweep_result.json"  # not result.json: the library functions may write theirs there


def run_dir(sweep_dir: Path, run: Run) -> RunDir:
    """A run's work directory `runs/<run>/`: its result is `sweep_result.json` ({"id", "config",
    "metrics"}); its checkpoints are those of the library function it calls, in the same folder."""
    return RunDir(sweep_dir / "runs" / run.dirname, "sweep run", result=RESULT, checkpoint=None)


Log = Callable[[str], None]


@dataclass
class SweepResult:
    total: int
    done: int  # done at the end (this sweep or before)
    ran: list[str] = field(default_factory=list)  # run ids finished by this sweep
    failed: list[str] = field(default_factory=list)  # failed in this sweep
    blocked: list[str] = field(default_factory=list)  # not run: a run they need failed
    names: dict[str, str] = field(default_factory=dict)  # run id -> readable name

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked and self.done == self.total


# --------------------------------------------------------------------------- provenance


_CODE: dict[str, Any] | None = None


def code_version() -> dict[str, Any]:
    """ticketlab's version and, when it runs from a git checkout, the commit and whether it is dirty."""
    global _CODE
    if _CODE is None:
        _CODE = {"ticketlab": __version__}
        src = Path(__file__).resolve().parent
        try:
            commit = subprocess.run(
                ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            )
            if commit.returncode == 0:
                dirty = subprocess.run(
                    ["git", "-C", str(src), "status", "--porcelain", "--", str(src.parent)],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                _CODE.update(git_commit=commit.stdout.strip(), git_dirty=bool(dirty.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    return _CODE


MASK_HASH = "sha256-mask:"  # of the content; "sha256:" in stores before: of the file's bytes


def _mask_hashes(provenance: dict[str, Any]) -> dict[str, str]:
    """A search's mask hashes by where they were saved: 'final', or the step."""
    out = {f"step {k}": v for k, v in (provenance.get("intermediate_hashes") or {}).items()}
    return {"final": provenance["mask_hash"], **out} if provenance.get("mask_hash") else out


def mask_hash(mask_dir: Path) -> str:
    """sha256 of a mask's content (names, shapes, packed bits): which mask exactly a result came from.
    Not of the file's bytes: safetensors writes its metadata in no fixed order, so one mask saved
    twice gives two files."""
    from safetensors import safe_open

    h = hashlib.sha256()
    with safe_open(mask_dir / "masks.safetensors", framework="pt") as f:
        h.update(json.dumps(json.loads(f.metadata()["shapes"]), sort_keys=True).encode())
        for name in sorted(f.keys()):
            h.update(name.encode() + b"\0" + f.get_tensor(name).numpy().tobytes())
    return MASK_HASH + h.hexdigest()


def _mask_sparsity(mask_dir: Path) -> float | None:
    cfg = read_json(mask_dir / "mask_config.json", "mask config")
    return cfg.get("achieved_sparsity") if isinstance(cfg, dict) else None


class _Heartbeat:
    """Refreshes a claimed run's heartbeat from a thread (with its own connection) while it runs."""

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

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


# --------------------------------------------------------------------------- the runner


class Runner:
    def __init__(
        self,
        spec: SweepSpec,
        sweep_dir: str | os.PathLike,
        *,
        finetune: FinetuneFn | None = None,
        pretrain_eval: PretrainEvalFn | None = None,
        stale_after: float = 600.0,
        heartbeat_every: float = 30.0,
        poll: float = 5.0,
        log: Log = print,
        dry_run: bool = False,
    ):
        """`dry_run`: plan and describe only; nothing is written (the store is read, if any)."""
        self.spec, self.dir = spec, Path(sweep_dir).resolve()
        self.methods: dict[str, MethodSpec] = spec.registry if spec.registry is not None else METHODS
        self.finetune_fn = finetune or adapters.real_finetune
        self.pretrain_eval_fn = pretrain_eval or adapters.real_pretrain_eval
        self._injected = {"finetune": finetune is not None, "pretrain-eval": pretrain_eval is not None}
        self.heartbeat_every, self.poll, self.log = heartbeat_every, poll, log
        if not dry_run:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.work = Work(spec, self.dir, self.methods, self.finetune_fn, self.pretrain_eval_fn)
        self.store = Store(self.dir, stale_after=stale_after, readonly=dry_run)
        if n := rekey_store(self.store):
            log(f"note: {n} runs of {self.store.path} re-keyed: ids no longer hash where the inputs lie")
        elif ids_outdated(self.store) and self.store.statuses():
            why = "a dry run writes nothing" if dry_run else "a run of it is live, or its data is gone"
            log(
                f"note: {self.store.path} holds run ids of an earlier ticketlab, not re-keyed ({why}): "
                "its finished runs show as pending until a sweep re-keys them"
            )
        self.runs = expand(spec)
        self._lost_hashes: dict[str, dict[str, str]] = {}  # searches re-run for lost masks: old hashes
        self._told_busy: set[str] = set()  # runs whose busy directory was reported

    # ------------------------------------------------------------------ planning
    def check_available(self, todo: list[Run]) -> None:
        """Fail before starting anything if a method or step this sweep needs is not installed."""
        problems = []
        for method in {r.config["method"] for r in todo if r.kind == "search"}:
            reason = self.methods[base_method(method)].available()
            if reason:
                problems.append(f"{method}: {reason}")
        for kind, check in (
            ("finetune", adapters.finetune_unavailable),
            ("pretrain-eval", adapters.pretrain_eval_unavailable),
        ):
            if not self._injected[kind] and any(r.kind == kind for r in todo):
                reason = check()
                if reason:
                    problems.append(reason)
        if problems:
            raise ConfigError(f"{self.spec.source}: cannot run this sweep here: " + "; ".join(problems))

    def todo(self) -> list[Run]:
        statuses = self.store.statuses()
        return [r for r in self.runs if statuses.get(r.id) != "done"]

    def describe(self) -> str:
        """The plan: how many runs of each kind, and how many are done."""
        statuses = self.store.statuses()
        lines = []
        for kind in ("search", "pretrain-eval", "finetune"):
            have = [statuses.get(r.id, "pending") for r in self.runs if r.kind == kind]
            if have:
                counts = ", ".join(
                    f"{have.count(s)} {s}" for s in ("done", "running", "pending", "failed") if s in have
                )
                lines.append(f"  {kind:<14} {len(have):>5} runs  {counts}")
        if lost := self._lost_masks():
            lines.append(
                f"  {len(lost)} done search(es) will run again: runs to do need their masks, "
                "whose files are gone"
            )
        for method in self.spec.methods:  # a per-task method's searches are not one per sparsity x seed
            sources = self.spec.sources(method)
            if sources:
                n = sum(r.kind == "search" and r.config["method"] == method for r in self.runs)
                lines.append(
                    f"  {method}: {n} searches on source tasks {', '.join(sources)}, each mask fine-tuned "
                    f"on every task ({', '.join(self.spec.tasks)})"
                )
        return "\n".join(lines)

    # ------------------------------------------------------------------ the loop
    def run(
        self, *, max_runs: int | None = None, launcher: SubmititLauncher | None = None, retries: int = 2
    ) -> SweepResult:
        """Run what is missing: here, one run at a time, or through `launcher` (local subprocesses,
        Slurm), this process coordinating; a launched run killed without a result is retried
        `retries` times."""
        reason = launcher.unavailable() if launcher is not None else None
        if reason:
            raise ConfigError(reason)
        self.store.add_runs(self.runs)
        as_json = spec_json(self.spec)
        atomic_write_json(self.dir / "spec.json", as_json)
        self.store.set_meta("spec", as_json)
        self.store.set_meta("plan", [r.id for r in self.runs])  # what the report shows by default
        self._note_changed_inputs()
        self._reopen_lost_masks()
        todo = self.todo()
        self.check_available(todo)
        total = len(self.runs)
        self.log(
            f"sweep '{self.spec.name}' in {self.dir}: {total} runs, {total - len(todo)} already done, "
            f"{len(todo)} to run"
        )
        result = SweepResult(total=total, done=0, names={r.id: r.name for r in self.runs})
        if launcher is not None:
            self._coordinate(launcher, result, max_runs, retries)
        else:
            self._run_here(result, max_runs)
        statuses = self.store.statuses()
        result.done = sum(statuses[r.id] == "done" for r in self.runs)
        result.blocked = [
            r.id
            for r in self.runs
            if statuses[r.id] != "done" and any(statuses[d] == "failed" for d in r.deps)
        ]
        return result

    def _run_here(self, result: SweepResult, max_runs: int | None) -> None:
        total, attempted = len(self.runs), set()
        while max_runs is None or len(result.ran) + len(result.failed) < max_runs:
            statuses = self.store.statuses()
            progressed = waiting = busy = False
            for run in self.runs:
                if statuses[run.id] == "done" or run.id in attempted:
                    continue
                deps = [statuses[d] for d in run.deps]
                if any(d == "failed" for d in deps):
                    continue
                if any(d != "done" for d in deps):
                    waiting = True
                    continue
                if self._busy(run):
                    waiting = busy = True
                    continue
                if not self.store.claim(run.id):
                    waiting = True
                    continue
                attempted.add(run.id)
                n = sum(statuses[r.id] == "done" for r in self.runs) + len(result.failed) + 1
                self._execute(run, result, f"[{n}/{total}]")
                progressed = True
                break  # re-read the store: other processes may have finished runs meanwhile
            if progressed:
                continue
            if waiting and (busy or any(self.store.held_elsewhere(r.id) for r in self.runs)):
                time.sleep(self.poll)  # another process is running what we need: wait for it
                continue
            break

    def _busy(self, run: Run) -> bool:
        """Whether another live process holds the run's directory (a worker of a coordinator that
        was killed, still running): the run is waited for, not failed; said once."""
        work = run_dir(self.dir, run)
        holder = work.holder()
        if holder is not None and run.id not in self._told_busy:
            self._told_busy.add(run.id)
            self.log(
                f"    {run.name}: {work.path} is in use by {holder} (a worker of "
                "a sweep that was stopped?); waiting for it to end, then its result is collected "
                "(end that process to run it here instead)"
            )
        return holder is not None

    def _note_changed_inputs(self) -> None:
        """Say which input changed since the last sweep here: its runs have new ids and run again."""
        keys = input_keys(self.spec, corpus="all")
        old = self.store.get_meta("inputs")
        changed = [k for k in keys if old is not None and k in old and old[k] != keys[k]]
        if changed:
            names = {"model": f"the model {self.spec.model}", "corpus": "the corpus"}
            self.log(
                f"note: {' and '.join(names[k] for k in changed)} changed since the last sweep in "
                f"{self.dir}: the runs that read it are run again"
            )
        self.store.set_meta("inputs", keys)

    def _lost_masks(self) -> dict[str, RunRecord]:
        """The done searches (id -> their store record) whose mask files are gone while a run still
        to do needs one of them: a sweep carried to another machine by its results.sqlite alone
        (masks are large)."""
        statuses = self.store.statuses()
        needed: dict[str, set[int | None]] = {}  # search id -> the steps of its masks still needed
        for r in self.runs:
            if statuses.get(r.id) != "done" and r.kind != "search" and r.config.get("mask") is not None:
                needed.setdefault(r.config["mask"]["search"], set()).add(r.config["mask"]["step"])
        lost = {}
        for run in self.runs:
            if run.id not in needed or statuses.get(run.id) != "done":
                continue
            rec = self.store.get(run.id)
            dirs = {
                None: rec.metrics["mask_dir"],
                **{i["step"]: i["mask_dir"] for i in rec.metrics["intermediate"]},
            }
            if not all(
                step in dirs and (self.dir / dirs[step] / "masks.safetensors").is_file()
                for step in needed[run.id]
            ):
                lost[run.id] = rec
        return lost

    def _reopen_lost_masks(self) -> None:
        """Run again each done search whose masks are gone and still needed (`_lost_masks`)."""
        by_id = {r.id: r for r in self.runs}
        for run_id, rec in self._lost_masks().items():
            run = by_id[run_id]
            run_dir(self.dir, run).forget()  # or Work returns it
            if self.store.reopen(run.id, finished=rec.finished):  # not if another sweep just re-ran it
                self.log(f"note: masks of {run.name} are gone: it runs again for the runs that need them")
                self._lost_hashes[run.id] = _mask_hashes(rec.provenance)

    def _check_refound(self, run: Run, provenance: dict[str, Any]) -> None:
        """Say so when a search re-run for lost masks made other masks than the done runs used."""
        old = self._lost_hashes.pop(run.id, None)
        if old is None:
            return
        new = _mask_hashes(provenance)
        # Hashes of another kind (runs recorded before masks were hashed by content) say nothing.
        differ = [k for k, h in old.items() if h.startswith(MASK_HASH) and new.get(k) not in (None, h)]
        if differ:
            self.log(
                f"warning: the re-run of {run.name} found other masks than before (at {', '.join(differ)}): "
                "the runs done before used the old ones (their provenance's mask_hash tells which)"
            )

    def _execute(self, run: Run, result: SweepResult, counter: str) -> None:
        self.log(f"{counter} {run.kind} {run.name} ...")
        t0, started = time.perf_counter(), time.time()
        try:
            with _Heartbeat(self.store.path, run.id, self.heartbeat_every):
                metrics = self.work(run, self.mask_dir_of(run))
                provenance = self._provenance(run, metrics, started, time.perf_counter() - t0)
                metrics = {k: v for k, v in metrics.items() if k != "history"}
            self.store.finish(run.id, metrics, provenance)
        except KeyboardInterrupt:
            self.store.release(run.id)
            raise
        except Exception as e:  # record and go on: one bad run must not sink a sweep
            msg = _error_text(e)
            self.store.fail(run.id, msg, {"code": code_version(), "host": HOST, "started": started})
            result.failed.append(run.id)
            first = msg.strip().splitlines()[-1] if msg.strip() else type(e).__name__
            self.log(f"    FAILED after {time.perf_counter() - t0:.1f}s: {first}")
            return
        result.ran.append(run.id)
        self.log(f"    done in {time.perf_counter() - t0:.1f}s{_summary(run, metrics)}")

    # ------------------------------------------------------------------ launched runs
    def _coordinate(
        self, launcher: SubmititLauncher, result: SweepResult, max_runs: int | None, retries: int
    ) -> None:
        """Submit every run whose masks are there, as many at once as the launcher takes; record
        what comes back. Only this process writes the store: it claims the runs it submits and
        keeps their heartbeats while they are queued or running."""
        inflight: dict[str, tuple[Run, Handle, float]] = {}
        tries: dict[str, int] = {}  # submissions per run in this sweep
        beat = time.monotonic()
        try:
            while True:
                self._collect(launcher, inflight, tries, retries, result)
                waiting, busy = self._submit_ready(launcher, inflight, tries, max_runs, result)
                elsewhere = waiting and (busy or any(self.store.held_elsewhere(r.id) for r in self.runs))
                if not inflight and not elsewhere:
                    break
                if time.monotonic() - beat > self.heartbeat_every:
                    for run_id in inflight:
                        self.store.heartbeat(run_id)
                    beat = time.monotonic()
                time.sleep(self.poll)
        except BaseException:  # Ctrl-C, or an error (a full disk): local workers end with us
            for run, handle, _ in inflight.values():
                if launcher.cluster == "local":  # Slurm jobs run on; the next sweep adopts them
                    launcher.cancel(handle)
                    with contextlib.suppress(TicketlabError):
                        self.store.release(run.id)
            raise
        finally:
            launcher.close()

    def _collect(self, launcher, inflight: dict, tries: dict, retries: int, result: SweepResult) -> None:
        """Record the jobs that ended; submit again those killed without a result."""
        for run_id, (run, handle, t0) in list(inflight.items()):
            outcome = launcher.poll(handle)
            if outcome is None:
                continue
            del inflight[run_id]
            if outcome.ok and "busy" in outcome.value:  # its directory was held: wait, do not fail
                self.store.release(run_id)
                del tries[run_id]
                self._told_busy.discard(run_id)
            elif outcome.killed and tries[run_id] <= retries:
                self.log(f"    {run.name}: job {handle.job_id} ended without a result; retrying")
                retry = self._submit(launcher, run, result, retry=True)
                if retry is not None:
                    inflight[run_id], tries[run_id] = (run, retry, t0), tries[run_id] + 1
            else:
                self._record(run, handle, outcome, result, t0)

    def _submit_ready(
        self, launcher, inflight: dict, tries: dict, max_runs: int | None, result: SweepResult
    ) -> tuple[bool, bool]:
        """Claim and submit the runs whose inputs are done, while the launcher takes more; collect
        those finished but not recorded. Returns whether some wait for runs not done yet, and
        whether some wait for a directory another process holds."""
        statuses, waiting, busy = self.store.statuses(), False, False
        for run in self.runs:
            if launcher.free == 0 or (max_runs is not None and len(tries) >= max_runs):
                break
            if statuses[run.id] == "done" or run.id in tries:
                continue
            deps = [statuses[d] for d in run.deps]
            if any(d == "failed" for d in deps):
                continue
            if any(d != "done" for d in deps):
                waiting = True  # its mask is not there yet
                continue
            previous = self.store.get(run.id)
            adoptable = launcher.cluster == "slurm" and previous is not None and previous.job
            if not adoptable and self._busy(run):  # (a Slurm job of ours holding it is adopted)
                waiting = busy = True
                continue
            if not self.store.claim(run.id):
                waiting = True  # another coordinator has it
                continue
            tries[run.id] = 1
            handle = self._adopt(launcher, run, previous)
            if handle is None and self._collect_saved(run, result):
                continue
            handle = handle or self._submit(launcher, run, result)
            if handle is not None:
                inflight[run.id] = (run, handle, time.perf_counter())
        return waiting, busy

    def _collect_saved(self, run: Run, result: SweepResult) -> bool:
        """Record a claimed run whose result file is there (it finished, its coordinator died
        before recording it) without launching it again; False: nothing usable there."""
        work = run_dir(self.dir, run)
        saved = work.file(work.result)
        if not saved.is_file():
            return False
        try:
            metrics = work.finished()["metrics"]
            provenance = {**self._provenance(run, metrics, 0.0, 0.0), "collected": str(saved)}
            metrics = {k: v for k, v in metrics.items() if k != "history"}
        except Exception:  # e.g. its mask is gone: a worker runs it and reports why
            return False
        self.store.finish(run.id, metrics, provenance)
        result.ran.append(run.id)
        self.log(f"    {run.name}: finished before, collected from {saved}{_summary(run, metrics)}")
        return True

    def _submit(
        self, launcher: SubmititLauncher, run: Run, result: SweepResult, *, retry: bool = False
    ) -> Handle | None:
        """Submit one claimed run; a submission the scheduler refuses fails the run (the sweep goes on)."""
        try:
            handle = launcher.submit(run.kind, self.work.in_worker, run, self.mask_dir_of(run))
        except Exception as e:  # e.g. sbatch: invalid partition
            self.store.fail(run.id, f"submission failed: {_error_text(e)}", {"code": code_version()})
            result.failed.append(run.id)
            self.log(f"    {run.kind} {run.name}: submission FAILED: {_error_text(e).splitlines()[-1]}")
            return None
        self.store.set_job(run.id, handle.job_id, handle.log, retry=retry)
        self.log(f"    {run.kind} {run.name} -> job {handle.job_id}")
        return handle

    def _adopt(self, launcher: SubmititLauncher, run: Run, previous) -> Handle | None:
        """A job of an earlier coordinator of this sweep that is still queued or running (Slurm)."""
        if previous is None or previous.status != "running" or not previous.job:
            return None
        handle = launcher.attach(run.kind, previous.job)
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
        where = {k: value[k] for k in ("host", "pid", "started") if k in value}
        if "metrics" in value:
            try:
                provenance = {**self._provenance(run, value["metrics"], 0.0, 0.0), **where, **job}
                provenance["wall_s"] = value.get("wall_s")
                metrics = {k: v for k, v in value["metrics"].items() if k != "history"}
                self.store.finish(run.id, metrics, provenance)
            except Exception as e:  # e.g. the mask it reports is not there
                value = {"error": _error_text(e)}
            else:
                result.ran.append(run.id)
                self.log(f"    {run.name} done in {time.perf_counter() - t0:.1f}s{_summary(run, metrics)}")
                return
        error = f"{value['error']}\n(log: {outcome.log})"
        self.store.fail(run.id, error, {"code": code_version(), **where, **job})
        result.failed.append(run.id)
        self.log(f"    {run.name} FAILED: {value['error'].strip().splitlines()[-1]} (log: {outcome.log})")

    def _provenance(self, run: Run, metrics: dict[str, Any], started: float, wall: float) -> dict[str, Any]:
        prov: dict[str, Any] = {
            "code": code_version(),
            "host": HOST,
            "pid": os.getpid(),
            "started": started,
            "wall_s": round(wall, 3),
        }
        if run.kind == "search":
            prov["mask_hash"] = mask_hash(self.dir / metrics["mask_dir"])
            prov["intermediate_hashes"] = {
                str(i["step"]): mask_hash(self.dir / i["mask_dir"]) for i in metrics["intermediate"]
            }
            self._check_refound(run, prov)
        elif run.config["mask"] is not None:
            prov["mask_dir"] = str(self.mask_dir_of(run).relative_to(self.dir))
            prov["mask_hash"] = mask_hash(self.mask_dir_of(run))
        return prov

    def mask_dir_of(self, run: Run) -> Path | None:
        """The mask directory a fine-tuning / evaluation run uses (None: the dense model, a search)."""
        ref = run.config.get("mask")
        if ref is None:
            return None
        search = self.store.get(ref["search"])
        if search is None or search.status != "done":
            raise TicketlabError(f"the search run {ref['search']} that makes this mask is not done")
        if ref["step"] is None:
            return self.dir / search.metrics["mask_dir"]
        step = next(i for i in search.metrics["intermediate"] if i["step"] == ref["step"])
        return self.dir / step["mask_dir"]


class Work:
    """What executes one run: no store, only files, so it runs in the sweep's process or, pickled, in
    a worker's (a local subprocess, a Slurm job). It writes the run's artefacts into the sweep
    directory (`masks/`, `runs/<run>/`) and last `runs/<run>/sweep_result.json`, atomically, and
    returns the run's metrics; a run whose result file is there is not repeated."""

    def __init__(self, spec: SweepSpec, sweep_dir: Path, methods, finetune_fn, pretrain_eval_fn):
        self.spec, self.dir, self.methods = spec, sweep_dir, methods
        self.finetune_fn, self.pretrain_eval_fn = finetune_fn, pretrain_eval_fn

    def __call__(self, run: Run, mask_dir: Path | None) -> dict[str, Any]:
        with run_dir(self.dir, run).held() as work:  # a coordinator seeing it held waits (Runner._busy)
            done = work.finished()
            if done is not None:  # finished earlier but not recorded (killed in between)
                return done["metrics"]
            metrics = getattr(self, "_" + run.kind.replace("-", "_"))(run, work.path, mask_dir)
            work.finish({"id": run.id, "config": run.config, "metrics": metrics})
        return metrics

    def in_worker(self, run: Run, mask_dir: Path | None) -> dict[str, Any]:
        """The entry point of a launched job: the metrics and where they were made, or the error
        (a run that raises is failed, not retried: a retry would raise again)."""
        t0, started = time.perf_counter(), time.time()
        where = {"host": HOST, "pid": os.getpid(), "started": started}
        holder = run_dir(self.dir, run).holder()
        if holder is not None:  # another process runs it now: the coordinator waits for it
            return {"busy": holder, **where}
        try:
            metrics = self(run, mask_dir)
        except Exception as e:
            return {"error": _error_text(e), **where}
        return {"metrics": metrics, "wall_s": round(time.perf_counter() - t0, 3), **where}

    def _search(self, run: Run, work: Path, mask_dir: Path | None) -> dict[str, Any]:
        c = run.config
        job = SearchJob(
            model=c["model"],
            method=base_method(c["method"]),  # what runs; a variant label only adds settings
            sparsity=c["sparsity"],
            seed=c["seed"],
            steps=c["steps"],
            save_at=list(c["save_at"]),
            settings=self._settings(run),
            corpus=c["corpus"],
            mask_dir=self.dir / "masks" / run.dirname,
            work_dir=work,
            source=c.get("source"),
        )
        out = self.methods[job.method].search(job)
        if not (job.mask_dir / "mask_config.json").is_file():
            raise TicketlabError(f"{c['method']} finished without writing its mask to {job.mask_dir}")
        intermediate = []
        for i in sorted(out.intermediate, key=lambda i: i["step"]):
            path = Path(i["mask_dir"])
            intermediate.append(
                {
                    "step": int(i["step"]),
                    "mask_dir": str(path.resolve().relative_to(self.dir)),
                    "time_s": i.get("time_s"),
                    "achieved_sparsity": _mask_sparsity(path),
                }
            )
        missing = sorted(set(c["save_at"]) - {i["step"] for i in intermediate})
        if missing:
            raise TicketlabError(f"{c['method']} did not save the masks at steps {missing} it was asked for")
        return {
            "mask_dir": str(job.mask_dir.relative_to(self.dir)),
            "achieved_sparsity": _mask_sparsity(job.mask_dir),
            "steps": out.steps,
            "time_s": out.time_s,
            "intermediate": intermediate,
            **{k: v for k, v in out.metrics.items() if k not in ("mask_dir", "intermediate")},
        }

    def _settings(self, run: Run) -> dict[str, Any]:
        """The run's settings plus those of the spec left out of its identity (logging, checkpoints)."""
        c = run.config
        if run.kind == "search":
            full = self.spec.search_settings(c["method"])
            full.pop("steps", None)
        else:
            full = self.spec.finetune_settings(c["task_label"])
            full.pop("train_size", None)
        return {**full, **c["settings"]}

    def _finetune(self, run: Run, work: Path, mask_dir: Path | None) -> dict[str, Any]:
        c = run.config
        job = FinetuneJob(
            model=c["model"],
            mask_dir=mask_dir,
            task=c["task"],
            data=c["data"],
            seed=c["seed"],
            train_size=c["train_size"],
            settings=self._settings(run),
            out_dir=work,
        )
        return dataclasses.asdict(self.finetune_fn(job))

    def _pretrain_eval(self, run: Run, work: Path, mask_dir: Path | None) -> dict[str, Any]:
        c = run.config
        job = PretrainEvalJob(
            model=c["model"],
            mask_dir=mask_dir,
            corpus=c["corpus"],
            settings=c["settings"],
            out_dir=work,
        )
        return {k: float(v) for k, v in self.pretrain_eval_fn(job).items()}


def _error_text(e: BaseException) -> str:
    """A user error's message, or the traceback of anything else."""
    return str(e) if isinstance(e, TicketlabError) else "".join(traceback.format_exception(e)).strip()


def _summary(run: Run, m: dict[str, Any]) -> str:
    if run.kind == "finetune":
        return f" ({m['metric']} {m['score']:.4g})"
    if run.kind == "search":
        s = m.get("achieved_sparsity")
        return f" (sparsity {pct(s)}%, {m['steps']} steps)" if s is not None else ""
    return " (" + ", ".join(f"{k} {v:.4g}" for k, v in m.items() if k.endswith(("_loss", "_acc"))) + ")"


def run_sweep(
    spec: SweepSpec,
    sweep_dir: str | os.PathLike,
    *,
    finetune: FinetuneFn | None = None,
    pretrain_eval: PretrainEvalFn | None = None,
    max_runs: int | None = None,
    launcher: SubmititLauncher | None = None,
    retries: int = 2,
    log: Log = print,
    **kw,
) -> SweepResult:
    """Run every missing run of `spec` in `sweep_dir`, here or through `launcher` (local
    subprocesses, Slurm jobs); see the module docstring."""
    runner = Runner(spec, sweep_dir, finetune=finetune, pretrain_eval=pretrain_eval, log=log, **kw)
    try:
        return runner.run(max_runs=max_runs, launcher=launcher, retries=retries)
    finally:
        runner.store.close()


def sweep_status(sweep_dir: str | os.PathLike, *, limit: int = 20) -> str:
    """What `ticketlab sweep --status DIR` prints: counts per run kind and status, then the running
    and failed runs with their job ids and logs, and the next queued ones."""
    from .store import DB_NAME

    path = Path(sweep_dir)
    if not (path / DB_NAME).is_file():
        raise TicketlabError(f"{path}: no sweep here (no {DB_NAME})")
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
    for kind in ("search", "pretrain-eval", "finetune"):
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
            if status == "running" and r.started:
                line += f"  for {_duration(now - r.started)} on {r.host}"
            if r.log and status != "pending":
                line += f"\n      log: {r.log}"
            if status == "failed" and r.error:
                line += f"\n      error: {r.error.strip().splitlines()[0][:200]}"
            lines.append(line)
        if len(chosen) > limit:
            lines.append(f"  ... and {len(chosen) - limit} more")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
