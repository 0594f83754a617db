"""Sweep specs: one YAML file describing a grid of mask searches and fine-tunings.

    model: models/minilm-mlm      # base model: local directory or hub id
    corpus: {train: wiki/train.txt, dev: wiki/dev.txt}   # for imp / tamt-* and pre-training eval
                                        # (or, online: hub:Salesforce/wikitext:wikitext-103-raw-v1)
    tasks:
      sst2: {data: path/to/glue}                    # a GLUE root or the task's folder
      cola: {data: path/to/glue, steps: 400}        # per-task fine-tuning overrides
    methods: [full, omp, random, imp, tamt-mlm, tamt-kd]   # or {tamt-mlm: {lr: 1.0e-4}, ...}
    sparsities: [0.5, 0.7, 0.9]                            # per method: {imp: {sparsities: [0.5, 0.7]}}
    seeds: {search: [0, 1, 2], finetune: 3}                # TAMT §4.1.3: 3 masks x 3 fine-tunings,
                                                           # each mask's seeds its own ([0, 1, 2]:
                                                           # pinned, shared by every mask)
    search: {steps: 200, batch_size: 16}
    finetune: {steps: 300, batch_size: 32, lr: 2.0e-5, eval_every: 50}
    pretrain_eval: {max_blocks: 256}                       # MLM/KD dev loss of every mask (Fig. 5)
    search_curve: {steps: [50, 100], sparsities: [0.7]}    # score vs search steps/time (Fig. 6, 8)
    data_curve: {train_sizes: [64, 256, all], sparsities: [0.7]}    # score vs #examples (Fig. 9)
    endpoint: {name: fig5-average, tasks: [sst2, cola]}    # a named average over tasks
    claims:                                                # declared before the runs (at most 4)
      - {compare: tamt-kd > imp, endpoint: fig5-average, sparsity: 0.7}
      - {correlate: mlm_loss, endpoint: fig5-average, sparsity: 0.7, unit: method-means}
    recipes: [../recipes/tamt/claims.py]                   # what the report adds (a paper's claims)

`claims:` are the study's confirmatory tests, its one Holm family; every other comparison the report
prints is exploratory. `declared.py` says what a claim holds and why the store records each version.
`recipes:` are Python files outside the library whose tests join the report's Holm family and whose
sections its report.md prints (`report.analyses`); they change no run.

Under `methods:`, a method's own `sparsities` replace the sweep's for that method (the top-level list
may then be left out), and a per-task method (`imp-task`: `ticketlab search imp --task`) searches one
mask per source task, by default every task of the sweep, and fine-tunes each on every task (Chen et
al. 2020 §5 Table 3, the MLM row being `imp` at the same sparsity):

    methods:
      imp: {sparsities: [0.5, 0.7], variant: chen}
      imp-task: {sparsities: [0.5], sources: [sst2, cola], steps: 300, variant: chen}

A mask is the unit of evidence: every seeded method (random, st-random, IMP, TAMT: the seed sets the
data order, random init or draw) searches one mask per search seed, [0, 1, 2] unless `seeds.search`
says otherwise, so that a comparison between methods sees how much masks differ and not only how
much fine-tuning does. A method's own `search_seeds` replace the sweep's for it (OMP and `full` are
deterministic: one mask whatever the seeds). Seed 0's runs keep their ids whatever the other seeds:
more seeds add runs.

    methods:
      imp: {sparsities: [0.5, 0.7], variant: chen, search_seeds: [0, 1, 2]}

`seeds.finetune` is a number of seeds drawn per mask (the default: 1), derived from the mask's run id
and their index (`plan.mask_seeds`), so that no two masks share one and a method's masks are
independent units; or a list, pinned and shared by every mask (a seed then shifts every mask of a
method together, and the report tests with the crossed-seeds test, `studies.stats`).

A method's own `finetune_seeds` replace the sweep's `seeds.finetune` for its fine-tunings on every
task of the main grid. A deterministic method's spread in a comparison is its fine-tuning seeds'
alone (its one mask is no sample of a search), so with the sweep's three seeds a claim against OMP or
`full` has a far larger MDE than one between two searched methods; more fine-tuning seeds for that
side alone are the remedy, at few runs (one mask per sparsity), and the dry run's MDE counts them.
Any method may have them (each of a searched method's masks is then fine-tuned with these seeds).
The search and data curves keep the sweep's seeds for every method: no declared claim reads a curve,
its points then compare methods at equal seeds, and extra seeds there would be multiplied by every
budget or training-set size. The key enters no run's config (a fine-tuning's id hashes its own
seed): a method without it plans the runs it planned before, under the same ids, and below, OMP's
seeds 0-2 are the runs the sweep's seeds gave it, seeds 3-9 new ones:

    methods:
      - full: {finetune_seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
      - omp: {finetune_seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
      - imp: {variant: tamt}
    seeds: {search: [0, 1, 2], finetune: [0, 1, 2]}

IMP's `variant` names whose IMP runs (`methods.imp`): `chen` (the default: global over the encoder's
matrices, no word embeddings) or `tamt` (per matrix, embeddings included).

Paths are relative to the YAML file. Every problem (an unknown key, a method that does not exist, a
sparsity outside [0, 1), a missing data directory) is one `ConfigError` naming the file and the key.

This module reads the YAML (`load_spec`, `spec_from_dict`) and writes the spec as JSON (`spec_json`);
the spec itself and its checks are `sweep_spec.SweepSpec`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import yaml

from ...core.errors import ConfigError, printable_strings
from ...core.files.inputs import read_text
from ...core.outputs import safe_component
from ...data.sources import HUB, hub_dataset
from .declared import claims_from, endpoints_from
from .jobs import MethodSpec
from .methods import base_method, sweep_methods
from .spec_reader import Reader
from .spec_yaml import SpecLoader
from .sweep_spec import (
    ALL,
    CORPUS_KEYS,
    DEFAULT_FINETUNE_DRAWS,
    DEFAULT_SEARCH_SEEDS,
    GRID_KEYS,
    TOP_KEYS,
    DataCurve,
    SearchCurve,
    SweepSpec,
    TaskEntry,
    unknown_method,
)

__all__ = [
    "ALL",
    "CORPUS_KEYS",
    "DEFAULT_SEARCH_SEEDS",
    "GRID_KEYS",
    "TOP_KEYS",
    "DataCurve",
    "SearchCurve",
    "SweepSpec",
    "TaskEntry",
    "load_spec",
    "spec_from_dict",
    "spec_json",
    "unknown_method",
]


# --------------------------------------------------------------------------- reading YAML


def load_spec(path: str | os.PathLike, *, registry: dict[str, MethodSpec] | None = None) -> SweepSpec:
    """Read and validate a sweep spec YAML file."""
    path = Path(path)
    text = read_text(path, "sweep spec", ConfigError)
    try:
        raw = yaml.load(text, Loader=SpecLoader)  # noqa: S506 (a SafeLoader, stricter still)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    except RecursionError:  # `[[[[...` thousands deep: the parser recurses per level
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    return spec_from_dict(raw, source=str(path), base_dir=path.resolve().parent, registry=registry)


def spec_from_dict(
    raw: Any,
    *,
    source: str = "<spec>",
    base_dir: str | os.PathLike | None = None,
    registry: dict[str, MethodSpec] | None = None,
) -> SweepSpec:
    """Build a validated spec from a parsed mapping (what the YAML holds); paths relative to base_dir."""
    r = Reader(source, Path(base_dir or Path.cwd()).resolve())
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a sweep spec must be a mapping of keys (model, tasks, methods, ...)")
    printable_strings(raw, source)  # names, labels, endpoints, paths: each reaches a terminal or the report
    d = r.mapping(raw, "", TOP_KEYS)
    for key in ("model", "tasks", "methods"):
        if key not in d:
            raise r.fail(key, "missing (required)")
    tasks = _tasks(r, d["tasks"])
    methods = _methods(r, d["methods"])
    seeds = r.mapping(d.get("seeds"), "seeds", ("search", "finetune"))
    corpus = _corpus(r, d.get("corpus"))
    sparsities = [r.sparsity(s, "sparsities") for s in r.listing(d.get("sparsities"), "sparsities")]
    for m in methods:  # unknown methods must fail before the curves look them up
        if (why := unknown_method(m, registry or sweep_methods())) is not None:
            raise r.fail("methods", why)
    grid = (methods, tasks, sparsities, registry or sweep_methods())
    search_curve = _curve(r, d, "search_curve", ("steps",), grid)
    data_curve = _curve(r, d, "data_curve", ("train_sizes",), grid)
    pretrain_eval = d.get("pretrain_eval")
    if pretrain_eval is not None and not isinstance(pretrain_eval, dict):  # `false` is not "off"
        raise r.fail("pretrain_eval", f"a mapping ({{}}: the defaults), or left out; got {pretrain_eval!r}")
    return SweepSpec(
        model=r.path(d["model"], "model", hub_ok=True),
        tasks=tasks,
        methods=methods,
        sparsities=sparsities,
        search_seeds=r.seeds(seeds.get("search", list(DEFAULT_SEARCH_SEEDS)), "seeds.search"),
        finetune_seeds=r.finetune_seeds(seeds.get("finetune", DEFAULT_FINETUNE_DRAWS), "seeds.finetune"),
        corpus=corpus,
        search=r.mapping(d.get("search"), "search"),
        finetune=r.mapping(d.get("finetune"), "finetune"),
        pretrain_eval=None if pretrain_eval is None else r.mapping(pretrain_eval, "pretrain_eval"),
        search_curve=SearchCurve(**search_curve) if search_curve else None,
        data_curve=DataCurve(**data_curve) if data_curve else None,
        name=r.name(d.get("name")),
        output=r.output(d.get("output")),
        resources=r.mapping(d.get("resources"), "resources") or None,
        endpoints=endpoints_from(d.get("endpoint"), r.fail),
        claims=claims_from(d.get("claims"), r.fail, r.sparsity),
        recipes=tuple(r.recipe(p) for p in r.listing(d.get("recipes"), "recipes")),
        source=source,
        registry=registry,
    )


def _tasks(r: Reader, raw: Any) -> dict[str, TaskEntry]:
    """`tasks:`: label -> its task (the label unless `task:` says), data folder and own settings."""
    tasks: dict[str, TaskEntry] = {}
    for name, t in r.mapping(raw, "tasks").items():
        t = r.mapping(t if t is not None else {}, f"tasks.{name}")
        safe_component(name, f"{r.source}: tasks: label", ConfigError)  # it names run directories
        if "data" not in t:
            raise r.fail(f"tasks.{name}.data", "missing: the task's data directory (or `hub` to download it)")
        task = str(t.pop("task", name))
        data = t.pop("data")
        data = None if data == "hub" else r.path(data, f"tasks.{name}.data")
        r.task(task, data, f"tasks.{name}")
        tasks[name] = TaskEntry(name=name, task=task, data=data, settings=t)
    return tasks


def _methods(r: Reader, raw: Any) -> dict[str, dict[str, Any]]:
    """`methods:`: a list of names (an item may be `{name: {settings}}`) or a mapping name -> settings;
    a method's own sparsities, search and fine-tuning seeds and source tasks parsed like the top-level
    keys."""
    methods: dict[str, dict[str, Any]] = {}
    items = raw.items() if isinstance(raw, dict) else [(m, {}) for m in r.listing(raw, "methods")]
    for m, overrides in items:
        if isinstance(m, dict) and len(m) == 1:  # list item written as {tamt-mlm: {lr: ...}}
            ((m, overrides),) = m.items()
        if not isinstance(m, str):
            raise r.fail("methods", f"expected method names, got {m!r}")
        if m in methods:
            raise r.fail("methods", f"'{m}' is listed twice")
        own = methods[m] = r.mapping(overrides, f"methods.{m}")
        if "sparsities" in own:  # parsed as the top-level list ("70%" too)
            key = f"methods.{m}.sparsities"
            own["sparsities"] = [r.sparsity(s, key) for s in r.listing(own["sparsities"], key)]
        if "search_seeds" in own:
            own["search_seeds"] = r.seeds(own["search_seeds"], f"methods.{m}.search_seeds")
        if "finetune_seeds" in own:
            own["finetune_seeds"] = r.finetune_seeds(own["finetune_seeds"], f"methods.{m}.finetune_seeds")
        if "sources" in own:
            own["sources"] = [str(t) for t in r.listing(own["sources"], f"methods.{m}.sources")]
    return methods


def _corpus_path(r: Reader, v: Any, key: str) -> str:
    """A corpus source: a path as any (relative to the spec), or a hub dataset (`hub:NAME[:CONFIG]`)."""
    if isinstance(v, str) and v.startswith(HUB):
        try:
            hub_dataset(v)
        except ConfigError as e:
            raise r.fail(key, str(e)) from None
        return v
    return r.path(v, key)


def _corpus(r: Reader, raw: Any) -> dict[str, Any] | None:
    """`corpus:` as a mapping (a bare path is its `train`), its train and dev as lists of paths."""
    if raw is None:
        return None
    c = r.mapping(raw if isinstance(raw, dict) else {"train": raw}, "corpus", CORPUS_KEYS)
    if "train" not in c:
        raise r.fail("corpus.train", "missing: the text files (or saved datasets) to search masks on")
    listed = ("train", "dev")
    return {
        k: [_corpus_path(r, p, f"corpus.{k}") for p in r.listing(v, f"corpus.{k}")] if k in listed else v
        for k, v in c.items()
    }


def _curve(
    r: Reader, d: dict[str, Any], key: str, kinds: tuple[str, ...], grid: tuple
) -> dict[str, Any] | None:
    """`search_curve:` (steps) or `data_curve:` (train sizes; `all` is the whole training set, the
    curve's last point in Fig. 9), with the grid's sparsities, methods and tasks as defaults. A search
    curve with `tasks: []` fine-tunes none of its masks: their MLM / KD dev losses are the curve."""
    if d.get(key) is None:
        return None
    methods, tasks, sparsities, registry = grid
    c = r.mapping(d[key], key, (*kinds, "sparsities", "methods", "tasks"))
    default_methods = [m for m in methods if key != "search_curve" or registry[base_method(m)].curve]
    first = r.listing(c.get(kinds[0]), f"{key}.{kinds[0]}")
    return {
        kinds[0]: [None if x == ALL else x for x in first]
        if key == "data_curve"
        else r.ints(first, f"{key}.{kinds[0]}"),
        "sparsities": [r.sparsity(s, f"{key}.sparsities") for s in r.listing(c.get("sparsities"), key)]
        or sparsities,
        "methods": [str(m) for m in r.listing(c.get("methods"), key)] or default_methods,
        # absent: every task; an explicit [] (search_curve): the masks' pre-training losses alone
        "tasks": list(tasks) if c.get("tasks") is None else [str(t) for t in r.listing(c["tasks"], key)],
    }


def spec_json(spec: SweepSpec) -> dict[str, Any]:
    """The spec as JSON (the store's `spec` meta, spec.json): every field but the method registry."""
    d = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "registry"}
    as_json = lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o)  # noqa: E731
    return json.loads(json.dumps(d, default=as_json))
