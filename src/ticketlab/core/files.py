"""Atomic writes and careful reads.

Results are never half-written: every file goes to a temporary sibling first and is renamed into
place (`os.replace` is atomic on POSIX), and directories are built under a temporary name and renamed
as a whole. Readers turn a missing or corrupt file into one `TicketlabError` that names it.

Temporaries carry their writer's pid and host, so the next writer in the same directory removes
those a killed process left (`remove_stale`). An `OSError` while writing becomes one line naming the
path (`writing`). `exclusive` keeps a second process out of a directory a run is writing;
`content_key` says what a run read; `model_key` what loading a model reads of its folder;
`entry_keys` which of a folder's entries a key recorded earlier covered.

Output directories that never destroy what is not theirs (`check_output`, `atomic_dir`,
`claim_dir`, `remove_ours`) are `core/outputs.py`, built on these.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import fcntl
import functools
import hashlib
import io
import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from safetensors import SafetensorError, safe_open

from .errors import TicketlabError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


HOST = socket.gethostname()  # names this machine in temporaries, locks and a store's running rows
TEMP = re.compile(r"\.tl-(\d+)@(.+)-[^.-]+\.tmp$")
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
        os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def temp_file(parent: str | os.PathLike, name: str) -> Path:
    """A new empty temporary file in `parent` for a writer that fills it by path (SQLite), which
    `remove_stale` recognises once its writer is gone; the caller renames it into place."""
    with writing(Path(parent) / name):
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=_temp_prefix(name), suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
    return Path(tmp)


def follow_umask(root: Path) -> None:
    """Give every file under `root` the user's umask (some writers, e.g. safetensors, make 0600 files:
    a colleague could not read a shared mask)."""
    mask = _umask()
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
        return _read_upto(f, limit)


def _read_upto(f: BinaryIO, limit: int) -> bytes:
    """At most `limit` bytes of `f`, read in pieces: the bound is never allocated at once, and a
    file that grows while it is read stops at it."""
    chunks, size = [], 0
    while size < limit and (chunk := f.read(min(1 << 24, limit - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def open_append(path: str | os.PathLike) -> TextIO:
    """`path` opened to append text (a log), with a lock's and a checkpoint's checks (`open_own`):
    never through a symbolic link, never waiting on a FIFO, never a hard link to a user's file (whose
    content would gain the log's lines). One line when it cannot be opened."""
    with writing(path):
        fd = open_own(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "log", 0o666 & ~_umask())
    return os.fdopen(fd, "a", encoding="utf-8")


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
        fd = open_own(lock, os.O_RDWR | os.O_CREAT, "lock", 0o666 & ~_umask())
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


