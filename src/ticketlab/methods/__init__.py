"""Pruning methods. One-shot methods map (model, sparsity) to a Mask; search methods train first.

Adding a one-shot method means one module, its name in `configs.ONE_SHOT_METHODS` and its function
in `one_shot.ONE_SHOT`. The search methods, TAMT (`tamt.py`; its scores and masked layers in
`scores.py`, its exact thresholds in `thresholds.py`) and IMP (`imp.py`), share the resumable runner
of `search.py`; their settings are `configs.py` (no torch: a verb's `--help` reads them).
"""

from ..core.lazy import lazy_exports

# Imported on first use (`ticketlab.core.lazy`): `methods.configs` is read when `ticketlab search --help`
# is parsed, and must not bring torch with the methods.
_WHERE = {
    "ONE_SHOT": "one_shot",
    "OneShot": "one_shot",
    "ImpConfig": "configs",
    "Ranking": "configs",
    "TamtConfig": "configs",
    "ScoreMask": "scores",
    "SearchObjective": "search",
    "SearchResult": "search",
    "check_sparsity": "ranking",
    "imp_schedule": "imp",
    "keep_top": "ranking",
    "omp_mask": "magnitude",
    "prepare_tamt": "tamt",
    "random_mask": "random_pruning",
    "search_imp": "imp",
    "search_tamt": "tamt",
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

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
