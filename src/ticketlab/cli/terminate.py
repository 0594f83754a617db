"""SIGTERM as Ctrl-C: the signal a scheduler sends at a job's time limit (Slurm, before SIGKILL), and
`kill` and `timeout` send by default. Python's default for it ends the process at once: no `finally`
runs, a sweep's claimed run stays marked running until its owner is seen dead, and the user reads
nothing. Raised as an interrupt instead, it takes the path Ctrl-C takes: the run is given back to the
store, what finished is kept, and one line says how to resume; then the signal goes on (`pass_on`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where a Ctrl-C's `KeyboardInterrupt` is (every handler of that one runs)."""


EXIT_STATUS = 128 + signal.SIGTERM


def _raise_terminated(signum: int, frame: object) -> None:
    # Python runs a handler between bytecodes: a second SIGTERM that arrives once this one has been
    # raised ends the process (the usual "stop now"); during one long native call both wait for it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within it, SIGTERM raises `Terminated`; the previous handler is back after it. Nothing changes
    where SIGTERM is ignored (a parent shields this process) or outside the main thread (a program
    that embeds the CLI there: signals cannot be handled)."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def pass_on() -> int:
    """After a SIGTERM handled here, its handler restored: the handler there before (a program that
    embeds the CLI) gets the signal, and EXIT_STATUS is returned; with none, the process ends with
    EXIT_STATUS (SystemExit, as argparse's refusals end it), so that a script calling the CLI verb
    after verb stops too."""
    if callable(signal.getsignal(signal.SIGTERM)):
        signal.raise_signal(signal.SIGTERM)
        return EXIT_STATUS
    raise SystemExit(EXIT_STATUS)
