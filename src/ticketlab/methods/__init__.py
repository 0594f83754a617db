"""Pruning methods. One-shot methods map (model, sparsity) to a Mask; search methods train first.

Every method is registered in `registry` (`register_method`) by one module of `registered/`, or by
the `register` module of its own folder: adding a method is adding a module there. The search
methods, TAMT (`tamt.py`; its scores in `scores.py`, masked layers in `masked_layers.py`, exact
thresholds in `thresholds.py`) and IMP (`imp.py`), share the resumable runner of `search.py` (its
directory: `search_dir.py`); their settings are `configs.py` (no torch: a verb's `--help` reads
them). One-shot pruning is `magnitude.py` and `random_pruning.py`, run into a mask directory by
`one_shot.py`; the one-shot methods on calibration data have a folder each, `wanda/` and
`sparsegpt/`, sharing `calibration.py` (the sequences) and `layerwise.py` (the layer-by-layer
pass); unit importance and structured tickets are `importance.py`, `levels.py` and `tickets.py`.
"""

from ..core.lazy import lazy_exports

# Imported on first use (`ticketlab.core.lazy`): `methods.configs` is read when `ticketlab search --help`
# is parsed, and must not bring torch with the methods.
_WHERE = {
    "Method": "registry",
    "register_method": "registry",
    "ImpConfig": "configs",
    "Ranking": "configs",
    "TamtConfig": "configs",
    "ScoreMask": "scores",
    "SearchObjective": "search",
    "SearchResult": "search",
    "check_sparsity": "ranking",
    "imp_schedule": "configs",
    "keep_top": "ranking",
    "omp_mask": "magnitude",
    "prepare_tamt": "tamt",
    "random_mask": "random_pruning",
    "search_imp": "imp",
    "search_tamt": "tamt",
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "ImpConfig",
    "Method",
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
    "register_method",
    "search_imp",
    "search_tamt",
]
