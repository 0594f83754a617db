"""Reading a sweep's store back as tables: every number a report prints comes from here, with the
ids of the runs behind it. `load_results` reads the store's rows into a `tables.SweepResults`.

Scores are each fine-tuning run's score of its task's main metric on the 0-100 scale of
`ticketlab.tasks.metrics`, on data that did not choose the checkpoint (`reported_score`), pooled into cells
(`tables.py`) and compared (`paired.py`, `comparison.py`).

Which runs are the "main" grid: masks from the largest search budget of their (method, sparsity,
seed, settings) — smaller budgets and masks saved along a search are the search-cost curve — and,
per task, the training-set size with the most runs (ties: the whole training set, then the
largest) — the others are the data-scarcity curve.

A row the report cannot read (`unusable`) is left out with a warning, as one whose JSON does not
read. The store is read as it is, never written (a store of another ids scheme is refused by
`studies.store`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ...core.checks import defaults, is_number
from ...core.errors import TicketlabError
from ...tasks.evaluation import split_indices
from ...tasks.glue import load_examples
from ...tasks.registry import get_task
from ...tasks.scores import constant_score
from ...verbs.finetune_config import FinetuneConfig
from ..records import store_in
from ..store import RunRecord, Store
from ..sweep.declaration import study_declarations
from ..sweep.declared import CLAIMS_META
from ..sweep.methods import report_order
from .analyses import Analysis, spec_analyses
from .cells import AVG, Score, method_label
from .tables import SweepResults


def _ordered(names: Iterable[str], canonical: list[str]) -> list[str]:
    seen = list(dict.fromkeys(names))
    return [n for n in canonical if n in seen] + [n for n in seen if n not in canonical]


def _main_masks(searches: list[RunRecord]) -> set[tuple[str, None]]:
    """Final masks of the largest budget per (method, sparsity, seed, settings, corpus, model)."""
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for r in searches:
        c = r.config
        key = json.dumps([c["model"], method_label(c), c["sparsity"], c["seed"], c["settings"], c["corpus"]])
        groups[key].append(r)
    return {(max(g, key=lambda r: r.config["steps"] or 0).id, None) for g in groups.values()}


def _main_sizes(scores: list[Score]) -> dict[str, int | None]:
    out = {}
    for task in dict.fromkeys(s.task for s in scores):
        counts = Counter(s.train_size for s in scores if s.task == task)
        out[task] = max(counts, key=lambda n: (counts[n], n is None, n or 0))
    return out


def _reported_labels(labels: list[Any], settings: dict[str, Any]) -> list[Any]:
    """The labels of the dev examples a fine-tuning's score is read on: the first `eval_samples`,
    and of those the report part of its `select_fraction` split (`split_indices`, as the run cut it)."""
    default = defaults(FinetuneConfig)
    if (n := settings.get("eval_samples", default["eval_samples"])) is not None:
        labels = labels[:n]
    if (fraction := settings.get("select_fraction", default["select_fraction"])) is not None:
        _, report = split_indices(len(labels), fraction, settings.get("select_seed", default["select_seed"]))
        labels = [labels[i] for i in report]
    return labels


def _floors(records: Iterable[RunRecord], tasks: list[str]) -> dict[str, float]:
    """Each task's constant-predictor score on the examples its main metric is read on (the report
    part of a `select_fraction` split: on MRPC's 80% "all paraphrase" scores 67.8, on its whole dev
    set 68.4), from the data its fine-tunings read (a task whose data is not here gets none); AVG
    when every task has one."""
    out: dict[str, float] = {}
    tried: set[str] = set()  # each task's data is read once, found or not
    for r in records:
        label = r.config.get("task_label")
        if r.kind != "finetune" or r.status != "done" or label in tried or r.config.get("data") is None:
            continue
        tried.add(label)
        try:
            spec = get_task(r.config["task"], r.config["data"])
            if spec.kind == "squad":  # no constant answer to score
                continue
            dev = load_examples(spec, r.config["data"], spec.eval_splits[0])
        except Exception:  # moved or missing data: the report goes on without this floor
            continue
        floor = constant_score(
            r.metrics["metric"], _reported_labels(dev.labels, r.config.get("settings", {}))
        )
        if floor is not None:
            out[label] = floor
    if tasks and all(t in out for t in tasks):
        out[AVG] = sum(out[t] for t in tasks) / len(tasks)
    return out


# What the report takes from a row's config, by kind (and from a finished fine-tuning's metrics).
_NEEDS = {
    "search": ("method", "sparsity", "seed", "steps", "model", "settings", "corpus"),
    "pretrain-eval": ("method", "sparsity", "mask", "mask_seed", "search_steps"),
    "finetune": ("method", "sparsity", "mask", "mask_seed", "search_steps", "task", "task_label", "data")
    + ("seed", "train_size"),
}


# How a reported score's checkpoint was chosen (`reported_score`), as the report words it.
PROTOCOLS = {
    "held-out": "the checkpoint is the step with the best score on a seeded selection part of the dev set "
    "(`select_fraction`), and the score is on the rest of the dev set",
    "last": "the score is the last evaluation's (the end of the fixed schedule): no "
    "checkpoint was chosen on the dev set (a run's best-of-dev score, chosen and reported on the same "
    "dev set, is not used)",
}


def reported_score(metrics: dict[str, Any]) -> tuple[float, str]:
    """A finished fine-tuning's score on data that did not select it, and its protocol: the report
    part of the dev set at the step the selection part picked ("held-out"), else the last evaluation
    ("last": no selection). A row that holds neither is `unusable`."""
    if _held_out(metrics):
        return float(metrics["score"]), "held-out"
    return float(metrics["final_score"]), "last"


def _held_out(metrics: dict[str, Any]) -> bool:
    """A selection part of the dev set picked the reported step (scored on the rest)."""
    return "select_score" in metrics or f"select_{metrics['metric']}" in (metrics.get("best") or {})


def _number(v: Any) -> bool:
    return is_number(v) and math.isfinite(v)


def unusable(r: Any) -> str | None:
    """Why the report cannot read run `r` (a config without a field it takes, a finished
    fine-tuning without a metric name and a finite score), or None. Such a row is a corrupt row:
    left out with a warning, as one whose JSON does not read."""
    config, metrics = r.config, r.metrics or {}
    missing = [k for k in _NEEDS.get(r.kind, ()) if k not in config]
    if missing:
        return f"config has no {missing[0]!r}"
    if r.kind in _NEEDS and (not isinstance(config["method"], str) or not _number(config["sparsity"])):
        method, sparsity = config["method"], config["sparsity"]
        return f"config holds no method name and sparsity (method {method!r}, sparsity {sparsity!r})"
    mask = config.get("mask")
    if mask is not None and not (isinstance(mask, dict) and {"search", "step"} <= mask.keys()):
        return f"config's mask {mask!r} names no search and step"
    done = r.kind == "finetune" and r.status == "done"
    if done and (not isinstance(metrics.get("metric"), str) or not _number(metrics.get("score"))):
        metric, score = metrics.get("metric"), metrics.get("score")
        return f"metrics hold no metric name and finite score (metric {metric!r}, score {score!r})"
    steps = metrics.get("steps")
    if done and steps is not None and not (type(steps) is int and steps >= 0):
        return f"metrics' steps {steps!r} are no count"
    if done and not _held_out(metrics) and not _number(metrics.get("final_score")):
        return f"metrics hold no held-out score and no finite final_score ({metrics.get('final_score')!r})"
    if r.kind == "search" and r.status == "done":
        return _unreadable_sparsity(metrics)
    return None


def _unreadable_sparsity(metrics: dict[str, Any]) -> str | None:
    """Why a finished search's measured sparsities (its mask's, each saved step's) do not read as
    fractions in [0, 1], or None: the report prints them beside the target."""
    saved = metrics.get("intermediate", [])
    if not isinstance(saved, list) or not all(isinstance(i, dict) for i in saved):
        return f"metrics' intermediate masks {saved!r} are no list of records"
    for value in (metrics.get("achieved_sparsity"), *(i.get("achieved_sparsity") for i in saved)):
        if value is not None and not (_number(value) and 0 <= value <= 1):
            return f"achieved sparsity {value!r} is no fraction"
    return None


def _usable(records: list[Any], store: Path) -> dict[str, Any]:
    """The records the report can read; each other one is named in a warning, once."""
    out = {}
    for r in records:
        why = unusable(r)
        if why is None:
            out[r.id] = r
        else:
            print(f"warning: {store}: run {r.id}: corrupt row ({why}); left out", file=sys.stderr)
    return out


def load_results(
    sweep_dir: str | os.PathLike,
    *,
    all_runs: bool = False,
    plan: tuple[list[str], dict[str, Any]] | None = None,
    analyses: Sequence[Analysis] | None = None,
) -> SweepResults:
    """A sweep's store, ready for tables and figures: the runs of the last spec swept there (runs
    of earlier versions of the spec, e.g. with another lr, would otherwise be pooled into the same
    cells) and of the last run of every study (`ticketlab super`, `ticketlab mtl`) written there, or
    with `all_runs` every run in the store. `plan`: (run ids, spec as JSON) of another spec to show
    instead of the last one (a sweep run in stages, each a smaller spec). `analyses`: what recipes add
    to the report (`analyses.py`); None: those the spec names under `recipes`."""
    sweep_dir = Path(sweep_dir).resolve()
    store_in(sweep_dir)
    with Store(sweep_dir, readonly=True) as store:  # a report changes nothing in the store
        records = _usable(store.runs(), store.path)
        spec = store.get_meta("spec", {}) or {}
        plan_ids = store.get_meta("plan")
        studies = store.get_meta("studies") or {}  # `ticketlab super` / `mtl` runs: name -> run ids
        declarations = store.get_meta(CLAIMS_META, []) or []  # `sweep.declared.record_declaration`
        if plan is not None:
            plan_ids, spec = plan
    own = study_declarations(declarations, spec.get("name"))  # not a carried-over study's
    others = tuple(dict.fromkeys(str(h.get("study")) for h in declarations if h not in own))
    # as the declarations count them: the plan's finished runs, or the store's where no plan is known
    counted = records.values() if not plan_ids else [records[i] for i in plan_ids if i in records]
    done_in_store = sum(r.status == "done" for r in counted)
    left_out, not_swept = 0, len(set(plan_ids or []) - records.keys())
    if (plan_ids is not None or studies) and not all_runs:
        keep = set(plan_ids or []).union(*studies.values())
        left_out = sum(i not in keep for i in records)
        records = {i: r for i, r in records.items() if i in keep}
    scores = _scores(records.values())
    searches = [r for r in records.values() if r.kind == "search" and r.status == "done"]
    tasks = list(dict.fromkeys(s.task for s in scores))  # tasks with results (failures: see the report)
    methods = _ordered(
        (method_label(r.config) for r in records.values() if r.kind != "pretrain-eval"), report_order()
    )
    return SweepResults(
        sweep_dir=sweep_dir,
        records=records,
        scores=scores,
        tasks=tasks,
        methods=methods,
        metric_of={s.task: s.metric for s in scores},
        main_masks=_main_masks(searches),
        main_size=_main_sizes(scores),
        spec=spec,
        not_swept=not_swept,
        floors=_floors(records.values(), tasks),
        left_out=left_out,
        declarations=own,
        other_studies=others,
        runs_done=done_in_store,
        analyses=spec_analyses(spec) if analyses is None else tuple(analyses),
    )


def _scores(records: Iterable[RunRecord]) -> list[Score]:
    """The reported score of every finished fine-tuning among `records`, with what places it in a
    table (method, sparsity, task, train size, seeds, the mask's search and step)."""
    scores = []
    for r in records:
        if r.kind != "finetune" or r.status != "done":
            continue
        c = r.config
        value, protocol = reported_score(r.metrics)
        scores.append(
            Score(
                id=r.id,
                method=method_label(c),
                sparsity=c["sparsity"],
                task=c["task_label"],
                metric=r.metrics["metric"],
                train_size=c["train_size"],
                mask_seed=c["mask_seed"],
                seed=c["seed"],
                search=c["mask"]["search"] if c["mask"] else None,
                step=c["mask"]["step"] if c["mask"] else None,
                search_steps=c["search_steps"],
                value=value,
                protocol=protocol,
            )
        )
    return scores


def run_record(sweep_dir: str | os.PathLike, run_id: str) -> RunRecord:
    """The run of a sweep's store whose id starts with `run_id` (any run in the store): its config,
    metrics and provenance (`ticketlab report DIR --run ID`). A TicketlabError where no run or
    several runs match."""
    res = load_results(sweep_dir, all_runs=True)
    matches = [r for i, r in res.records.items() if i.startswith(run_id)]
    if len(matches) != 1:
        raise TicketlabError(f"{sweep_dir}: {'no run' if not matches else 'several runs'} with id {run_id!r}")
    return matches[0]
