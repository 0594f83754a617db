"""Atomic writes and careful reads.

Results are never half-written: every file goes to a temporary sibling first and is renamed into
place (`os.replace` is atomic on POSIX), and directories are built under a temporary name and renamed
as a whole. Readers turn a missing or corrupt file into one `TicketlabError` that names it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import TicketlabError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; results should be readable
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that replaces `path` only if the block finishes without error."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise TicketlabError(f"{path}: already exists (refusing to overwrite)")
    if path.exists() and not path.is_dir():
        raise TicketlabError(f"{path}: exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            # Two renames keep a complete directory at `path` except for an instant.
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def default_cache_dir() -> Path:
    """`$TICKETLAB_CACHE`, else `$XDG_CACHE_HOME/ticketlab`, else `~/.cache/ticketlab`."""
    if os.environ.get("TICKETLAB_CACHE"):
        return Path(os.environ["TICKETLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ticketlab"


def read_text(
    path: str | os.PathLike, what: str = "file", error: type[TicketlabError] = TicketlabError
) -> str:
    """A UTF-8 text file's content, or one `error` naming the file and why it cannot be read."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read {what} ({e})") from None


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file, or raise one `TicketlabError` naming the file and what is wrong with it."""
    path = Path(path)
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TicketlabError(f"{path}: corrupt {what} (invalid JSON at line {e.lineno}: {e.msg})") from None
