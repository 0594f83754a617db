"""SIGTERM as Ctrl-C: the signal a scheduler sends at a job's time limit (Slurm, before SIGKILL), and
`kill` and `timeout` send by default. Python's default for it ends the process at once: no `finally`
runs, a sweep's claimed run stays marked running until its owner is seen dead, and the user reads
nothing. Raised as an interrupt instead, it takes the path Ctrl-C takes: the run is given back to the
store, what finished is kept, and one line says how to resume (exit status 143, 128 + SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where a Ctrl-C's `KeyboardInterrupt` is (every handler of that one runs)."""


EXIT_STATUS = 128 + signal.SIGTERM


def _raise_terminated(signum: int, frame: object) -> None:
    # A second SIGTERM while the first is handled ends the process: the usual "stop now" of a scheduler.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within it, SIGTERM raises `Terminated`; the previous handler is back after it. Outside the
    main thread (a program that embeds the CLI) signals cannot be handled, and nothing changes."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
