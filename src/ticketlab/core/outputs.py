"""Output directories that never destroy what is not theirs.

`check_output` refuses, in one line and before any work, an existing directory that is not an output
of the same kind (`atomic_dir` and `claim_dir` mark their outputs with `MARKER`, which lists the files
ticketlab wrote), a user's file the output would overwrite, a path that holds an input, and a place
that cannot be written. `atomic_dir` builds an output under a temporary name and moves it in whole (a
new directory) or file by file (an existing one); `remove_ours` deletes only what ticketlab wrote.
`safe_component` checks a name read from a file before it becomes part of a path.

`place` is the one rule for where ticketlab writes or deletes: inside the output, never through a
symbolic link (ticketlab makes none, so a link in an output is the user's, and so is what lies
behind it), never a file a marker names outside its folder.

The atomic writes, temporaries and locks underneath are `core/files/`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import TicketlabError, printable
from .files.atomic import TEMP, follow_umask, make_dir, remove_stale, replace_with, temp_dir, writing
from .files.inputs import first_link
from .files.owned import read_own

MARKER = ".ticketlab-output"  # in every `atomic_dir` output: {"kind": ...}


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _ours_by_name(name: str) -> bool:
    """Our marker, lock and temporaries: never a user's file, never in a manifest."""
    return name == MARKER or (name.startswith(".") and name.endswith((".tmp", ".lock")))


def _holds_files(path: Path) -> bool:
    """Anything besides our temporaries and lock (another process of the run may be marking it)."""
    return any(not (e.name.startswith(".") and e.name.endswith((".tmp", ".lock"))) for e in path.iterdir())


