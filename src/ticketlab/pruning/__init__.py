"""Pruning methods. One-shot methods map (model, sparsity) to a Mask; search methods train first.

Adding a one-shot method means one module and one entry in `ONE_SHOT`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..masking import Mask
from .magnitude import omp_mask
from .random_pruning import random_mask
from .ranking import Ranking, check_sparsity, keep_top

OneShot = Callable[..., Mask]  # (model, sparsity, *, ranking, targets, seed) -> Mask
ONE_SHOT: dict[str, OneShot] = {"omp": omp_mask, "random": random_mask}

__all__ = ["ONE_SHOT", "Ranking", "check_sparsity", "keep_top", "omp_mask", "random_mask"]
