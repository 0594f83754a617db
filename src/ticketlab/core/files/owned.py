"""Files ticketlab made and opens again (a lock, a checkpoint, a log, a marker): never through a
symbolic link, never waiting on a FIFO, never a hard link to a user's file (`open_own`); and the
lock that keeps a second process out of a directory a run is writing (`exclusive`, `lock_holder`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from ..errors import TicketlabError
from .atomic import HOST, make_dir, umask, writing
from .inputs import read_upto


def _not_own(path: str | os.PathLike, kind: str, what: str) -> TicketlabError:
    return TicketlabError(
        f"{path}: {kind}, not a {what} ticketlab made; remove it (ticketlab writes its own there)"
    )


def open_own(path: str | os.PathLike, flags: int, what: str, mode: int = 0o666) -> int:
    """A file descriptor on `path`, a file ticketlab made there (a lock, a checkpoint): opened never
    through a symbolic link and never waiting (`O_NONBLOCK`: a FIFO planted there would block the
    open or the first read forever), then refused in one line unless it is a regular file with one
    link. A hard link to a user's file would otherwise be truncated and written, and a device read.
    Nothing is truncated or read before that check; the caller closes the descriptor."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as e:
        if e.errno != errno.ENXIO:  # ENXIO: a FIFO opened to write that no process reads
            raise
        raise _not_own(path, "not a regular file", what) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            kind = "a hard link to another file" if stat.S_ISREG(st.st_mode) else "not a regular file"
            raise _not_own(path, kind, what)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_own(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """At most `limit` bytes of a file ticketlab made (`open_own`'s checks: a marker, a record)."""
    with os.fdopen(open_own(path, os.O_RDONLY, what), "rb") as f:
        return read_upto(f, limit)


def open_append(path: str | os.PathLike) -> TextIO:
    """`path` opened to append text (a log), with a lock's and a checkpoint's checks (`open_own`):
    never through a symbolic link, never waiting on a FIFO, never a hard link to a user's file (whose
    content would gain the log's lines). One line when it cannot be opened."""
    with writing(path):
        fd = open_own(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "log", 0o666 & ~umask())
    return os.fdopen(fd, "a", encoding="utf-8")


_HELD: dict[Path, int] = {}


def busy(directory: str | os.PathLike, holder: str, what: str) -> TicketlabError:
    """The one line for a directory whose `exclusive` lock `holder` ("pid N on HOST") holds."""
    return TicketlabError(
        f"{directory}: another process ({holder}) is running this {what}; "
        "wait for it to finish (run the same command again afterwards to resume)"
    )


@contextlib.contextmanager
def exclusive(directory: str | os.PathLike, what: str = "run") -> Iterator[None]:
    """Hold `directory/.lock` for the block; a second process on it is refused in one line.

    Re-entrant within a process (a search holds its directory, and the training loop inside it
    takes the same lock). The lock is an flock: it goes with the process, kill -9 included.
    """
    directory = make_dir(directory).resolve()
    if directory in _HELD:
        _HELD[directory] += 1
        try:
            yield
        finally:
            _HELD[directory] -= 1
        return
    lock = directory / ".lock"
    with writing(lock):
        # Never a user's file planted there: truncating it would empty that file (`open_own`).
        fd = open_own(lock, os.O_RDWR | os.O_CREAT, "lock", 0o666 & ~umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise busy(directory, holder, what) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {HOST}".encode(), 0)
        _HELD[directory] = 1
        try:
            yield
        finally:
            del _HELD[directory]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_holder(directory: str | os.PathLike) -> str | None:
    """Who holds `directory`'s `exclusive` lock now ("pid N on HOST"), or None: nobody else (no
    lock file, a free lock, or this process's own). Creates nothing."""
    directory = Path(directory).resolve()
    if directory in _HELD:
        return None
    try:  # a FIFO planted there is refused before anything waits on it (`open_own`)
        fd = open_own(directory / ".lock", os.O_RDONLY, "lock")
    except FileNotFoundError:  # no lock file: nobody ever ran here
        return None
    except OSError as e:
        raise TicketlabError(f"{directory / '.lock'}: cannot read the lock ({e.strerror or e})") from None
    try:
        try:  # taken and given back at once: a probe keeps nobody out for longer than this call
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
