"""A sweep's view of the one method registry: how a sweep turns a method name into a mask directory.

Every pruning method a sweep can run is one `MethodSpec` of `sweep_methods()`: a `search` callable that
writes a mask directory for a (model, sparsity, seed, budget), plus what the sweep needs to know to
expand and cache it: whether the seed matters (OMP is deterministic: one mask, not one per seed),
whether it reads the corpus and a step budget, whether it searches on a task instead (`per_task`:
one mask per source task, each fine-tuned on every task: Chen et al.'s transfer table), which
settings it reads (they become part of the run's identity, so changing TAMT's lr re-runs TAMT and
nothing else), and how a search-cost curve (TAMT Fig. 6) is obtained: masks saved along one run
(`save_at`) or one run per budget (`budgets`, IMP).

Every method registered in the library (`methods.registry`) is a sweep method: a search method one
per preset (`tamt` is `tamt-mlm`, `tamt-kd`, `tamt-mlm+kd`), plus `NAME-task` where it may search on
a task (`trained_methods`); a one-shot method (`ticketlab prune NAME`) and a unit method (`st-random`)
under its name; the dense model is `full`. `sweep_methods()` reads them from the registry, so a
method registered later is a sweep method too. Reports list the methods with a colour first, in the
registry's order, each in its colour (`report_order`, `method_color`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ...core.checks import from_options, not_result, option_name
from ...core.errors import ConfigError
from ...masks import load_mask
from ...methods import registry as library
from ...methods.registry import Method, Preset
from ...models.load import shared_base_model
from ...verbs.prune import PruneConfig, prune
from ...verbs.search import SearchConfig, search
from .adapters import logged

if TYPE_CHECKING:
    from ...methods import ImpConfig


@dataclass
class SearchJob:
    """One mask search, as the runner hands it to a method."""

    model: str  # base model: local directory or hub id
    method: str
    sparsity: float
    seed: int | None  # None for deterministic methods
    steps: int | None  # step budget (None for one-shot methods)
    save_at: list[int]  # also write masks at these steps (search-cost curves)
    settings: dict[str, Any]  # method settings from the spec (only those the method declares)
    corpus: dict[str, Any] | None  # resolved corpus block of the spec, for methods that train
    mask_dir: Path  # where the final mask directory goes (written atomically)
    work_dir: Path  # checkpoints and logs; the same directory on a resume
    # The task a per-task method searches on: {"label", "task", "data"} (None: not per task).
    source: dict[str, Any] | None = None

    def step_dir(self, step: int) -> Path:
        """Where the mask saved at `step` goes."""
        return self.mask_dir.parent / f"{self.mask_dir.name}.step{step:06d}"


@dataclass
class SearchOutput:
    """What a search reports back: its cost and, for `save_at`, the masks along the way."""

    steps: int = 0  # training steps the search took (0 for one-shot methods)
    time_s: float = 0.0  # search time, evaluation excluded
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. final training / dev losses
    # One entry per mask saved during the search: {"step", "mask_dir", "time_s"}.
    intermediate: list[dict[str, Any]] = field(default_factory=list)


SearchFn = Callable[[SearchJob], SearchOutput]
Curve = Literal["save_at", "budgets"]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    search: SearchFn | None  # None: the dense model, no mask ("full")
    description: str
    seeded: bool = True  # False: one mask whatever the search seeds (OMP)
    uses_corpus: bool = False
    uses_steps: bool = False  # reads the step budget `search.steps`
    settings: frozenset[str] = frozenset()  # search settings it reads, besides `steps`
    non_result: frozenset[str] = frozenset()  # of those, the ones that do not change the mask (logging...)
    curve: Curve | None = None  # how `search_curve` is realised; None: no curve for this method
    per_task: bool = False  # searched on each source task (`SearchJob.source`), not on the corpus
    # The config `search` would build for a job, built without running it: the sweep's plan refuses
    # a bad setting as the run would (None: nothing to check before the run).
    configure: Callable[[SearchJob], Any] | None = None
    # Its colour in figures (matplotlib's); the methods that have one lead every report, in the
    # registry's order. None: after them, in the order the store has them, coloured by position
    # (imp-task is reported per source task, `imp-task@sst2`).
    color: str | None = None
    # The defaults its search runs under for the settings the spec leaves out, given the spec's
    # settings and whether the base checkpoint holds a pooler: part of a run's identity (`plan`,
    # `run_ids.identity`).
    changed_defaults: Callable[[dict[str, Any], bool], dict[str, Any]] = lambda settings, pooler: {}
    not_swept: str | None = None  # why no sweep can make its masks (`Method.not_swept`): refused


# --------------------------------------------------------------------------- one-shot methods

PRUNE_SETTINGS = frozenset({"ranking", "targets", "no_pooler"})  # no_pooler: `--no-pooler`
# A calibrated one-shot method's (wanda, sparsegpt) besides those: its calibration sequences, drawn
# from the spec's corpus.
CALIBRATION_SETTINGS = frozenset({"calibration", "calibration_length"})


def own_settings(method: Method) -> frozenset[str]:
    """A one-shot method's own settings (its config's options: SparseGPT's blocksize, damp)."""
    fields = dataclasses.fields(method.config) if method.config is not None else ()
    return frozenset(option_name(f) for f in fields if "help" in f.metadata)


