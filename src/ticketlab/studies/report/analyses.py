"""A report's analyses beyond what every study has: code outside the library (one paper's claims, a
recipe under `recipes/`) that adds tests to the report's one Holm family and a section to report.md.

A sweep spec names them, paths relative to the spec file, and the store keeps the spec:

    recipes:
      - ../../recipes/tamt/claims.py

Each file defines `ANALYSIS`, an `Analysis`. The report loads each one (`load_analysis`) and reads it
with the results: its `tests` join the paired comparisons of scores in the one Holm family
(`paired.Comparisons.family`), the loss and correlation tests among them are `pretrain_tests.csv`'s
rows (`loss_tests`), and its `section` goes into report.md after the search-cost section. The library
imports no recipe by name: what a report runs beyond its own sections is what its spec names.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ...core.errors import ConfigError

# What an analysis reads: a `tables.SweepResults` (which holds the analyses, so not imported here).
Results = Any

SPEC_KEY = "recipes"  # the sweep spec's list of analyses (`SweepSpec.recipes`)


@dataclass(frozen=True)
class Analysis:
    """What a recipe adds to a report. `tests(res)`: its tests, each with `p` (None: no test),
    `p_holm` (set by the family), `exploratory` (set where the study declared other claims) and
    `why_not`; `section(res)`: its markdown lines, heading included ([] where it has nothing to say).
    `name` says whose tests they are in the family's note ("TAMT's claims on pre-training loss")."""

    name: str
    tests: Callable[[Results], list[Any]]
    section: Callable[[Results], list[str]]


_LOADED: dict[Path, ModuleType] = {}  # one module per file: its test classes stay one class each


def load_recipe(path: str | os.PathLike) -> ModuleType:
    """The Python file `path` as a module, imported once per process (its functions and `ANALYSIS`).
    A ConfigError naming the file where it is not a Python file."""
    path = Path(path).resolve()
    if path in _LOADED:
        return _LOADED[path]
    if path.suffix != ".py" or not path.is_file():
        raise ConfigError(f"{path}: a report recipe must be a Python file (.py) that defines ANALYSIS")
    name = f"ticketlab_recipe_{len(_LOADED)}_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None  # a .py file always has one
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _LOADED[path] = module
    return module


def load_analysis(path: str | os.PathLike) -> Analysis:
    """The `ANALYSIS` of the recipe `path` (`load_recipe`); a ConfigError naming the file where it
    defines none."""
    analysis = getattr(load_recipe(path), "ANALYSIS", None)
    if not isinstance(analysis, Analysis):
        raise ConfigError(
            f"{Path(path).resolve()}: defines no ANALYSIS (a ticketlab.studies.report.analyses.Analysis)"
        )
    return analysis


def spec_analyses(spec: dict[str, Any]) -> tuple[Analysis, ...]:
    """The analyses a spec (as JSON, the store's `spec`) names under `recipes`."""
    return tuple(load_analysis(p) for p in spec.get(SPEC_KEY) or [])


def analysis_tests(analyses: Sequence[Analysis], res: Results) -> list[Any]:
    """Every analysis's tests, in the order the spec names them."""
    return [t for a in analyses for t in a.tests(res)]
