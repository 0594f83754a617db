"""The method registry: how a sweep turns a method name into a mask directory.

Every pruning method a sweep can run is one `MethodSpec` in `METHODS`: a `search` callable that
writes a mask directory for a (model, sparsity, seed, budget), plus what the sweep needs to know to
expand and cache it: whether the seed matters (OMP is deterministic: one mask, not one per seed),
whether it reads the corpus and a step budget, whether it searches on a task instead (`per_task`:
one mask per source task, each fine-tuned on every task: Chen et al.'s transfer table), which
settings it reads (they become part of the run's identity, so changing TAMT's lr re-runs TAMT and
nothing else), and how a search-cost curve (TAMT Fig. 6) is obtained: masks saved along one run
(`save_at`) or one run per budget (`budgets`, IMP).

Adding a method to sweeps means one entry here (`register`); a method registered with a `color`
also takes its place in reports: the tables and figures list such methods first, in the order they
were registered, each in its colour (`report_order`, `method_color`).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..pruning import ImpConfig


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
    available: Callable[[], str | None] = lambda: None  # a reason why it cannot run here, or None
    # The config `search` would build for a job, built without running it: the sweep's plan refuses
    # a bad setting as the run would (None: nothing to check before the run).
    configure: Callable[[SearchJob], Any] | None = None
    # Its colour in figures (matplotlib's); the methods that have one lead every report, in the
    # order they were registered. None: after them, in the order the store has them, coloured by
    # position (st-random sits with `ticketlab super`'s st-winning / st-losing, which are not sweep
    # methods; imp-task is reported per source task, `imp-task@sst2`).
    color: str | None = None


# --------------------------------------------------------------------------- one-shot methods

ONE_SHOT_SETTINGS = frozenset({"ranking", "targets"})


@functools.lru_cache(maxsize=1)
def _base_model(name: str):
    """The dense base model, loaded once per process for all one-shot masks (they do not modify it)."""
    from ..modeling import load_model

    return load_model(name, head="base")


def prune_config(job: SearchJob):
    """The `ticketlab.prune` config of an OMP / random pruning job."""
    from ..api import PruneConfig

    return PruneConfig(
        model=job.model,
        method=job.method,
        sparsity=job.sparsity,
        out=job.mask_dir,
        seed=job.seed or 0,
        **{k: v for k, v in job.settings.items() if k in ONE_SHOT_SETTINGS and v is not None},
    )


def one_shot_search(job: SearchJob) -> SearchOutput:
    """OMP / random pruning (`ticketlab.prune`) into the job's mask directory."""
    from ..api import prune

    config = prune_config(job)
    return SearchOutput(steps=0, time_s=prune(config, model=_base_model(job.model)).time_s)


def structured_random_search(job: SearchJob) -> SearchOutput:
    """A random structured ticket (Liang et al.): the sparsity is the fraction of heads and of FFN units
    pruned. Winning and losing tickets need a task's importance scores: `ticketlab super`."""
    from .supertickets import save_random_ticket

    t0 = time.perf_counter()
    granularity = job.settings.get("granularity") or "layer"
    save_random_ticket(job.model, job.sparsity, job.seed or 0, granularity, job.mask_dir)
    return SearchOutput(steps=0, time_s=time.perf_counter() - t0)


# --------------------------------------------------------------------------- searches by training

# `ticketlab search tamt|imp` options a spec may set under `search:` or per method, by their names as
# fields of `SearchConfig`, `TamtConfig` (freeze_head: not train_head) or `ImpConfig`. The sweep sets
# the others itself (model, sparsity, steps, out, corpus, seed, save_at, objective, progress).
# NON_RESULT: `SearchConfig`'s fields marked `result=False`, less `progress` (test_configs pins the
# two equal; not read from the dataclass here, as `api` imports torch and a spec must not).
NON_RESULT = frozenset(
    "save_every eval_every dev_blocks eval_batch_size no_eval keep_checkpoint log_every cache_dir".split()
)
TRAINING_SETTINGS = NON_RESULT | frozenset(
    "max_length batch_size lr warmup_steps weight_decay grad_accum max_grad_norm mixed_precision ranking "
    "targets".split()
)
TAMT_SETTINGS = TRAINING_SETTINGS | {"init", "threshold", "alpha", "freeze_head", "score_dtype"}
# not rewind_to: its masks apply to other weights. `variant` absent is "legacy": the IMP the sweeps
# written before variants existed ran, so their runs keep their ids and what those ids mean.
IMP_SETTINGS = TRAINING_SETTINGS | {"prune_rate", "variant", "pooler"}


def _search_output(job: SearchJob) -> SearchOutput:
    """Cost, final dev losses and masks along the way, read back from the search's mask files."""
    from ..masking import load_mask

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


def sweep_imp(sparsity: float, settings: dict[str, Any]) -> ImpConfig:
    """A sweep's IMP: without `variant`, `legacy` (the IMP its stored runs were searched with)."""
    from ..pruning import ImpConfig  # torch: only when a sweep has an IMP method

    return ImpConfig(sparsity, **{"variant": "legacy", **settings})


