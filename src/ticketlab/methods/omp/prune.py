"""One-shot magnitude pruning (OMP): keep the weights of largest |W| (TAMT §3.2, Chen et al.)."""

from __future__ import annotations

import torch
from torch import nn

from ...masks import Mask, dense_weight, find_targets
from ...masks.targets import Targets
from ..ranking import Count, Ranking, keep_top


@torch.no_grad()
def omp_mask(
    model: nn.Module,
    sparsity: float,
    *,
    ranking: Ranking = "local",
    targets: Targets = None,
    seed: int | None = None,
    pattern: str | None = None,
    count: Count = "round",
) -> Mask:
    """Prune the `sparsity` fraction of smallest-|W| target weights (deterministic: `seed` is unused)."""
    del seed
    scores = {k: dense_weight(m).abs() for k, m in find_targets(model, targets).items()}
    return keep_top(scores, sparsity, ranking, pattern, count).cpu()
