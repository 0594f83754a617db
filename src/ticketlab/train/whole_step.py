"""The training step as one compiled graph: forward, loss, backward, gradient clipping, the
optimizer's update and a method's own in-graph work after it (TAMT: the re-threshold's part of fixed
shapes), under `torch.compile(fullgraph=True)`, with nothing read back to the host inside.

The loop's eager step (`loop._Loop.accumulate`, `optimizer_step`) reads the loss after every
micro-batch and runs the optimizer's `step()`, which torch's optimizers wrap in graph breaks. Here:

* the gradients come from `torch.autograd.grad` traced into the graph (dynamo's
  `trace_autograd_ops`), summed over the micro-batches as the eager backward accumulates them, and
  never written to `.grad`;
* clipping is torch's (`clip_grad_norm_`'s total norm and coefficient) on those gradients;
* the update is the optimizer's own arithmetic as a function of tensors (`graph_update`): torch's
  functional AdamW with `capturable` step counts (no host read of the step, as a CUDA graph needs),
  `train.optim`'s stochastic rounding for bfloat16 parameters, BertAdam's and MT-DNN's Adamax;
  the learning rates are 0-d tensors that the eager schedule's values are copied into before each
  step (a Python float would be a constant of the graph: a recompilation at every new lr);
* the losses and logs come back as tensors, read by the loop only every `log_every` steps and
  before an evaluation, a checkpoint or the end (`WholeStep.due`), where a non-finite loss stops the
  run as the eager loop does (after the update, which the eager loop skips: the run stops either way).

What the step cannot hold falls back to the eager step (`whole_step` returns None): several
processes (DDP's reducer runs outside a traced backward), fp16 loss scaling, the optimizer stepped
inside the backward, an optimizer without a graph update (ticket sharing's `MaskedAdamW`).
Compiled results equal the eager step's to float rounding (the compiler may fuse and reorder), so
a compiled search is not expected to give the eager one's scores bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim.adam import adam

from .config import Batch, TrainConfig
from .optim import AdamW, _ReferenceAdam, round_stochastic_


@dataclass
class GraphHook:
    """What a method runs inside the compiled step after the update: `prepare` eagerly before every
    step (e.g. a selection from scratch that the graph cannot make), `inside` traced (tensors only,
    nothing read back); what `inside` returns reaches the loop's `after_step` as `TrainState.in_graph`."""

    prepare: Callable[[], None] | None = None
    inside: Callable[[], Any] | None = None


def _inner(optimizer: Any) -> torch.optim.Optimizer:
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the torch optimizer


def graph_supported(optimizer: Any) -> bool:
    """Whether `graph_update` can step this optimizer's groups (AdamW without amsgrad, maximize or a
    differentiable step; BertAdam; MT-DNN's Adamax)."""
    opt = _inner(optimizer)
    if isinstance(opt, _ReferenceAdam):
        return True
    if not isinstance(opt, torch.optim.AdamW):
        return False
    return not any(g["amsgrad"] or g["maximize"] or g["differentiable"] for g in opt.param_groups)


@torch.no_grad()
def init_state(optimizer: Any) -> None:
    """Every parameter's optimizer state, eagerly, in torch's layout: the step count a 0-d float32
    tensor on the parameter's device (a capturable step count), the moments zeros. A state that a
    checkpoint gave a step count on the CPU has it moved to the device."""
    opt = _inner(optimizer)
    second = getattr(opt, "second", "exp_avg_sq")
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state[second] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif state["step"].device != p.device:
                state["step"] = state["step"].to(p.device, torch.float32)


def graph_update(optimizer: Any, grads: Sequence[Tensor | None], lrs: Sequence[Tensor]) -> None:
    """The optimizer's update with `grads` (one per parameter of its groups, in order; None: the
    parameter takes no step, as eagerly without a gradient) at the learning rates `lrs` (0-d, one
    per group). Tensors only: traceable whole (`init_state` made the states)."""
    opt = _inner(optimizer)
    start = 0
    for group, lr in zip(opt.param_groups, lrs, strict=True):
        mine = grads[start : start + len(group["params"])]
        start += len(group["params"])
        pairs = [(p, g) for p, g in zip(group["params"], mine, strict=True) if g is not None]
        if isinstance(opt, _ReferenceAdam):
            _reference_update(opt, pairs, group, lr)
            continue
        fp32 = [(p, g) for p, g in pairs if p.dtype != torch.bfloat16]
        if fp32:
            _adamw_update(opt, fp32, group, lr)
        for p, g in pairs:
            if p.dtype == torch.bfloat16:
                _bf16_update(opt.state[p], p, g, group, lr)


