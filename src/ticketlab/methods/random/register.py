"""Random pruning, `ticketlab prune random`: the no-inductive-bias baseline (TAMT "Rand"), seeded and
exact in sparsity; the function is `prune.random_mask`, imported when the method first runs
(`--help` reads this module)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Method, register_method

if TYPE_CHECKING:
    from torch import nn

    from ...masks import Mask


def random_mask(model: nn.Module, sparsity: float | None, **options: Any) -> Mask:
    """A random mask of `model` (`prune.random_mask`, the same arguments), imported when it first runs."""
    from .prune import random_mask as run  # lazy: `--help` reads this module; pruning needs torch

    return run(model, sparsity, **options)


register_method(
    Method(
        "random",
        None,
        random_mask,
        "random pruning at the same sparsity",
        verb="prune",
        color="C2",
        order=2,
    )
)
