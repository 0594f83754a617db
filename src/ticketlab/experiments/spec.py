"""Sweep specs: one YAML file describing a grid of mask searches and fine-tunings.

    model: ../shared/models/bert-mini-ref      # base model: local directory or hub id
    corpus: {train: wiki/train.txt, dev: wiki/dev.txt}   # for imp / tamt-* and pre-training eval
    tasks:
      sst2: {data: ../shared/data/glue}                    # a GLUE root or the task's folder
      cola: {data: ../shared/data/glue, steps: 400}        # per-task fine-tuning overrides
    methods: [full, omp, random, imp, tamt-mlm, tamt-kd]   # or {tamt-mlm: {lr: 1.0e-4}, ...}
    sparsities: [0.5, 0.7, 0.9]                            # per method: {imp: {sparsities: [0.5, 0.7]}}
    seeds: {search: [0, 1, 2], finetune: [0, 1, 2]}        # TAMT §4.1.3: 3 masks x 3 fine-tunings
                                                           # (the default search seeds: [0, 1, 2])
    search: {steps: 200, batch_size: 16}
    finetune: {steps: 300, batch_size: 32, lr: 2.0e-5, eval_every: 50}
    pretrain_eval: {max_blocks: 256}                       # MLM/KD dev loss of every mask (Fig. 5)
    search_curve: {steps: [50, 100], sparsities: [0.7]}    # score vs search steps/time (Fig. 6, 8)
    data_curve: {train_sizes: [64, 256, all], sparsities: [0.7]}    # score vs #examples (Fig. 9)

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

IMP's `variant` names whose IMP runs (`pruning.imp`): `chen` (global over the encoder's matrices, no
word embeddings) or `tamt` (per matrix, embeddings included). Left out, it is `legacy`, ticketlab's
IMP before the variants (neither paper's), so that sweeps written then keep their runs.

Paths are relative to the YAML file. Every problem (an unknown key, a method that does not exist, a
sparsity outside [0, 1), a missing data directory) is one `ConfigError` naming the file and the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import itertools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..files import read_text, safe_component
from ..validation import FieldError
from .adapters import PRETRAIN_EVAL_SETTINGS, finetune_settings
from .methods import METHODS, VARIANT, MethodSpec, base_method, sweep_imp

# Corpus keys: text files or saved `datasets` directories, and how the dev split is made (see
# `ticketlab.data.corpus.load_lm_corpus`).
CORPUS_KEYS = ("train", "dev", "dev_fraction", "text_column")
TOP_KEYS = (
    "name",
    "output",
    "model",
    "corpus",
    "tasks",
    "methods",
    "sparsities",
    "seeds",
    "search",
    "finetune",
    "pretrain_eval",
    "search_curve",
    "data_curve",
    "resources",
)
ALL = "all"  # data_curve.train_sizes: the whole training set
# Keys under `methods.<m>` that shape the grid, not the search: never in a run's `settings`.
GRID_KEYS = ("sparsities", "sources", "search_seeds")
# Masks per seeded method when a spec names no search seeds: three, as TAMT §4.1.3 (one mask would
# make every comparison one of fine-tuning noise around that mask).
DEFAULT_SEARCH_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class TaskEntry:
    name: str  # the label used in the sweep and its report
    task: str  # the task's name in the task registry (default: the label)
    data: str | None  # data directory (absolute); None: download from the hub (`data: hub`, online only)
    settings: dict[str, Any] = field(default_factory=dict)  # fine-tuning overrides for this task


@dataclass
class SearchCurve:
    """Fine-tune masks found with smaller search budgets: score vs search steps and time (Fig. 6)."""

    steps: list[int]
    sparsities: list[float]
    methods: list[str]
    tasks: list[str]


@dataclass
class DataCurve:
    """Fine-tune on fewer examples: score vs training-set size (Fig. 9)."""

    train_sizes: list[int | None]  # None: the whole training set (`all` in the YAML)
    sparsities: list[float]
    methods: list[str]
    tasks: list[str]


def unknown_method(label: str, registry: dict[str, MethodSpec]) -> str | None:
    """Why a method label cannot be swept, or None: its base must be registered and a variant
    (`BASE/VARIANT`) named by letters, digits, '-' and '_' (it names run directories)."""
    base, _, variant = label.partition(VARIANT)
    if base not in registry:
        return f"unknown method '{base}'{_near(base, registry)} (known: {', '.join(registry)})"
    if VARIANT in label and not (variant and variant.replace("-", "").replace("_", "").isalnum()):
        return f"'{label}': a variant is BASE/NAME, NAME of letters, digits, '-' and '_'"
    return None


def _near(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass
class SweepSpec:
    model: str
    tasks: dict[str, TaskEntry]
    # method -> its search-setting overrides, and its own `sparsities` / `sources` (GRID_KEYS)
    methods: dict[str, dict[str, Any]]
    sparsities: list[float]  # of every method that does not give its own
    search_seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEARCH_SEEDS))
    finetune_seeds: list[int] = field(default_factory=lambda: [0])
    corpus: dict[str, Any] | None = None
    search: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    pretrain_eval: dict[str, Any] | None = None
    search_curve: SearchCurve | None = None
    data_curve: DataCurve | None = None
    name: str = "sweep"
    output: str | None = None  # default sweep directory (absolute)
    # What a launched run asks for, per run kind (launchers.resources); not part of any run's identity.
    resources: dict[str, Any] | None = None
    source: str = "<spec>"  # the YAML file, for error messages
    registry: dict[str, MethodSpec] | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ validation
    def _fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {msg}")

    @property
    def method_specs(self) -> dict[str, MethodSpec]:
        registry = METHODS if self.registry is None else self.registry
        return {m: registry[base_method(m)] for m in self.methods}

    def __post_init__(self) -> None:
        registry = METHODS if self.registry is None else self.registry
        if not self.model:
            raise self._fail("model", "a base model (local directory or hub id) is required")
        if self.resources is not None:
            from .launchers import resources

            try:
                resources(self.resources)
            except ConfigError as e:
                raise self._fail("resources", str(e).removeprefix("resources: ")) from None
        if not self.tasks:
            raise self._fail("tasks", "at least one task is required")
        if not self.methods:
            raise self._fail("methods", "at least one method is required")
        for m in self.methods:
            if (why := unknown_method(m, registry)) is not None:
                raise self._fail("methods", why)
        self._check_sparsities()
        self._check_sources()
        for key, seeds in (("seeds.search", self.search_seeds), ("seeds.finetune", self.finetune_seeds)):
            self._check_seeds(key, seeds)
        self._check_method_seeds()
        self._check_search_settings(registry)
        self._check_finetune_settings()
        uses_corpus = [m for m, s in self.method_specs.items() if s.uses_corpus]
        if self.corpus is None and uses_corpus:
            raise self._fail("corpus", f"required by {', '.join(uses_corpus)} (the mask-search corpus)")
        if self.pretrain_eval is not None:
            if self.corpus is None or not self.corpus.get("dev"):
                raise self._fail(
                    "corpus.dev", "required by pretrain_eval (held-out text for the MLM/KD losses)"
                )
            self._check_keys(self.pretrain_eval, PRETRAIN_EVAL_SETTINGS, "pretrain_eval")
            if "max_length" not in self.pretrain_eval and "max_length" in self.search:
                self.pretrain_eval["max_length"] = self.search["max_length"]  # score what was searched
        if self.search_curve is not None:
            self._check_search_curve()
        if self.data_curve is not None:
            self._check_data_curve()
        for name in self.tasks:  # every planned run's config, built now (the curves are checked)
            self._check_finetune_configs(name)
        self._check_search_configs()  # before pretrain_eval's: a search.max_length it took is named so
        if self.pretrain_eval is not None:
            self._check_pretrain_eval_config()

    def _check_keys(self, d: dict[str, Any], allowed, where: str) -> None:
        for k in d:
            if k not in allowed:
                raise self._fail(
                    f"{where}.{k}",
                    f"unknown setting{_near(k, allowed)} (allowed: {', '.join(sorted(allowed))})",
                )

    def _check_sparsities(self) -> None:
        self._check_fractions("sparsities", self.sparsities)
        for m, spec in self.method_specs.items():
            own = self.methods[m].get("sparsities")
            if own is not None:
                if spec.search is None:
                    raise self._fail(f"methods.{m}.sparsities", f"{m} has no mask to prune")
                if not own:
                    raise self._fail(f"methods.{m}.sparsities", "at least one sparsity is required")
                self._check_fractions(f"methods.{m}.sparsities", own)
            elif spec.search is not None and not self.sparsities:
                raise self._fail(
                    "sparsities",
                    f"at least one sparsity is required (by {m}, or give methods.{m}.sparsities)",
                )

    def _check_fractions(self, key: str, values: list) -> None:
        for s in values:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= s < 1.0:
                raise self._fail(key, f"{s!r} is not a fraction in [0, 1) (0.7 = 70% of weights zero)")
        if len(set(values)) != len(values):
            raise self._fail(key, f"duplicate values in {values}")

    def _check_seeds(self, key: str, seeds: list) -> None:
        ints = all(isinstance(x, int) and not isinstance(x, bool) for x in seeds)
        if not seeds or not ints or len(set(seeds)) != len(seeds):
            raise self._fail(key, f"a non-empty list of distinct integers is required, got {seeds}")

    def _check_method_seeds(self) -> None:
        for m, spec in self.method_specs.items():
            own = self.methods[m].get("search_seeds")
            if own is None:
                continue
            key = f"methods.{m}.search_seeds"
            if spec.search is None or not spec.seeded:
                raise self._fail(key, f"{m} is deterministic: one mask whatever the seed")
            self._check_seeds(key, own)

    def _check_sources(self) -> None:
        for m, spec in self.method_specs.items():
            sources = self.methods[m].get("sources")
            if sources is None:
                continue
            key = f"methods.{m}.sources"
            if not spec.per_task:
                per_task = [n for n, s in (self.registry or METHODS).items() if s.per_task]
                raise self._fail(
                    key, f"{m} does not search on a task (per-task methods: {', '.join(per_task)})"
                )
            if not sources or len(set(sources)) != len(sources):
                raise self._fail(key, f"a non-empty list of distinct task labels is required, got {sources}")
            self._check_subset(key, sources, list(self.tasks), "the sweep's tasks")

    def _check_search_settings(self, registry: dict[str, MethodSpec]) -> None:
        known = {"steps"}.union(*(s.settings for s in registry.values()))
        self._check_keys(self.search, known, "search")
        for m, overrides in self.method_specs.items():
            allowed = overrides.settings | ({"steps"} if overrides.uses_steps else set())
            self._check_keys(self.methods[m], allowed | set(GRID_KEYS), f"methods.{m}")
            if "variant" in overrides.settings:  # an IMP method: its settings checked before any run
                self._check_imp_settings(m)
            if overrides.uses_steps:
                steps = self.search_settings(m).get("steps")
                if not _positive_int(steps):
                    raise self._fail(
                        "search.steps", f"a positive step budget is required by {m}, got {steps!r}"
                    )

    def _check_imp_settings(self, method: str) -> None:
        """IMP's own settings (variant, ranking, pooler, prune_rate) at each of the method's sparsities,
        as `ImpConfig` checks them; an error names the spec's key."""
        given = self.search_settings(method)
        own = {
            k: given[k] for k in ("variant", "ranking", "pooler", "prune_rate") if given.get(k) is not None
        }
        where = f"methods.{method}" if own.keys() & self.methods[method].keys() else "search"
        for s in self.method_sparsities(method):
            with self._naming(lambda field: where if field is None else self._search_key(method, field)):
                sweep_imp(s, own)

    def _check_finetune_settings(self) -> None:
        allowed = finetune_settings()
        self._check_keys(self.finetune, allowed, "finetune")
        for name, t in self.tasks.items():
            self._check_keys(t.settings, allowed, f"tasks.{name}")
            steps = self.finetune_settings(name).get("steps")
            if steps is not None and not _positive_int(steps):
                raise self._fail("finetune.steps", f"a positive number of steps or null, got {steps!r}")
            size = self.finetune_settings(name).get("train_size")
            if size is not None and not _positive_int(size):
                raise self._fail(f"tasks.{name}.train_size", f"a positive integer or null, got {size!r}")

    # ------------------------------------------------------------------ the runs' configs
    @contextlib.contextmanager
    def _naming(self, key_of: Callable[[str | None], str]) -> Iterator[None]:
        """A config's refusal as this file's: `key_of` turns the failing field (None: a check across
        fields) into the spec key that set it, e.g. lr -> `methods.tamt-mlm.lr` or `search.lr`."""
        try:
            yield
        except FieldError as e:
            raise self._fail(key_of(e.field), e.problem + _yaml_hint(e.value)) from None
        except ConfigError as e:
            raise self._fail(key_of(None), str(e)) from None

    def _finetune_key(self, task: str, field: str | None) -> str:
        key = {"max_steps": "steps", "train_samples": "train_size"}.get(field or "", field)
        own = self.tasks[task].settings
        if key in own:
            return f"tasks.{task}.{key}"
        if key in self.finetune:
            return f"finetune.{key}"
        return f"tasks.{task}" if own else "finetune"

    def _search_key(self, method: str, field: str | None) -> str:
        if field in ("dev_fraction", "text_column"):  # the search reads them from the corpus block
            return f"corpus.{field}"
        key = "freeze_head" if field == "train_head" else field
        own = self.methods[method]
        if key in own:
            return f"methods.{method}.{key}"
        if key in self.search:
            return f"search.{key}"
        return f"methods.{method}" if own else "search"

    def _check_finetune_configs(self, task: str) -> None:
        """Build the `FinetuneConfig` of every fine-tuning of `task` the sweep plans (each seed and
        training-set size), with the code the runs use: the dry run refuses what a run would."""
        from .adapters import FinetuneJob, finetune_config

        settings = self.finetune_settings(task)
        sizes = [settings.pop("train_size", None)]
        if self.data_curve is not None and task in self.data_curve.tasks:
            sizes += self.data_curve.train_sizes
        t = self.tasks[task]
        for size, seed in itertools.product(sizes, self.finetune_seeds):
            job = FinetuneJob(self.model, None, t.task, t.data, seed, size, settings, _PLAN_DIR)
            with self._naming(lambda field: self._finetune_key(task, field)):
                finetune_config(job)

    def _check_search_configs(self) -> None:
        """Build the config of every search the sweep plans (each sparsity, seed, source task and
        step budget) through its method's `configure`: the one its run builds."""
        from .methods import SearchJob

        for m, spec in self.method_specs.items():
            if spec.configure is None:
                continue
            settings = self.search_settings(m)
            budget = settings.pop("steps", None)
            runs = [(budget, s) for s in self.method_sparsities(m)]
            c = self.search_curve
            if c is not None and spec.curve == "budgets" and m in c.methods:
                runs += [(b, s) for b in c.steps for s in c.sparsities]  # one run per budget (IMP's curve)
            sources = [
                {"label": s, "task": self.tasks[s].task, "data": self.tasks[s].data} for s in self.sources(m)
            ]
            seeds = self.method_seeds(m)
            for (steps, sparsity), seed, source in itertools.product(runs, seeds, sources or [None]):
                job = SearchJob(
                    self.model,
                    base_method(m),  # a variant label (`omp/global`) runs its base method, as the runner does
                    sparsity,
                    seed,
                    steps,
                    [],
                    settings,
                    self.corpus if spec.uses_corpus else None,  # as planned: a per-task search reads none
                    _PLAN_DIR,
                    _PLAN_DIR,
                    source,
                )
                with self._naming(lambda field, m=m: self._search_key(m, field)):
                    spec.configure(job)

    def _check_pretrain_eval_config(self) -> None:
        from .adapters import PretrainEvalJob, pretrain_eval_config

        job = PretrainEvalJob(self.model, None, self.corpus or {}, self.pretrain_eval or {}, _PLAN_DIR)
        key = lambda field: "corpus.text_column" if field == "text_column" else f"pretrain_eval.{field}"  # noqa: E731
        with self._naming(lambda field: key(field) if field else "pretrain_eval"):
            pretrain_eval_config(job)

    def _check_subset(self, key: str, values: list, allowed: list, what: str | None = None) -> None:
        what = what or f"the sweep's {key.rsplit('.', 1)[-1]}"
        for v in values:
            if v not in allowed:
                raise self._fail(key, f"{v!r} is not in {what} {allowed}")

    def _check_curve_sparsities(self, key: str, sparsities: list[float], methods: list[str]) -> None:
        """A curve's masks are among the main grid's: its sparsities must be every curve method's."""
        for m in methods:
            if self.method_specs[m].search is None:
                continue
            if not sparsities:
                raise self._fail(key, f"at least one sparsity is required (by {m})")
            own = "sparsities" in self.methods[m]
            self._check_subset(
                key, sparsities, self.method_sparsities(m), f"the sparsities of {m}" if own else None
            )

    def _check_search_curve(self) -> None:
        c = self.search_curve
        if not c.steps or not all(_positive_int(s) for s in c.steps):
            raise self._fail("search_curve.steps", f"a non-empty list of positive integers, got {c.steps}")
        self._check_subset("search_curve.methods", c.methods, list(self.methods))
        self._check_subset("search_curve.tasks", c.tasks, list(self.tasks))
        for m in c.methods:
            spec = self.method_specs[m]
            if spec.per_task:
                raise self._fail(
                    "search_curve.methods", f"{m} has no search-cost curve (a mask per source task)"
                )
            if spec.curve is None:
                raise self._fail("search_curve.methods", f"{m} has no search budget to vary")
            budget = self.search_settings(m)["steps"]
            if spec.curve == "save_at" and max(c.steps) > budget:
                raise self._fail(
                    "search_curve.steps",
                    f"{max(c.steps)} is beyond the search budget of {m} ({budget} steps); masks are saved "
                    "along that run",
                )
        self._check_curve_sparsities("search_curve.sparsities", c.sparsities, c.methods)

    def _check_data_curve(self) -> None:
        c = self.data_curve
        sizes = c.train_sizes
        if not sizes or not all(s is None or _positive_int(s) for s in sizes) or len(set(sizes)) < len(sizes):
            shown = [ALL if s is None else s for s in sizes]
            raise self._fail(
                "data_curve.train_sizes",
                f"a non-empty list of distinct positive integers or '{ALL}', got {shown}",
            )
        self._check_subset("data_curve.methods", c.methods, list(self.methods))
        self._check_subset("data_curve.tasks", c.tasks, list(self.tasks))
        self._check_curve_sparsities("data_curve.sparsities", c.sparsities, c.methods)

    # ------------------------------------------------------------------ resolved settings
    def search_settings(self, method: str) -> dict[str, Any]:
        """The search settings `method` reads: the spec's `search` block under its own overrides."""
        spec = self.method_specs[method]
        allowed = spec.settings | ({"steps"} if spec.uses_steps else set())
        merged = {**self.search, **self.methods[method]}
        return {k: v for k, v in sorted(merged.items()) if k in allowed and k not in GRID_KEYS}

    def method_sparsities(self, method: str) -> list[float]:
        """The sparsities `method` is searched at: its own `sparsities`, else the sweep's."""
        own = self.methods[method].get("sparsities")
        return list(own) if own is not None else list(self.sparsities)

    def method_seeds(self, method: str) -> list[int | None]:
        """The seeds `method`'s masks are searched with: its own `search_seeds`, else the sweep's;
        [None] for a deterministic method (one mask)."""
        if not self.method_specs[method].seeded:
            return [None]
        own = self.methods[method].get("search_seeds")
        return list(own) if own is not None else list(self.search_seeds)

    def sources(self, method: str) -> list[str]:
        """The task labels a per-task method searches on (default: every task); [] for the others."""
        if not self.method_specs[method].per_task:
            return []
        return list(self.methods[method].get("sources") or self.tasks)

    def finetune_settings(self, task: str) -> dict[str, Any]:
        return dict(sorted({**self.finetune, **self.tasks[task].settings}.items()))


