"""AdamW that updates only the entries of a per-step mask, and leaves every other entry untouched.

Ticket sharing (Liang et al. 2021, Algorithm 1) updates, on a minibatch of task i, only the
parameters inside task i's ticket. With `torch.optim.AdamW` the rest still moves: a zero gradient
decays the moments, the old first moment keeps pushing the weight, and decoupled weight decay
shrinks it (the reference implementation lets both happen). Here each step takes a mask per
parameter (True = inside the ticket) and writes parameter, moments and step count only there,
through `torch.where`, so entries outside are bit-identical before and after the step.

Each entry keeps its own step count (a tensor shaped like the parameter): an entry updated by one
task out of three sees its bias correction advance only on its own updates, as Adam on that entry
alone would.

A training loop that knows nothing of masks (`train.loop.train`) calls `step()` without them: the
masks then come from `step_masks()`, asked at every step (ticket sharing: the ticket of the task
whose batch the step was on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

# A parameter's mask: a bool tensor of its shape, True (all of it), or False / absent (none of it).
StepMask = Tensor | bool
StepMasks = Mapping[nn.Parameter, StepMask]


class MaskedAdamW(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict],
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        step_masks: Callable[[], StepMasks] | None = None,
    ):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.step_masks = step_masks

    @torch.no_grad()
    def step(self, masks: StepMasks | None = None, closure=None):  # type: ignore[override]
        """One update of the masked entries; `masks` is keyed by the parameter object itself.

        A parameter without a gradient, or whose mask is False or absent, is not touched at all.
        `masks=None` takes `step_masks()`, or without it updates every entry (plain AdamW with
        per-entry step counts).
        """
        if masks is None and self.step_masks is not None:
            masks = self.step_masks()
        for group in self.param_groups:
            for p in group["params"]:
                mask = True if masks is None else masks.get(p, False)
                if p.grad is None or mask is False:
                    continue
                self._update(p, group, mask)

    def _update(self, p: nn.Parameter, group: dict, mask: StepMask) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros_like(p, dtype=torch.float32)  # per-entry step count
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        elif state["step"].device != p.device:  # a resumed state: torch's `load_state_dict` moves
            state["step"] = state["step"].to(p.device)  # all but "step" (its own is a CPU scalar)
        g = p.grad
        m = torch.ones_like(p, dtype=torch.bool) if mask is True else mask.to(p.device)
        step = torch.where(m, state["step"] + 1, state["step"])
        exp_avg = torch.where(m, b1 * state["exp_avg"] + (1 - b1) * g, state["exp_avg"])
        exp_avg_sq = torch.where(m, b2 * state["exp_avg_sq"] + (1 - b2) * g * g, state["exp_avg_sq"])
        t = step.clamp(min=1)  # entries never updated have step 0; their branch is discarded below
        denom = (exp_avg_sq / (1 - b2**t)).sqrt() + eps
        new = p * (1 - lr * wd) - lr * (exp_avg / (1 - b1**t)) / denom
        p.copy_(torch.where(m, new, p))
        state["step"], state["exp_avg"], state["exp_avg_sq"] = step, exp_avg, exp_avg_sq
