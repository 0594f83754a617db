"""A super-ticket study's rows in its results store (`supertickets.py` runs the study): the store
and what a row needs (`Study`: config blocks in the layout of `studies.sweep.plan`, each row run by
`rows.execute`), the method names and keys in their identity, and the selection of the super ticket
from finished rows (`pick_super`, `super_picks`, read by reports and domain adaptation too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.digest import OMIT, run_identity
from ..methods.super_tickets.levels import KINDS
from ..tasks.registry import get_task
from . import rows
from .run_ids import make_run
from .store import Store
from .super_config import PROGRESS, SuperConfig
from .sweep.work import summary

log = logging.getLogger(__name__)

METHOD = {kind: f"st-{kind}" for kind in KINDS}  # the method names in the results store
IMPORTANCE_DIR, SUMMARY_FILE = "importance", "super.json"
ROW_KIND = {"search": "ticket", "finetune": "fine-tuning"}  # a row's kind as its progress line says it
progress = logging.getLogger(PROGRESS)  # the progress lines (the CLI prints them)
# FinetuneConfig fields the pipeline sets itself, or that are not part of a run's identity
OWN = {"model", "task", "data_dir", "mask", "seed", "train_samples", "save_model"}


@dataclass
class Study:
    """The store of OUT and what a row needs: config blocks in the layout of `studies.sweep.plan`."""

    config: SuperConfig
    out: Path
    store: Store
    plan: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)  # content keys of the model, task data, task file
    where: dict[str, str] = field(default_factory=dict)  # what each of them is, for a message
    total: int = 0  # the rows the study plans, for its progress lines ("[3/49] ...")

    def finetune_row(self, seed: int, what: dict[str, Any], deps: tuple[str, ...] = ()):
        ft = self.config.run_config(seed)
        spec = get_task(ft.task, ft.data_dir)
        windows = {} if spec.kind == "squad" else {"squad_windows": OMIT}  # as a fine-tuning's fingerprint
        settings = run_identity(ft, leave_out=OWN, values=windows)
        config = {
            "model": ft.model,
            "task": ft.task,
            "task_label": spec.id,
            "data": ft.data_dir,
            "seed": seed,
            "train_size": ft.train_samples,
            "settings": settings,
            "study": "super",
            **what,
        }
        name = f"ft_{spec.id}_{what['method']}" + (
            f"_l{round(what['sparsity'] * 100)}" if what["mask"] else ""
        )
        return make_run("finetune", f"{name}_ft{seed}", config, deps)

    def ticket_row(self, kind: str, level: float, seed: int, full_id: str):
        config = {
            "model": self.config.finetune.model,
            "method": METHOD[kind],
            "sparsity": level,
            "seed": seed,
            "steps": None,
            "save_at": [],
            # winning / losing tickets come from the importance of the seed's full model
            "settings": {
                "granularity": self.config.granularity,
                "importance_of": full_id,
                **units_key(self.config.units),
                **draw_key(kind, self.config.random_draw),
            },
            "corpus": None,
        }
        return make_run("search", f"{METHOD[kind]}_l{round(level * 100)}_seed{seed}", config, (full_id,))

    def execute(self, run, work: Callable[[Path], dict[str, Any]]) -> dict[str, Any] | None:
        """Run one row in its directory `runs/<run>/` (`rows.execute`) unless it is done (its
        metrics) or held by another live process (None)."""
        self.plan.append(run.id)
        counter = f"[{len(self.plan)}/{self.total or '?'}]"
        outcome = rows.execute(
            self.store,
            run,
            lambda: work(self.out / "runs" / run.dirname),
            inputs=rows.Inputs(self.out, self.inputs, self.where),
            # as a sweep says them: a line as each row starts, one when it has finished
            on_start=lambda: progress.info(f"{counter} {ROW_KIND[run.kind]} {run.name} ..."),
        )
        if outcome.status == "busy":
            log.warning("%s: running in another process; skipped here", run.name)
            return None
        if outcome.status == "ran":
            progress.info(f"    done in {outcome.wall_s:.1f}s{summary(run, outcome.metrics)}")
        return outcome.metrics


def draw_key(kind: str, draw: str) -> dict[str, str]:
    """A random ticket's draw in its identity (the other kinds draw nothing)."""
    return {"random_draw": draw} if kind == "random" else {}


def units_key(units: str) -> dict[str, str]:
    """The unit counts in a ticket's identity and the study's protocol."""
    return {"units": units}


def importance_key(config: SuperConfig) -> dict[str, str]:
    """The importance kind, in a full-model row's identity and the study's protocol."""
    return {"importance": config.importance}


@dataclass
class SuperPick:
    seed: int
    level: float  # the winning level with the best selection-part score
    score: float  # its score on the report part
    select_score: float
    run_id: str | None = None


def pick_super(rows: Sequence[tuple[int, float, float, float, str | None]]) -> dict[int, SuperPick]:
    """Per seed, the winning ticket with the best selection score from rows (seed, level,
    select score, report score, run id); ties go to the lower level (the larger ticket)."""
    best: dict[int, SuperPick] = {}
    for seed, level, sel, score, run_id in sorted(rows, key=lambda r: (r[0], r[1])):
        if seed not in best or sel > best[seed].select_score:
            best[seed] = SuperPick(seed, level, score, sel, run_id)
    return best


def super_picks(records: Sequence[Any]) -> dict[tuple[str, int], SuperPick]:
    """(task, seed) -> super ticket, from the finished `finetune` rows of a results store."""
    by_task: dict[str, list] = {}
    for r in records:
        c = r.config
        winning = r.kind == "finetune" and r.status == "done" and c.get("method") == METHOD["winning"]
        if winning and r.metrics.get("select_score") is not None:
            row = (c["seed"], c["sparsity"], r.metrics["select_score"], r.metrics["score"], r.id)
            by_task.setdefault(c["task_label"], []).append(row)
    return {(t, s): p for t, rows in by_task.items() for s, p in pick_super(rows).items()}
