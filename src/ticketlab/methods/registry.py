"""The one front door for a pruning method: `register_method(Method(...))`.

Every method ticketlab knows is one entry here, from which everything else derives: the CLI's
sub-commands (`ticketlab prune NAME`, `ticketlab search NAME`), the sweep's method names (one per
preset: `tamt` is `tamt-mlm`, `tamt-kd`, `tamt-mlm+kd`), the order in which reports list methods and
their colours. A built-in method is a folder of this package (`methods/tamt/`, `methods/wanda/`)
whose `register` module calls `register_method` when imported; the registry imports them all on its
first use, so adding a method is adding a folder (a Slurm worker that imports ticketlab has it too).
A method may also be registered from any module of one's own (`register_method`, at import of that
module).

The register modules are light: `ticketlab prune --help` and `ticketlab search --help` list the
methods without torch (tests/test_startup.py). So the function a module registers imports the
method's implementation (its folder's `search.py` or `prune.py`) when it first runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..core.checks import option_names
from ..core.errors import ConfigError, did_you_mean

Verb = Literal["prune", "search"]
Pattern = Literal["weights", "units"]


@dataclass(frozen=True)
class Preset:
    """A search method under fixed settings, by the name sweeps and reports know it: `tamt-kd` is
    TAMT on the KD objective."""

    name: str
    help: str
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # fields of the method's config
    color: str | None = None  # its colour in figures (matplotlib's); None: the next of the cycle


def config_settings(method: Any) -> dict[str, Any]:
    """A method config's part of a search's identity, by default: every field of it, by name."""
    return {f.name: getattr(method, f.name) for f in dataclasses.fields(method)}


# eq=False: hashable by identity, so what is derived from an entry (a sweep's methods) can be cached.
@dataclass(frozen=True, eq=False)
class Method:
    """A pruning method. What `run` is depends on `verb` and `pattern`:

    * verb "search" (`ticketlab search NAME`, whose options are `SearchConfig`'s and the fields of
      `config` that carry help): `run(search_config, accelerator) -> SearchResult`, for a
      `SearchConfig` whose `method` is a `config`;
    * verb "prune" (`ticketlab prune NAME`): `run(model, sparsity, *, ranking, targets, seed, pattern)
      -> Mask`, a one-shot mask of the weights; with `calibrated`, also `calibration=` (a
      `methods.calibration.Calibration`: token ids drawn from `--corpus`) `-> OneShotResult`; with
      a `config`, also `settings=` (an instance of it, `PruneConfig.settings`), whose documented
      fields are its options on the command line and its settings in a sweep spec;
    * no verb, pattern "units" (a sweep method only): `run(model_name, sparsity, seed, settings, out)`
      writes a unit mask directory (`settings`: an instance of its `config`, built from the spec's
      settings, its config's options; without a config, the `sweep_settings` as the spec gives them);
    * no verb and no `run`: the dense model (the sweep's `full`).

    Sweeps know a method by its presets' names (its own name without presets); reports list the
    methods with a colour first, by `order` then registration, each in its colour."""

    name: str
    # A search method's settings (`TamtConfig`, `ImpConfig`); a one-shot or unit method's own, where
    # it has any (`SparseGptConfig`, `RandomTicketConfig`); None for the others.
    config: type | None
    # The function; one a `--help` reads registers imports the implementation when it first runs.
    run: Callable[..., Any] | None
    help: str  # its line in `ticketlab search --help` / `ticketlab prune --help`
    task: bool = False  # may search on a downstream task (`SearchConfig.task`) instead of a corpus
    # Its config's part of `SearchConfig.settings` (a resumed search must match it).
    settings: Callable[[Any], dict[str, Any]] = config_settings
    # Refuses, before any work, a step budget its config cannot use (IMP: fewer steps than rounds).
    check_steps: Callable[[Any, int], None] | None = None
    # Fills in the defaults of its config that depend on the search (IMP: where the first pruning
    # falls, by objective), before the checks and the recorded settings see it.
    resolve: Callable[[Any, Any], Any] | None = None
    # Its mask is at the target sparsity after every step (TAMT), so the masks saved along one run
    # (`save_at`) are the search at smaller budgets; IMP's sparsity grows round by round.
    sparse_throughout: bool = False
    presets: tuple[Preset, ...] = ()  # its names in sweeps; none: itself, under its name
    # The lr schedule's horizon for a config and a step budget when `schedule_steps` is not given
    # (None: the budget itself, the schedule ends at the stop).
    schedule: Callable[[Any, int], int] | None = None
    # (steps, schedule steps) of its paper's own run for a config (`SearchConfig.paper`; schedule steps
    # None: the method's default horizon); None: none.
    paper_budget: Callable[[Any], tuple[int, int | None]] | None = None
    # For a sweep's run identity: the defaults a search runs under for the settings the spec leaves
    # out, given its preset's fixed fields, the spec's settings (option names) and whether the
    # checkpoint holds a pooler (`studies.run_ids.identity`).
    changed_defaults: Callable[[Mapping[str, Any], Mapping[str, Any], bool], dict[str, Any]] = (
        lambda fixed, settings, pooler: {}
    )
    verb: Verb | None = "search"  # the CLI verb that offers it; None: a sweep method only
    # A one-shot method that reads calibration sequences of a corpus (Wanda, SparseGPT): `prune`
    # requires `--corpus` for it, and a sweep gives it the spec's corpus.
    calibrated: bool = False
    # What it writes beside its mask that is not a ticket (SparseGPT's reconstructed weights): reports
    # say that its rows are its ticket, θ0 under its mask.
    beside_mask: str | None = None
    pattern: Pattern = "weights"  # what its masks prune: weights, or units (heads, FFN units)
    # False: deterministic, one mask whatever the seed (OMP, the full model, importance-ranked tickets):
    # reports take a single mask's fine-tuning seeds as its noise, where a seeded search's one mask
    # estimates no search variance.
    seeded: bool = True
    color: str | None = None  # its colour in reports (a search method's: its presets')
    order: int = 100  # its place in reports and the CLI among the registered methods (then registration)
    # A unit method's settings in a sweep spec when it has no config (with one: its config's options,
    # `unit_settings`).
    sweep_settings: frozenset[str] = frozenset()
    # Why no sweep can make its masks (None: a sweep can): a spec naming it is refused with this,
    # before any run (st-winning / st-losing need a fine-tuned model's importance: `ticketlab super`).
    not_swept: str | None = None
    # The methods reports test it against, by their sweep names (a variant label of one too: `imp/chen`):
    # TAMT against IMP (Liu et al.), winning super tickets against random and losing ones (Liang et al.).
    against: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.run is not None and not callable(self.run):
            raise ConfigError(f"method {self.name!r}: run must be a function or None, got {self.run!r}")
        if self.config is not None and self.sweep_settings:  # one source for a spec's settings
            raise ConfigError(
                f"method {self.name!r}: a method with a config takes its config's options as its "
                "settings; give sweep_settings only to a method without one"
            )

    @property
    def unit_settings(self) -> frozenset[str]:
        """A unit method's settings in a sweep spec: its config's options (the spec's settings build
        it), else `sweep_settings`."""
        if self.config is None:
            return self.sweep_settings
        return option_names(self.config)

    @property
    def named(self) -> tuple[Preset, ...]:
        return self.presets or (Preset(self.name, self.help, color=self.color),)


# The registered methods by name, in registration order (read them with `methods()`).
_REGISTRY: dict[str, Method] = {}
# Where the built-in methods are: the `register` module of every method folder of `ticketlab.methods`
# (`methods/tamt/register.py`) registers its method when imported.
FOLDERS = __package__ or "ticketlab.methods"
FOLDER_MODULE = "register"
_loaded = False


def register_method(method: Method) -> Method:
    """Add (or replace, in its place) a method: from then on the CLI offers it under its verb, sweeps
    know it by its presets' names and reports list it (with a colour: after those ordered before it)."""
    _REGISTRY[method.name] = method
    return method


def load() -> dict[str, Method]:
    """The registry, its modules imported (once: the first use of the registry imports them)."""
    global _loaded
    if not _loaded:
        _loaded = True  # first: a module that reads the registry while it registers sees it as it is
        for name in method_modules():
            importlib.import_module(name)  # lazy: the built-in methods register on the registry's first use
    return _REGISTRY


def method_modules() -> list[str]:
    """The modules that register the methods: the `register` module of every method folder
    (`methods/tamt/register.py`) on the package's path, in the order of the folders' names. A folder
    of a directory added to `ticketlab.methods.__path__` counts as one of `methods/`."""
    package = sys.modules[FOLDERS]  # imported before this module, its child
    folders = sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name)
    return [
        f"{FOLDERS}.{info.name}.{FOLDER_MODULE}"
        for info in folders
        if info.ispkg and (Path(info.module_finder.path) / info.name / f"{FOLDER_MODULE}.py").is_file()
    ]


def methods(verb: Verb | None | Literal["any"] = "any") -> dict[str, Method]:
    """The registered methods (those of `verb`, if given) by name, by `order` then registration."""
    ranked = sorted(enumerate(load().values()), key=lambda im: (im[1].order, im[0]))
    return {m.name: m for _, m in ranked if verb == "any" or m.verb == verb}


def get_method(name: str, verb: Verb | None | Literal["any"] = "any") -> Method:
    """The method registered under `name` (of `verb`, if given); a ConfigError naming those there are."""
    known = methods(verb)
    if name not in known:
        raise ConfigError(f"unknown method '{name}'{did_you_mean(name, known)} (known: {', '.join(known)})")
    return known[name]


def method_of_config(config: Any) -> Method:
    """The search method whose config `config` is: the one whose config is `config`'s own type, else
    the most derived of those it is an instance of (a method whose config subclasses `TamtConfig` is
    that method, not TAMT). A ConfigError where none is."""
    mro = type(config).__mro__
    searches = methods("search").values()
    matches = [m for m in searches if m.config is not None and isinstance(config, m.config)]
    if not matches:
        names = " or ".join(m.config.__name__ for m in searches if m.config is not None)
        raise ConfigError(f"method: must be {names}, got {config!r}")
    return min(matches, key=lambda m: mro.index(m.config) if m.config in mro else len(mro))
