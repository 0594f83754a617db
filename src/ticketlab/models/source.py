"""A model argument before anything loads: a local directory or a hub id, checked with errors a
user can act on; the head and the sequence length its config gives.

Torch-free (no transformers either): verbs' configs and the CLI read these when options are parsed;
`models.load` loads what they name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..core.errors import ConfigError, TicketlabError, nearest
from ..core.files.inputs import check_folder
from ..core.hub import offline_hint, path_shaped

if TYPE_CHECKING:
    from transformers import PretrainedConfig

Head = Literal["mlm", "seq-cls", "qa", "base"]


def check_source(name_or_path: str | os.PathLike, needs: str = "config.json") -> str:
    """A local directory holding `needs` (a glob; '' for anything), or a hub id; else a clear error."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    what = "model directory" if needs == "config.json" else "tokenizer directory"
    if path.is_symlink() and not path.exists():  # not a hub id: a link to nothing, or a loop
        raise TicketlabError(
            f"{name}: a symbolic link that leads to no directory (a deleted target or a loop)"
        )
    if path.exists():
        if not path.is_dir() or (needs and not any(path.glob(needs))):
            lacking = " (no config.json)" if needs == "config.json" else ""
            raise TicketlabError(f"{path}: not a {what}{lacking}")
        check_folder(path, "model file")  # transformers' readers would wait forever on a FIFO in it
        return str(path)
    if _looks_local(name, path):
        raise TicketlabError(f"{name}: {what} not found (no such directory{path_hint(path)})")
    return name  # a hub id


def _looks_local(name: str, path: Path) -> bool:
    """A name that does not exist but is meant as a local path, not a hub id ("name" or "org/name").

    "org/name" whose "org" is a local directory (`models/bret` beside `models/bert`) is a typo'd
    path: the hub's network or offline message would only mislead.
    """
    return path_shaped(name) or ("/" in name and path.parent.is_dir())


def path_hint(path: Path, *, files: bool = False) -> str:
    """'; did you mean DIR?' for the nearest sibling directory of a missing path (with `files`, the
    nearest sibling of any kind), else '': a path mistyped on the command line or in a sweep spec."""
    try:
        siblings = [p.name for p in path.parent.iterdir() if files or p.is_dir()]
    except OSError:
        return ""
    close = nearest(path.name, siblings)
    return f"; did you mean {path.parent / close}?" if close else ""


def wrap_load_error(name: str, what: str, err: Exception) -> TicketlabError:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    first = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]  # "Validation error for x:" + why
    if isinstance(err, RecursionError):  # `[[[[...` a hundred thousand deep: json recurses per level
        first = "a JSON file there is nested too deeply (corrupt)"
    near = path_hint(Path(name).expanduser())  # `tiny-bret` beside `tiny-bert`: a typo, most likely
    hint = "" if Path(name).exists() else f" (no local directory of that name{near}; {offline_hint()})"
    return TicketlabError(f"{name}: cannot load {what}: {first}{hint}")


def head_of(config: PretrainedConfig) -> Head:
    """The head a checkpoint was saved with, from `config.architectures` ('base' when unknown)."""
    arch = (getattr(config, "architectures", None) or [""])[0]
    for suffix, head in (
        ("ForMaskedLM", "mlm"),
        ("ForSequenceClassification", "seq-cls"),
        ("ForQuestionAnswering", "qa"),
    ):
        if arch.endswith(suffix):
            return head
    return "base"


def max_positions(config: PretrainedConfig) -> int | None:
    """Tokens the model's position embeddings hold (RoBERTa's start after the padding index)."""
    n = getattr(config, "max_position_embeddings", None)
    if n is not None and getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        n -= (config.pad_token_id if config.pad_token_id is not None else 1) + 1
    return n


_NOTED: set[tuple[str, int, int]] = set()


def fit_max_length(
    config: PretrainedConfig, requested: int | None, default: int, *, what: str = "max_length"
) -> int:
    """The sequence length to use, one rule for every verb: an explicit value above the model's
    positions is refused (before any work); the default is min(default, positions), with one notice."""
    limit = max_positions(config)
    name = getattr(config, "_name_or_path", "") or config.model_type
    if requested is not None:
        if limit is not None and requested > limit:
            raise ConfigError(
                f"{what} {requested} exceeds the model's {limit} positions ({name}); pass at most {limit}"
            )
        return requested
    if limit is None or default <= limit:
        return default
    if (name, default, limit) not in _NOTED:
        _NOTED.add((name, default, limit))
        print(f"note: {name} has {limit} positions: {what} is {limit} (default {default})", file=sys.stderr)
    return limit
