"""Atomic writes: results are never half-written.

Every file goes to a temporary sibling first and is renamed into place (`os.replace` is atomic on
POSIX); directories are built under a temporary name (`temp_dir`) and renamed as a whole. Temporaries
carry their writer's pid and host, so the next writer in the same directory removes those a killed
process left (`remove_stale`). An `OSError` while writing becomes one line naming the output
(`writing`). What ticketlab writes as JSON is valid JSON always (`to_json`: non-finite numbers null).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from ..errors import TicketlabError


def umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no other way)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


HOST = socket.gethostname()  # names this machine in temporaries, locks and a store's running rows
# The writer is the last `.tl-PID@HOST-` of the name: a temporary made beside another one (a mask
# saved into a folder that is itself being published) carries the first one's name, writer and all.
TEMP = re.compile(r"\.tl-(\d+)@([^@/]+)-[^.-]+\.tmp$")
_TEMP_NAME = re.compile(r"\.(.+)\.tl-\d+@.+-[^.-]+\.tmp")  # `_temp_prefix` + name: the output's name
STALE_AFTER_S = 3600.0  # a temporary of another host (or an unnamed one) is stale after this


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn an `OSError` (no permission, read-only or full disk) into one line naming the path."""
    try:
        yield
    except OSError as e:  # named by the output (the file at fault may be a temporary of it)
        raise TicketlabError(f"{output_name(path)}: cannot write ({e.strerror or e})") from None
    except SafetensorError as e:  # safetensors wraps the OSError of a full disk in its own error
        why = str(e).split("I/O error: ")[-1]
        raise TicketlabError(f"{output_name(path)}: cannot write ({why})") from None


def output_name(path: str | os.PathLike) -> Path:
    """`path` with each temporary directory of ours in it (`temp_dir`) named as the output it becomes:
    what a user sees of a write inside a directory built under a temporary name."""
    parts = [m.group(1) if (m := _TEMP_NAME.fullmatch(part)) else part for part in Path(path).parts]
    return Path(*parts) if parts else Path(path)


def make_dir(path: str | os.PathLike) -> Path:
    """`mkdir -p`, with a one-line error when it cannot be made."""
    path = Path(path)
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def _temp_prefix(name: str) -> str:
    return f".{name}.tl-{os.getpid()}@{HOST}-"


def temp_dir(parent: str | os.PathLike, name: str) -> Path:
    """A new temporary directory in `parent` that `remove_stale` recognises once its writer is gone."""
    with writing(Path(parent) / name):  # named by the output it stands for
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=_temp_prefix(name), suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~umask())
    return tmp


def temp_file(parent: str | os.PathLike, name: str) -> Path:
    """A new empty temporary file in `parent` for a writer that fills it by path (SQLite), which
    `remove_stale` recognises once its writer is gone; the caller renames it into place."""
    with writing(Path(parent) / name):
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=_temp_prefix(name), suffix=".tmp")
        os.fchmod(fd, 0o666 & ~umask())
        os.close(fd)
    return Path(tmp)


def follow_umask(root: Path) -> None:
    """Give every file under `root` the user's umask (some writers, e.g. safetensors, make 0600 files:
    a colleague could not read a shared mask)."""
    mask = umask()
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o777 & ~mask)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o666 & ~mask)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this machine still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _is_stale(entry: Path, now: float) -> bool:
    """Only our own temporaries (named by `_temp_prefix`) are ever stale: a user's `.notes.tmp` is
    theirs, whatever its age."""
    m = TEMP.search(entry.name)
    if m is None:
        return False
    if m.group(2) == HOST:
        return not pid_alive(int(m.group(1)))
    try:
        return now - entry.lstat().st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return False


def remove_stale(directory: str | os.PathLike) -> list[Path]:
    """Delete temporaries (`.*.tmp`) in `directory` whose writer is gone: a process of this host that
    no longer runs, or any writer after `STALE_AFTER_S` (a kill -9 mid-write leaves them behind)."""
    directory, now, removed = Path(directory), time.time(), []
    try:
        entries = [e for e in directory.iterdir() if e.name.startswith(".") and e.name.endswith(".tmp")]
    except OSError:
        return removed
    for entry in entries:
        if _is_stale(entry, now):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            removed.append(entry)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    if path.is_dir():
        raise TicketlabError(f"{path}: is a directory; give a file name")
    make_dir(path.parent)
    remove_stale(path.parent)
    with writing(path):
        replace_with(path, data)


def replace_with(path: Path, data: bytes) -> None:
    """Write `data` to a temporary sibling and rename it to `path` (an `OSError` passes through)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600 files; results should be readable
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


def finite_json(obj: Any) -> Any:
    """`obj` with every non-finite float (nan, inf) as None: JSON has no such numbers, and Python's
    bare `NaN` tokens make a file other readers refuse. A finite float is written as it is (the
    shortest text that reads back to the same bits): a score recomputed from the run's predictions
    equals the stored one exactly; scores are computed so that a decimal result is exact
    (`tasks.metrics.accuracy`)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def to_json(obj: Any, **kwargs: Any) -> str:
    """The one JSON encoder for what ticketlab writes: valid JSON always (non-finite numbers null)."""
    return json.dumps(finite_json(obj), allow_nan=False, **kwargs)


def as_written(result: Any) -> Any:
    """A result dataclass as its JSON file holds it (`finite_json` on every field): what the call
    that reads it back returns, so a run's first call and its later ones return the same."""
    return dataclasses.replace(
        result, **{f.name: finite_json(getattr(result, f.name)) for f in dataclasses.fields(result)}
    )


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, to_json(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Rows of one shape as CSV with a header (the first row's keys); no rows: an empty file."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
