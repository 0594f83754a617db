"""The method registry: how a sweep turns a method name into a mask directory.

Every pruning method a sweep can run is one `MethodSpec` in `METHODS`: a `search` callable that
writes a mask directory for a (model, sparsity, seed, budget), plus what the sweep needs to know to
expand and cache it: whether the seed matters (OMP is deterministic: one mask, not one per seed),
whether it reads the corpus and a step budget, which settings it reads (they become part of the run's
identity, so changing TAMT's lr re-runs TAMT and nothing else), and how a search-cost curve (TAMT
Fig. 6) is obtained: masks saved along one run (`save_at`) or one run per budget (`budgets`, IMP).

Adding a method to sweeps means one entry here.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError


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
    available: Callable[[], str | None] = lambda: None  # a reason why it cannot run here, or None


# --------------------------------------------------------------------------- one-shot methods

ONE_SHOT_SETTINGS = frozenset({"ranking", "targets"})


@functools.lru_cache(maxsize=1)
def _base_model(name: str):
    """The dense base model, loaded once per process for all one-shot masks (they do not modify it)."""
    from ..modeling import load_model

    return load_model(name, head="base")


def one_shot_search(job: SearchJob) -> SearchOutput:
    """OMP / random pruning via `pruning.ONE_SHOT`, written as a mask directory."""
    from ..masking import MaskConfig, save_mask
    from ..pruning import ONE_SHOT

    model = _base_model(job.model)
    ranking = job.settings.get("ranking", "local")
    targets = job.settings.get("targets")
    t0 = time.perf_counter()
    mask = ONE_SHOT[job.method](model, job.sparsity, ranking=ranking, targets=targets, seed=job.seed)
    elapsed = time.perf_counter() - t0
    config = MaskConfig.for_model(
        model,
        mask,
        method=job.method,
        sparsity=job.sparsity,
        base_model=job.model,
        targets=targets,
        ranking=ranking,
        seed=job.seed,
    )
    save_mask(mask, config, job.mask_dir)
    return SearchOutput(steps=0, time_s=elapsed)


# --------------------------------------------------------------------------- searches by training

# `ticketlab search tamt|imp` options a spec may set under `search:` or per method. The sweep sets
# the others itself (model, sparsity, steps, out, corpus, seed, save-at, objective, progress).
NON_RESULT = frozenset(
    "save_every eval_every dev_blocks eval_batch_size no_eval keep_checkpoint log_every cache_dir".split()
)
TRAINING_SETTINGS = NON_RESULT | frozenset(
    "max_length batch_size lr warmup_steps weight_decay grad_accum max_grad_norm mixed_precision ranking "
    "targets".split()
)
TAMT_SETTINGS = TRAINING_SETTINGS | {"init", "threshold", "alpha", "freeze_head"}
IMP_SETTINGS = TRAINING_SETTINGS | {"prune_rate"}  # not rewind_to: its masks apply to other weights


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


def search_by_cli(verb: str, **fixed: str) -> SearchFn:
    """A search run through `ticketlab search VERB` in this process (resumable: the same OUT)."""

    def search(job: SearchJob) -> SearchOutput:
        from .adapters import cli_argv, run_verb

        argv = ["search", verb, "--model", job.model, "--sparsity", str(job.sparsity)]
        argv += ["--steps", str(job.steps), "--out", str(job.mask_dir), "--seed", str(job.seed or 0)]
        corpus = job.corpus or {}
        argv += ["--corpus", *corpus["train"]] + (["--dev", *corpus["dev"]] if corpus.get("dev") else [])
        argv += cli_argv({k: corpus.get(k) for k in ("dev_fraction", "text_column")})
        argv += ["--save-at", ",".join(map(str, job.save_at))] if job.save_at else []
        argv += cli_argv({**fixed, **job.settings, "no_progress": not sys.stderr.isatty()})
        run_verb(argv, job.work_dir / "search.log")
        return _search_output(job)

    return search


def _trained(name: str, description: str, settings: frozenset[str], curve: Curve, **fixed: str) -> MethodSpec:
    return MethodSpec(
        name,
        search_by_cli(*(("tamt",) if name.startswith("tamt") else ("imp",)), **fixed),
        description,
        uses_corpus=True,
        uses_steps=True,
        settings=settings,
        non_result=NON_RESULT,
        curve=curve,
    )


# --------------------------------------------------------------------------- registry

METHODS: dict[str, MethodSpec] = {
    "full": MethodSpec("full", None, "the dense pre-trained model (no mask)", seeded=False),
    "omp": MethodSpec(
        "omp",
        one_shot_search,
        "one-shot magnitude pruning (deterministic: one mask)",
        seeded=False,
        settings=ONE_SHOT_SETTINGS,
    ),
    "random": MethodSpec(
        "random", one_shot_search, "random pruning at the same sparsity", settings=ONE_SHOT_SETTINGS
    ),
    # IMP's masks along a run are at lower sparsities: its search-cost curve is one run per budget.
    "imp": _trained("imp", "iterative magnitude pruning on MLM, rewinding to θ0", IMP_SETTINGS, "budgets"),
    "tamt-mlm": _trained("tamt-mlm", "mask training on MLM", TAMT_SETTINGS, "save_at", objective="mlm"),
    "tamt-kd": _trained("tamt-kd", "mask training on KD (Eq. 6)", TAMT_SETTINGS, "save_at", objective="kd"),
    "tamt-mlm+kd": _trained(
        "tamt-mlm+kd", "mask training on MLM + KD", TAMT_SETTINGS, "save_at", objective="mlm+kd"
    ),
}


def register(spec: MethodSpec) -> MethodSpec:
    """Add (or replace) a method; sweeps can name it from then on."""
    METHODS[spec.name] = spec
    return spec


def get_method(name: str, methods: dict[str, MethodSpec] | None = None) -> MethodSpec:
    registry = METHODS if methods is None else methods
    if name not in registry:
        raise ConfigError(f"unknown method '{name}' (known: {', '.join(registry)})")
    return registry[name]
