"""Pruning methods. One-shot methods map (model, sparsity) to a Mask; search methods train first.

Adding a one-shot method means one module and one entry in `ONE_SHOT`. The search methods, TAMT
(`tamt.py`; its scores and masked layers in `scores.py`, its exact thresholds in `thresholds.py`)
and IMP (`imp.py`), share the resumable runner of `search.py`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..masking import Mask
from .imp import ImpConfig, imp_schedule, search_imp
from .magnitude import omp_mask
from .random_pruning import random_mask
from .ranking import Ranking, check_sparsity, keep_top
from .scores import ScoreMask
from .search import SearchObjective, SearchResult
from .tamt import TamtConfig, prepare_tamt, search_tamt

OneShot = Callable[..., Mask]  # (model, sparsity, *, ranking, targets, seed, pattern) -> Mask
ONE_SHOT: dict[str, OneShot] = {"omp": omp_mask, "random": random_mask}

__all__ = [
    "ONE_SHOT",
    "ImpConfig",
    "Ranking",
    "ScoreMask",
    "SearchObjective",
    "SearchResult",
    "TamtConfig",
    "check_sparsity",
    "imp_schedule",
    "keep_top",
    "omp_mask",
    "prepare_tamt",
    "random_mask",
    "search_imp",
    "search_tamt",
]
