"""Content keys: what a run read, so that a result is not reused once its inputs changed.

`content_key` hashes the bytes of every file under the given paths; `model_key` only the files
loading a model reads (not its card); `entry_keys` tells which of a folder's entries a key recorded
earlier covered.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import TicketlabError
from .inputs import open_read, read_text


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
# What every --corpus / --dev reads (`data.sources.resolve_sources`), for the options' help.
CORPUS_PATHS = (
    "text files, folders of `*.txt`, token files (`*.tokens.safetensors`), saved `datasets` dirs or, "
    f"online, {HUB_DATASET}NAME[:CONFIG]"
)


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
