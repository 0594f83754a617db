"""Running a sweep: expand the spec, record the plan in the store, run what is missing.

Searches run before the fine-tunings and evaluations that need their masks. Every run claims its row
in the store first, writes its artefacts atomically into the sweep directory (`masks/`, `runs/`) and
only then is marked done, so a sweep killed at any moment resumes where it was, and two sweeps on the
same directory share the work. A failed run is recorded with its error and the sweep goes on (runs
that need its mask are skipped); the result says what failed.

Runs execute here, one at a time (`Runner._run_here`, each through `rows.execute`, the executor the
studies share), or through a launcher (launchers.py: local
subprocesses, Slurm jobs), this process then coordinating (`Coordinator`, launched.py): it
alone writes the store (SQLite's locks are not safe on a cluster's network file system), submits what
is ready, keeps the heartbeats of what it submitted, and records what comes back; a worker (`Work`,
work.py) touches only files. A job killed without a result is submitted again; a rerun adopts the
Slurm jobs of a coordinator that died and resumes the rest.

A run's directory (`runs/<run>/`, a `RunDir`) is held by whoever executes it: a rerun that finds
it held by a live process (a worker of a killed coordinator that has not ended yet) waits for it
instead of failing the run, and a run whose `sweep_result.json` is there (it finished, its
coordinator died before recording it) is collected from that file, not run again.

Layout of a sweep directory:
    results.sqlite            the store (see store.py)
    spec.json                 the resolved spec of the last sweep started here
    spec.yaml                 the file of that spec, as written (a spec built in Python has none)
    masks/<run>/              final mask of each search run; masks/<run>.stepNNNNNN/ along the way
    runs/<run>/               work directory of each run (checkpoints, logs, sweep_result.json)
    jobs/                     launched runs: submitit's job files and logs (<job id>_0_log.out)

The provenance recorded with each run (code version, mask hashes) is provenance.py; what
`ticketlab sweep --status` prints, status.py.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable, Collection, MutableMapping
from pathlib import Path

from ...core.errors import ConfigError
from ...core.files.atomic import atomic_write_json
from ...core.outputs import refuse_links
from .. import rows
from ..records import KINDS, STALE_AFTER
from ..run_ids import Run
from ..store import Store
from . import adapters
from .adapters import FinetuneFn, PretrainEvalFn
from .claim_plans import describe_plans, plan_claims, refuse_unpassable
from .declaration import record_declaration
from .inputs import check_sweep_inputs, claim_sweep_dir, keep_spec_file
from .jobs import MethodSpec
from .launched import Coordinator
from .launchers import SubmititLauncher
from .methods import sweep_methods
from .plan import expand, input_keys
from .provenance import MASK_HASH, code_version, mask_hash
from .run_masks import SweepMasks
from .spec import spec_json
from .status import SweepResult, sweep_status
from .sweep_spec import SweepSpec
from .work import RESULT, Work, run_dir, summary

__all__ = [
    "MASK_HASH",
    "RESULT",
    "Runner",
    "SweepResult",
    "Work",
    "code_version",
    "mask_hash",
    "run_dir",
    "run_sweep",
    "sweep_status",
]

Log = Callable[[str], None]


# --------------------------------------------------------------------------- the runner


class Runner(SweepMasks):
    def __init__(
        self,
        spec: SweepSpec,
        sweep_dir: str | os.PathLike,
        *,
        finetune: FinetuneFn | None = None,
        pretrain_eval: PretrainEvalFn | None = None,
        stale_after: float = STALE_AFTER,
        heartbeat_every: float = 30.0,
        poll: float = 5.0,
        log: Log = print,
        dry_run: bool = False,
    ):
        """`dry_run`: plan and describe only; nothing is written (the store is read, if any)."""
        self.spec, self.dir = spec, Path(sweep_dir).resolve()
        self.methods: MutableMapping[str, MethodSpec] = (
            spec.registry if spec.registry is not None else sweep_methods()
        )
        self.finetune_fn = finetune or adapters.real_finetune
        self.pretrain_eval_fn = pretrain_eval or adapters.real_pretrain_eval
        self.heartbeat_every, self.poll, self.log = heartbeat_every, poll, log
        if not dry_run:  # a link in the sweep (`runs/` elsewhere) would take the runs out of it
            refuse_links(sweep_dir)
            self.dir.mkdir(parents=True, exist_ok=True)
        self.work = Work(spec, self.dir, self.methods, self.finetune_fn, self.pretrain_eval_fn)
        self.store = Store(self.dir, stale_after=stale_after, readonly=dry_run)
        self.runs = expand(spec)
        self._lost_hashes: dict[str, dict[str, str]] = {}  # searches re-run for lost masks: old hashes
        self._told_busy: set[str] = set()  # runs whose busy directory was reported
        self.may_start: Callable[[], bool] = lambda: True  # False: start no more runs (`run`'s start_for)

    # ------------------------------------------------------------------ planning
    def refuse_unpassable(self) -> None:
        """A declared claim its planned units cannot pass (`claim_plans.plan_claims`) is refused."""
        refuse_unpassable(self.spec)

    def todo(self) -> list[Run]:
        statuses = self.store.statuses()
        return [r for r in self.runs if statuses.get(r.id) != "done"]

    def describe(self) -> str:
        """The plan: how many runs of each kind, and how many are done."""
        statuses = self.store.statuses()
        lines = []
        for kind in KINDS:
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
        lines += describe_plans(plan_claims(self.spec))
        return "\n".join(lines)

    def describe_chosen(self, kinds: Collection[str] | None, names: Collection[str] | None) -> str:
        """The runs `--only` / `--runs` choose, in the order they would run: id, kind, name, status."""
        statuses = self.store.statuses()
        chosen = self.select(kinds, names)
        lines = [f"chosen by --only / --runs: {len(chosen)} runs"]
        lines += [f"  {r.id}  {r.kind:<14}{r.name}  {statuses.get(r.id, 'pending')}" for r in chosen]
        return "\n".join(lines)

    # ------------------------------------------------------------------ the loop
    def run(
        self,
        *,
        max_runs: int | None = None,
        launcher: SubmititLauncher | None = None,
        retries: int = 2,
        kinds: Collection[str] | None = None,
        start_for: float | None = None,
        names: Collection[str] | None = None,
    ) -> SweepResult:
        """Run what is missing: here, one run at a time, or through `launcher` (local subprocesses,
        Slurm), this process coordinating; a launched run killed without a result is retried
        `retries` times. `kinds` (search, pretrain-eval, finetune): run only runs of these kinds,
        e.g. the searches where GPUs are, or on a machine that stops before a search would end, only
        what finishes (a search's checkpoints do not outlive the machine). `names`: run only runs
        whose name (as the dry run lists them) matches one of these shell patterns, e.g.
        `tamt-kd_s70_seed[0-2]`: some runs before the plan's order reaches them. `start_for`: start
        runs for this many seconds only, then let those under way finish and return (a machine with
        a fixed end: no run is cut off half-way)."""
        until = None if start_for is None else time.monotonic() + start_for
        self.may_start = lambda: until is None or time.monotonic() < until
        chosen = self.select(kinds, names)
        reason = launcher.unavailable() if launcher is not None else None
        if reason:
            raise ConfigError(reason)
        self.refuse_unpassable()  # a declared claim no run could answer: before any run
        self._note_changed_inputs()  # reads the store's record of them first: a corrupt one, before any write
        self.store.add_runs(self.runs)
        as_json = spec_json(self.spec)
        atomic_write_json(self.dir / "spec.json", as_json)
        # before its first run; and before the spec it replaces is gone, which names that study's records
        record_declaration(self.store, as_json, [r.id for r in self.runs])
        self.store.set_meta("spec", as_json)
        self.store.set_meta("plan", [r.id for r in self.runs])  # what the report shows by default
        self._reopen_lost_masks()
        todo = self.todo()
        total = len(self.runs)
        self.log(
            f"sweep '{self.spec.name}' in {self.dir}: {total} runs, {total - len(todo)} already done, "
            f"{len(todo)} to run"
        )
        result = SweepResult(total=total, done=0, names={r.id: r.name for r in self.runs})
        if launcher is not None:
            Coordinator(self, launcher, retries, runs=chosen).run(result, max_runs)
        else:
            whole = kinds is None and names is None and max_runs is None and start_for is None
            self._run_here(result, max_runs, chosen, whole)
        result.settle(self.runs, chosen, self.store.statuses())
        return result

    def select(self, kinds: Collection[str] | None = None, names: Collection[str] | None = None) -> list[Run]:
        """The plan's runs of these `kinds` whose names match one of the shell patterns `names`
        (None: any); an unknown kind, or a pattern that matches none of those runs, is refused."""
        if kinds is not None and (unknown := set(kinds) - set(KINDS)):
            raise ConfigError(f"unknown run kind(s) {sorted(unknown)}: choose from {', '.join(KINDS)}")
        of_kind = [r for r in self.runs if kinds is None or r.kind in kinds]
        for pattern in names or ():
            if not any(fnmatch.fnmatchcase(r.name, pattern) for r in of_kind):
                example = f", e.g. {of_kind[0].name!r}" if of_kind else ""
                kind = f" of kind {', '.join(kinds)}" if kinds is not None else ""
                raise ConfigError(
                    f"no run{kind} of this sweep is named like {pattern!r} (`sweep --dry-run --runs "
                    f"'*'` lists the names{example})"
                )
        return [r for r in of_kind if names is None or any(fnmatch.fnmatchcase(r.name, p) for p in names)]

    def _run_here(self, result: SweepResult, max_runs: int | None, chosen: list[Run], whole: bool) -> None:
        """Run `chosen` one at a time. A run another live process holds is waited for only where this
        process needs it: a chosen run depends on it, or the whole sweep was asked for (and is said to
        be done at the end). Part of a sweep (`--only`, `--max-runs`, `--start-for`) leaves the other
        process's runs to it and returns, not idling a core until they end; nor does it wait on a
        chosen run whose input nobody is making (a search left for a later piece)."""
        total, attempted = len(self.runs), set()
        while (max_runs is None or len(result.ran) + len(result.failed) < max_runs) and self.may_start():
            statuses = self.store.statuses()
            needed = {d for r in chosen if statuses[r.id] != "done" for d in r.deps}
            progressed = waiting = busy = False
            for run in chosen:
                if run.id in attempted or (ready := self.ready(run, statuses)) is None:
                    continue
                if not ready:
                    if waiting or whole:  # decided: the input lookup below reads the store
                        waiting = True
                    elif statuses[run.id] == "running":  # held by another live process (ready() said so)
                        waiting = run.id in needed
                    else:
                        waiting = self.input_being_made(run, statuses)
                    continue
                if self.busy(run):
                    waiting = busy = True
                    continue
                n = sum(statuses[r.id] == "done" for r in self.runs) + len(result.failed) + 1
                if not self.execute(run, result, f"[{n}/{total}]"):
                    waiting = True  # another process has it, or has just finished it
                    continue
                attempted.add(run.id)
                progressed = True
                break  # re-read the store: other processes may have finished runs meanwhile
            if progressed:
                continue
            if waiting and (busy or any(self.store.held_elsewhere(r.id) for r in self.runs)):
                time.sleep(self.poll)  # another process is running what we need: wait for it
                continue
            break

    def ready(self, run: Run, statuses: dict[str, str]) -> bool | None:
        """Whether `run` may be taken now, as far as the store says (this process's loop and a
        launcher's coordinator ask alike): True; False, not yet (an input is not done, or another live
        sweep process holds it: left to it without a word); None, not in this sweep (done, or an input
        failed)."""
        deps = [statuses[d] for d in run.deps]
        if statuses[run.id] == "done" or "failed" in deps:
            return None
        if any(d != "done" for d in deps):
            return False
        return not (statuses[run.id] == "running" and self.store.held_elsewhere(run.id))

    def input_being_made(self, run: Run, statuses: dict[str, str]) -> bool:
        """Whether a live process holds one of the inputs of `run` (which is not ready): worth
        waiting for. An input nobody holds (a search left for a later piece) is not; only an input
        the store says is running is looked up again."""
        return any(statuses[d] == "running" and self.store.held_elsewhere(d) for d in run.deps)

    def busy(self, run: Run) -> bool:
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

    def execute(self, run: Run, result: SweepResult, counter: str) -> bool:
        """Run one row here (`rows.execute`); False: another process holds it or has finished it."""
        outcome = rows.execute(
            self.store,
            run,
            lambda: self.work(run, self.mask_dir_of(run)),
            provenance=lambda metrics: self.mask_provenance(run, metrics),
            on_start=lambda: self.log(f"{counter} {run.kind} {run.name} ..."),
            heartbeat_every=self.heartbeat_every,
            keep_going=True,  # one bad run must not sink a sweep
        )
        if outcome.status == "failed":
            result.failed.append(run.id)
            first = outcome.error.strip().splitlines()[-1] if outcome.error.strip() else "error"
            self.log(f"    FAILED after {outcome.wall_s:.1f}s: {first}")
        elif outcome.status == "ran":
            result.ran.append(run.id)
            self.log(f"    done in {outcome.wall_s:.1f}s{summary(run, outcome.metrics)}")
        return outcome.status in ("ran", "failed")

    def forget_busy(self, run_id: str) -> None:
        """Say it again when the run's directory is found held once more."""
        self._told_busy.discard(run_id)


def run_sweep(
    spec: SweepSpec,
    sweep_dir: str | os.PathLike,
    *,
    finetune: FinetuneFn | None = None,
    pretrain_eval: PretrainEvalFn | None = None,
    max_runs: int | None = None,
    launcher: SubmititLauncher | None = None,
    retries: int = 2,
    kinds: Collection[str] | None = None,
    start_for: float | None = None,
    names: Collection[str] | None = None,
    log: Log = print,
    **kw,
) -> SweepResult:
    """Run every missing run of `spec` in `sweep_dir`, here or through `launcher` (local
    subprocesses, Slurm jobs); see the module docstring. What the runs would refuse is refused first,
    and the directory claimed: a user's folder is never written into (`inputs.check_sweep_inputs`)."""
    check_sweep_inputs(spec, Path(sweep_dir))  # a folder not ours: refused before its store is read
    check_sweep_runs(spec, sweep_dir, launcher=launcher, kinds=kinds, names=names)
    claim_sweep_dir(spec, Path(sweep_dir))
    keep_spec_file(spec, Path(sweep_dir))
    runner = Runner(spec, sweep_dir, finetune=finetune, pretrain_eval=pretrain_eval, log=log, **kw)
    try:
        return runner.run(
            max_runs=max_runs,
            launcher=launcher,
            retries=retries,
            kinds=kinds,
            start_for=start_for,
            names=names,
        )
    finally:
        runner.store.close()


def check_sweep_runs(
    spec: SweepSpec,
    sweep_dir: str | os.PathLike,
    *,
    launcher: SubmititLauncher | None = None,
    kinds: Collection[str] | None = None,
    names: Collection[str] | None = None,
) -> None:
    """What `Runner.run` refuses before its first run (runs chosen that do not exist, a launcher that
    cannot start, a declared claim no run could answer), refused on
    a plan that writes nothing: a sweep refused leaves its directory as it was, or none."""
    plan = Runner(spec, sweep_dir, dry_run=True, log=lambda *_: None)
    try:
        plan.select(kinds, names)
        reason = launcher.unavailable() if launcher is not None else None
        if reason:
            raise ConfigError(reason)
        plan.refuse_unpassable()
    finally:
        plan.store.close()
