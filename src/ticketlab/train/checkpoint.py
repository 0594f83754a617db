"""A training run's files besides its result: the checkpoint (trainable parameters and buffers,
optimizer, schedule, RNG; read back with `weights_only`, a corrupt one named in one line) and the
JSON-lines log a resumed run truncates to its step.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.checks import is_int, is_number
from ..core.errors import TicketlabError
from ..core.files.atomic import atomic_write_bytes, atomic_write_text
from ..core.files.inputs import read_text
from ..core.files.owned import read_own


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
# A checkpoint is read whole into memory before torch parses it: a bound far past any run's.
CHECKPOINT_BYTES = 1 << 40
_MT_WORDS = 624  # the Mersenne Twister's state, in numpy's and Python's generators alike


class CorruptCheckpoint(ValueError):
    """A value of a checkpoint that is not what this run saves (`restoring` names the file)."""


def _tensor_like(value: Any, like: Tensor, what: str) -> Tensor:
    if not isinstance(value, Tensor) or value.dtype != like.dtype or value.shape != like.shape:
        raise CorruptCheckpoint(f"{what}: {_described(value)}, not a generator state")
    return value


def _described(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


# Python's Mersenne Twister state as `repr` writes it: version 3, 624 words and a position, then
# `gauss_next` (None or a float). Matched before anything is parsed: no literal_eval of a file's text.
_PYTHON_STATE = re.compile(r"\(3, \(((?:\d{1,10}, ){624}\d{1,3})\), (None|[-+0-9.e]{1,32})\)")


def _python_state(text: Any) -> tuple:
    """Python's generator state from its `repr`, parsed only once it has the size and shape of one,
    each word within 32 bits and the position within the state."""
    if not isinstance(text, str) or len(text) > _PYTHON_STATE_CHARS:
        size = f" of {len(text)} characters" if isinstance(text, str) else ""
        raise CorruptCheckpoint(f"rng.python: {_described(text)}{size}, not a generator state")
    m = _PYTHON_STATE.fullmatch(text)
    words = [int(w) for w in m.group(1).split(", ")] if m else []
    if not m or max(words[:-1]) >= 2**32 or words[-1] > _MT_WORDS:
        raise CorruptCheckpoint("rng.python: not a generator state (624 words below 2**32, a position)")
    gauss = None if m.group(2) == "None" else _finite(m.group(2), "rng.python")
    return 3, tuple(words), gauss


def _finite(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CorruptCheckpoint(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise CorruptCheckpoint(f"{what}: {text!r} is not finite")
    return value


def _numpy_state(state: Any) -> tuple:
    """numpy's legacy generator state: ("MT19937", 624 words below 2**32, position, has_gauss, gauss)."""
    ok = isinstance(state, (list, tuple)) and len(state) == 5 and state[0] == "MT19937"
    if not ok:
        raise CorruptCheckpoint(f"rng.numpy: {_described(state)}, not a generator state")
    _, keys, pos, has_gauss, gauss = state
    _tensor_like(keys, torch.zeros(_MT_WORDS, dtype=torch.int64), "rng.numpy")
    if int(keys.min()) < 0 or int(keys.max()) >= 2**32:
        raise CorruptCheckpoint("rng.numpy: a word outside [0, 2**32)")
    if not _int_in(pos, 0, _MT_WORDS) or not _int_in(has_gauss, 0, 1):
        raise CorruptCheckpoint(f"rng.numpy: position {pos!r} or has_gauss {has_gauss!r} out of range")
    if not isinstance(gauss, (int, float)) or not math.isfinite(gauss):
        raise CorruptCheckpoint(f"rng.numpy: cached gaussian {gauss!r} is not a finite number")
    return "MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, float(gauss)


