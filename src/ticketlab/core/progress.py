"""The one place progress bars are made: tqdm on a terminal, a rare redraw anywhere else.

On a terminal a bar redraws itself in place ten times a second. Into a file or a pipe (a log, a
sweep's run log, `nohup`, CI) every redraw is kept: a two-minute script left 53 KB of bars. There a
bar redraws at most every `QUIET_INTERVAL_S` seconds, so a log keeps a few lines per bar (its first,
one a minute and its last). Log lines printed while a bar is live (dev evaluations) go above it
(`logs_above_bars`), not into it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

QUIET_INTERVAL_S = 60.0  # seconds between redraws when the bar's stream is not a terminal


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _is_notebook() -> bool:
    return "notebook" in getattr(tqdm, "__module__", "")  # tqdm.auto picked the widget: no redraw cost


def progress_bar(
    iterable: Iterable[Any] | None = None, *, file: IO[str] | None = None, **kwargs: Any
) -> tqdm:
    """A tqdm bar (`tqdm(iterable, **kwargs)`), which redraws rarely unless it writes to a terminal."""
    stream = file if file is not None else sys.stderr
    if not _is_terminal(stream) and not _is_notebook():
        kwargs["mininterval"] = max(float(kwargs.get("mininterval", 0.0)), QUIET_INTERVAL_S)
        kwargs["maxinterval"] = max(float(kwargs.get("maxinterval", 0.0)), QUIET_INTERVAL_S)
        kwargs.pop("dynamic_ncols", None)  # no terminal to size
    return tqdm(iterable, file=stream, **kwargs)


@contextlib.contextmanager
def logs_above_bars() -> Iterator[None]:
    """While in the block, console log lines print above a live bar instead of into it.

    Only where the root logger already prints to the console (the CLI): tqdm's redirect would add a
    console handler where there is none (a library call, a sweep's run writing to its log file)."""
    root = logging.getLogger()
    console = any(
        isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.stderr) for h in root.handlers
    )
    with logging_redirect_tqdm(loggers=[root], tqdm_class=tqdm) if console else contextlib.nullcontext():
        yield


@contextlib.contextmanager
def logs_to(
    name: str, level: int, handler: logging.Handler | None = None, *, propagate: bool = True
) -> Iterator[None]:
    """Logger `name`'s records at `level` and above for the block, also to `handler` where given
    (to it alone with `propagate=False`), and the logger as it was after it: the CLI's `main` and a
    sweep's runs also run inside other programs (a notebook, the tests), whose logging is theirs."""
    logger = logging.getLogger(name)
    before = logger.level, logger.propagate
    logger.setLevel(level)
    logger.propagate = propagate
    if handler is not None:
        logger.addHandler(handler)
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]
