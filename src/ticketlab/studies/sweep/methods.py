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
a task (`trained.py`); a one-shot method (`ticketlab prune NAME`) and a unit method (`st-random`)
under its name (`one_shot.py`); the dense model is `full`. `sweep_methods()` reads them from the
registry, so a method registered later is a sweep method too. Reports list the methods with a colour
first, in the registry's order, each in its colour (`report_order`, `method_color`).
"""

from __future__ import annotations

import dataclasses
import functools
import re

from ...core.checks import option_name
from ...core.errors import ConfigError, did_you_mean
from ...methods import registry as library
from ...methods.registry import Method
from ...verbs.search import SearchConfig
from .jobs import MethodSpec
from .one_shot import one_shot_spec, unit_config, unit_search
from .trained import trained_methods


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
        return (one_shot_spec(method, **kw),)
    if method.run is None:
        return (MethodSpec(method.name, None, method.help, **kw),)
    kw |= {"settings": method.unit_settings, "configure": unit_config(method)}
    return (MethodSpec(method.name, unit_search(method), method.help, **kw),)


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
    base = base_method(name)
    if base not in registry:
        raise ConfigError(
            f"unknown method '{name}'{did_you_mean(base, registry)} (known: {', '.join(registry)})"
        )
    return registry[base]
