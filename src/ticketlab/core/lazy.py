"""Package exports imported on first use (PEP 562): a package's `__init__` names where each public
name lives, and importing the package imports none of them. A verb's `--help` imports the config
modules it parses into; with eager `__init__`s, reaching one of them (`ticketlab.masks.targets`)
would import its siblings and torch with them (seconds, where the parser takes milliseconds)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

Exports = tuple[Callable[[str], Any], Callable[[], list[str]]]  # a package's __getattr__, __dir__


def lazy_exports(package: str, where: Mapping[str, str]) -> Exports:
    """`(__getattr__, __dir__)` for `package`, whose public name N lives in the module `where[N]`
    (a submodule, "apply", or relative to the package, "..structure").

    No export is named like a submodule of its package (tests/test_startup.py checks): importing
    the submodule would bind the module on the package in the export's place."""

    def __getattr__(name: str) -> Any:
        if name in where:
            module = where[name] if where[name].startswith(".") else f".{where[name]}"
            # lazy: PEP 562, a public name's module is imported on first use (`import ticketlab` stays light)
            value = getattr(importlib.import_module(module, package), name)
            setattr(sys.modules[package], name, value)  # found once; later look-ups do not come here
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