@functools.lru_cache(maxsize=1024)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: re-read when changed
    h = hashlib.sha256()
    with open_read(path) as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _key_lines(root: Path, keep: Callable[[Path], bool] | None) -> Iterator[tuple[Path, bytes]]:
    """What `content_key` hashes of one given path, file by file in its order: (the file's path
    relative to `root`, its line: that path and the sha256 of its bytes)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        rel = f.relative_to(root) if f != root else Path(f.name)
        if any(part.startswith(".") for part in rel.parts) or (keep is not None and not keep(rel)):
            continue
        st = f.stat()
        yield rel, f"{rel}\0{_file_digest(str(f.resolve()), st.st_size, st.st_mtime_ns)}\0".encode()


HUB_DATASET = "hub:"  # a corpus named on the Hugging Face hub (`data.sources.hub_dataset`), not a path


def content_key(paths: Iterable[str | os.PathLike], keep: Callable[[Path], bool] | None = None) -> str | None:
    """sha256 over the bytes of every file under `paths` (directories walked, hidden entries left
    out; `keep`: which files count, by their path relative to the given one): what a run read, so
    a result is not reused once its inputs changed. A hub dataset (`hub:NAME[:CONFIG]`) counts by
    its name, beside the local files of the same list; None for any other path that is not local (a
    model's hub id, whose name then identifies it)."""
    h = hashlib.sha256()
    for given in paths:
        if str(given).startswith(HUB_DATASET):
            h.update(f"{given}\0hub\0".encode())
            continue
        root = Path(given).expanduser()
        if not root.exists():
            return None
        for _, line in _key_lines(root, keep):
            h.update(line)
    return "sha256:" + h.hexdigest()


def entry_keys(path: str | os.PathLike, most: int = 16) -> dict[str, frozenset[str]] | None:
    """The content key of the folder `path` restricted to each set of its top-level entries, as
    `content_key([path], keep=...)` gives it for a `keep` of just those entries: key -> the entries
    (only those holding a file that counts: an empty one changes no key). What tells which of a
    folder's entries a key recorded earlier covered (a data folder that gained a task folder since).
    None where it has more than `most` such entries (2**most keys); {} where it is not a folder."""
    root = Path(path).expanduser()
    if not root.is_dir():
        return {}
    segments: dict[str, list[bytes]] = {}
    last = None
    for rel, line in _key_lines(root, None):
        name = rel.parts[0]
        if name != last and name in segments:
            return None  # an entry's files apart (never, walked in sorted order): no key to tell
        segments.setdefault(name, []).append(line)
        last = name
    names = list(segments)
    if len(names) > most:
        return None
    out: dict[str, frozenset[str]] = {}

    def walk(i: int, h: Any, chosen: tuple[str, ...]) -> None:  # `h` is copied, never updated
        if i == len(names):
            out["sha256:" + h.hexdigest()] = frozenset(chosen)
            return
        walk(i + 1, h, chosen)
        with_entry = h.copy()
        for line in segments[names[i]]:
            with_entry.update(line)
        walk(i + 1, with_entry, (*chosen, names[i]))

    walk(0, hashlib.sha256(), ())
    return out


# What loading a model never reads: its card, licence, pictures and notebooks.
_DOC_SUFFIXES = frozenset({".md", ".rst", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".pdf", ".ipynb"})
_DOC_NAMES = ("readme", "license", "licence", "notice", "citation")


def model_key(path: str | os.PathLike) -> str | None:
    """The content key of a local model (`content_key`) over the files loading it reads: not its
    documentation (card, licence, pictures), nor Python files unless its config maps an auto class
    to them (`auto_map`: remote code), so that editing a model card or adding a script beside the
    weights does not make every run on the model new. None for a hub id."""
    root = Path(path).expanduser()
    code = _remote_code(root)

    def read(rel: Path) -> bool:
        if rel.suffix.lower() in _DOC_SUFFIXES or rel.name.lower().startswith(_DOC_NAMES):
            return False
        return rel.suffix != ".py" or code

    return content_key([root], keep=read)


def _remote_code(root: Path) -> bool:
    """Whether a model folder's config maps an auto class to its own code (True where it cannot be
    read: then its Python files count)."""
    try:
        config = json.loads(read_text(root / "config.json", "model config"))
    except TicketlabError:
        return (root / "config.json").exists()
    except (OSError, ValueError):
        return True
    return not isinstance(config, dict) or "auto_map" in config


def default_cache_dir() -> Path:
    """`$TICKETLAB_CACHE`, else `$XDG_CACHE_HOME/ticketlab`, else `~/.cache/ticketlab`."""
    if os.environ.get("TICKETLAB_CACHE"):
        return Path(os.environ["TICKETLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ticketlab"


# One text for every `--cache-dir` that caches tokenized corpora (search, pretrain, evaluate-pretrain).
CORPUS_CACHE_HELP = (
    "tokenized-corpus cache (default <cache>/corpus: <cache> is $TICKETLAB_CACHE, else "
    "$XDG_CACHE_HOME/ticketlab, else ~/.cache/ticketlab)"
)


def corpus_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where tokenized corpora are cached: `cache_dir`, else `default_cache_dir() / "corpus"`."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "corpus"


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
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise error(f"{path}: {what} is {kind}, not a regular file; give a file")
    os.set_blocking(fd, True)
    return fd


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
            data = _read_upto(f, limit + 1)
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
