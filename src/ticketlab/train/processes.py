"""One process or several (`accelerate launch`, DDP): the one accelerator every training path uses,
the module DDP wraps (the loss computation), and what every process decides together (a non-finite
loss stops all of them; the main process's clock ends a piece).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs, broadcast_object_list
from torch import nn

from ..core.errors import ConfigError, TicketlabError
from .config import Batch, LossFn, TrainConfig


class LossModule(nn.Module):
    """The loss computation as one module, so that DDP wraps *it*: a `loss_fn` may then call any part
    of the model (e.g. the encoder, then the MLM head on the masked positions only) and DDP still
    synchronises the gradients. `loss_fn` receives the unwrapped model."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch):
        return self.loss_fn(self.model, batch)


def make_accelerator(config: TrainConfig | str = "no") -> Accelerator:
    """The one accelerator every training path uses (`config`: a TrainConfig or its mixed_precision).

    Every process derives the same masks from the same synchronised weights and scores, and
    BERT-like models keep no running statistics, so DDP need not re-broadcast the buffers (masks,
    thresholds, position ids) before every forward (a search checks at the end that the ranks agree). torch
    calls that option deprecated in favour of one accelerate cannot pass yet."""
    warnings.filterwarnings("ignore", message=".*broadcast_buffers. is deprecated", category=FutureWarning)
    precision = config if isinstance(config, str) else config.mixed_precision
    # accelerate keeps one mixed-precision setting per process and refuses another; a process that
    # trains twice (the demo: a bf16 pre-training, then fp32 searches) resets it. The process group
    # (PartialState) is kept.
    if AcceleratorState._shared_state.get("_mixed_precision", precision) != precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    acc = Accelerator(
        mixed_precision=precision,
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != acc.num_processes:  # e.g. CPU processes that accelerate did not join into one group
        raise ConfigError(
            f"{launched} processes were launched but accelerate sees {acc.num_processes}: on CPUs set "
            "ACCELERATE_USE_CPU=true (`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu "
            "--num_processes 2 --no_python ticketlab ...`)"
        )
    return acc


def check_finite_loss(
    losses: list[float], step: int, config: TrainConfig, acc: Accelerator, ckpt: Path | None
) -> None:
    """Stop before the optimizer step when a loss is nan or inf: the step would write non-finite
    weights, and every later step would train a constant predictor whose score looks like a result.
    All processes agree first (one of them alone raising would leave the others in an all-reduce)."""
    bad = next((v for v in losses if not math.isfinite(v)), None)
    if acc.num_processes > 1:
        flag = torch.tensor([0.0 if bad is None else 1.0], device=acc.device)
        if float(acc.reduce(flag, reduction="sum")) and bad is None:
            bad = float("nan")  # another process saw it
    if bad is None:
        return
    kept = f"; the checkpoint in {ckpt.parent} is kept" if ckpt is not None and ckpt.is_file() else ""
    raise TicketlabError(
        f"{config.desc}: the training loss is {bad} at step {step} (lr {config.lr:g}): the run diverged; "
        f"try a lower --lr, or check the model and data for non-finite values{kept}"
    )


def time_up(started: float, config: TrainConfig, acc: Accelerator) -> bool:
    """Whether this piece's time limit has passed; every process follows the main one's clock."""
    if config.time_limit_s is None:
        return False
    up = [time.monotonic() - started >= config.time_limit_s]
    if acc.num_processes > 1:
        broadcast_object_list(up)
    return bool(up[0])
