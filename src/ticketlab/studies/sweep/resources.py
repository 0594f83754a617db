"""What a sweep's runs ask the scheduler for, per run kind: the spec's `resources:` block and the
command line's flags, checked when the spec is read (a value that would break a Slurm job script is
refused there, before any run). Light on purpose: reading a spec must not import torch."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ...core.checks import CPUS_RANGE, GPUS_RANGE, MEM_GB_RANGE, TIME_MIN_RANGE, is_int, is_number
from ...core.errors import ConfigError, one_line, printable
from ..records import KINDS

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
            if v is not None and (not is_int(v) or v < 0):
                raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")
            if v is not None and not rng.holds(v):
                raise ConfigError(f"{name} must be {rng}, got {v}")
        mem = self.mem_gb
        if mem is not None and not is_number(mem):
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
        job_script_safe("partition", self.partition)
        job_script_safe("setup", self.setup)
        job_script_safe("slurm", self.slurm)

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


def job_script_safe(where: str, value: Any) -> None:
    """Refuse what would break out of its line in a job script: submitit quotes an sbatch value for
    the shell, but a newline in it (or in an option's name, written unquoted) starts a new line of
    the script, which the job runs as a command. Names must be sbatch option words."""
    if isinstance(value, str):
        printable(value, f"{where}:")
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not _SBATCH_KEY.fullmatch(k):
                raise ConfigError(f"{where}: {one_line(str(k))!r} is not an sbatch option name")
            job_script_safe(f"{where}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            job_script_safe(f"{where}[{i}]", v)


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
