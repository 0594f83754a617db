"""The training loop's optimizer and schedule: AdamW (`train.optim`) and its parameter groups (no
decay on biases and norms: `decay_groups`), linear decay after a warm-up
(or constant), both restarted in place (IMP after each pruning), and stepping each parameter inside
the backward (`TrainConfig.optimizer_in_backward`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..masks.apply import plain_name
from .config import TrainConfig, TrainState
from .optim import AdamW, BertAdam, MtdnnAdamax


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    warm, total = config.warmup_steps, config.schedule_steps or config.max_steps

    first = (
        0 if config.optimizer != "adamw" else 1
    )  # warmup_linear (BertAdam, MT-DNN): lr 0 at the first step

    def factor(step: int) -> float:
        if step < warm:
            return (step + first) / warm
        if config.schedule == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def restart_optimizer(state: TrainState) -> None:
    """Make the optimizer and schedule what a newly built pair would be, from the next step on:
    moments and step counts dropped, the schedule at its first step (IMP after each pruning, as
    its reference codes rebuild both). In place, so checkpoints and the loop's references hold."""
    inner = getattr(state.optimizer, "optimizer", state.optimizer)  # accelerate's wrapper
    inner.state.clear()
    sched = state.scheduler
    if sched is None:
        raise RuntimeError("restart_optimizer needs the TrainState's scheduler")
    sched.last_epoch = 0  # as a new LambdaLR after its constructor's first step
    for group, base, fn in zip(inner.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
        group["lr"] = base * fn(0)
    sched._last_lr = [g["lr"] for g in inner.param_groups]


def adamw(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """The loop's own optimizer: `config.optimizer`'s. AdamW: bf16 parameters with stochastic rounding;
    `fused` is torch's kernel for the others. BertAdam: TAMT-KD's reference optimizer; Adamax:
    MT-DNN's (super tickets' fine-tuning)."""
    if config.optimizer == "bertadam":
        return BertAdam(params, lr=config.lr, eps=config.adam_eps, weight_decay=config.weight_decay)
    if config.optimizer == "adamax":  # eps: MT-DNN's Adamax default, 1e-6
        return MtdnnAdamax(params, lr=config.lr, eps=1e-6, weight_decay=config.weight_decay)
    fused = config.fused or None
    return AdamW(params, lr=config.lr, weight_decay=config.weight_decay, eps=config.adam_eps, fused=fused)


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no decay on biases and LayerNorm weights (BERT's recipe), masked biases included
    (named `X.parametrizations.bias.original`)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            name = plain_name(name)
            (
                no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay
            ).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def clip_gradients(acc: Any, optimizer: torch.optim.Optimizer, config: TrainConfig) -> None:
    """Clip the gradients to `config.max_grad_norm`: their global norm (`clip="global"`), or each
    tensor's own (`"per-tensor"`, BertAdam's clipping in TAMT's train_kd.py: a tensor with a large
    gradient is scaled down alone, the others keep theirs). fp16 gradients are unscaled first."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if config.clip == "global":
        acc.clip_grad_norm_(params, config.max_grad_norm)
        return
    acc.unscale_gradients()
    for p in params:
        if p.grad is not None:
            torch.nn.utils.clip_grad_norm_(p, config.max_grad_norm)


def step_in_backward(optimizer: torch.optim.Optimizer) -> list[Any]:
    """Make every parameter of `optimizer` take its step the moment its gradient is complete (once
    per backward: the gradients of a tied weight's uses are summed first) and drop that gradient.

    The step is the optimizer's own (its state, its param group's current learning rate), so
    checkpoints and schedulers are unchanged; the loop's `optimizer.step()` then finds no gradient
    left and does nothing. Returns the hook handles (`.remove()` undoes it).
    """
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the torch optimizer

    def hook(param: Tensor) -> None:
        inner.step()  # `param` is the only one holding a gradient: the others were stepped and freed
        param.grad = None

    return [p.register_post_accumulate_grad_hook(hook) for g in inner.param_groups for p in g["params"]]
