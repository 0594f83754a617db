"""A run directory's identity: what a resumable run records when it starts, checked when it is
started again in the same place.

A run directory holds one run (a search, a fine-tuning, a pre-training). Started again with the same
settings and inputs, the run resumes from its checkpoint, or returns its finished result. With other
settings, or with inputs whose content changed at the same paths (new weights saved over the model),
it is refused in one line before any work: its checkpoint and result belong to the other run.

The identity is a flat mapping: the result-affecting settings, plus the content key of every local
input (`files.content_key`) under its own name. Directories written before an input's key was
recorded lack it: not a difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .files import atomic_write_json, read_json

START_OVER = "pass another output directory, or delete it to start over"


def check_same_run(
    out: str | Path, kind: str, saved: Mapping[str, Any], now: Mapping[str, Any], inputs: Mapping[str, str]
) -> None:
    """Refuse to go on in `out` when its recorded identity `saved` is not `now`.

    `inputs` names the keys that are content keys of inputs, with how to call each in a message
    ("the corpus", "the model at m/"): a changed input is said first, as it is what a user did not
    change on purpose."""
    changed = [k for k in inputs if k in saved and k in now and saved[k] != now[k]]
    if changed:
        what = " and ".join(inputs[k] for k in changed)
        shown = ", ".join(f"{k}: {str(saved[k])[:19]} -> {str(now[k])[:19]}" for k in changed)
        raise ConfigError(f"{out}: {what} changed since this {kind} started ({shown}); {START_OVER}")
    unrecorded = inputs.keys() - set(saved)  # a directory from before its inputs were recorded
    diff = sorted(k for k in (set(saved) | set(now)) - unrecorded if saved.get(k) != now.get(k))
    if diff:
        shown = ", ".join(f"{k} {_short(saved.get(k))} -> {_short(now.get(k))}" for k in diff[:4])
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        raise ConfigError(
            f"{out} holds a {kind} with other settings (differs in: {shown}{more}); {START_OVER}"
        )


def record_or_check(
    path: Path,
    now: Mapping[str, Any],
    *,
    out: str | Path,
    kind: str,
    inputs: Mapping[str, str],
    write: bool = True,
) -> None:
    """The identity file `path` of a run directory: checked against `now` when it exists, else written
    (`write`: by the main process only, under several)."""
    if path.is_file():
        saved = read_json(path, f"{kind} settings")
        if not isinstance(saved, dict):
            raise ConfigError(f"{path}: not a settings record (a JSON object); {START_OVER}")
        check_same_run(out, kind, saved, now, inputs)
    elif write:
        atomic_write_json(path, dict(now))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
