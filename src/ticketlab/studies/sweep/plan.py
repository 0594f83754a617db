"""Expanding a sweep spec into runs, deterministically.

Three kinds of run:
  search         (method, sparsity, search seed, step budget) -> a mask directory (and masks saved
                 along the way for search-cost curves); OMP has one run per sparsity, `full` none;
                 a per-task method (`imp-task`) one per source task too
  pretrain-eval  MLM / KD dev loss of one mask (or of the dense model)
  finetune       (mask, task, fine-tuning seed, training-set size) -> dev scores

A mask is searched once and fine-tuned on every task (a per-task method's too: its source task is one
of them, the others are its transfer targets). A run's id is a content hash of its resolved
config, which for a fine-tuning run includes the id of the search that made its mask: editing one
sparsity (or one method's lr) adds runs without redoing the others. Settings that do not change a
result (logging, checkpoint intervals) are passed to the run but left out of its identity. What a
run reads is part of its identity by content (`input_keys`): replacing the model's weights or editing
the corpus in place makes new runs instead of reporting the old ones as done. Where its content is
known, a local input enters the id by its content alone, not by its path (`identity`): a store carried
to a machine where the data lives elsewhere keeps its ids. Stores whose ids hashed the paths are
re-keyed once (`rekey_store`).
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.digest import digest
from ...core.files import content_key
from ...core.outputs import safe_component
from .adapters import finetune_non_result, pretrain_eval_changed
from .methods import LEGACY_IMP
from .sweep_spec import SweepSpec

PLAN_VERSION = 1  # in every id's hash; ids without paths are told apart by the store's meta `ids`
# 1: ids hashed the inputs' absolute paths; 2: by content where known (`identity`); 3: the corpus's
# other settings (text column, dev fraction) and file names per split back in the identity; 4: the
# papers' methods became the defaults (`RETIRED_DEFAULTS`): a run searched under an old default
# names it in its settings, so a run under the new one never reuses it
IDS_VERSION = 4
LOCATED = ("model", "corpus", "data")  # config fields that are paths, each with its key in `inputs`
KINDS = ("search", "pretrain-eval", "finetune")


@dataclass(frozen=True)
class Run:
    id: str
    kind: str
    name: str  # a readable, filesystem-safe name (directories are `<name>_<id8>`)
    config: dict[str, Any]
    deps: tuple[str, ...] = ()

    @property
    def dirname(self) -> str:
        # The name holds labels of the spec (a task's, a method's): one component, never `../x`.
        return safe_component(f"{self.name}_{self.id[:8]}", "run name")


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
        if "source" in c:  # only then: the runs of masks without a source keep their ids
            what["source"] = c["source"]["label"]
        return what


FULL = {"mask": None, "method": "full", "sparsity": 0.0, "mask_seed": None, "search_steps": None}


# The settings of issue 34 at the values that give ticketlab's behaviour before it (a masked MLM
# decoder, KD on the corrupted input, a mask's trained MLM head, the pooler dense): a run that names
# them computes what a run without them computed then, so its id leaves them out and a store written
# then keeps its rows (the committed specs name them: docs/results/*/spec.yaml). A run under the new
# defaults carries them in `defaults` instead (`MethodSpec.changed_defaults`): never an old row's id.
BEFORE_34 = {"decoder": "masked", "kd_input": "corrupted", "mlm_head": "trained", "no_pooler": True}


def _before_34(key: str, value: Any, config: dict[str, Any]) -> bool:
    """Whether a setting names ticketlab's behaviour before issue 34: one of BEFORE_34, a schedule that
    ends at the stop, or a family's default targets of then (without the pooler)."""
    if key == "schedule_steps":
        return value is not None and value == config.get("steps")
    if key == "targets":
        from ...models.arch import ARCHS

        return isinstance(value, str) and value in {a.targets(pooler=False) for a in ARCHS.values()}
    if key not in BEFORE_34:
        return False
    old = BEFORE_34[key]
    return value is old if isinstance(old, bool) else value == old  # `no_pooler: 1` is no True


