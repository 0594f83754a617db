"""The one run identity: what a run's result depends on, named by its config's field metadata.

* `run_identity(config)`: the result-affecting fields of a config dataclass as a flat mapping (what a
  run directory records and checks, `train.run_dir`; what a store's row is named by): every field at
  the value the run uses, less those marked `result=False` (`core.checks.option(..., result=False)`,
  `not_result`), which do not change what a run computes (a progress bar, a checkpoint interval). A
  field added to a config, or a default changed, changes the identities of the runs it reaches
  (docs/explanation/run-ids.md).
* `content_keys(paths)`: the content key of each local input a run reads, by name (`core.files`).
* `digest(obj)`: the short sha256 id of a JSON-able identity (a fine-tuning's id, a sweep's run id).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from .checks import negated, option_name
from .files.keys import content_key, model_key

OMIT = object()  # a value in `run_identity(values=...)` that leaves its field out


def run_identity(
    config: Any,
    *,
    leave_out: Collection[str] = (),
    values: Mapping[str, Any] | None = None,
    options: bool = False,
) -> dict[str, Any]:
    """The result-affecting fields of the dataclass `config`, in declaration order (see the module
    docstring). `leave_out`: fields the caller names in its identity in another way (a search's
    method by its name, a stage's inputs by their content keys); `values`: a field's value as the run
    uses it, resolved (a default learning rate), or `OMIT`; `options`: keys are the fields' CLI option
    names and a negated bool is its option's value (`train_head` is `freeze_head`), as identities
    recorded under those names have them."""
    given = values or {}
    plain = dataclasses.asdict(config)  # copies: the identity shares no list with the config
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.name in leave_out or f.metadata.get("result") is False:
            continue
        value = given.get(f.name, plain[f.name])
        if value is OMIT:
            continue
        if options and negated(f) and isinstance(value, bool):
            value = not value
        out[option_name(f) if options else f.name] = value
    return out


Paths = str | os.PathLike | Sequence[str | os.PathLike]


def content_keys(paths: Mapping[str, Paths | None], models: Collection[str] = ("model",)) -> dict[str, str]:
    """The content key of each named local input, a path or a list of them (`core.files.content_key`;
    `models`: the names of model folders, keyed by what loading reads, `core.files.model_key`); an
    input that is None or not local (a hub id) has none and is left out."""
    listed = {name: [p] if isinstance(p, (str, os.PathLike)) else p for name, p in paths.items()}
    keys = {
        name: model_key(p[0]) if name in models and len(p) == 1 else content_key(p)
        for name, p in listed.items()
        if p is not None
    }
    return {name: key for name, key in keys.items() if key is not None}


def digest(obj: Any, *, compact: bool = False, length: int = 16) -> str:
    """The first `length` hex digits of the sha256 of `obj` as JSON with sorted keys. `compact`: no
    spaces after separators (a sweep's run ids); else `json`'s default separators."""
    separators = (",", ":") if compact else None
    blob = json.dumps(obj, sort_keys=True, default=str, separators=separators)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
