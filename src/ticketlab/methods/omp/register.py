"""One-shot magnitude pruning (OMP), `ticketlab prune omp`: keep the weights of largest |W| (TAMT §3.2,
Chen et al.); the function is `prune.omp_mask`, imported when the method first runs (`--help` reads
this module)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Method, register_method

if TYPE_CHECKING:
    from torch import nn

    from ...masks import Mask


def omp_mask(model: nn.Module, sparsity: float | None, **options: Any) -> Mask:
    """OMP's mask of `model` (`prune.omp_mask`, the same arguments), imported when it first runs."""
    from .prune import omp_mask as run  # lazy: `--help` reads this module; pruning needs torch

    return run(model, sparsity, **options)


register_method(
    Method(
        "omp",
        None,
        omp_mask,
        "one-shot magnitude pruning: keep the largest |W| (deterministic: one mask)",
        verb="prune",
        seeded=False,
        color="C1",
        order=1,
    )
)
