"""N:M selection on tensors: the groups of M, the N highest of each kept (`masks.pattern` parses and
checks a pattern, torch-free)."""

from __future__ import annotations

import torch
from torch import Tensor

from .pattern import NM


def groups(t: Tensor, nm: NM) -> Tensor:
    """`t` as [groups, M] (a view of a contiguous tensor)."""
    return t.reshape(-1, nm.m)


def group_order(x: Tensor) -> Tensor:
    """Indices of each row of `x` ([groups, M]), highest value first, ties by lower position."""
    return torch.argsort(x, dim=1, descending=True, stable=True)


def keep_top_groups(scores: Tensor, nm: NM) -> Tensor:
    """A bool mask of `scores`' shape keeping the N highest of every group of M."""
    order = group_order(groups(scores.detach(), nm))
    keep = torch.zeros(order.shape, dtype=torch.bool, device=scores.device)
    keep.scatter_(1, order[:, : nm.n], True)
    return keep.reshape(scores.shape)


def follows(mask: Tensor, nm: NM) -> bool:
    """True when `mask` keeps exactly N of every M along its last dimension."""
    if mask.shape[-1] % nm.m:
        return False
    return bool((groups(mask, nm).sum(1) == nm.n).all())
