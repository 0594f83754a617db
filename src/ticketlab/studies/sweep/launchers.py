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
import math
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...core.checks import CPUS_RANGE, GPUS_RANGE, MEM_GB_RANGE, TIME_MIN_RANGE
from ...core.errors import ConfigError, TicketlabError, one_line, printable
from ...core.files.owned import open_own
from ...core.memory import keep_freed_memory
from ...core.optional import optional_module
from ..records import KINDS


def _submitit() -> Any:
    """The submitit module (a launcher's runs are its jobs), or one line saying how to install it."""
    return optional_module("submitit", "slurm", "a sweep with --launcher slurm or --jobs N")


RESOURCE_KEYS = ("gpus", "cpus", "mem_gb", "time_min", "partition", "setup", "slurm")
# sbatch option names are words with dashes; submitit writes a key unquoted after `#SBATCH --`.
_SBATCH_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
# What runs as shell in a job: only from `setup:` (or --setup), which the dry run shows line by line.
_SHELL_KEYS = ("setup", "teardown", "command")


@dataclass
class Resources:
    """What one run asks the scheduler for (Slurm), or the GPUs a local run sees."""

    gpus: int | None = None  # None: none on Slurm; locally one GPU per run when there are GPUs
    cpus: int | None = None
    mem_gb: float | None = None
    time_min: int = 24 * 60
    partition: str | None = None
    setup: list[str] = field(default_factory=list)  # shell lines every Slurm job runs before its run
    slurm: dict[str, Any] = field(default_factory=dict)  # other sbatch options: account, qos, constraint...

    def __post_init__(self) -> None:
        for name, rng in (("gpus", GPUS_RANGE), ("cpus", CPUS_RANGE), ("time_min", TIME_MIN_RANGE)):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")
            if v is not None and not rng.holds(v):
                raise ConfigError(f"{name} must be {rng}, got {v}")
        mem = self.mem_gb
        if mem is not None and (isinstance(mem, bool) or not isinstance(mem, (int, float))):
            raise ConfigError(f"mem_gb must be a number, got {mem!r}")
        if mem is not None and not MEM_GB_RANGE.holds(mem):
            raise ConfigError(f"mem_gb must be {MEM_GB_RANGE} (GB), got {mem!r}")
        if not isinstance(self.slurm, dict):
            raise ConfigError(f"slurm must be a mapping of sbatch options, got {self.slurm!r}")
        if not isinstance(self.setup, list) or not all(isinstance(x, str) for x in self.setup):
            raise ConfigError(f"setup must be a list of shell lines, got {self.setup!r}")
        for key in _SHELL_KEYS:
            if key in self.slurm:
                raise ConfigError(
                    f"slurm.{key}: shell lines for every job go in `setup:` (or --setup), which "
                    "--dry-run shows; not among the sbatch options"
                )
        _job_script_safe("partition", self.partition)
        _job_script_safe("setup", self.setup)
        _job_script_safe("slurm", self.slurm)

    def sbatch(self, kind: str) -> dict[str, Any]:
        """submitit.SlurmExecutor parameters: one task on one node, stdout and stderr in one log."""
        params: dict[str, Any] = {
            "job_name": f"ticketlab-{kind}",
            "time": self.time_min,
            "stderr_to_stdout": True,
        }
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.cpus:
            params["cpus_per_task"] = self.cpus
        if self.mem_gb:
            mem = self.mem_gb  # sbatch takes whole units: megabytes where it is no whole number of GB
            params["mem"] = f"{int(mem)}GB" if mem == int(mem) else f"{math.ceil(mem * 1024)}M"
        if self.partition:
            params["partition"] = self.partition
        if self.setup:
            params["setup"] = list(self.setup)
        return {**params, **self.slurm}


def _job_script_safe(where: str, value: Any) -> None:
    """Refuse what would break out of its line in a job script: submitit quotes an sbatch value for
    the shell, but a newline in it (or in an option's name, written unquoted) starts a new line of
    the script, which the job runs as a command. Names must be sbatch option words."""
    if isinstance(value, str):
        printable(value, f"{where}:")
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not _SBATCH_KEY.fullmatch(k):
                raise ConfigError(f"{where}: {one_line(str(k))!r} is not an sbatch option name")
            _job_script_safe(f"{where}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _job_script_safe(f"{where}[{i}]", v)


def resources(
    spec_block: dict[str, Any] | None, overrides: dict[str, Any] | None = None
) -> dict[str, Resources]:
    """Resources per run kind: the spec's `resources:` block (`default:` and one entry per kind,
    each with the keys of `Resources`), then the command line's flags (for every kind)."""
    block = dict(spec_block or {})
    unknown = set(block) - {"default", *KINDS}
    if unknown:
        raise ConfigError(f"resources: unknown run kind {sorted(unknown)[0]!r} (default, {', '.join(KINDS)})")
    out = {}
    for kind in KINDS:
        merged = {**(block.get("default") or {}), **(block.get(kind) or {})}
        merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
        bad = set(merged) - set(RESOURCE_KEYS)
        if bad:
            raise ConfigError(
                f"resources.{kind}: unknown key {sorted(bad)[0]!r} ({', '.join(RESOURCE_KEYS)})"
            )
        try:
            out[kind] = Resources(**merged)
        except ConfigError as e:
            raise ConfigError(f"resources.{kind}: {e}") from None
    return out


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
            _job_script_safe("the sweep's jobs folder", str(self.folder))
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