def checkpoint_has_pooler(model: str) -> bool:
    """Whether the base model's checkpoint holds pooler weights, read from its safetensors header or
    index without loading a tensor; True where that cannot be told (a hub id, a .bin checkpoint), so
    that a run under the default targets of issue 34 is never taken for one from before."""
    from ...models.arch import ARCHS

    try:  # a family whose base model has no pooler (ELECTRA, DeBERTa, ...) prunes none
        model_type = json.loads((Path(model).expanduser() / "config.json").read_text(encoding="utf-8"))
        arch = ARCHS.get(model_type.get("model_type")) if isinstance(model_type, dict) else None
    except (OSError, ValueError):
        arch = None
    if arch is not None and arch.pooler is None:
        return False
    names = _weight_names(str(model))
    return names is None or any("pooler." in n for n in names)


@functools.lru_cache(maxsize=8)
def _weight_names(model: str) -> frozenset[str] | None:
    root = Path(model).expanduser()
    try:
        index = root / "model.safetensors.index.json"
        if index.is_file():
            return frozenset(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
        with open(root / "model.safetensors", "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            return frozenset(k for k in json.loads(f.read(size)) if k != "__metadata__")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """What a run's id hashes: its config, with the paths of the inputs whose content key it holds
    (`inputs`) left out, and the settings that name ticketlab's behaviour before issue 34 (`BEFORE_34`).
    A corpus keeps its other settings (text column, dev fraction) and its files' names per split (a file
    moved from train to dev changes what each split reads); a hub id, or a config without keys (a
    super-ticket study's rows), keeps its names."""
    keys = config.get("inputs") or {}
    out = {k: v for k, v in config.items() if not (k in LOCATED and keys.get(k) is not None)}
    if isinstance(out.get("settings"), dict):
        out["settings"] = {k: v for k, v in out["settings"].items() if not _before_34(k, v, config)}
    corpus = config.get("corpus")
    if keys.get("corpus") is not None and isinstance(corpus, dict):
        out["corpus"] = {k: _names(v) if k in ("train", "dev") else v for k, v in corpus.items()}
    if isinstance(out.get("source"), dict) and keys.get("data") is not None:  # a per-task search's
        out["source"] = {k: v for k, v in out["source"].items() if k != "data"}
    return out


def _names(paths: Any) -> Any:
    """File names without their folders (a list of paths, or whatever else a config holds)."""
    return [Path(p).name for p in paths] if isinstance(paths, list) else paths


def run_id(config: dict[str, Any]) -> str:
    return digest({"plan_version": PLAN_VERSION, **identity(config)}, compact=True)


def make_run(kind: str, name: str, config: dict[str, Any], deps: tuple[str, ...] = ()) -> Run:
    config = {"kind": kind, **config}
    return Run(run_id(config), kind, name, config, deps)


def input_keys(
    spec: SweepSpec, *, corpus: str | None = None, task: str | None = None
) -> dict[str, str | None]:
    """Content keys of what runs read: the base model, the corpus (`corpus`: "all" for searches,
    "dev" for pre-training evaluation) and the data folder of the task labelled `task` (its
    task.json included). A hub id has none: its name is the key."""
    keys = {"model": content_key([spec.model])}
    if corpus is not None and spec.corpus is not None:
        parts = ("train", "dev") if corpus == "all" else ("dev",)
        keys["corpus"] = content_key([p for k in parts for p in spec.corpus.get(k) or []])
    if task is not None:
        data = spec.tasks[task].data
        keys["data"] = content_key([data]) if data is not None else None
    return keys


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
    if source is not None:  # a per-task search: the key only then, so the other runs keep their ids
        t = spec.tasks[source]
        config["source"] = {"label": source, "task": t.task, "data": t.data}
    changed = m.changed_defaults(settings, checkpoint_has_pooler(spec.model))
    if changed:  # only then: a run whose behaviour issue 34 did not change keeps its id
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


def expand(spec: SweepSpec) -> list[Run]:
    """All runs of a sweep: searches first, then pre-training evaluations, then fine-tunings, seed by
    seed."""
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

    fts: list[Run] = []
    for method in spec.methods:
        for ref in refs(method, spec.method_sparsities(method)):
            fts += [
                _finetune_run(spec, t, f, main_size(t), ref) for t in spec.tasks for f in spec.finetune_seeds
            ]
    if spec.search_curve is not None:
        tasks = spec.search_curve.tasks
        for ref in curve_masks:
            fts += [_finetune_run(spec, t, f, main_size(t), ref) for t in tasks for f in spec.finetune_seeds]
    if spec.data_curve is not None:
        c = spec.data_curve
        for method in c.methods:
            for ref in refs(method, c.sparsities):
                for n in c.train_sizes:
                    fts += [_finetune_run(spec, t, f, n, ref) for t in c.tasks for f in spec.finetune_seeds]

    evals: list[Run] = []
    if spec.pretrain_eval is not None:
        evals = [_pretrain_eval_run(spec, None)]
        evals += [_pretrain_eval_run(spec, ref) for ref in [*finals.values(), *curve_masks]]

    # Seed-major fine-tunings: a sweep stopped part-way has every cell at its first seeds rather
    # than some cells complete and others empty (stable sort keeps the method/task order).
    seeds = {f: i for i, f in enumerate(spec.finetune_seeds)}
    fts.sort(key=lambda r: seeds[r.config["seed"]])
    runs, seen = [], set()
    for r in [*main, *extra, *evals, *fts]:
        if r.id not in seen:
            seen.add(r.id)
            runs.append(r)
    return runs


def _retired_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that name, in a search run stored before ids version 4, the defaults it was
    searched under and that are no longer the defaults (issue 34):

    - IMP without `variant` ran `legacy` (ticketlab's first IMP, now retired: readable, never run);
    - IMP on a task pruned θ0 at step 0 and rewound the task head (now LT_glue.py's: after each
      round, only the encoder rewound);
    - a sweep's random structured ticket counted round(p·n) units (now Liang et al.'s counts);
    - one-shot pruning with global ranking ranked the word embeddings too (now Chen et al.'s: the
      layers' matrices only), which explicit targets, the family's default, reproduce.
    """
    if config.get("kind") != "search" or not isinstance(config.get("settings"), dict):
        return {}
    settings, base = config["settings"], str(config.get("method", "")).split("/", 1)[0]
    add: dict[str, Any] = {}
    if base in ("imp", "imp-task") and "variant" not in settings:
        add["variant"] = LEGACY_IMP
    elif base == "imp-task":
        add.update(
            {k: v for k, v in (("first_pruning", "start"), ("rewind_head", True)) if k not in settings}
        )
    elif base == "st-random" and "units" not in settings:
        add["units"] = "round"
    elif (
        base in ("omp", "random") and settings.get("ranking") == "global" and settings.get("targets") is None
    ):
        targets = _family_targets(config.get("model"))
        if targets is not None:
            add["targets"] = targets
    return add


def _family_targets(model: Any) -> str | None:
    """The default targets (word embeddings included) of the model family at `model`, or None where
    its config cannot be read here (the run keeps its id, and shows as pending)."""
    from ...models.arch import ARCHS

    try:
        model_type = json.loads((Path(model) / "config.json").read_text())["model_type"]
        return ARCHS[model_type].targets()
    except (OSError, TypeError, ValueError, KeyError):
        return None


def ids_outdated(store: Any) -> bool:
    """Whether a store's run ids were made by an earlier identity (meta `ids` below `IDS_VERSION`)."""
    return (store.get_meta("ids") or 1) < IDS_VERSION


def rekey_store(store: Any) -> int:
    """Re-key the runs of a store whose ids an earlier identity made (meta `ids` below
    `IDS_VERSION`; version 1 hashed the inputs' absolute paths): each id becomes `run_id` of its
    config (the task data's content key, which version-1 runs did not record, read from the data at
    the recorded path now; the retired defaults a search ran under, `_retired_defaults`, named in its
    settings), and every reference follows (a fine-tuning's mask, deps, the plan, the
    studies). All or nothing, in one transaction: not while a live process runs one of its runs (it
    would finish under its old id), and not when a run's data is gone (its dependents would point at
    a renamed search; a store carried elsewhere is re-keyed where its data is). Returns how many
    runs got a new id."""
    if store.readonly or not ids_outdated(store):
        return 0
    from ..store import owner_gone

    with store.transaction() as db:
        rows = db.execute("SELECT * FROM runs").fetchall()
        now = time.time()
        if any(r["status"] == "running" and not owner_gone(r, now, store.stale_after) for r in rows):
            return 0
        new: dict[str, str] = {}  # old id -> new id
        labels: dict[str, str] = {}  # old id of a search -> its new method label
        updates = []
        # Searches first: the other runs name them.
        for row in sorted(rows, key=lambda r: r["kind"] != "search"):
            try:
                moved = _rekeyed(row, new, labels)
            except _Unkeyable:
                return 0
            if moved is not None:
                new[row["id"]] = moved[0]
                updates.append((row["id"], *moved))
        if len(set(new.values())) < len(new) or set(new.values()) & ({r["id"] for r in rows} - set(new)):
            return 0  # two runs would become one: leave the store as it is rather than guess
        for old, *_ in updates:  # two steps: a new id may be another run's old one
            db.execute("UPDATE runs SET id = ? WHERE id = ?", (f"rekey:{old}", old))
        for old, run_id_, config, deps in updates:
            db.execute(
                "UPDATE runs SET id = ?, config = ?, deps = ? WHERE id = ?",
                (run_id_, json.dumps(config, sort_keys=True), json.dumps(deps), f"rekey:{old}"),
            )
        meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('plan', 'studies')"))
        if "plan" in meta:
            plan = [new.get(i, i) for i in store.parse_meta("plan", meta["plan"])]
            db.execute("UPDATE meta SET value = ? WHERE key = 'plan'", (json.dumps(plan),))
        if "studies" in meta:
            studies = {
                k: [new.get(i, i) for i in v] for k, v in store.parse_meta("studies", meta["studies"]).items()
            }
            db.execute("UPDATE meta SET value = ? WHERE key = 'studies'", (json.dumps(studies),))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('ids', ?)", (json.dumps(IDS_VERSION),))
    return len(new)


class _Unkeyable(Exception):
    """A run whose new id cannot be computed here (its data is gone)."""


def _rekeyed(
    row: Any, new: dict[str, str], labels: dict[str, str]
) -> tuple[str, dict[str, Any], list[str]] | None:
    """(new id, config, deps) of one stored run under `identity`, or None where it keeps its id. A
    legacy IMP search (`_retired_defaults`) is labelled `imp/legacy` (`imp-task/legacy`) in reports,
    and so are the runs of its masks (`labels`: old search id -> label)."""
    try:
        config, deps = json.loads(row["config"]), json.loads(row["deps"])
    except (TypeError, ValueError):
        return None  # a corrupt row: the store's reader reports it
    if not isinstance(config, dict) or not isinstance(config.get("inputs"), dict):
        return None  # no content keys (a study's row, a run from before them): hashed by its paths
    config = {**config, "inputs": dict(config["inputs"])}
    if retired := _retired_defaults(config):
        config["settings"] = {**config["settings"], **retired}
        if retired.get("variant") == LEGACY_IMP and "/" not in config["method"]:
            config["method"] = labels[row["id"]] = f"{config['method']}/{LEGACY_IMP}"
    source = config.get("source")  # a per-task search's source task (a fine-tuning's: its label)
    data = source.get("data") if isinstance(source, dict) else config.get("data", False)
    if data is not False and "data" not in config["inputs"]:
        key = content_key([data]) if data is not None else None
        if data is not None and key is None:
            raise _Unkeyable(row["id"])  # the data is not here any more
        config["inputs"]["data"] = key
    if isinstance(config.get("mask"), dict):
        search = config["mask"]["search"]
        config["mask"] = {**config["mask"], "search": new.get(search, search)}
        config["method"] = labels.get(search, config.get("method"))
    deps = [new.get(d, d) for d in deps]
    run_id_ = run_id(config)
    return (run_id_, config, deps) if run_id_ != row["id"] else None
