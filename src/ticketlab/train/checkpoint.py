"""A training run's files besides its result: the checkpoint (trainable parameters and buffers,
optimizer, schedule, RNG; read back with `weights_only`, a corrupt one named in one line) and the
JSON-lines log a resumed run truncates to its step.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.errors import TicketlabError
from ..core.files import atomic_write_bytes, atomic_write_text, open_own


def trainable_state(model: nn.Module) -> dict[str, Tensor]:
    state = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
    state.update({n: b.detach().cpu() for n, b in model.named_buffers()})
    return state


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": repr(random.getstate()),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(ast.literal_eval(state["python"]))


def load_trainable_state(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """Load a checkpoint's trainable parameters and buffers into `model`, refusing names it does not
    have (e.g. the stored masks of TAMT checkpoints written before the masks became thresholds)."""
    missing = set(state) - set(dict(model.named_parameters())) - set(dict(model.named_buffers()))
    if missing:
        raise TicketlabError(
            f"{path}: checkpoint does not match this model (e.g. {sorted(missing)[0]}); "
            "delete it to restart from scratch"
        )
    model.load_state_dict(state, strict=False)


@contextlib.contextmanager
def restoring(path: Path) -> Any:
    """Restoring what checkpoint `path` holds: a value of the wrong kind or shape in it (a Python
    RNG state that is no state, an optimizer state of other tensors) is one line naming the file."""
    try:
        yield
    except TicketlabError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, SyntaxError, AttributeError) as e:
        what = (str(e).splitlines() or [""])[0][:200]
        raise TicketlabError(
            f"{path}: corrupt checkpoint ({type(e).__name__}: {what}); delete it to restart from scratch"
        ) from None


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` (tensors and plain values: read back with `weights_only`) atomically."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_loop_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint of the training loop, refused in one line when it lacks what a resume restores."""
    saved = load_checkpoint(path)
    missing = sorted({"step", "model", "optimizer", "scheduler", "rng", "result"} - set(saved))
    if missing:  # e.g. one written by ticket sharing's own loop, before it ran on this one
        raise TicketlabError(
            f"{path}: not a checkpoint of this training loop (no {', '.join(missing)}); "
            "delete it to restart from scratch"
        )
    return saved


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:  # never a FIFO or a device planted there
        fd = open_own(path, os.O_RDONLY, "checkpoint")
    except OSError as e:
        raise TicketlabError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file: say which one
        raise TicketlabError(f"{path}: corrupt checkpoint, delete it to restart from scratch ({e})") from None


def truncate_log(path: Path, step: int) -> None:
    """Drop the records of steps after `step` (the resumed run logs them again): each step once."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, AttributeError, RecursionError):
            record = json.loads(line)
            at = record.get("step", record.get("eval", {}).get("step"))
            if isinstance(at, int) and at > step:
                continue
        keep.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in keep))
