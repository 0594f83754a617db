"""Careful reads of what a user gives: a regular file (a link to one is followed; never a FIFO, a
device or a directory), opened without waiting, of a bounded size; JSON with no key given twice;
safetensors. A missing, unreadable or corrupt file becomes one `TicketlabError` that names it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from safetensors import safe_open

from ..errors import TicketlabError

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFDIR: "a directory",
}


def _open_regular(path: Path, what: str, error: type[TicketlabError]) -> int:
    """A descriptor on the regular file `path` (a link to one is followed: an input is the user's),
    opened without waiting (`O_NONBLOCK`: a FIFO would block the open or the first read forever),
    else one `error` naming the file: not found, not readable, or not a regular file (a FIFO, a
    device such as /dev/zero, whose read never ends, a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror or e})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(path, what, mode, error)
    os.set_blocking(fd, True)
    return fd


def _not_regular(path: Path, what: str, mode: int, error: type[TicketlabError]) -> TicketlabError:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return error(f"{path}: {what} is {kind}, not a regular file; give a file")


def check_regular_unopened(
    path: str | os.PathLike, what: str = "file", error: type[TicketlabError] = TicketlabError
) -> Path:
    """`check_regular` from the file's status alone, never opening it: for a file that SQLite locks
    (a results store). Closing any descriptor of a file releases every POSIX lock the process holds
    on it, so opening and closing a store beside this process's SQLite connections would drop their
    locks: another process could then take the database as its own alone, checkpoint it and delete
    the write-ahead log this one still appends to (its writes lost when it ends)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        raise _not_regular(Path(path), what, mode, error)
    return Path(path)


def check_regular(
    path: str | os.PathLike, what: str = "file", error: type[TicketlabError] = TicketlabError
) -> Path:
    """`path`, refused in one line unless it is a regular file (`_open_regular`): what precedes a
    reader that takes a path (transformers, tokenizers, safetensors, SQLite)."""
    os.close(_open_regular(Path(path), what, error))
    return Path(path)


def check_folder(
    path: str | os.PathLike, what: str = "file", error: type[TicketlabError] = TicketlabError
) -> None:
    """Every visible entry of the folder `path` that is no folder, checked by `check_regular`: a
    loader that reads a folder (a model's, a tokenizer's) never waits on a FIFO planted in it."""
    for entry in sorted(Path(path).expanduser().iterdir()):  # a link to nothing: no loader reads it
        if not entry.name.startswith(".") and not entry.is_dir() and entry.exists():
            check_regular(entry, what, error)


def open_read(
    path: str | os.PathLike, what: str = "file", error: type[TicketlabError] = TicketlabError
) -> BinaryIO:
    """A regular file opened to read bytes as a stream (`_open_regular`); the caller closes it."""
    return os.fdopen(_open_regular(Path(path), what, error), "rb")


# What a file read whole may hold unless its reader says otherwise: a JSON record or a spec is
# kilobytes; a gigabyte is no such file (and reading it whole would take that much memory, twice).
READ_LIMIT = 1 << 30


def read_bytes(
    path: str | os.PathLike,
    what: str = "file",
    error: type[TicketlabError] = TicketlabError,
    limit: int = READ_LIMIT,
) -> bytes:
    """A regular file's bytes (`_open_regular`), refused in one line past `limit` bytes."""
    path = Path(path)
    with os.fdopen(_open_regular(path, what, error), "rb") as f:
        try:
            data = read_upto(f, limit + 1)
        except OSError as e:
            raise error(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if len(data) > limit:
        raise error(f"{path}: {what} is larger than {limit} bytes; not such a file")
    return data


def read_text(
    path: str | os.PathLike,
    what: str = "file",
    error: type[TicketlabError] = TicketlabError,
    limit: int = READ_LIMIT,
    encoding: str = "utf-8",
) -> str:
    """A UTF-8 text file's content, or one `error` naming the file and why it cannot be read."""
    path = Path(path)
    data = read_bytes(path, what, error, limit)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise error(f"{path}: cannot read {what} ({e})") from None


def read_tail(path: str | os.PathLike, size: int) -> bytes:
    """The last `size` bytes of a regular file (a long log's last lines)."""
    with open_read(path) as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - size))
        return f.read(size)


def load_safetensors(
    path: str | os.PathLike,
    what: str = "safetensors file",
    error: type[TicketlabError] = TicketlabError,
    framework: str = "pt",
) -> dict[str, Any]:
    """Every tensor (`framework` "np": array) of a safetensors file, once it is a regular file
    (`check_regular`); the caller turns safetensors' own errors into its line."""
    with safe_open(str(check_regular(path, what, error)), framework) as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)


def open_safetensors(
    path: str | os.PathLike, what: str = "safetensors file", error: type[TicketlabError] = TicketlabError
) -> Any:
    """safetensors' lazy reader (`safe_open`: header, slices) of a regular file (`check_regular`)."""
    return safe_open(str(check_regular(path, what, error)), "pt")


class DuplicateKey(ValueError):
    """A JSON object that gives one key twice (`parse_json`)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:  # the last one would win unseen: which one the writer meant is not known
            raise DuplicateKey(f"the key {k[:80]!r} is given twice")
        out[k] = v
    return out


def parse_json(text: str | bytes) -> Any:
    """JSON text as Python values, a key given twice in one object refused (`DuplicateKey`), as the
    spec reader refuses YAML's: the one JSON reader of what a user or a file gives."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file, or raise one `TicketlabError` naming the file and what is wrong with it."""
    path = Path(path)
    text = read_text(path, what)
    try:
        return parse_json(text)
    except json.JSONDecodeError as e:
        raise TicketlabError(f"{path}: corrupt {what} (invalid JSON at line {e.lineno}: {e.msg})") from None
    except RecursionError:  # `[[[[...` a hundred thousand deep: the parser recurses per level
        raise TicketlabError(f"{path}: corrupt {what} (nested too deeply)") from None
    except ValueError as e:  # a key twice; an integer of more than 4300 digits (Python's limit)
        raise TicketlabError(f"{path}: corrupt {what} ({e})") from None


def read_upto(f: BinaryIO, limit: int) -> bytes:
    """At most `limit` bytes of `f`, read in pieces: the bound is never allocated at once, and a
    file that grows while it is read stops at it."""
    chunks, size = [], 0
    while size < limit and (chunk := f.read(min(1 << 24, limit - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def first_link(path: str | os.PathLike) -> Path | None:
    """The first symbolic link inside the folder `path` (links are not walked into), else None."""
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted([*dirnames, *filenames]):
            if os.path.islink(os.path.join(dirpath, name)):
                return Path(dirpath) / name
    return None