def search_config(job: SearchJob, objective: str | None = None):
    """The `ticketlab.search` config of a TAMT (`objective` given) or IMP search job: the spec's
    settings go to the method's config or to `SearchConfig`, under their CLI option names. A job
    with a `source` is task-specific IMP (`ticketlab search imp --task`): it reads the task, not the
    corpus."""
    from ..api import SearchConfig
    from ..pruning import TamtConfig

    settings = {k: v for k, v in job.settings.items() if v is not None}
    own = lambda *names: {k: settings.pop(k) for k in names if k in settings}  # noqa: E731
    seed = job.seed or 0
    if objective is not None:
        kw = own("ranking", "targets", "init", "threshold", "alpha", "freeze_head", "score_dtype")
        freeze = kw.pop("freeze_head", False)  # 'no' is not a bool: TamtConfig refuses it, by name
        kw["train_head"] = not freeze if isinstance(freeze, bool) else freeze
        method: TamtConfig | ImpConfig = TamtConfig(job.sparsity, objective=objective, seed=seed, **kw)
    else:
        method = sweep_imp(job.sparsity, own("ranking", "targets", "prune_rate", "variant", "pooler"))
    corpus = job.corpus or {}
    task = {"task": job.source["task"], "data_dir": job.source["data"]} if job.source is not None else {}
    return SearchConfig(
        model=job.model,
        method=method,
        steps=job.steps,
        out=job.mask_dir,
        corpus=corpus.get("train"),
        dev=corpus.get("dev") or None,
        seed=seed,
        **task,
        save_at=list(job.save_at),
        progress=sys.stderr.isatty(),
        **{k: corpus[k] for k in ("dev_fraction", "text_column") if corpus.get(k) is not None},
        **settings,
    )


def trained_search(objective: str | None = None) -> SearchFn:
    """A TAMT (`objective` given) or IMP search through `ticketlab.search` (resumable: the same OUT);
    its messages go to `work_dir/search.log`."""

    def run(job: SearchJob) -> SearchOutput:
        from ..api import search
        from .adapters import logged

        config = search_config(job, objective)
        with logged(job.work_dir / "search.log", f"search {config.verb} -> {job.mask_dir}"):
            search(config)
        return _search_output(job)

    return run


def _trained(
    name: str,
    description: str,
    settings: frozenset[str],
    curve: Curve,
    color: str,
    objective: str | None = None,
) -> MethodSpec:
    return MethodSpec(
        name,
        trained_search(objective),
        description,
        uses_corpus=True,
        uses_steps=True,
        settings=settings,
        non_result=NON_RESULT,
        curve=curve,
        configure=functools.partial(search_config, objective=objective),
        color=color,
    )


# --------------------------------------------------------------------------- registry

METHODS: dict[str, MethodSpec] = {
    "full": MethodSpec("full", None, "the dense pre-trained model (no mask)", seeded=False, color="C0"),
    "omp": MethodSpec(
        "omp",
        one_shot_search,
        "one-shot magnitude pruning (deterministic: one mask)",
        seeded=False,
        settings=ONE_SHOT_SETTINGS,
        configure=prune_config,
        color="C1",
    ),
    "random": MethodSpec(
        "random",
        one_shot_search,
        "random pruning at the same sparsity",
        settings=ONE_SHOT_SETTINGS,
        configure=prune_config,
        color="C2",
    ),
    "st-random": MethodSpec(
        "st-random",
        structured_random_search,
        "random structured ticket: the sparsity of heads and of FFN units pruned",
        settings=frozenset({"granularity"}),
    ),
    # IMP's masks along a run are at lower sparsities: its search-cost curve is one run per budget.
    "imp": _trained(
        "imp", "iterative magnitude pruning on MLM, rewinding to θ0", IMP_SETTINGS, "budgets", "C3"
    ),
    # Chen et al. §5 Table 3: a ticket found on one task, fine-tuned on every task (no search-cost curve).
    "imp-task": MethodSpec(
        "imp-task",
        trained_search(),
        "iterative magnitude pruning on a source task (`ticketlab search imp --task`)",
        uses_steps=True,
        settings=IMP_SETTINGS,
        non_result=NON_RESULT,
        per_task=True,
        configure=search_config,
    ),
    "tamt-mlm": _trained("tamt-mlm", "mask training on MLM", TAMT_SETTINGS, "save_at", "C4", "mlm"),
    "tamt-kd": _trained("tamt-kd", "mask training on KD (Eq. 6)", TAMT_SETTINGS, "save_at", "C5", "kd"),
    "tamt-mlm+kd": _trained(
        "tamt-mlm+kd", "mask training on MLM + KD", TAMT_SETTINGS, "save_at", "C6", "mlm+kd"
    ),
}


def register(spec: MethodSpec) -> MethodSpec:
    """Add (or replace, in its place) a method; sweeps can name it from then on, and with a `color`
    reports list it after the methods registered before it."""
    METHODS[spec.name] = spec
    return spec


def report_order() -> list[str]:
    """The methods every report lists first, in this order: those registered with a colour."""
    return [name for name, spec in METHODS.items() if spec.color is not None]


def method_color(method: str, methods: list[str]) -> str:
    """`method`'s colour in figures: its registered one, else matplotlib's cycle by its position
    after the registered ones among a report's `methods`."""
    spec = METHODS.get(method)
    if spec is not None and spec.color is not None:
        return spec.color
    order = report_order()
    order += [m for m in methods if m not in order]
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
    registry = METHODS if methods is None else methods
    if base_method(name) not in registry:
        raise ConfigError(f"unknown method '{name}' (known: {', '.join(registry)})")
    return registry[base_method(name)]
