"""The run directory: where one resumable run (a search, a fine-tuning, a pre-training, ticket
sharing's shared training, a sweep's run) keeps its identity, lock, checkpoint and finished result.

A run directory holds one run. Started again with the same settings and inputs, the run resumes from
its checkpoint, or returns its finished result. With other settings, or with inputs whose content
changed at the same paths (new weights saved over the model), it is refused in one line before any
work: its checkpoint and result belong to the other run.

The identity is a flat mapping: the result-affecting settings (`core.digest.run_identity`: a
config's fields less those marked `result=False`), plus the content key of every local input
(`core.digest.content_keys`) under its own name.

`RunDir` is the one handle on such a directory: claim it (`core.outputs.claim_dir`), hold it against a
second process (`core.files.exclusive`), record or check its identity, read and write its finished
result, and remove what ticketlab wrote there (`core.outputs.remove_ours`). Each user names its own
files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.files.atomic import atomic_write_json, finite_json
from ..core.files.inputs import read_json
from ..core.files.owned import busy, exclusive, lock_holder
from ..core.outputs import claim_dir, remove_ours

CHECKPOINT = "checkpoint.pt"  # the training loop's (`train.loop.train`)
START_OVER = "pass another output directory, or delete it to start over"


def check_same_run(
    out: str | Path, kind: str, saved: Mapping[str, Any], now: Mapping[str, Any], inputs: Mapping[str, str]
) -> None:
    """Refuse to go on in `out` when its recorded identity `saved` is not `now`.

    `inputs` names the keys that are content keys of inputs, with how to call each in a message
    ("the corpus", "the model at m/"). With the same settings, a changed input is said alone: it is
    what a user did not change on purpose. With other settings (another task, say) they are said
    first, and a changed input after them: its content may follow from them (the other task's data)."""
    now = finite_json(dict(now))  # as it was written: `saved` was, through the one JSON encoder
    changed = [k for k in inputs if k in saved and k in now and saved[k] != now[k]]
    what = " and ".join(inputs[k] for k in changed)
    keys = ", ".join(f"{k}: {str(saved[k])[:19]} -> {str(now[k])[:19]}" for k in changed)
    compared = {k for k in inputs if k in saved and k in now}  # input keys: said apart from settings
    diff = sorted(k for k in (set(saved) | set(now)) - compared if saved.get(k) != now.get(k))
    if diff:
        shown = ", ".join(f"{k} {_short(saved.get(k))} -> {_short(now.get(k))}" for k in diff[:4])
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        also = f"; {what} changed too ({keys})" if changed else ""
        raise ConfigError(
            f"{out} holds a {kind} with other settings (differs in: {shown}{more}){also}; {START_OVER}"
        )
    if changed:
        raise ConfigError(f"{out}: {what} changed since this {kind} started ({keys}); {START_OVER}")


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


@dataclass(frozen=True)
class RunDir:
    """One run's directory. Its files are named relative to `path` (a search keeps its own under
    `run/`), and messages name `path` and the run as `what` ("search", "ticket-sharing run")."""

    path: Path
    what: str
    identity: str = "settings.json"
    result: str = "result.json"
    checkpoint: str | None = CHECKPOINT  # None: the run's checkpoints are its work's own (a sweep's run)
    lock_in: str = "."  # the folder whose `.lock` the run holds

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def file(self, name: str) -> Path:
        return self.path / name

    def claim(
        self, kind: str, *, inputs: Iterable[str | os.PathLike | None] = (), joins: Iterable[str] = ()
    ) -> Path:
        """Refuse a place that is not ours to write (before any work), make it and mark it as an
        output of `kind`: by the main process only, under several."""
        return claim_dir(self.path, kind=kind, inputs=inputs, joins=joins)

    @contextlib.contextmanager
    def held(self) -> Iterator[RunDir]:
        """Hold the run's lock for the block: a second process on it is refused in one line."""
        with exclusive(self.path / self.lock_in, self.what):
            yield self

    def holder(self) -> str | None:
        """Who else holds the lock now ("pid N on HOST"), or None."""
        return lock_holder(self.path / self.lock_in)

    def refuse_held(self) -> None:
        """Refuse, in one line and creating nothing, a run another process holds now: a second
        process is turned away before it reads its inputs, and before the directory is claimed."""
        holder = self.holder()
        if holder is not None:
            raise busy((self.path / self.lock_in).resolve(), holder, self.what)

    def check(self, now: Mapping[str, Any], inputs: Mapping[str, str], *, write: bool = True) -> None:
        """The recorded identity checked against `now` (`check_same_run`), or recorded for a new run
        (`write`: by the main process only, under several)."""
        record_or_check(
            self.file(self.identity), now, out=self.path, kind=self.what, inputs=inputs, write=write
        )

    def finished(self) -> Any | None:
        """The finished run's result (parsed JSON), or None while there is none."""
        path = self.file(self.result)
        return read_json(path, f"{self.what} result") if path.is_file() else None

    def finish(self, result: Any, *, keep_checkpoint: bool = False) -> None:
        """Write the finished result; its checkpoint is then no longer needed to resume."""
        atomic_write_json(self.file(self.result), result)
        self.tidy(keep_checkpoint=keep_checkpoint)

    def tidy(self, *, keep_checkpoint: bool = False) -> None:
        """Remove a finished run's checkpoint, unless kept: after `finish`, and on a rerun of a
        finished run, where a kill between its result and this removal left the checkpoint."""
        if self.checkpoint is not None and not keep_checkpoint:
            self.file(self.checkpoint).unlink(missing_ok=True)

    def forget(self) -> None:
        """Drop the finished result, so that the run is done again (its inputs are gone)."""
        self.file(self.result).unlink(missing_ok=True)

    def cleanup(self, names: Iterable[str] = ()) -> list[str]:
        """Delete what ticketlab wrote here (its identity, result, checkpoint and `names`; see
        `core.outputs.remove_ours`), the folder too once empty; returns what was kept (a user's files)."""
        ours = [self.identity, self.result, self.checkpoint, *names]
        return remove_ours(self.path, [n for n in ours if n is not None])
