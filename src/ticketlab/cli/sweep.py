"""Run a grid of mask searches and fine-tunings described by a YAML spec, resumably.

The spec names the base model, the corpus, the tasks and their data, the methods (full, omp, random,
imp, imp-task, tamt-mlm, tamt-kd, tamt-mlm+kd, st-random, wanda, sparsegpt), sparsities, search and
fine-tuning seeds, step budgets and the optional studies (pre-training loss, search-cost curve,
data-scarcity curve).
The sweep expands it into runs, searches each mask once (imp-task: once per source task) and
fine-tunes it on every task, and records everything in OUT/results.sqlite. Interrupt it at any
moment and run the same command again: finished runs are kept, nothing finished is repeated. Two
sweeps on the same OUT share the work. At the end it writes the report (OUT/report/report.md) and
exits 1 if a run failed.

Runs execute in this process, one at a time, unless --jobs N runs N at once in local subprocesses
(one GPU each) or --launcher slurm submits one Slurm job per run (through submitit, the extra
`pip install 'ticketlab[slurm]'` both need; resources per run kind from the spec's `resources:` block
or the flags). Then this process coordinates: it submits
what is ready (searches before the fine-tunings that need their masks), records what comes back in
OUT/results.sqlite (the workers never touch it), resubmits a job killed without a result (--retries)
and must keep running until the end; rerun it to resume. Job logs: OUT/jobs/<job id>_0_log.out.

Examples (examples/synthetic-sweep.yaml runs on what ships, after the tutorial's data step;
examples/sweep.yaml is the commented template of a larger study, its corpus and tasks from the hub:
offline, point them at local copies):
  ticketlab sweep examples/synthetic-sweep.yaml --out sweeps/synthetic --dry-run  # the plan, what is done
  ticketlab sweep examples/synthetic-sweep.yaml --out sweeps/synthetic
  ticketlab sweep examples/synthetic-sweep.yaml --out sweeps/synthetic --jobs 2   # 2 at once
  ticketlab sweep --status sweeps/synthetic   # queued/running/done/failed
  ticketlab sweep examples/sweep.yaml --out sweeps/tamt --launcher slurm --partition gpu \\
      --gpus 1 --cpus 8 --mem 32 --time 240
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import ticketlab as tl

from .. import studies
from ..core.checks import CPUS_RANGE, GPUS_RANGE, MEM_GB_RANGE, TIME_MIN_RANGE
from ..core.errors import TicketlabError
from ..studies.records import KINDS, STALE_AFTER
from .common import at_least, int_value, positive_float, within

if TYPE_CHECKING:
    from ..studies.sweep.launchers import SubmititLauncher


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC.yaml", nargs="?", help="the sweep spec")
    p.add_argument(
        "--status",
        metavar="DIR",
        help="show the runs of the sweep in DIR (queued, running, done, failed, with job ids); run nothing",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="sweep directory (default: the spec's `output`, else sweeps/<spec name>)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the plan and what is already done; run nothing"
    )
    p.add_argument("--max-runs", type=at_least(1), default=None, metavar="N", help="stop after N runs")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    _add_run_choice(p)
    _add_where(p.add_argument_group("where the runs execute"))
    _add_resources(
        p.add_argument_group("resources per run (override the spec's `resources:` for every run kind)")
    )


def _add_run_choice(p: argparse.ArgumentParser) -> None:
    """Which of the plan's runs this process starts, and when it takes over another's."""
    p.add_argument(
        "--only",
        action="append",
        choices=KINDS,
        metavar="KIND",
        help="run only runs of this kind (search, pretrain-eval, finetune; repeatable): e.g. the searches "
        "where the GPUs are, or, on a machine that stops before a search would end, only what finishes "
        "(a search resumes from its checkpoints only where they are)",
    )
    p.add_argument(
        "--runs",
        action="append",
        metavar="PATTERN",
        help="run only runs whose name matches this shell pattern (repeatable; with --only, both must "
        "hold): e.g. 'tamt-kd_s70_seed[0-2]', three searches before the plan's order reaches them; "
        "their fine-tunings are 'ft_*_tamt-kd_s70_seed[0-2]_*'; with --dry-run, the runs chosen are "
        "listed (--dry-run --runs '*': every run's name)",
    )
    p.add_argument(
        "--start-for",
        type=positive_float,
        default=None,
        metavar="MINUTES",
        help="start runs for this many minutes only, then let those under way finish and stop (a "
        "machine or allocation with a fixed end: no run is cut off half-way)",
    )
    p.add_argument(
        "--stale-after",
        type=positive_float,
        default=STALE_AFTER,
        metavar="SECONDS",
        help="a run claimed by a process on another machine that has not reported for this long is "
        f"taken over (default {STALE_AFTER:g}; on this machine, a dead process's runs are taken over at "
        "once)",
    )


def _add_where(g: argparse._ArgumentGroup) -> None:
    """Where the runs execute: here, in local subprocesses, or as Slurm jobs."""
    g.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default="local",
        help="local: on this machine (default); slurm: one sbatch job per run through submitit, this "
        "process coordinating (it alone writes results.sqlite)",
    )
    g.add_argument(
        "--jobs",
        type=at_least(1),
        default=None,
        metavar="N",
        help="local: N runs at once in subprocesses, each with its own GPU (CUDA_VISIBLE_DEVICES) when "
        "there are GPUs (default 1: in this process); slurm: at most N jobs queued at once (default: "
        "no limit)",
    )
    g.add_argument(
        "--retries",
        type=at_least(0),
        default=2,
        metavar="N",
        help="resubmit a killed job N times (default 2)",
    )


def _add_resources(r: argparse._ArgumentGroup) -> None:
    """What each run gets (GPUs, CPUs, memory, time, Slurm partition and setup lines)."""
    r.add_argument(
        "--gpus", type=within(GPUS_RANGE, int_value), metavar="N", help=f"GPUs per run ({GPUS_RANGE})"
    )
    r.add_argument(
        "--cpus", type=within(CPUS_RANGE, int_value), metavar="N", help=f"CPUs per run (Slurm; {CPUS_RANGE})"
    )
    r.add_argument(
        "--mem", type=within(MEM_GB_RANGE), metavar="GB", help=f"memory per run (Slurm; {MEM_GB_RANGE})"
    )
    r.add_argument(
        "--time",
        type=within(TIME_MIN_RANGE, int_value),
        metavar="MINUTES",
        help=f"time limit per run ({TIME_MIN_RANGE})",
    )
    r.add_argument("--partition", metavar="NAME", help="Slurm partition")
    r.add_argument(
        "--setup",
        action="append",
        metavar="LINE",
        help="a shell line every Slurm job runs before its run (e.g. 'module load cuda'); repeat for "
        "more; replaces the spec's `setup:`; --dry-run shows them",
    )


def sweep_dir(args: argparse.Namespace, spec) -> Path:
    return Path(args.out) if args.out is not None else spec.default_dir


def launcher(args: argparse.Namespace, spec, out: Path) -> SubmititLauncher | None:
    """None: runs here, one at a time; else the submitit launcher the flags ask for."""
    if args.launcher == "local" and (args.jobs or 1) == 1:
        return None
    flags = {"gpus": args.gpus, "cpus": args.cpus, "mem_gb": args.mem, "time_min": args.time}
    res = studies.resources(spec.resources, {**flags, "partition": args.partition, "setup": args.setup})
    gpus = studies.visible_gpus() if args.launcher == "local" else None
    return studies.SubmititLauncher(
        out / "jobs", cluster=args.launcher, jobs=args.jobs, resources=res, gpus=gpus
    )


def run(args: argparse.Namespace) -> int:
    if args.status is not None:
        print(studies.sweep_status(args.status))
        return 0
    if args.spec is None:
        raise TicketlabError("give a sweep spec (or --status DIR)")
    spec = studies.load_spec(args.spec)
    out = sweep_dir(args, spec)
    launched = launcher(args, spec, out.resolve())
    reason = launched.unavailable() if launched is not None and not args.dry_run else None
    if reason:  # before any work: no run would start
        raise TicketlabError(reason)
    if args.dry_run:  # checks only, no sweep made (a sweep makes the same checks in `run_sweep`)
        studies.check_sweep_inputs(spec, out)
        return _dry_run(args, spec, out, launched)
    result = studies.run_sweep(
        spec,
        out,
        max_runs=args.max_runs,
        stale_after=args.stale_after,
        launcher=launched,
        retries=args.retries,
        kinds=args.only,
        start_for=None if args.start_for is None else args.start_for * 60,
        names=args.runs,
    )
    print(
        f"\n{result.done}/{result.total} runs done ({len(result.ran)} in this sweep), "
        f"{len(result.failed)} failed, {len(result.blocked)} skipped because a run they need failed"
    )
    if line := result.unready_line():
        print(line)
    if not args.no_report:
        report = tl.write_report(out)
        print(f"\nreport: {report.path}\n\n{report.main_table}")
    if result.failed:
        print(f"\nfailed runs (errors in {out / 'results.sqlite'}; `ticketlab report {out} --run ID`):")
        for run_id in result.failed:
            print(f"  {run_id}  {result.names[run_id]}")
        return 1
    partial = args.max_runs or args.only or args.runs or args.start_for  # asked for part of the sweep
    return 0 if result.done == result.total or partial else 1


def _dry_run(args: argparse.Namespace, spec, out: Path, launched: SubmititLauncher | None) -> int:
    """The plan, what is already done and, with a launcher, each run kind's resources; writes nothing:
    the store, if there is one, is only read."""
    runner = studies.Runner(spec, out, log=print, dry_run=True)
    try:
        print(f"sweep '{spec.name}' in {runner.dir}: {len(runner.runs)} runs")
        print(runner.describe())
        if args.only or args.runs:
            print(runner.describe_chosen(args.only, args.runs))
        if launched is not None:
            print(f"launcher {args.launcher}, per run:")
            for kind, res in launched.resources.items():
                print(f"  {kind:<14} {res.sbatch(kind) if args.launcher == 'slurm' else res}")
                for line in res.setup if args.launcher == "slurm" else ():  # shell: shown as run
                    print(f"  {'':<14} setup line run in every job: {line}")
        runner.refuse_unpassable()  # after the plan: its lines say what each claim can reach
    finally:
        runner.store.close()
    return 0
