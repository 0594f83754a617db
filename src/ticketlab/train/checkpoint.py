"""A training run's files besides its result: the checkpoint (trainable parameters and buffers,
optimizer, schedule, RNG; read back with `weights_only`, a corrupt one named in one line) and the
JSON-lines log a resumed run truncates to its step.
"""

from __future__ import annotations

import ast
import contextlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.errors import TicketlabError
from ..core.files import atomic_write_text, load_torch, read_text, save_torch


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


# Python's Mersenne Twister state as `repr` writes it: (3, (625 integers below 2**32), None) is
# about 7000 characters; anything much longer is not one (and parsing a huge string runs out of memory).
_PYTHON_STATE_CHARS = 16_000
_MT_WORDS = 624  # the Mersenne Twister's state, in numpy's and Python's generators alike


class CorruptCheckpoint(ValueError):
    """A value of a checkpoint that is not what this run saves (`restoring` names the file)."""


def _tensor_like(value: Any, like: Tensor, what: str) -> Tensor:
    if not isinstance(value, Tensor) or value.dtype != like.dtype or value.shape != like.shape:
        raise CorruptCheckpoint(f"{what} is not a generator state ({_described(value)})")
    return value


def _described(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _python_state(text: Any) -> tuple:
    """Python's generator state from its `repr`, parsed only once it has the size and shape of one."""
    if not isinstance(text, str) or len(text) > _PYTHON_STATE_CHARS:
        size = f" of {len(text)} characters" if isinstance(text, str) else ""
        raise CorruptCheckpoint(f"the Python generator state is {_described(text)}{size}")
    state = ast.literal_eval(text)
    ok = isinstance(state, tuple) and len(state) == 3 and isinstance(state[1], tuple)
    if not ok or len(state[1]) != _MT_WORDS + 1 or not all(type(w) is int for w in state[1]):
        raise CorruptCheckpoint("the Python generator state is not one")
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved, each part checked to be a state of its generator first."""
    torch.set_rng_state(_tensor_like(state["torch"], torch.get_rng_state(), "the torch state"))
    if state["cuda"] and torch.cuda.is_available():
        now = torch.cuda.get_rng_state_all()  # a checkpoint of fewer GPUs sets those it has
        if not isinstance(state["cuda"], list) or len(state["cuda"]) > len(now):
            raise CorruptCheckpoint(f"the CUDA states are {_described(state['cuda'])}, not one per GPU")
        torch.cuda.set_rng_state_all([_tensor_like(c, now[0], "a CUDA state") for c in state["cuda"]])
    kind, keys, *rest = state["numpy"]
    _tensor_like(keys, torch.zeros(_MT_WORDS, dtype=torch.int64), "the numpy state")
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_python_state(state["python"]))


def check_step(step: Any, path: Path, steps: int) -> int:
    """A checkpoint's step, refused in one line unless it is a step of this run (0 to `steps`): a
    larger one made a resumed run publish a result of steps it never trained."""
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= steps:
        raise TicketlabError(
            f"{path}: corrupt checkpoint (step {str(step)[:40]!r}, not in [0, {steps}] as this run's "
            "settings say); delete it to restart from scratch"
        )
    return step


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
    save_torch(path, payload)


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
    try:  # never a FIFO or a device planted there (`open_own`)
        return load_torch(path, "checkpoint")
    except TicketlabError:
        raise
    except OSError as e:
        raise TicketlabError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None
    except Exception as e:  # truncated or foreign file: say which one
        raise TicketlabError(f"{path}: corrupt checkpoint, delete it to restart from scratch ({e})") from None


def truncate_log(path: Path, step: int) -> None:
    """Drop the records of steps after `step` (the resumed run logs them again): each step once."""
    if not path.is_file():
        return
    keep = []
    for line in read_text(path, "training log").splitlines():
        with contextlib.suppress(ValueError, AttributeError, RecursionError):
            record = json.loads(line)
            at = record.get("step", record.get("eval", {}).get("step"))
            if isinstance(at, int) and at > step:
                continue
        keep.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in keep))