def _files(root: Path) -> set[str]:
    """Relative paths of the files (and links) under `root`, our marker, lock and temporaries left out."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not _ours_by_name(d)]
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]  # not walked into
        found |= {(here / f).as_posix() for f in [*filenames, *links] if not _ours_by_name(f)}
    return found


def _inside(rel: Any) -> bool:
    """`rel` can name an entry inside a folder: a relative POSIX path without empty, `.` or `..`
    parts (what ticketlab writes in a marker; anything else was not written by ticketlab)."""
    return (
        isinstance(rel, str)
        and bool(rel)
        and not rel.startswith("/")
        and "\\" not in rel
        and "\0" not in rel
        and all(part not in ("", ".", "..") for part in rel.split("/"))
    )


def _link_line(link: Path) -> str:
    return (
        f"{link}: a symbolic link, which ticketlab did not make (refusing to write or delete through "
        "it); replace it by a folder or give another output directory"
    )


def place(root: str | os.PathLike, rel: str | os.PathLike = "") -> Path:
    """`root/rel` where ticketlab may write or delete it, or one line why not: `rel` must stay inside
    `root`, and no entry from `root` down to `root/rel` may be a symbolic link (ticketlab makes
    none: a link there leads to the user's files). Every write and delete inside an output goes
    through here, and `check_output` applies it to a whole existing output before any work."""
    root, rel = Path(root), os.fspath(rel)
    if rel and not _inside(rel):
        raise TicketlabError(f"{root}: {rel!r} is not a path inside it (refusing to write or delete there)")
    here = root
    for part in ["", *(rel.split("/") if rel else [])]:
        here = here / part if part else here
        if here.is_symlink():
            raise TicketlabError(_link_line(here))
        if not here.exists():  # nothing below a missing entry exists, links included
            break
    return root / rel if rel else root


def refuse_links(path: str | os.PathLike) -> None:
    """`place` for a whole existing output: refuse, in one line, a symbolic link that `path` is or
    holds anywhere (links are not walked into): a run's `run/`, a sweep's `runs/` or `spec.yaml`,
    a `.lock` or a log replaced by a link would be written through."""
    link = first_link(place(path))
    if link is not None:
        raise TicketlabError(_link_line(link))


MARKER_BYTES = 1 << 20  # ours are a few hundred bytes (a file list of a few thousand names at most)


def _marker(path: Path) -> dict[str, Any] | None:
    """The marker of a directory: None without one, {} when unreadable or not one ticketlab wrote
    (a link, a FIFO, a hard link to another file: `open_own`), so the folder does not count as ours."""
    try:
        data = read_own(path / MARKER, "marker", MARKER_BYTES + 1)
    except FileNotFoundError:
        return None
    except (OSError, TicketlabError):
        return {}
    with contextlib.suppress(ValueError, RecursionError):
        marker = json.loads(data) if len(data) <= MARKER_BYTES else None
        return marker if isinstance(marker, dict) else {}
    return {}


def _manifest(path: Path) -> set[str] | None:
    """The files ticketlab wrote into an output directory (the marker lists them); None when the
    marker lists none (a resumable run's): then every file counts as the user's unless the new
    output writes the same name."""
    listed = (_marker(path) or {}).get("files")
    if not isinstance(listed, list):
        return None
    return {f for f in listed if _inside(f)}  # never a path out of the folder (`_refuse_marker`)


def _refuse_marker(path: Path) -> None:
    """A marker whose file list names a path out of its folder (`../thesis.tex`, `/home/...`) was
    not written by ticketlab: the clean-up would delete what it names."""
    listed = (_marker(path) or {}).get("files", [])
    bad = next((f for f in listed if not _inside(f)), None) if isinstance(listed, list) else listed
    if bad is not None:
        raise TicketlabError(
            f"{path / MARKER}: lists {str(bad)[:80]!r}, a path outside {path} (not a marker ticketlab "
            "wrote; refusing to use the folder); give another output directory or delete the folder"
        )


def _owned(path: Path, kind: str, joins: Iterable[str] = ()) -> bool:
    """True when our marker says the directory is an output of `kind` (or of one of the kinds it
    `joins`). File names are no proof: a user's folder may hold a `mask_config.json` (or a
    `results.csv`) among their own files."""
    return (_marker(path) or {}).get("kind") in {kind, *joins}


def is_output(path: str | os.PathLike, kind: str, *kinds: str) -> bool:
    """`path` is a real directory (no link) that our marker calls an output of `kind` (or `kinds`)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and _owned(path, kind, kinds)


def _theirs(path: Path, names: Iterable[str]) -> list[str]:
    """Those of `names` that exist in `path` and are not ticketlab's (not in its manifest). Under a
    marker that lists no files (a resumable run's) a file of the same name counts as ours: the run
    writes it."""
    ours = _manifest(path)
    if ours is None:
        return []
    return sorted(n for n in names if n not in ours and os.path.lexists(path / n))


def resolved(path: str | os.PathLike) -> Path:
    """`Path.resolve()`, or one line when the path cannot be resolved (a symlink loop)."""
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: Python < 3.13 on a symlink loop
        raise TicketlabError(
            f"{path}: cannot resolve the path ({getattr(e, 'strerror', None) or e})"
        ) from None


def safe_component(name: Any, what: str = "name", error: type[TicketlabError] = TicketlabError) -> str:
    """`name` if it can be one path component; else one line. Any name read from a file (a task id,
    a label of a sweep spec) goes through here before it becomes part of a path, so `../x` cannot
    write outside the output, a leading dot cannot hide it (or pass for one of our temporaries),
    and a control or line-separator character cannot break the one-line messages that name it."""
    text = printable(str(name), what, error)
    if (
        not text
        or text.startswith(".")
        or any(c in "/\\" for c in text)
        or len(text.encode("utf-8", "surrogateescape")) > 255
    ):
        raise error(
            f"{what} {text[:80]!r}: not usable as a file name (no '/' or '\\', no leading '.'; "
            "at most 255 bytes)"
        )
    return text


def check_output(
    path: str | os.PathLike,
    *,
    kind: str,
    writes: Iterable[str] = (),
    inputs: Iterable[str | os.PathLike | None] = (),
    is_file: bool = False,
    joins: Iterable[str] = (),
    ours: Callable[[Path], bool] | None = None,
) -> Path:
    """Refuse, in one line and before any work, an output path that would destroy something.

    A directory output may be an empty or new directory, or one that holds an output of the same
    `kind` (our marker says so) or of a kind it `joins` (a study writing into a sweep's store),
    where none of the files it `writes` (relative paths known before the work) may be a user's. A
    file output may be new, or an existing file that `ours` recognises by its content as an earlier
    output of this kind (a file has no marker; without `ours` no existing file is replaced), never
    a directory. Neither may be, contain or lie inside one of `inputs`, nor be the current
    directory or one above it, and its place must be writable.
    """
    path = Path(path).expanduser()
    here, target = Path.cwd().resolve(), resolved(path)
    if not is_file:
        place(path)  # a link as the output: its target is not ticketlab's (first: no other message)
    if is_file and path.is_dir():
        raise TicketlabError(f"{path}: is a directory; give a file name")
    if is_file and os.path.lexists(path) and not (path.is_file() and ours is not None and ours(path)):
        raise TicketlabError(
            f"{path}: exists and is not a ticketlab {kind} (refusing to overwrite it); "
            "give a new file name or delete it"
        )
    if not is_file and path.exists() and not path.is_dir():
        raise TicketlabError(f"{path}: exists and is not a directory; give a directory")
    if not is_file and (target == here or target in here.parents):
        raise TicketlabError(f"{path}: is the current directory or above it; give a new directory")
    _refuse_inputs(path, target, here, inputs)
    if not is_file and path.is_dir() and _holds_files(path):
        if not _owned(path, kind, joins):
            raise TicketlabError(
                f"{path}: exists and is not a ticketlab {kind} (refusing to replace its files); "
                "give a new directory or delete it"
            )
        _refuse_marker(path)
        _refuse_theirs(path, writes)
    if not is_file and path.is_dir():
        refuse_links(path)
    if is_file and path.is_symlink():  # an earlier output of ours replaced by a link to the user's
        raise TicketlabError(_link_line(path))
    base = _nearest_existing(path if not is_file else path.parent)
    if not base.is_dir():
        raise TicketlabError(f"{path}: cannot write ({base} is not a directory)")
    if not os.access(base, os.W_OK | os.X_OK):
        raise TicketlabError(f"{path}: cannot write ({base} is not writable)")
    return path


def _refuse_inputs(path: Path, target: Path, here: Path, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an output (`target`: `path` resolved) that is, contains or lies inside an input that
    exists (`here`: the current directory, resolved)."""
    for given in inputs:
        if given is None or not Path(given).expanduser().exists():
            continue
        src = resolved(given)
        if src == target or target in src.parents:
            raise TicketlabError(f"{path}: would overwrite the input {given}; give another output")
        # A file added to an input folder changes what runs read (its content key); the folder one
        # works in (`--data-dir .`) holds outputs by choice.
        if src in target.parents and not (src == here or src in here.parents):
            raise TicketlabError(f"{path}: is inside the input {given}; give another output")


def _refuse_theirs(path: Path, names: Iterable[str]) -> None:
    theirs = _theirs(path, names)
    if theirs:
        more = f" (and {len(theirs) - 1} more)" if len(theirs) > 1 else ""
        raise TicketlabError(
            f"{path / theirs[0]}{more}: not written by ticketlab (refusing to overwrite it); "
            "move it away or give another output directory"
        )


def _write_marker(path: Path, kind: str, files: Iterable[str] | None) -> None:
    record: dict[str, Any] = {"kind": kind}
    if files is not None:
        record["files"] = sorted(files)
    replace_with(path / MARKER, (json.dumps(record) + "\n").encode())  # the caller names the output


def mark_output(path: str | os.PathLike, kind: str) -> None:
    """Mark a directory as a ticketlab output of `kind` (`check_output` lets it be reused)."""
    if not (Path(path) / MARKER).is_file():
        with writing(path):
            _write_marker(Path(path), kind, None)


def claim_dir(
    path: str | os.PathLike,
    *,
    kind: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    joins: Iterable[str] = (),
) -> Path:
    """A directory a resumable run writes into: checked (`check_output`), made and marked as `kind`
    (unless it is already the output of a kind it `joins`)."""
    path = check_output(path, kind=kind, inputs=inputs, joins=joins)
    make_dir(path)
    mark_output(path, kind)
    return path


def _merge(tmp: Path, path: Path, kind: str) -> None:
    """Move the new output `tmp` into the existing directory `path` file by file (each move atomic),
    then delete the files of the previous output the new one lacks. Everything else in `path` (the
    user's notes, a plot) stays. The marker lists old and new files while they mix, so a kill
    half-way leaves no file of ours that the next run would take for the user's."""
    new, old = _files(tmp), _manifest(path)
    for rel in sorted(new | (old or set())):  # a folder the user replaced by a link: not through it
        place(path, rel)
    _refuse_theirs(path, new)
    _write_marker(path, kind, new | (old or set()))
    for rel in sorted(new):
        dest = path / rel
        if dest.is_dir() and not dest.is_symlink():  # a folder where we now write a file: only if empty
            dest.rmdir()
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, dest)
    for rel in sorted((old or set()) - new):  # only files we wrote; then their emptied folders
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            (path / rel).unlink()
        parent = (path / rel).parent
        while parent != path and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    _write_marker(path, kind, new)
    shutil.rmtree(tmp, ignore_errors=True)


def remove_ours(path: str | os.PathLike, names: Iterable[str] = ()) -> list[str]:
    """Delete what ticketlab wrote in the directory `path` (a work folder done with, a model not
    kept): `names` (relative files, or folders that are outputs of ours in turn), every file its
    marker lists, its marker, lock and our temporaries; then the folders left empty, `path` too.
    Anything else (a note the user put there) stays, with the folders that hold it: an output
    loses only our files. Returns what was kept (relative paths)."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return []
    for rel in sorted({*names, *(_manifest(path) or ())}):
        target = place(path, rel)
        if target.is_dir() and not target.is_symlink():
            remove_ours(target)
        else:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
                target.unlink()
    for entry in path.iterdir():  # bookkeeping: the marker, a lock, a temporary named by us
        if entry.name in (MARKER, ".lock") or TEMP.search(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    for dirpath, _, _ in os.walk(path, topdown=False):  # empty folders, deepest first
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
    if not path.exists():
        return []
    return sorted((Path(d) / f).relative_to(path).as_posix() for d, _, fs in os.walk(path) for f in fs)


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike,
    *,
    kind: str,
    writes: Iterable[str] = (),
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Iterator[Path]:
    """Yield a temporary directory whose files replace those of `path` only if the block finishes
    without error.

    `path` may hold an earlier output of the same `kind` (see `check_output`); it loses only files
    ticketlab wrote there (the marker lists them). A new directory appears whole, by one rename; an
    existing one is updated file by file (`_merge`). A user's file the new output would overwrite
    is refused before anything is moved.
    """
    path = check_output(path, kind=kind, writes=writes, inputs=inputs)
    make_dir(path.parent)
    remove_stale(path.parent)
    tmp = temp_dir(path.parent, path.name)
    try:
        with writing(path):
            yield tmp
            follow_umask(tmp)
            if path.is_dir():
                _merge(tmp, path, kind)
            else:
                _write_marker(tmp, kind, _files(tmp))
                os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
