"""The pre-training losses' parts (`objectives.py`) in shapes that do not depend on the batch's
contents and with nothing read back to the host: what `objectives` computes inside a compiled step
(`torch.compiler.is_compiling()`), so that `torch.compile(fullgraph=True)` holds the step whole and a
CUDA graph can replay it. The same sums and means as the eager path, to float rounding."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..masks import masks_disabled
from .mlm_head import mlm_head
from .options import Decoder


def mlm_sums_static(
    model: nn.Module, hidden: Tensor, labels: Tensor, chosen: Tensor, decoder: Decoder, ignore_index: int
) -> tuple[Tensor, Tensor, Tensor]:
    """`objectives.mlm_sums` (sum of CE, correct, count) over every position of `hidden` [B, T, H]:
    the head runs on all of them and the cross-entropy sums where a label is set (`ignore_index`
    elsewhere; `chosen` [B, T]: where it is set). Eagerly the head runs on the chosen positions only
    ([n, V] instead of [B*T, V]), whose number is known only by reading it."""
    dense = masks_disabled(model) if decoder == "dense" else contextlib.nullcontext()
    with dense:
        logits = mlm_head(model)(hidden.reshape(-1, hidden.shape[-1]))  # [B*T, V]
    target = labels.reshape(-1)  # [B*T]
    loss_sum = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    correct = ((logits.detach().argmax(-1) == target) & chosen.reshape(-1)).sum()
    return loss_sum, correct, chosen.sum()


def mean_loss_static(
    s: Any, totals: Tensor, use_mlm: bool, use_kd: bool, world: int
) -> tuple[Tensor, dict[str, Tensor]]:
    """`objectives._mean_loss` with the token counts left on the device: the loss as the sums of
    `s` (`objectives.LossSums`) over the global counts (`totals`: [5] sums, all-reduced over `world`
    processes), and the logs as 0-d tensors, read by the caller when it logs."""
    if world > 1:
        torch.distributed.all_reduce(totals)
    mlm_sum, mlm_correct, mlm_n, kd_sum, kd_n = totals.unbind()
    loss = torch.zeros((), device=totals.device)
    logs: dict[str, Tensor] = {}
    if use_mlm:
        n = mlm_n.clamp(min=1.0)
        loss = loss + s.mlm_sum * (world / n)
        logs.update(mlm_loss=mlm_sum / n, mlm_acc=mlm_correct / n)
    if use_kd:
        n = kd_n.clamp(min=1.0)
        loss = loss + s.kd_sum * (world / n)
        logs["kd_loss"] = kd_sum / n
    return loss, logs