def _int_in(value: Any, low: int, high: int) -> bool:
    return is_int(value) and low <= value <= high


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved, each part checked to be a state of its generator first."""
    torch.set_rng_state(_tensor_like(state["torch"], torch.get_rng_state(), "rng.torch"))
    if state["cuda"] and torch.cuda.is_available():
        now = torch.cuda.get_rng_state_all()  # a checkpoint of fewer GPUs sets those it has
        if not isinstance(state["cuda"], list) or len(state["cuda"]) > len(now):
            raise CorruptCheckpoint(f"rng.cuda: {_described(state['cuda'])}, not one state per GPU")
        torch.cuda.set_rng_state_all([_tensor_like(c, now[0], "rng.cuda") for c in state["cuda"]])
    np.random.set_state(_numpy_state(state["numpy"]))
    random.setstate(_python_state(state["python"]))


def check_step(step: Any, path: Path, steps: int) -> int:
    """A checkpoint's step, refused in one line unless it is a step of this run (0 to `steps`): a
    larger one made a resumed run publish a result of steps it never trained."""
    if not is_int(step) or not 0 <= step <= steps:
        raise TicketlabError(
            f"{path}: corrupt checkpoint (step {str(step)[:40]!r}, not in [0, {steps}] as this run's "
            "settings say); delete it to restart from scratch"
        )
    return step


def load_trainable_state(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """Load a checkpoint's trainable parameters and buffers into `model`, refusing names it does not
    have (a checkpoint of another method or model)."""
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
    except CorruptCheckpoint as e:  # names the field itself
        raise TicketlabError(f"{path}: corrupt checkpoint ({e}); delete it to restart from scratch") from None
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, SyntaxError, AttributeError) as e:
        what = (str(e).splitlines() or [""])[0][:200]
        raise TicketlabError(
            f"{path}: corrupt checkpoint ({type(e).__name__}: {what}); delete it to restart from scratch"
        ) from None


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` (tensors and plain values: read back with `weights_only`) atomically."""
    buf = io.BytesIO()  # in memory: the file is written whole, atomically, by core.files
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
    try:  # never a FIFO or a device planted there (`open_own`)
        data = read_own(path, "checkpoint", CHECKPOINT_BYTES)
        if len(data) >= CHECKPOINT_BYTES:
            raise TicketlabError(
                f"{path}: corrupt checkpoint, larger than {CHECKPOINT_BYTES} bytes; delete it"
            )
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
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


# --------------------------------------------------------------------------- the whole checkpoint


def check_loop_checkpoint(
    saved: dict[str, Any], path: Path, optimizer: Any, scheduler: Any, steps: int
) -> int:
    """Every field of a training loop's checkpoint checked against this run before anything is
    restored: its step (`check_step`), the optimizer's state (each moment of its parameter's shape
    and finite, second moments not negative, step counts within the run), the schedule (its step
    within the run, learning rates finite and never above the run's), the counters and the RNG
    states (`set_rng_state`'s parsers). A bad field is one line naming the file and the field; the
    checkpoint is kept. Returns the step to resume from."""
    step = check_step(saved["step"], path, steps)
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    with restoring(path):
        bases = _check_groups(saved["optimizer"], inner, steps)
        _check_moments(saved["optimizer"], inner, steps)
        _check_schedule(saved["scheduler"], scheduler, bases, steps)
        _check_counters(saved["result"], steps)
        _check_window(saved.get("window"))
        _python_state(saved["rng"]["python"])
        _numpy_state(saved["rng"]["numpy"])
    return step


def _check_window(window: Any) -> None:
    """The losses since the last log line (numbers by key), their tokens and time; None: a checkpoint
    without them resumes with an empty window."""
    if window is None:
        return
    values = window.get("values") if isinstance(window, dict) else None
    losses = isinstance(values, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(is_number(x) for x in v) for k, v in values.items()
    )
    tokens, took = window.get("tokens") if losses else None, window.get("time") if losses else None
    if not (losses and is_int(tokens) and tokens >= 0 and is_number(took) and took >= 0):
        raise CorruptCheckpoint("window: not the losses, tokens and time since the last log line")