def prune_config(job: SearchJob):
    """The `ticketlab.prune` config of a one-shot job (OMP, random; Wanda and SparseGPT calibrated on
    the spec's training corpus, SparseGPT under its own settings)."""
    method = library.get_method(job.method)
    given = {k: v for k, v in job.settings.items() if v is not None}
    known = PRUNE_SETTINGS | CALIBRATION_SETTINGS
    corpus = {"corpus": job.corpus.get("train")} if job.corpus and method.calibrated else {}
    names = own_settings(method)
    own = {k: v for k, v in given.items() if k in names}
    return PruneConfig(
        model=job.model,
        method=job.method,
        sparsity=job.sparsity,
        out=job.mask_dir,
        seed=job.seed or 0,
        **corpus,
        **from_options(PruneConfig, {k: v for k, v in given.items() if k in known}),
        settings=own if method.config is not None else None,
    )


def one_shot_search(job: SearchJob) -> SearchOutput:
    """OMP / random pruning (`ticketlab.prune`) into the job's mask directory."""
    config = prune_config(job)
    return SearchOutput(steps=0, time_s=prune(config, model=shared_base_model(job.model)).time_s)


def unit_search(method: Method) -> SearchFn:
    """A unit method's search (`st-random`): its function writes the unit mask directory."""

    def run(job: SearchJob) -> SearchOutput:
        t0 = time.perf_counter()
        method.run(job.model, job.sparsity, job.seed or 0, job.settings, job.mask_dir)
        return SearchOutput(steps=0, time_s=time.perf_counter() - t0)

    return run


# --------------------------------------------------------------------------- searches by training

# `ticketlab search tamt|imp` options a spec may set under `search:` or per method, by their names as
# fields of `SearchConfig`, `TamtConfig` (freeze_head: not train_head) or `ImpConfig`. The sweep sets
# the others itself (model, sparsity, steps, out, corpus, seed, save_at, objective, progress).
# NON_RESULT: `SearchConfig`'s fields marked `result=False`, less `progress` (the sweep's own).
NON_RESULT = frozenset(not_result(SearchConfig)) - {"progress"}
TRAINING_SETTINGS = NON_RESULT | frozenset(
    "max_length batch_size lr warmup_steps weight_decay grad_accum max_grad_norm mixed_precision ranking "
    "targets schedule_steps clip_per_tensor adam_eps optimizer wikitext_markup corpus_tokens".split()
)
# Options of a search method's config a spec may not give: rewind_to (its masks apply to rewound
# weights, not to the base model a sweep fine-tunes) and head_lr (never offered to sweeps: TAMT-MLM's
# head follows lr, as in the paper).
NOT_SWEPT = frozenset({"rewind_to", "head_lr"})


def _search_output(job: SearchJob) -> SearchOutput:
    """Cost, final dev losses and masks along the way, read back from the search's mask files."""
    search = load_mask(job.mask_dir)[1].search
    intermediate = []
    for step in job.save_at:
        step_dir = job.mask_dir / "steps" / f"step-{step:06d}"
        time_s = load_mask(step_dir)[1].search.get("search_time_s")
        intermediate.append({"step": step, "mask_dir": str(step_dir), "time_s": time_s})
    final = {k: v for k, v in (search.get("final_eval") or {}).items() if k.endswith(("_loss", "_acc"))}
    return SearchOutput(
        steps=int(search.get("steps", job.steps or 0)),
        time_s=float(search.get("search_time_s", search.get("train_time_s", 0.0))),
        metrics={f"dev_{k}": v for k, v in final.items()},
        intermediate=intermediate,
    )


def _option_names(method: Method) -> set[str]:
    return {option_name(f) for f in dataclasses.fields(method.config)}


