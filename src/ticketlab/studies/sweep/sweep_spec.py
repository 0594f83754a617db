"""`SweepSpec`: a sweep's grid as a dataclass (tasks, methods with their own sparsities, seeds and
sources, the search / fine-tuning / pre-training-eval settings, the search and data curves), checked
when it is made: every unknown key, bad value or inconsistent curve is one `ConfigError` naming the
spec file and its key. Its `PlannedConfigs` part (`planned_configs.py`) also builds every planned
run's config, so that a dry run refuses what a run would.

`spec.py` reads it from YAML (`load_spec`, `spec_from_dict`); the methods its settings name are in
`methods.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.checks import INT64, field_types, is_int, is_number, value_problem
from ...core.errors import ConfigError, did_you_mean
from ...core.outputs import safe_component
from ...methods import registry as library
from ...verbs.search import SearchConfig
from .adapters import PRETRAIN_EVAL_SETTINGS, finetune_settings
from .declared import Claim, Endpoint, check_claims
from .jobs import MethodSpec
from .methods import VARIANT, base_method, sweep_methods
from .planned_configs import PlannedConfigs
from .resources import resources
from .spec_grid import GRID_KEYS, SpecGrid
from .trained import sweep_imp

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
    "endpoint",
    "claims",
    "recipes",
)
ALL = "all"  # data_curve.train_sizes: the whole training set
# Keys under `methods.<m>` that shape the grid, not the search: never in a run's `settings` (a run
# names its own seed; `finetune_seeds` only chooses which fine-tunings are planned).
# Fine-tuning seeds per mask when a spec names none: drawn per mask (`plan.mask_seeds`), at most this many
DEFAULT_FINETUNE_DRAWS = 1
MAX_FINETUNE_DRAWS = 1000
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
    """Why a method label cannot be swept, or None: its base must be registered, a sweep must be able
    to make its masks (`MethodSpec.not_swept`), and a variant (`BASE/VARIANT`) be named by letters,
    digits, '-' and '_' (it names run directories)."""
    base, _, variant = label.partition(VARIANT)
    if base not in registry:
        known = [name for name, spec in registry.items() if spec.not_swept is None]
        return f"unknown method '{base}'{did_you_mean(base, known)} (known: {', '.join(known)})"
    if (why := registry[base].not_swept) is not None:
        return f"'{base}' is no sweep's method: it {why}"
    if VARIANT in label and not (variant and variant.replace("-", "").replace("_", "").isalnum()):
        return f"'{label}': a variant is BASE/NAME, NAME of letters, digits, '-' and '_'"
    return None


@dataclass
class SweepSpec(PlannedConfigs, SpecGrid):
    model: str
    tasks: dict[str, TaskEntry]
    # method -> its search-setting overrides, and its own `sparsities` / `sources` / seeds (GRID_KEYS)
    methods: dict[str, dict[str, Any]]
    sparsities: list[float]  # of every method that does not give its own
    search_seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEARCH_SEEDS))
    # a list: seeds pinned and shared by every mask; a number k: k seeds drawn per mask (`plan.mask_seeds`)
    finetune_seeds: list[int] | int = DEFAULT_FINETUNE_DRAWS
    corpus: dict[str, Any] | None = None
    search: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    pretrain_eval: dict[str, Any] | None = None
    search_curve: SearchCurve | None = None
    data_curve: DataCurve | None = None
    name: str = "sweep"
    output: str | None = None  # default sweep directory (absolute)
    # What a launched run asks for, per run kind (resources.resources); not part of any run's identity.
    resources: dict[str, Any] | None = None
    # Named averages over tasks and the study's declared confirmatory claims (`declared.py`): not part
    # of any run's identity; the store records each declaration (`declared.record_declaration`).
    endpoints: tuple[Endpoint, ...] = ()
    claims: tuple[Claim, ...] = ()
    # The report's analyses (`report.analyses`): Python files, absolute; not part of any run's identity.
    recipes: tuple[str, ...] = ()
    source: str = "<spec>"  # the YAML file: for error messages, and copied beside the store
    registry: dict[str, MethodSpec] | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ validation
    def _fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {msg}")

    @property
    def default_dir(self) -> Path:
        """Where its runs go unless a directory is given: `output:`, else `sweeps/<name>` (relative
        to the working directory; the name one path component)."""
        return Path(self.output) if self.output else Path("sweeps") / safe_component(self.name, "sweep name")

    @property
    def method_specs(self) -> dict[str, MethodSpec]:
        registry = sweep_methods() if self.registry is None else self.registry
        return {m: registry[base_method(m)] for m in self.methods}

    def __post_init__(self) -> None:
        registry = sweep_methods() if self.registry is None else self.registry
        if not self.model:
            raise self._fail("model", "a base model (local directory or hub id) is required")
        if self.resources is not None:
            try:
                resources(self.resources)
            except ConfigError as e:
                raise self._fail("resources", str(e).removeprefix("resources: ")) from None
        if not self.methods:
            raise self._fail("methods", "at least one method is required")
        for m in self.methods:
            if (why := unknown_method(m, registry)) is not None:
                raise self._fail("methods", why)
        if not self.tasks:
            self._check_masks_alone()
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
                # score what was searched, in a copy: the caller's dict is theirs
                self.pretrain_eval = {**self.pretrain_eval, "max_length": self.search["max_length"]}
        if self.search_curve is not None:
            self._check_search_curve()
        if self.data_curve is not None:
            self._check_data_curve()
        for name in self.tasks:  # every planned run's config, built now (the curves are checked)
            self._check_finetune_configs(name)
        self._check_search_configs()  # before pretrain_eval's: a search.max_length it took is named so
        if self.pretrain_eval is not None:
            self._check_pretrain_eval_config()
        check_claims(self, self._fail)

    def _check_masks_alone(self) -> None:
        """`tasks: {}`, a study of masks alone: every method must have something to run without a
        task (a search, or with `pretrain_eval:` the full model's losses); a per-task search has
        no task to search on."""
        for m, spec in self.method_specs.items():
            if spec.per_task:
                raise self._fail(f"methods.{m}", f"{m} searches on a task, and `tasks:` is empty")
            if spec.search is None and self.pretrain_eval is None:
                raise self._fail(
                    f"methods.{m}",
                    f"with `tasks: {{}}` {m} has nothing to run: it has no mask to search, and no "
                    "`pretrain_eval:` scores its losses",
                )

    def _check_keys(self, d: dict[str, Any], allowed, where: str) -> None:
        for k in d:
            if k not in allowed:
                raise self._fail(
                    f"{where}.{k}",
                    f"unknown setting{did_you_mean(k, allowed)} (allowed: {', '.join(sorted(allowed))})",
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
            if not is_number(s) or not 0.0 <= s < 1.0:
                raise self._fail(key, f"{s!r} is not a fraction in [0, 1) (0.7 = 70% of weights zero)")
        if len(set(values)) != len(values):
            raise self._fail(key, f"duplicate values in {values}")

    def _check_seeds(self, key: str, seeds: list | int) -> None:
        drawn = is_int(seeds)
        if drawn and key.endswith(("finetune", "finetune_seeds")):
            if not 1 <= seeds <= MAX_FINETUNE_DRAWS:
                raise self._fail(key, f"{seeds}: a number of seeds per mask in 1..{MAX_FINETUNE_DRAWS}")
            return
        if not isinstance(seeds, list):
            raise self._fail(key, f"a non-empty list of distinct integers is required, got {seeds!r}")
        ints = all(is_int(x) for x in seeds)
        if not seeds or not ints or len(set(seeds)) != len(seeds):
            raise self._fail(key, f"a non-empty list of distinct integers is required, got {seeds}")

    def _check_method_seeds(self) -> None:
        """A method's own `search_seeds` (a seeded search's only: a deterministic method has one mask
        whatever the seed) and `finetune_seeds` (any method's, `full` and OMP's first)."""
        for m, spec in self.method_specs.items():
            for name in ("search_seeds", "finetune_seeds"):
                own = self.methods[m].get(name)
                if own is None:
                    continue
                key = f"methods.{m}.{name}"
                if name == "search_seeds" and (spec.search is None or not spec.seeded):
                    raise self._fail(key, f"{m} is deterministic: one mask whatever the seed")
                self._check_seeds(key, own)

    def _check_sources(self) -> None:
        for m, spec in self.method_specs.items():
            sources = self.methods[m].get("sources")
            if sources is None:
                continue
            key = f"methods.{m}.sources"
            if not spec.per_task:
                per_task = [n for n, s in (self.registry or sweep_methods()).items() if s.per_task]
                raise self._fail(
                    key, f"{m} does not search on a task (per-task methods: {', '.join(per_task)})"
                )
            if not sources or len(set(sources)) != len(sources):
                raise self._fail(key, f"a non-empty list of distinct task labels is required, got {sources}")
            self._check_subset(key, sources, list(self.tasks), "the sweep's tasks")

    def _check_search_settings(self, registry: dict[str, MethodSpec]) -> None:
        known = {"steps"}.union(*(s.settings for s in registry.values()))
        self._check_keys(self.search, known, "search")
        steps = self.search.get("steps")  # bounded even where no method of this sweep uses it
        if steps is not None and not _positive_int(steps):
            raise self._fail("search.steps", f"a positive step budget or null, got {steps!r}")
        for key, value in self.search.items():  # every setting fits its field, used here or not
            if (problem := _setting_problem(key, value)) is not None:
                raise self._fail(f"search.{key}", problem)
        for m, overrides in self.method_specs.items():
            allowed = overrides.settings | ({"steps"} if overrides.uses_steps else set())
            self._check_keys(self.methods[m], allowed | set(GRID_KEYS), f"methods.{m}")
            if "variant" in overrides.settings:  # an IMP method: its settings checked before any run
                self._check_imp_settings(m)
            if overrides.uses_steps:
                steps = self.search_settings(m).get("steps")
                if not _positive_int(steps):
                    key = f"methods.{m}.steps" if "steps" in self.methods[m] else "search.steps"
                    raise self._fail(key, f"a positive step budget is required by {m}, got {steps!r}")

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
        if not c.tasks:
            raise self._fail("data_curve.tasks", "empty: a data curve fine-tunes on fewer examples of a task")
        self._check_curve_sparsities("data_curve.sparsities", c.sparsities, c.methods)


def _positive_int(v: Any) -> bool:
    """A count the runs can hold: torch, numpy and SQLite take 64-bit integers."""
    return is_int(v) and 0 < v < INT64


def _setting_problem(key: str, value: Any) -> str | None:
    """Why `value` cannot be the search setting `key`, read against the field of that name of
    `SearchConfig` or of a registered method's config (the first that has it: a search method's, a
    one-shot method's own), or None: a sweep of OMP alone refuses `batch_size: 0` as a search of
    TAMT would, and one of SparseGPT `damp: 2` as `ticketlab prune sparsegpt` would."""
    configs = [SearchConfig, *(m.config for m in library.methods().values() if m.config)]
    cls = next((c for c in configs if key in field_types(c)), None)
    return None if cls is None or value is None else value_problem(cls, key, value)
