"""Where a sweep's runs execute when they leave the sweep's process: local subprocesses or Slurm jobs.

Both go through submitit: `--launcher local --jobs N` through `submitit.LocalExecutor` (real
subprocesses on this machine, N at once, each with its own CUDA_VISIBLE_DEVICES), `--launcher slurm`
through `submitit.SlurmExecutor` (one sbatch job per run, resources per run kind). The sweep's
process coordinates (runner.py): it alone writes results.sqlite; a worker runs one run, writes its
artefacts atomically into the sweep directory and hands its metrics back through submitit's result
file. A job that ends without a result (preempted, past its time limit, out of memory, killed) is
`killed` and is retried; one whose run raised is `failed`, with the error and its log.

A local worker dies with its coordinator (kill -9 included): otherwise it would run on, holding its
run's directory, and the rerun would find it busy. Its parent is submitit's controller, which
outlives the coordinator, so Linux's parent-death signal would not fire; the worker waits instead
on a lock file its coordinator holds (`.coordinator-<pid>.lock` in the jobs folder), which the
kernel releases when the coordinator ends, however it ends.

submitit is an extra (`pip install 'ticketlab[slurm]'`): a sweep that runs here, one run at a time,
needs none; a launcher refuses to be made without it, in one line, before any work.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...core.errors import ConfigError, TicketlabError
from ...core.files.owned import open_own
from ...core.memory import keep_freed_memory
from ...core.optional import optional_module
from ..records import KINDS
from .resources import Resources, job_script_safe


def _submitit() -> Any:
    """The submitit module (a launcher's runs are its jobs), or one line saying how to install it."""
    return optional_module("submitit", "slurm", "a sweep with --launcher slurm or --jobs N")


@dataclass
class Outcome:
    ok: bool
    value: Any  # the worker's return value when ok, else the error text
    killed: bool  # ended without a result (scheduler kill, time limit, preemption, a signal): retry
    log: str | None


@dataclass
class Handle:
    job: Any  # submitit.Job
    kind: str
    slot: int | None = None  # local: the GPU slot it holds

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    @property
    def log(self) -> str:
        return str(self.job.paths.stdout)


class SubmititLauncher:
    """Runs callables as submitit jobs: `cluster="slurm"` (sbatch) or `"local"` (subprocesses)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        cluster: str = "slurm",
        jobs: int | None = None,
        resources: dict[str, Resources] | None = None,
        gpus: list[int] | None = None,
    ):
        if cluster not in ("slurm", "local"):
            raise ConfigError(f"cluster must be slurm or local, got {cluster!r}")
        self._submitit = _submitit()
        if jobs is not None and jobs < 1:
            raise ConfigError(f"jobs must be >= 1, got {jobs}")
        self.folder, self.cluster = Path(folder), cluster
        if cluster == "slurm":  # its logs' paths are written into every job script
            job_script_safe("the sweep's jobs folder", str(self.folder))
        self.resources = resources or {k: Resources() for k in KINDS}
        self.gpus = list(gpus or [])
        if cluster == "slurm":
            self.capacity = jobs or 10**6  # Slurm queues what it cannot run yet
        else:
            self.capacity = jobs or max(1, len(self.gpus))  # local: at most `jobs` at once (one per GPU)
        self._free = list(range(self.capacity))  # local slots: each sees its own GPUs
        # Local runs without GPUs share the CPU: each gets its share of the cores, not torch's default
        # of all of them (N runs x all cores threads thrash; 2 one-thread runs on 2 cores do ~1.3x the
        # work of one two-thread run). None: leave torch's default.
        self.threads = (
            max(1, usable_cores() // self.capacity) if cluster == "local" and not self.gpus else None
        )
        self._guard: tuple[Path, int] | None = None  # local: the lock its workers watch (path, fd)

    def unavailable(self) -> str | None:
        """Why runs cannot be launched from here (None: they can); checked before any work."""
        if self.cluster == "slurm":
            missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
            if missing:
                return (
                    f"--launcher slurm: no {' or '.join(missing)} on PATH (Slurm is not installed "
                    "here); run the sweep on a Slurm login node, or use --launcher local"
                )
        return None

    def close(self) -> None:
        """Give back the lock local workers watch (call when no worker runs any more)."""
        if self._guard is not None:
            path, fd = self._guard
            self._guard = None
            path.unlink(missing_ok=True)
            os.close(fd)

    def _coordinator_lock(self) -> Path:
        """The lock this process holds while its local workers run (they end when it is free)."""
        if self._guard is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f".coordinator-{os.getpid()}.lock"
            fd = open_own(path, os.O_RDWR | os.O_CREAT, "coordinator lock", 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)  # ours alone: the file is named by our pid
            self._guard = (path, fd)
        return self._guard[0]

    # ------------------------------------------------------------------ executors
    def executor(self, kind: str, slot: int | None = None):

        res = self.resources[kind]
        if self.cluster == "slurm":
            ex = self._submitit.SlurmExecutor(folder=self.folder)
            ex.update_parameters(**res.sbatch(kind))
            return ex
        ex = self._submitit.LocalExecutor(folder=self.folder)
        want = 1 if res.gpus is None else res.gpus  # slot i sees GPUs i*want .. (i+1)*want-1
        visible = (
            [self.gpus[((slot or 0) * want + k) % len(self.gpus)] for k in range(want)] if self.gpus else []
        )
        ex.update_parameters(
            timeout_min=res.time_min,
            gpus_per_node=len(visible),
            visible_gpus=tuple(visible),
            stderr_to_stdout=True,
        )
        return ex

    def sbatch_script(self, kind: str) -> str:
        """The sbatch file a run of `kind` is submitted with (Slurm; what `--dry-run` prints)."""
        return self.executor(kind)._make_submission_file_text("<command>", "<uid>")

    # ------------------------------------------------------------------ jobs
    @property
    def free(self) -> int:
        return len(self._free) if self.cluster == "local" else self.capacity

    def submit(self, kind: str, fn: Callable[..., Any], *args: Any) -> Handle:
        slot = self._free.pop(0) if self.cluster == "local" else None
        fn, args = _worker, (self.threads, fn, *args)
        if self.cluster == "local":
            fn, args = _dies_with_coordinator, (str(self._coordinator_lock()), os.getpid(), fn, *args)
        try:
            job = self.executor(kind, slot).submit(fn, *args)
        except BaseException:
            if slot is not None:
                self._free.insert(0, slot)
            raise
        if self.cluster == "local":
            job._results_timeout_s = 2  # a local result file is there at once, or never
        return Handle(job, kind, slot)

    def poll(self, handle: Handle) -> Outcome | None:
        """None while the job is queued or running; then what became of it."""
        if not handle.job.done():
            return None
        self._release(handle)
        errors = self._submitit.core.utils
        try:
            return Outcome(True, handle.job.result(), False, handle.log)
        except errors.UncompletedJobError as e:
            return Outcome(False, _first_line(e), True, handle.log)
        except errors.FailedJobError as e:
            return Outcome(False, str(e), False, handle.log)

    def cancel(self, handle: Handle) -> None:
        self._release(handle)
        handle.job.cancel(check=False)

    def attach(self, kind: str, job_id: str) -> Handle | None:
        """A Slurm job a previous coordinator submitted, if it is still queued or running."""
        if self.cluster != "slurm" or not job_id:
            return None

        job = self._submitit.SlurmJob(folder=self.folder, job_id=job_id)
        if job.state in ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED"):
            return Handle(job, kind)
        return None

    def _release(self, handle: Handle) -> None:
        if handle.slot is not None and handle.slot not in self._free:
            self._free.append(handle.slot)
            handle.slot = None


def usable_cpus() -> set[int] | None:
    """The CPUs this process may run on (a cgroup's or Slurm's CPU limit, not the machine's); None
    where the platform does not say (no `sched_getaffinity`)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def usable_cores() -> int:
    """How many CPUs this process may run on (`usable_cpus`; else the machine's count)."""
    cpus = usable_cpus()
    return len(cpus) if cpus is not None else os.cpu_count() or 1


def _worker(threads: int | None, fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn` in a worker process (local or a Slurm job): its freed memory kept for the next step
    as in the `ticketlab` process (`core.memory`), and where given `threads` torch threads (its
    share of this machine's cores)."""
    keep_freed_memory()
    if threads is not None:
        torch.set_num_threads(threads)
    return fn(*args)


def _dies_with_coordinator(lock: str, coordinator: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn` in a local worker that ends as soon as the coordinator `lock` names is gone."""
    if os.getpid() != coordinator:  # in the coordinator's own process (tests): nothing to watch
        threading.Thread(target=_end_with, args=(lock,), daemon=True).start()
    return fn(*args)


def _end_with(lock: str) -> None:
    """Block until the coordinator's lock is free (it ended, or was killed), then end this process."""
    try:
        fd = open_own(lock, os.O_RDONLY, "lock")
        fcntl.flock(fd, fcntl.LOCK_SH)  # granted only once the coordinator's exclusive lock is gone
    except (OSError, TicketlabError):  # no lock file: the coordinator ended (and removed it) first
        pass
    print(
        "ticketlab: the sweep coordinator that launched this run is gone; stopping "
        "(run the sweep again to resume)",
        file=sys.stderr,
        flush=True,
    )
    os._exit(1)  # from a thread: nothing else ends the run at once


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return " ".join(lines[:2]) if lines else type(e).__name__


def visible_gpus() -> list[int]:
    """The GPUs this machine shows (CUDA_VISIBLE_DEVICES, else all that torch sees)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [int(g) for g in env.split(",") if g.strip().isdigit()]
    try:
        return list(range(torch.cuda.device_count()))
    except Exception:  # no CUDA build: no GPUs
        return []
