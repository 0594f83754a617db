"""Random pruning: the no-inductive-bias baseline (TAMT "Rand"), seeded and exact in sparsity."""

from __future__ import annotations

import torch
from torch import nn

from ...masks import Mask, find_targets
from ...masks.targets import Targets
from ..ranking import Count, Ranking, keep_top


@torch.no_grad()
def random_mask(
    model: nn.Module,
    sparsity: float,
    *,
    ranking: Ranking = "local",
    targets: Targets = None,
    seed: int | None = 0,
    pattern: str | None = None,
    count: Count = "round",
) -> Mask:
    """Prune a uniformly random `sparsity` fraction of target weights (per matrix, or over all of them)."""
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    # Sorted keys make the draw independent of module registration order.
    modules = dict(sorted(find_targets(model, targets).items()))
    scores = {k: torch.rand(m.weight.shape, generator=gen) for k, m in modules.items()}
    mask = keep_top(scores, sparsity, ranking, pattern, count)
    return Mask({k: mask[k] for k in find_targets(model, targets)})