def setting_name(method: str, field: str) -> str:
    """The spec setting that gives config field `field` of sweep method `method`'s search: its option
    name (`core.checks.option_name`: TAMT's `train_head` is `freeze_head`), from the method's config,
    else `SearchConfig`; `field` itself where neither has it."""
    base = base_method(method)
    searches = library.methods("search").values()
    configs = [m.config for m in searches if any(s.name == base for s in trained_methods(m))]
    for config in (*configs, SearchConfig):
        for f in dataclasses.fields(config):
            if f.name == field:
                return option_name(f)
    return field


def spec_settings(method: Method, preset: Preset | None = None) -> frozenset[str]:
    """The settings a spec may give `method` (under `preset`), by their option names: those of
    TRAINING_SETTINGS it reads (`SearchConfig`'s, and `ranking` / `targets` where its config has
    them) and its config's documented options, less what the preset fixes and NOT_SWEPT."""
    fields = dataclasses.fields(method.config)
    readers = _option_names(method) | {f.name for f in dataclasses.fields(SearchConfig)}
    own = {option_name(f) for f in fields if "help" in f.metadata}
    fixed = {option_name(f) for f in fields if preset is not None and f.name in preset.fixed}
    return frozenset({n for n in TRAINING_SETTINGS if n in readers} | own) - fixed - NOT_SWEPT


def method_config(
    method: Method, preset: Preset | None, sparsity: float, seed: int | None, settings: dict[str, Any]
) -> Any:
    """`method`'s config in a sweep: its `settings` (option names: `freeze_head`), the preset's fixed
    fields and, where the config has one, the search seed."""
    kw = from_options(method.config, settings)
    seeded = {"seed": seed} if seed is not None and "seed" in _option_names(method) else {}
    return method.config(sparsity=sparsity, **kw, **seeded, **(preset.fixed if preset else {}))


def sweep_imp(sparsity: float, settings: dict[str, Any]) -> ImpConfig:
    """A sweep's IMP config at `sparsity` (without `variant`: Chen et al.'s, `ImpConfig`'s default)."""
    return method_config(library.get_method("imp", "search"), None, sparsity, None, settings)


def search_config(job: SearchJob, method: Method, preset: Preset | None = None) -> SearchConfig:
    """The `ticketlab.search` config of a job of `method` (under `preset`): the spec's settings go
    to the method's config or to `SearchConfig`, under their CLI option names. A job with a `source`
    searches on that task (`ticketlab search imp --task`), not on the corpus."""
    settings = {k: v for k, v in job.settings.items() if v is not None}
    own = {k: settings.pop(k) for k in _option_names(method) if k in settings}
    seed = job.seed or 0
    corpus = job.corpus or {}
    task = {"task": job.source["task"], "data_dir": job.source["data"]} if job.source is not None else {}
    return SearchConfig(
        model=job.model,
        method=method_config(method, preset, job.sparsity, seed, own),
        steps=job.steps,
        out=job.mask_dir,
        corpus=corpus.get("train"),
        dev=corpus.get("dev") or None,
        seed=seed,
        **task,
        save_at=list(job.save_at),
        progress=sys.stderr.isatty(),
        **{k: corpus[k] for k in ("dev_fraction", "text_column") if corpus.get(k) is not None},
        # the whole corpus unless the spec caps it: a sweep tokenizes it once for all its runs, and
        # its runs' ids were computed on all of it
        **{"corpus_tokens": 0, **settings},
    )


def trained_search(configure: Callable[[SearchJob], SearchConfig]) -> SearchFn:
    """A search through `ticketlab.search` of the config `configure` builds for a job (resumable:
    the same OUT); its messages go to `work_dir/search.log`."""

    def run(job: SearchJob) -> SearchOutput:

        config = configure(job)
        with logged(job.work_dir / "search.log", f"search {config.verb} -> {job.mask_dir}"):
            search(config)
        return _search_output(job)

    return run


def _trained(method: Method, preset: Preset | None, **kw: Any) -> MethodSpec:
    configure = functools.partial(search_config, method=method, preset=preset)
    fixed = dict(preset.fixed) if preset is not None else {}
    return MethodSpec(
        search=trained_search(configure),
        uses_steps=True,
        settings=spec_settings(method, preset),
        non_result=NON_RESULT,
        configure=configure,
        changed_defaults=lambda settings, pooler: method.changed_defaults(fixed, settings, pooler),
        **kw,
    )


def pooler_default(settings: dict[str, Any], pooler: bool) -> dict[str, Any]:
    """A one-shot method's reference default: the pooler among the default targets (where the checkpoint
    holds one and the spec names no targets)."""
    given = settings.get("targets") is not None or settings.get("no_pooler") is True
    return {"pooler": True} if pooler and not given else {}


