"""Optional dependencies: what only some users need is an extra of the package (`pip install
'ticketlab[EXTRA]'`), imported where it is used, never when ticketlab is imported. Missing, it is a
one-line user error that names the extra to install, not an ImportError traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import TicketlabError


def missing(module: str, extra: str, needed_for: str) -> str:
    """The one line a user reads when `module` (of the extra `extra`) is not installed."""
    top = module.split(".")[0]
    install = f"pip install 'ticketlab[{extra}]' (or pip install {top})"
    return f"{needed_for} needs {top}, which is not installed: {install}"


def optional_module(module: str, extra: str, needed_for: str) -> ModuleType:
    """`module` imported, or a `TicketlabError` naming the extra that installs it."""
    try:
        # lazy: an optional dependency (an extra of the package), imported only by what uses it
        return importlib.import_module(module)
    except ImportError:
        raise TicketlabError(missing(module, extra, needed_for)) from None
