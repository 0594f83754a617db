"""Expanding a sweep spec into runs, deterministically.

Three kinds of run:
  search         (method, sparsity, search seed, step budget) -> a mask directory (and masks saved
                 along the way for search-cost curves); OMP has one run per sparsity, `full` none;
                 a per-task method (`imp-task`) one per source task too
  pretrain-eval  MLM / KD dev loss of one mask (or of the dense model)
  finetune       (mask, task, fine-tuning seed, training-set size) -> dev scores; the main grid's
                 with the method's own fine-tuning seeds where it has them, the curves' with the
                 sweep's

A mask is searched once and fine-tuned on every task (a per-task method's too: its source task is one
of them, the others are its transfer targets). A run's id is a content hash of its resolved
config, which for a fine-tuning run includes the id of the search that made its mask: editing one
sparsity (or one method's lr) adds runs without redoing the others. Settings that do not change a
result (logging, checkpoint intervals) are passed to the run but left out of its identity. What a
run reads is part of its identity by content (`input_keys`): replacing the model's weights or editing
the corpus in place makes new runs instead of reporting the old ones as done. Of a model folder and
of a task's data only what loading reads counts: editing a model card, or adding a task folder
beside a task's in a GLUE root, runs nothing again. Where its content is known, a local input enters
the id by its content alone, not by its path (`identity`): a store carried to a machine where the
data lives elsewhere keeps its ids. Run ids are `studies/run_ids.py`'s (docs/explanation/run-ids.md).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from ...core.errors import TicketlabError
from ...core.files.keys import content_key, model_key
from ...tasks.glue import task_data
from ...tasks.registry import get_task
from ..run_ids import Run, checkpoint_has_pooler, make_run
from .adapters import finetune_non_result, pretrain_eval_changed
from .sweep_spec import SweepSpec


@dataclass(frozen=True)
class MaskRef:
    """One mask a search run produces: its final mask (step None) or one saved at `step`."""

    search: Run
    step: int | None

    @property
    def steps(self) -> int | None:
        """Search steps behind this mask (None for one-shot methods)."""
        return self.step if self.step is not None else self.search.config["steps"]

    def describe(self) -> dict[str, Any]:
        c = self.search.config
        what = {
            "mask": {"search": self.search.id, "step": self.step},
            "method": c["method"],
            "sparsity": c["sparsity"],
            "mask_seed": c["seed"],
            "search_steps": self.steps,
        }
        if "source" in c:  # a per-task search's mask
            what["source"] = c["source"]["label"]
        return what


FULL = {"mask": None, "method": "full", "sparsity": 0.0, "mask_seed": None, "search_steps": None}


def input_keys(
    spec: SweepSpec, *, corpus: str | None = None, task: str | None = None
) -> dict[str, str | None]:
    """Content keys of what runs read: the base model, the corpus (`corpus`: "all" for searches,
    "dev" for pre-training evaluation) and the data of the task labelled `task` (`data_key`). A hub
    id has none: its name is the key."""
    keys: dict[str, str | None] = {"model": model_key(spec.model)}
    if corpus is not None and spec.corpus is not None:
        parts = ("train", "dev") if corpus == "all" else ("dev",)
        keys["corpus"] = content_key([p for k in parts for p in spec.corpus.get(k) or []])
    if task is not None:
        t = spec.tasks[task]
        keys["data"] = data_key(t.task, t.data) if t.data is not None else None
    return keys


def data_key(task: str, data: str | os.PathLike) -> str | None:
    """The content key of what loading the task `task` reads of its data folder `data`
    (`tasks.glue.task_data`: of a GLUE root the task's own folder, its task.json included), so that
    a task folder added beside it changes no run's id; of a folder that is the task's own, that
    folder's key. Where the task's files cannot be found there, the whole folder's (its runs
    are refused before they start: `inputs.check_sweep_inputs`). None where `data` is not here."""
    try:
        return content_key(task_data(task, data))
    except TicketlabError:
        return content_key([data])


def pct(s: float) -> str:
    return f"{round(s * 100, 4):g}"


def _search_run(
    spec: SweepSpec,
    method: str,
    sparsity: float,
    seed: int | None,
    steps: int | None,
    source: str | None = None,
) -> Run:
    m = spec.method_specs[method]
    settings = {k: v for k, v in spec.search_settings(method).items() if k not in m.non_result}
    budget = settings.pop("steps", None)
    save_at: list[int] = []
    curve = spec.search_curve
    in_curve = curve is not None and method in curve.methods and sparsity in curve.sparsities
    if in_curve and m.curve == "save_at" and steps == budget:
        save_at = sorted({s for s in curve.steps if s < budget})
    name = method + (f"-{source}" if source is not None else "") + f"_s{pct(sparsity)}"
    name += f"_seed{seed}" if seed is not None else ""
    if steps is not None and steps != budget:
        name += f"_{steps}steps"
    config = {
        "model": spec.model,
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        "steps": steps,
        "save_at": save_at,
        "settings": settings,
        "corpus": spec.corpus if m.uses_corpus else None,
        "inputs": input_keys(spec, corpus="all" if m.uses_corpus else None, task=source),
    }
    if source is not None:  # a per-task search
        t = spec.tasks[source]
        config["source"] = {"label": source, "task": t.task, "data": t.data}
    # the run's budget beside its settings: a default may follow it (TAMT's lr for a short search)
    budget_settings = {**settings, "steps": steps, "sparsity": sparsity}
    changed = m.changed_defaults(budget_settings, checkpoint_has_pooler(spec.model))
    if changed:  # what the spec leaves to the defaults: in the id (`run_ids.identity`)
        config["defaults"] = changed
    return make_run("search", name.replace("+", "-").replace("/", "-"), config)


def _searches(spec: SweepSpec) -> tuple[list[Run], list[Run]]:
    """(main search runs, extra runs with smaller budgets for the search-cost curve)."""
    main, extra = [], []
    curve = spec.search_curve
    for method, m in spec.method_specs.items():
        if m.search is None:
            continue
        budget = spec.search_settings(method).get("steps") if m.uses_steps else None
        for source in spec.sources(method) if m.per_task else [None]:
            for s in spec.method_sparsities(method):
                for seed in spec.method_seeds(method):
                    main.append(_search_run(spec, method, s, seed, budget, source))
                    if curve and m.curve == "budgets" and method in curve.methods and s in curve.sparsities:
                        extra += [_search_run(spec, method, s, seed, b) for b in curve.steps if b != budget]
    return main, extra


def mask_seeds(seeds: list[int] | int, mask_key: str) -> list[int]:
    """The fine-tuning seeds of one mask: `seeds` where pinned (a list), else that many drawn from
    the mask's identity (its search run's id, and the step a mask saved along a search was saved at;
    'full' for the full model) and their index by SHA-256, so that the same mask gets the same seeds
    on every task and in every sweep that plans it. A drawn seed that another mask drew or has
    pinned (32 bits: about 1 in 100,000 for 300 seeds) is refused by `expand`, never reported as
    independent units."""
    if isinstance(seeds, list):
        return list(seeds)
    digests = (hashlib.sha256(f"{mask_key}:{i}".encode()).digest() for i in range(seeds))
    return [int.from_bytes(d[:4], "big") for d in digests]


def _finetune_run(spec: SweepSpec, task: str, seed: int, train_size: int | None, ref: MaskRef | None) -> Run:
    t = spec.tasks[task]
    settings = {k: v for k, v in spec.finetune_settings(task).items() if k not in finetune_non_result()}
    settings.pop("train_size", None)
    what = ref.describe() if ref is not None else FULL
    config = {
        "model": spec.model,
        "task": t.task,
        "task_label": task,
        "data": t.data,
        "seed": seed,
        "train_size": train_size,
        "settings": settings,
        "inputs": input_keys(spec, task=task),
        **what,
    }
    name = f"ft_{task}_" + (ref.search.name if ref is not None else "full")
    if ref is not None and ref.step is not None:
        name += f"_at{ref.step}"
    name += f"_ft{seed}" + (f"_n{train_size}" if train_size is not None else "")
    if get_task(t.task, t.data).kind == "squad" and settings.get("squad_windows") is None:
        config["defaults"] = {"squad_windows": "step"}  # TAMT's windows: never a row of run_qa's
    deps = (ref.search.id,) if ref is not None else ()
    return make_run("finetune", name.replace("+", "-").replace("/", "-"), config, deps)


def _pretrain_eval_run(spec: SweepSpec, ref: MaskRef | None) -> Run:
    what = ref.describe() if ref is not None else FULL
    config = {"model": spec.model, "corpus": spec.corpus, "settings": spec.pretrain_eval, **what}
    config["inputs"] = input_keys(spec, corpus="dev")
    changed = pretrain_eval_changed(spec.pretrain_eval or {}) if ref is not None else {}
    if changed:  # the dense model's row is what it was: no mask, no decoder or head to choose
        config["defaults"] = changed
    name = "pe_" + (ref.search.name if ref is not None else "full")
    if ref is not None and ref.step is not None:
        name += f"_at{ref.step}"
    deps = (ref.search.id,) if ref is not None else ()
    return make_run("pretrain-eval", name.replace("+", "-").replace("/", "-"), config, deps)


class _SeedOwners:
    """The masks each fine-tuning seed serves in a plan: a drawn seed is one mask's alone, so that no
    seed is a random factor shared by two units of a test (pinned seeds are shared on purpose: one
    list serves every mask, and the report's crossed test models it)."""

    def __init__(self) -> None:
        self.drawn: dict[int, str] = {}  # a seed -> the mask that drew it
        self.pinned: dict[int, set[str]] = {}  # a seed -> every mask it is pinned for

    def take(self, seeds: list[int], mask: str, *, drawn: bool) -> None:
        """Records `mask`'s seeds, in any planning order refusing a seed drawn for one mask that
        another mask drew or has pinned (about 1 in 100,000 for 300 drawn seeds of 32 bits)."""
        for f in seeds:
            owners = {self.drawn[f]} if f in self.drawn else set()
            owners |= self.pinned.get(f, set()) if drawn else set()
            if owners - {mask}:
                raise TicketlabError(
                    f"masks {min(owners - {mask})} and {mask} share the fine-tuning seed {f}, drawn for "
                    "one of them: pin the seeds to a list (`seeds: finetune`, or the method's "
                    "`finetune_seeds`)"
                )
            if drawn:
                self.drawn.setdefault(f, mask)
            else:
                self.pinned.setdefault(f, set()).add(mask)


def expand(spec: SweepSpec) -> list[Run]:
    """All runs of a sweep: searches first, then pre-training evaluations, then fine-tunings, seed by
    seed (the i-th seed of each list together: a method's own fine-tuning seeds are its list)."""
    main, extra = _searches(spec)
    finals = {r.id: MaskRef(r, None) for r in main}
    curve_masks = [MaskRef(r, None) for r in extra] + [
        MaskRef(r, step) for r in main for step in r.config["save_at"]
    ]

    def main_size(task: str) -> int | None:
        return spec.finetune_settings(task).get("train_size")

    def refs(method: str, sparsities) -> list[MaskRef | None]:
        if spec.method_specs[method].search is None:
            return [None]
        return [
            ref
            for ref in finals.values()
            if ref.search.config["method"] == method and ref.search.config["sparsity"] in sparsities
        ]

    # (the seed's place in the list it comes from, the run): the sort below is seed-major on it
    fts: list[tuple[int, Run]] = []

    owners = _SeedOwners()

    def tune(ref: MaskRef | None, tasks, seeds: list[int] | int, size_of=main_size) -> list[tuple[int, Run]]:
        key = "full" if ref is None else ref.search.id + ("" if ref.step is None else f"@{ref.step}")
        fs = mask_seeds(seeds, key)  # pinned, or drawn from the mask's identity
        owners.take(fs, key, drawn=isinstance(seeds, int))
        return [(i, _finetune_run(spec, t, f, size_of(t), ref)) for t in tasks for i, f in enumerate(fs)]

    for method in spec.methods:  # the main grid: each method's own fine-tuning seeds, else the sweep's
        for ref in refs(method, spec.method_sparsities(method)):
            fts += tune(ref, spec.tasks, spec.method_finetune_seeds(method))
    if spec.search_curve is not None:  # the curves: the sweep's seeds (`SweepSpec.method_finetune_seeds`)
        for ref in curve_masks:
            fts += tune(ref, spec.search_curve.tasks, spec.finetune_seeds)
    if spec.data_curve is not None:
        c = spec.data_curve
        for method in c.methods:
            for ref in refs(method, c.sparsities):
                for n in c.train_sizes:
                    fts += tune(ref, c.tasks, spec.finetune_seeds, lambda t, n=n: n)

    evals: list[Run] = []
    if spec.pretrain_eval is not None:
        evals = [_pretrain_eval_run(spec, None)]
        evals += [_pretrain_eval_run(spec, ref) for ref in [*finals.values(), *curve_masks]]

    return _in_order([*main, *extra, *evals], fts)


def _in_order(runs: list[Run], fts: list[tuple[int, Run]]) -> list[Run]:
    """`runs`, then the fine-tunings seed-major (each with its seed's place in its list): a sweep
    stopped part-way has every cell at its first seeds rather than some cells complete and others
    empty (the stable sort keeps the method/task order), and a method's own seeds beyond the sweep's
    number come after every other cell's. Each run once."""
    first: dict[str, Run] = {}
    for r in [*runs, *(r for _, r in sorted(fts, key=lambda p: p[0]))]:
        first.setdefault(r.id, r)
    return list(first.values())
