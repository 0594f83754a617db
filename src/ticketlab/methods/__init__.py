"""Pruning methods. One-shot methods map (model, sparsity) to a Mask; search methods train first.

One folder per method, each registering itself with `registry.register_method` in its `register`
module (adding a method is adding a folder): `tamt/` (mask training: its search, scores, masked
layers and exact re-threshold), `imp/` (iterative magnitude pruning), `omp/` (one-shot magnitude
pruning), `random/`, `wanda/` and `sparsegpt/` (one-shot on calibration data), `super_tickets/` (unit
importance and the structured tickets of Liang et al.), `full/` (the dense model). A search method's
settings are its folder's `config.py` (no torch: a verb's `--help` reads them). Beside the folders,
the machinery they share: `ranking.py` (which weights a sparsity keeps), the resumable search runner
`search.py` (its directory `search_dir.py`, its inputs `search_inputs.py`), the settings the methods
share (`options.py`, torch-free too), `one_shot.py` (a one-shot method into a mask directory),
`calibration.py` and `layerwise.py` (the calibration sequences and the layer-by-layer pass of Wanda
and SparseGPT).
"""

from ..core.lazy import lazy_exports

# Imported on first use (`ticketlab.core.lazy`): the methods' configs (`tamt/config.py`) are read when
# `ticketlab search --help` is parsed, and must not bring torch with the methods.
_WHERE = {
    "Method": "registry",
    "register_method": "registry",
    "ImpConfig": "imp.config",
    "Ranking": "options",
    "TamtConfig": "tamt.config",
    "ScoreMask": "tamt.scores",
    "SearchObjective": "search",
    "SearchResult": "search",
    "check_sparsity": "ranking",
    "imp_schedule": "imp.config",
    "keep_top": "ranking",
    "omp_mask": "omp.prune",
    "prepare_tamt": "tamt.search",
    "random_mask": "random.prune",
    "search_imp": "imp.search",
    "search_tamt": "tamt.search",
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