# Where a config built only to be checked says its run would write: nothing is written there.
_PLAN_DIR = Path("<plan>")


def _yaml_hint(value: Any) -> str:
    """Why a number may have come as text: YAML 1.1 reads 1e-4 as a string (1.0e-4 is a number)."""
    if not isinstance(value, str) or "e" not in value.lower():
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return f" (YAML reads {value} as text: write the number with a dot, e.g. 1.0e-4)"


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


# --------------------------------------------------------------------------- reading YAML


class _Reader:
    """Type checks on the raw YAML with errors that name the file and the key."""

    def __init__(self, source: str, base_dir: Path):
        self.source, self.base_dir = source, base_dir

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {msg}")

    def mapping(self, v: Any, key: str, allowed=None) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.fail(key, f"expected a mapping, got {type(v).__name__}")
        for k in v:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {k!r}")
            if allowed is not None and k not in allowed:
                raise self.fail(f"{key}.{k}" if key else k, f"unknown key{_near(k, allowed)}")
        return dict(v)

    def listing(self, v: Any, key: str) -> list:
        if v is None:
            return []
        return list(v) if isinstance(v, (list, tuple)) else [v]

    def sparsity(self, v: Any, key: str) -> float:
        if isinstance(v, str) and v.strip().endswith("%"):
            try:
                v = float(v.strip()[:-1]) / 100
            except ValueError:
                raise self.fail(key, f"not a number: {v!r}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(key, f"{v!r} is not a number")
        return round(float(v), 6)

    def ints(self, v: Any, key: str) -> list[int]:
        out = self.listing(v, key)
        for x in out:
            if isinstance(x, bool) or not isinstance(x, int):
                raise self.fail(key, f"{x!r} is not an integer")
        return out

    def task(self, task: str, data: str | None, key: str) -> None:
        """The task must be known: built in, registered in code, or described by a task.json in its data."""
        from ..errors import TicketlabError
        from ..tasks import get_task

        try:
            get_task(task, data)
        except TicketlabError as e:
            raise self.fail(key, str(e)) from None

    def path(self, v: Any, key: str, *, hub_ok: bool = False) -> str:
        """A path relative to the spec's directory, made absolute; with `hub_ok`, a hub id passes."""
        if not isinstance(v, str) or not v:
            raise self.fail(key, f"expected a path, got {v!r}")
        p = Path(v).expanduser()
        p = p if p.is_absolute() else self.base_dir / p
        if p.exists():
            return str(p.resolve())
        if hub_ok and not v.startswith((".", "/", "~")) and v.count("/") <= 1:
            return v  # a hub id (needs network at run time)
        raise self.fail(key, f"{v}: not found (looked for {p})")


def load_spec(path: str | os.PathLike, *, registry: dict[str, MethodSpec] | None = None) -> SweepSpec:
    """Read and validate a sweep spec YAML file."""
    path = Path(path)
    text = read_text(path, "sweep spec", ConfigError)
    try:
        raw = yaml.safe_load(text)
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
    r = _Reader(source, Path(base_dir or Path.cwd()).resolve())
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a sweep spec must be a mapping of keys (model, tasks, methods, ...)")
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
        if (why := unknown_method(m, registry or METHODS)) is not None:
            raise r.fail("methods", why)
    grid = (methods, tasks, sparsities, registry or METHODS)
    search_curve = _curve(r, d, "search_curve", ("steps",), grid)
    data_curve = _curve(r, d, "data_curve", ("train_sizes",), grid)
    pretrain_eval = d.get("pretrain_eval")
    return SweepSpec(
        model=r.path(d["model"], "model", hub_ok=True),
        tasks=tasks,
        methods=methods,
        sparsities=sparsities,
        search_seeds=r.ints(seeds.get("search", list(DEFAULT_SEARCH_SEEDS)), "seeds.search"),
        finetune_seeds=r.ints(seeds.get("finetune", [0]), "seeds.finetune"),
        corpus=corpus,
        search=r.mapping(d.get("search"), "search"),
        finetune=r.mapping(d.get("finetune"), "finetune"),
        pretrain_eval=None if pretrain_eval is None else r.mapping(pretrain_eval or {}, "pretrain_eval"),
        search_curve=SearchCurve(**search_curve) if search_curve else None,
        data_curve=DataCurve(**data_curve) if data_curve else None,
        name=str(d.get("name") or Path(source).stem),
        output=str((r.base_dir / d["output"]).resolve()) if d.get("output") else None,
        resources=r.mapping(d.get("resources"), "resources") or None,
        source=source,
        registry=registry,
    )


def _tasks(r: _Reader, raw: Any) -> dict[str, TaskEntry]:
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


def _methods(r: _Reader, raw: Any) -> dict[str, dict[str, Any]]:
    """`methods:`: a list of names (an item may be `{name: {settings}}`) or a mapping name -> settings;
    a method's own sparsities, search seeds and source tasks parsed like the top-level keys."""
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
            own["search_seeds"] = r.ints(own["search_seeds"], f"methods.{m}.search_seeds")
        if "sources" in own:
            own["sources"] = [str(t) for t in r.listing(own["sources"], f"methods.{m}.sources")]
    return methods


def _corpus(r: _Reader, raw: Any) -> dict[str, Any] | None:
    """`corpus:` as a mapping (a bare path is its `train`), its train and dev as lists of paths."""
    if raw is None:
        return None
    c = r.mapping(raw if isinstance(raw, dict) else {"train": raw}, "corpus", CORPUS_KEYS)
    if "train" not in c:
        raise r.fail("corpus.train", "missing: the text files (or saved datasets) to search masks on")
    return {
        k: [r.path(p, f"corpus.{k}") for p in r.listing(v, f"corpus.{k}")] if k in ("train", "dev") else v
        for k, v in c.items()
    }


def _curve(
    r: _Reader, d: dict[str, Any], key: str, kinds: tuple[str, ...], grid: tuple
) -> dict[str, Any] | None:
    """`search_curve:` (steps) or `data_curve:` (train sizes; `all` is the whole training set, the
    curve's last point in Fig. 9), with the grid's sparsities, methods and tasks as defaults."""
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
        "tasks": [str(t) for t in r.listing(c.get("tasks"), key)] or list(tasks),
    }


def spec_json(spec: SweepSpec) -> dict[str, Any]:
    """The spec as JSON (the store's `spec` meta, spec.json): every field but the method registry."""
    d = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "registry"}
    as_json = lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o)  # noqa: E731
    return json.loads(json.dumps(d, default=as_json))