def _check_groups(saved: Any, optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    """The saved parameter groups: as many, of the same parameters, with finite settings and a
    learning rate in [0, the run's]. Returns each group's base rate (this run's)."""
    now = optimizer.state_dict()["param_groups"]
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or len(groups) != len(now) or not isinstance(saved.get("state"), dict):
        raise CorruptCheckpoint("optimizer: not this run's optimizer state (other parameter groups)")
    bases = []
    for i, (group, mine) in enumerate(zip(groups, now, strict=True)):
        if not isinstance(group, dict) or group.get("params") != mine["params"]:
            raise CorruptCheckpoint(f"optimizer.param_groups[{i}]: other parameters than this run's")
        for k, v in group.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise CorruptCheckpoint(f"optimizer.param_groups[{i}].{k}: {v} is not finite")
        base = float(mine.get("initial_lr", mine["lr"]))
        lr = group.get("lr")
        if not is_number(lr) or not 0 <= lr <= base * (1 + 1e-6):
            raise CorruptCheckpoint(
                f"optimizer.param_groups[{i}].lr: {lr!r}, not in [0, {base:g}] as this run's"
            )
        bases.append(base)
    return bases


def _check_moments(saved: dict[str, Any], optimizer: torch.optim.Optimizer, steps: int) -> None:
    """Each parameter's saved state: tensors of its shape, finite; second moments (`*_sq`) not
    negative; step counts whole numbers in [0, steps]."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for key, state in saved["state"].items():
        if not _int_in(key, 0, len(params) - 1) or not isinstance(state, dict):
            raise CorruptCheckpoint(f"optimizer.state[{str(key)[:20]}]: not a parameter of this run")
        shape = tuple(params[key].shape)
        for name, value in state.items():
            where = f"optimizer.state[{key}].{name}"
            t = torch.as_tensor(value) if isinstance(value, (int, float)) else value
            if not isinstance(t, Tensor):
                raise CorruptCheckpoint(f"{where}: {_described(value)}, not a tensor")
            if tuple(t.shape) != shape and not (name == "step" and t.numel() == 1):
                raise CorruptCheckpoint(f"{where}: of shape {tuple(t.shape)}, its parameter's is {shape}")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise CorruptCheckpoint(f"{where}: not finite")
            if name == "step" and (
                bool((t < 0).any()) or bool((t > steps).any()) or bool((t != t.round()).any())
            ):
                raise CorruptCheckpoint(f"{where}: not a whole number of steps in [0, {steps}]")
            if name.endswith("_sq") and bool((t < 0).any()):
                raise CorruptCheckpoint(f"{where}: negative (a mean of squares)")


def _check_schedule(saved: Any, scheduler: Any, bases: list[float], steps: int) -> None:
    """The schedule's step within the run, its base rates this run's, its last rates within them."""
    if not isinstance(saved, dict) or not _int_in(saved.get("last_epoch"), 0, steps):
        last = saved.get("last_epoch") if isinstance(saved, dict) else saved
        raise CorruptCheckpoint(f"scheduler.last_epoch: {str(last)[:40]!r}, not a step in [0, {steps}]")
    for key in ("base_lrs", "_last_lr"):
        rates = saved.get(key)
        ok = isinstance(rates, list) and len(rates) == len(bases)
        ok = ok and all(isinstance(r, (int, float)) and math.isfinite(r) for r in rates)
        ok = ok and all(0 <= r <= b * (1 + 1e-6) for r, b in zip(rates, bases, strict=True))
        if key == "base_lrs" and ok:
            ok = all(math.isclose(r, b, rel_tol=1e-6) for r, b in zip(rates, bases, strict=True))
        if not ok:
            raise CorruptCheckpoint(f"scheduler.{key}: {str(rates)[:60]}, not this run's rates ({bases})")


def _check_counters(result: Any, steps: int) -> None:
    """The result's counters: whole numbers (steps within the run), finite times; its eval payloads
    by step (`TrainResult.payloads`) a mapping."""
    if not isinstance(result, dict):
        raise CorruptCheckpoint(f"result: {_described(result)}, not a result")
    if not isinstance(result.get("payloads", {}), dict):
        raise CorruptCheckpoint(f"result.payloads: {_described(result['payloads'])}, not a mapping")
    for key, high in (("steps", steps), ("resumed_from", steps), ("tokens", 2**62)):
        if key in result and not _int_in(result[key], 0, high):
            raise CorruptCheckpoint(f"result.{key}: {str(result[key])[:40]!r}, not in [0, {high}]")
    t = result.get("train_time_s", 0.0)
    if not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
        raise CorruptCheckpoint(f"result.train_time_s: {str(t)[:40]!r}, not a duration")


def restore_trained(model: nn.Module, ckpt: Path, set_extra: Callable[[dict[str, Any]], None] | None) -> None:
    """Put `model` (and the loop's extra state, through `set_extra`) back as a finished training
    left them, from its last checkpoint `ckpt` (the loop writes it before its result): a caller
    killed before it wrote what follows training (a fine-tuned model, a mask) then writes it from
    the trained weights, not from those it loaded. The checkpoint is kept until that caller's own
    result is written (`RunDir.finish`); without it the trained weights are lost."""
    if not ckpt.is_file():
        raise TicketlabError(
            f"{ckpt.parent}: training finished but its last checkpoint, the trained weights, is gone "
            "before what follows training was written; delete the directory and run again"
        )
    try:
        saved = load_loop_checkpoint(ckpt)
        with restoring(ckpt):
            if set_extra is not None:  # first, as on resuming: it may say what the saved tensors are
                set_extra(saved.get("extra", {}))
            load_trainable_state(model, saved["model"], ckpt)
    except TicketlabError as e:  # "delete it to restart" would not: the finished result stands
        reason = str(e).split("; delete it")[0]
        raise TicketlabError(f"{reason}; training finished: delete the directory and run again") from None