def _adamw_update(opt: torch.optim.Optimizer, pairs: list[tuple[Tensor, Tensor]], group: dict, lr: Tensor) -> None:
    """torch's AdamW step over float32 (or other non-bf16) parameters, with capturable step counts."""
    params, grads = [p for p, _ in pairs], [g for _, g in pairs]
    states = [opt.state[p] for p in params]
    b1, b2 = group["betas"]
    adam(
        params,
        grads,
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [],
        [s["step"] for s in states],
        foreach=False,
        capturable=True,
        amsgrad=False,
        has_complex=False,
        beta1=b1,
        beta2=b2,
        lr=lr,
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        maximize=False,
        decoupled_weight_decay=True,
    )


def _bf16_update(state: dict, p: Tensor, grad: Tensor, group: dict, lr: Tensor) -> None:
    """`train.optim`'s bfloat16 AdamW step (float32 arithmetic, stochastic rounding of parameter and
    moments) with the step count and lr as tensors; whole, not in chunks (the compiler fuses it)."""
    (b1, b2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
    state["step"].add_(1)
    t = state["step"]
    g = grad.float()
    m = state["exp_avg"].float().lerp_(g, 1 - b1)
    v = state["exp_avg_sq"].float().mul_(b2).addcmul_(g, g, value=1 - b2)
    round_stochastic_(state["exp_avg"], m)
    round_stochastic_(state["exp_avg_sq"], v)
    x = p.float()
    if wd:
        x = x * (1 - lr * wd)
    step_size = lr / (1 - b1**t)
    denom = v.sqrt() / (1 - b2**t).sqrt() + eps
    round_stochastic_(p, x - step_size * (m / denom))


def _reference_update(opt: _ReferenceAdam, pairs: list[tuple[Tensor, Tensor]], group: dict, lr: Tensor) -> None:
    """BertAdam's / MT-DNN Adamax's step (`optim._ReferenceAdam.step`) with a tensor lr."""
    (b1, b2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
    for p, grad in pairs:
        state = opt.state[p]
        m = state["exp_avg"].mul_(b1).add_(grad, alpha=1 - b1)
        update = m / opt._scale(state[opt.second], grad, b2, eps)
        if wd:
            update.add_(p, alpha=wd)
        p.sub_(update * lr)
        state["step"] += 1


def clip(grads: list[Tensor | None], config: TrainConfig) -> list[Tensor | None]:
    """`schedule.clip_gradients` on gradients held apart from `.grad`: one global norm (torch's
    `clip_grad_norm_`: total norm, coefficient max_norm / (norm + 1e-6) clamped at 1), or each
    tensor's own (`clip="per-tensor"`)."""
    if config.max_grad_norm is None:
        return grads
    present = [g for g in grads if g is not None]
    if config.clip == "global":
        total = torch.nn.utils.get_total_norm(present)
        coef = (config.max_grad_norm / (total + 1e-6)).clamp(max=1.0)
        return [None if g is None else g * coef for g in grads]
    out = []
    for g in grads:
        if g is not None:
            norm = torch.linalg.vector_norm(g)
            g = g * (config.max_grad_norm / (norm + 1e-6)).clamp(max=1.0)
        out.append(g)
    return out


def eligible(config: TrainConfig, acc: Any, optimizer: Any) -> bool:
    """Whether the loop can take its steps as one graph (see the module for what cannot)."""
    return (
        acc.num_processes == 1
        and not config.optimizer_in_backward
        and config.mixed_precision != "fp16"
        and graph_supported(optimizer)
    )


def _sum_grads(total: list[Tensor | None] | None, new: Sequence[Tensor | None]) -> list[Tensor | None]:
    """The gradients of the micro-batches so far plus this one's (None where neither has one)."""
    if total is None:
        return list(new)
    return [b if a is None else a if b is None else a + b for a, b in zip(total, new, strict=True)]


class WholeStep:
    """The loop's step as one compiled graph (see the module). `module(batch)` is the loss
    computation (`processes.LossModule`); `hook` the method's in-graph work; `backend` torch.compile's
    (None: its default, inductor)."""

    def __init__(
        self, module: Any, optimizer: Any, config: TrainConfig, hook: GraphHook, device: torch.device, backend=None
    ):
        self.module, self.optimizer, self.config, self.hook = module, optimizer, config, hook
        groups = _inner(optimizer).param_groups
        self.params = [p for g in groups for p in g["params"]]
        self.trained = [p for p in self.params if p.requires_grad]  # the others take no step
        self.lrs = [torch.tensor(float(g["lr"]), dtype=torch.float32, device=device) for g in groups]
        bf16 = config.mixed_precision == "bf16"
        self.autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else None
        options = {"backend": backend} if backend is not None else {"options": {"emulate_precision_casts": True}}
        self.compiled = torch.compile(self.step, fullgraph=True, **options)
        self.pending: list[tuple[int, list[Tensor], list[dict[str, Any]]]] = []  # steps not read yet

    def step(self, batches: Sequence[Batch]) -> tuple[list[Tensor], list[dict[str, Any]], Any]:
        """Forward, loss and gradients of every micro-batch, clipping, the update and the hook's work:
        (the micro-batches' losses, their logs, what the hook returned), all tensors on the device."""
        grads, losses, logs = None, [], []
        for batch in batches:
            if self.autocast is not None:
                with self.autocast():
                    out = self.module(batch)
            else:
                out = self.module(batch)
            loss, extra = out if isinstance(out, tuple) else (out, {})
            g = torch.autograd.grad(loss / len(batches), self.trained, allow_unused=True)
            grads = _sum_grads(grads, g)
            losses.append(loss.detach())
            logs.append(extra)
        by_param = dict(zip(map(id, self.trained), grads or [], strict=True))
        grads = clip([by_param.get(id(p)) for p in self.params], self.config)
        with torch.no_grad():
            graph_update(self.optimizer, grads, self.lrs)
            inside = self.hook.inside() if self.hook.inside is not None else None
        return losses, logs, inside

    def run(self, loop: Any, batches: Sequence[Batch]) -> None:
        """One step of `loop` (`train.loop._Loop`) on its micro-batches (on the device): the graph,
        then, eagerly, the schedule, the step count and the loop's `after_step` (which finds the
        hook's output in `TrainState.in_graph`); the losses are read when `due`."""
        init_state(self.optimizer)  # made eagerly (and a resumed step count moved to the device)
        if self.hook.prepare is not None:
            self.hook.prepare()
        for lr, group in zip(self.lrs, _inner(self.optimizer).param_groups, strict=True):
            lr.fill_(float(group["lr"]))
        with torch._dynamo.config.patch(trace_autograd_ops=True):  # autograd.grad inside the graph
            losses, logs, inside = self.compiled(list(batches))
        state = loop.state
        self.pending.append((state.step + 1, losses, logs))
        loop.scheduler.step()
        state.step += 1
        state.in_graph = inside
        if loop.after_step is not None:
            loop.after_step(state)
        if self.due(state.step):
            self.flush(loop)

    def due(self, step: int) -> bool:
        """Whether the loop reads the losses after `step`: it logs, evaluates or checkpoints there,
        the run ends, or a time limit may stop it."""
        c = self.config
        every = [c.log_every, c.eval_every, c.save_every]
        return step == c.max_steps or c.time_limit_s is not None or any(n and step % n == 0 for n in every)

    def flush(self, loop: Any) -> None:
        """Read the pending losses and logs (one read), stop on a non-finite loss as the eager loop
        does (`processes.check_finite_loss`), and add them to the loop's log window."""
        from .processes import check_finite_loss

        tensors = [t for _, losses, logs in self.pending for t in _values(losses, logs)]
        read = iter(torch.stack([t.float() for t in tensors]).tolist() if tensors else [])
        for step, losses, logs in self.pending:
            values = [next(read) for _ in losses]
            check_finite_loss(values, step, self.config, loop.acc, loop.ckpt)
            for loss, extra in zip(values, logs, strict=True):
                row = {"loss": loss, **{k: next(read) if isinstance(v, Tensor) else v for k, v in extra.items()}}
                for k, v in row.items():
                    loop.window.values.setdefault(k, []).append(float(v))
        self.pending = []


def _values(losses: list[Tensor], logs: list[dict[str, Any]]) -> list[Tensor]:
    """The tensors of one pending step in the order `flush` reads them: the losses, then each
    micro-batch's tensor logs."""
    return [*losses, *(v for extra in logs for v in extra.values() if isinstance(v, Tensor))]
