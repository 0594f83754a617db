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
  single-tensor AdamW step with the step count on the device (no host read, as a CUDA graph needs),
  `train.optim`'s stochastic rounding for bfloat16 parameters, BertAdam's and MT-DNN's Adamax;
  the learning rates are 0-d tensors that the eager schedule's values are copied into before each
  step (a Python float would be a constant of the graph: a recompilation at every new lr);
* the losses and logs come back as tensors, read by the loop only every `log_every` steps and
  before an evaluation, a checkpoint or the end (`WholeStep.due`), where a non-finite loss stops the
  run as the eager loop does (after the update, which the eager loop skips: the run stops either way).

What the step cannot hold falls back to the eager step (`whole_step` returns None): several
processes (DDP's reducer runs outside a traced backward), fp16 loss scaling, the optimizer stepped
inside the backward, an optimizer without a graph update (ticket sharing's `MaskedAdamW`).
The graph reads nothing back and keeps its step counts and lrs on the device, what a CUDA graph
needs to replay it; capturing it (inductor's cudagraphs) is not switched on, as no GPU has run it yet.
Compiled results equal the eager step's to float rounding (the compiler may fuse and reorder), so
a compiled search is not expected to give the eager one's scores bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .config import Batch, TrainConfig
from .optim import _ReferenceAdam, round_stochastic_
from .processes import check_finite_loss


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


def hyper(optimizer: Any) -> list[dict[str, Any]]:
    """The optimizer's groups without their lr: what `graph_update` reads of them. A copy, so that
    the graph's guards see none of the values the schedule changes (each would recompile it)."""
    return [{k: v for k, v in g.items() if k != "lr"} for g in _inner(optimizer).param_groups]


def graph_update(
    optimizer: Any, groups: Sequence[dict[str, Any]], grads: Sequence[Tensor | None], lrs: Sequence[Tensor]
) -> None:
    """The optimizer's update of `groups` (`hyper`) with `grads` (one per parameter of the groups,
    in order; None: the parameter takes no step, as eagerly without a gradient) at the learning
    rates `lrs` (0-d, one per group). Tensors only: traceable whole (`init_state` made the states)."""
    opt = _inner(optimizer)
    start = 0
    for group, lr in zip(groups, lrs, strict=True):
        mine = grads[start : start + len(group["params"])]
        start += len(group["params"])
        pairs = [(p, g) for p, g in zip(group["params"], mine, strict=True) if g is not None]
        if isinstance(opt, _ReferenceAdam):
            _reference_update(opt, pairs, group, lr)
            continue
        for p, g in pairs:
            _adamw_update(opt.state[p], p, g, group, lr)


def _adamw_update(state: dict, p: Tensor, grad: Tensor, group: dict, lr: Tensor) -> None:
    """AdamW's step as torch's single-tensor step takes it eagerly (its operations in its order, the
    bias corrections in float64 as Python computes them from the step count), with the step count
    and lr as tensors (capturable: nothing read back); bfloat16 parameters in float32 and rounded
    back stochastically as `optim._adam_chunks` does, whole (the compiler fuses what it chunks)."""
    (b1, b2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
    state["step"].add_(1)
    t = state["step"].double()
    half = p.dtype == torch.bfloat16
    x, g = (p.float(), grad.float()) if half else (p, grad)
    m = state["exp_avg"].float() if half else state["exp_avg"]
    v = state["exp_avg_sq"].float() if half else state["exp_avg_sq"]
    if wd and not half:
        x.mul_(1 - lr * wd)
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    if half:
        round_stochastic_(state["exp_avg"], m)
        round_stochastic_(state["exp_avg_sq"], v)
        if wd:
            x.mul_(1 - lr * wd)
    step_size = lr / (1 - b1**t)  # float64, as eagerly; then a float32 scalar of each operation
    denom = (v.sqrt() / (1 - b2**t) ** 0.5).add_(eps)
    x.add_((-step_size).float() * m / denom)  # addcdiv's arithmetic: x + (value * m) / denom
    if half:
        round_stochastic_(p, x)


def _reference_update(
    opt: _ReferenceAdam, pairs: list[tuple[Tensor, Tensor]], group: dict, lr: Tensor
) -> None:
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


def install_output_hooks(module: torch.nn.Module) -> None:
    """transformers' hooks that record hidden states, installed now on every model inside `module`
    that has them: a model installs them the first time it records, under a lock that a graph
    cannot enter (KD reads every layer's hidden states)."""
    try:
        # lazy: transformers' private recorder module, read only when a KD step is compiled
        from transformers.utils import output_capturing as capturing
    except ImportError:  # a transformers without output capturing records no other way
        return
    for m in module.modules():
        if capturing._CAN_RECORD_REGISTRY.get(m):
            capturing.maybe_install_capturing_hooks(m)


class WholeStep:
    """The loop's step as one compiled graph (see the module). `module(batch)` is the loss
    computation (`processes.LossModule`); `hook` the method's in-graph work; `backend` torch.compile's
    (None: its default, inductor)."""

    def __init__(
        self,
        module: Any,
        optimizer: Any,
        config: TrainConfig,
        hook: GraphHook,
        device: torch.device,
        backend=None,
    ):
        self.module, self.optimizer, self.config, self.hook = module, optimizer, config, hook
        groups = _inner(optimizer).param_groups
        self.groups = hyper(optimizer)
        self.params = [p for g in groups for p in g["params"]]
        self.trained = [p for p in self.params if p.requires_grad]  # the others take no step
        # float64, as the schedule computes them: the update's scalars are those of the eager step
        self.lrs = [torch.tensor(float(g["lr"]), dtype=torch.float64, device=device) for g in groups]
        bf16 = config.mixed_precision == "bf16"
        self.autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else None
        options = (
            {"backend": backend} if backend is not None else {"options": {"emulate_precision_casts": True}}
        )
        self.compiled = torch.compile(self.step, fullgraph=True, **options)
        install_output_hooks(module)
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
            graph_update(self.optimizer, self.groups, grads, self.lrs)
            inside = self.hook.inside() if self.hook.inside is not None else None
        return losses, logs, inside

    def __call__(self, batches: Sequence[Batch]) -> tuple[list[Tensor], list[dict[str, Any]], Any]:
        """One step on `batches` (on the device): the states, the hook's eager part and the lrs made
        ready, then the graph; returns what `step` returns (nothing read)."""
        init_state(self.optimizer)  # made eagerly (and a resumed step count moved to the device)
        if self.hook.prepare is not None:
            self.hook.prepare()
        inner = _inner(self.optimizer)
        for lr, group in zip(self.lrs, inner.param_groups, strict=True):
            lr.fill_(float(group["lr"]))
        inner._opt_called = True  # the update is the optimizer's: its schedule need not warn
        with torch._dynamo.config.patch(trace_autograd_ops=True):  # autograd.grad inside the graph
            return self.compiled(list(batches))

    def run(self, loop: Any, batches: Sequence[Batch]) -> None:
        """One step of `loop` (`train.loop._Loop`) on its micro-batches (on the device): the graph,
        then, eagerly, the schedule, the step count and the loop's `after_step` (which finds the
        hook's output in `TrainState.in_graph`); the losses are read when `due`."""
        losses, logs, inside = self(batches)
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
        tensors = [t for _, losses, logs in self.pending for t in _values(losses, logs)]
        read = iter(torch.stack([t.float() for t in tensors]).tolist() if tensors else [])
        for step, losses, logs in self.pending:
            values = [next(read) for _ in losses]
            check_finite_loss(values, step, self.config, loop.acc, loop.ckpt)
            for loss, extra in zip(values, logs, strict=True):
                row = {
                    "loss": loss,
                    **{k: next(read) if isinstance(v, Tensor) else v for k, v in extra.items()},
                }
                for k, v in row.items():
                    loop.window.values.setdefault(k, []).append(float(v))
        self.pending = []


def _values(losses: list[Tensor], logs: list[dict[str, Any]]) -> list[Tensor]:
    """The tensors of one pending step in the order `flush` reads them: the losses, then each
    micro-batch's tensor logs."""
    return [*losses, *(v for extra in logs for v in extra.values() if isinstance(v, Tensor))]