@functools.cache  # per registered entry (identity): a sweep reads its methods often
def trained_methods(method: Method) -> tuple[MethodSpec, ...]:
    """A library search method as sweep methods: one per preset (searched on the corpus) and, where it
    may search on a task, `NAME-task`, searched on each source task and fine-tuned on every task
    (Chen et al. §5 Table 3; reported per source task, `imp-task@sst2`: no colour, no curve)."""
    curve: Curve = "save_at" if method.sparse_throughout else "budgets"
    specs = [
        _trained(method, p, name=p.name, description=p.help, uses_corpus=True, curve=curve, color=p.color)
        for p in method.named
    ]
    if method.task:
        name, on_task = f"{method.name}-task", f"`ticketlab search {method.name} --task`"
        specs.append(
            _trained(
                method,
                None,
                name=name,
                description=f"{method.help} on a source task ({on_task})",
                per_task=True,
            )
        )
    return tuple(specs)


# --------------------------------------------------------------------------- registry


@functools.cache  # per registered entry (identity)
def method_specs(method: Method) -> tuple[MethodSpec, ...]:
    """A registered method (`methods.registry`) as the sweep's methods: a search method's presets
    (`trained_methods`); a one-shot method through `ticketlab.prune`; a unit method's function; the
    dense model (no `run`)."""
    if method.verb == "search":
        return trained_methods(method)
    kw = {"seeded": method.seeded, "color": method.color, "not_swept": method.not_swept}
    if method.verb == "prune":  # through `ticketlab.prune`, its options the spec's settings
        settings = PRUNE_SETTINGS | (CALIBRATION_SETTINGS if method.calibrated else frozenset())
        settings |= own_settings(method)
        one_shot = {"settings": settings, "configure": prune_config, "changed_defaults": pooler_default}
        uses = {"uses_corpus": method.calibrated}
        return (MethodSpec(method.name, one_shot_search, method.help, **one_shot, **uses, **kw),)
    if method.run is None:
        return (MethodSpec(method.name, None, method.help, **kw),)
    return (MethodSpec(method.name, unit_search(method), method.help, settings=method.sweep_settings, **kw),)


def in_cycle(color: str | None) -> bool:
    """Whether a registered colour is a place in matplotlib's cycle ("C3"); named colours (the
    structured tickets') are not, and leave the cycle's places to the methods without one."""
    return color is not None and re.fullmatch(r"C\d", color) is not None


def sweep_methods() -> dict[str, MethodSpec]:
    """The sweep's methods by name, in report order: those of every registered method, in the
    registry's order (`method_specs`); a search method's preset without a colour takes the cycle's
    next after the coloured ones before it."""
    found: dict[str, MethodSpec] = {}
    for method in library.methods().values():
        for spec in method_specs(method):
            if method.verb == "search" and spec.color is None and not spec.per_task:
                place = sum(in_cycle(s.color) for s in found.values())
                spec = dataclasses.replace(spec, color=f"C{place % 10}")
            found[spec.name] = spec
    return found


def report_order() -> list[str]:
    """The methods every report lists first, in this order: those registered with a colour."""
    return [name for name, spec in sweep_methods().items() if spec.color is not None]


def method_color(method: str, methods: list[str]) -> str:
    """`method`'s colour in figures: its registered one, else matplotlib's cycle by its position
    after the registered ones among a report's `methods`. Registered colours outside the cycle (named
    ones: the structured tickets') take no place in it."""
    spec = sweep_methods().get(method)
    if spec is not None and spec.color is not None:
        return spec.color
    order = [m for m in report_order() if in_cycle(sweep_methods()[m].color)]
    order += [m for m in methods if m not in report_order()]
    return f"C{order.index(method) % 10}"


# A sweep may run one method twice with different settings: `BASE/VARIANT` is method BASE under its
# own label, e.g. TAMT from a random mask beside TAMT from OMP (Liu et al. §4.2.4):
#     methods: {tamt-kd: {}, tamt-kd/random-init: {init: random}}
# The label is the run's `method` (its own rows in the report); BASE's runs keep their ids.
VARIANT = "/"


def base_method(label: str) -> str:
    """The registry name of a sweep's method label (`tamt-kd/random-init` -> `tamt-kd`)."""
    return label.split(VARIANT, 1)[0]


def get_method(name: str, methods: dict[str, MethodSpec] | None = None) -> MethodSpec:
    registry = sweep_methods() if methods is None else methods
    if base_method(name) not in registry:
        raise ConfigError(f"unknown method '{name}' (known: {', '.join(registry)})")
    return registry[base_method(name)]
