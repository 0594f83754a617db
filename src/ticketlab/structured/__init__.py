"""Structured tickets (Liang et al. 2021): heads and FFN units, gates, unit mask files, compaction.

- `UnitMask` (kept heads / FFN sub-layers / neurons) and its equivalent weight `Mask` live in the
  mask layer (`ticketlab.masks.units`), the encoder's unit `Structure` beside the architecture map
  (`ticketlab.models.structure`); both are re-exported here.
- A ticket is used as its weight form: `apply_unit_mask(model, units)` (and `load_unit_mask_onto`)
  masks the unit slices by parametrizations, like any mask (`masks.apply`): no hooks, the same
  outputs as the gates, `save_pretrained` writes the zeros, `masks.masks_disabled` switches it off.
- `gates`: gates ξ (heads), ν (FFN sub-layers), per-neuron gates, hooked onto an unmodified HF model,
  where gradients with respect to units are needed (importance).
- `io`: structured ticket files (a mask directory of kind "structured"), loaded with the same checks.
- `compact`: a physically smaller model without the pruned units; saved with a manifest, reloaded.
- `importance`, `tickets`, `masked_adam`: unit importance scores, ticket selection, the optimizer of
  ticket sharing. The studies built on them (super tickets, ticket sharing, domain adaptation,
  importance across tasks) are recipes in `ticketlab.experiments`, beside the sweep.
"""

from ..core.lazy import lazy_exports

# Imported on first use (`ticketlab.core.lazy`): `structured.levels` is read when `ticketlab super --help`
# is parsed, and must not bring torch with the rest of the package.
_WHERE = {
    "GRANULARITIES": "..masks.units",
    "Gates": "..masks.gates",
    "Structure": "..models.structure",
    "UnitMask": "..masks.units",
    "apply_unit_mask": "..masks.units",
    "attach_gates": "..masks.gates",
    "check_unit_fits": "..masks.unit_io",
    "compact": "..masks.compact",
    "encoder_layers": "..models.structure",
    "gates_disabled": "..masks.gates",
    "get_gates": "..masks.gates",
    "is_compacted": "..masks.compact",
    "load_compacted": "..masks.compact",
    "load_unit_mask": "..masks.unit_io",
    "load_unit_mask_onto": "..masks.unit_io",
    "parameter_count": "..masks.compact",
    "remove_gates": "..masks.gates",
    "save_compacted": "..masks.compact",
    "save_unit_mask": "..masks.unit_io",
    "structure_of": "..models.structure",
    "to_weight_mask": "..masks.units",
    "unit_mask_config": "..masks.unit_io",
}
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "GRANULARITIES",
    "Gates",
    "Structure",
    "UnitMask",
    "apply_unit_mask",
    "attach_gates",
    "check_unit_fits",
    "compact",
    "encoder_layers",
    "gates_disabled",
    "get_gates",
    "is_compacted",
    "load_compacted",
    "load_unit_mask",
    "load_unit_mask_onto",
    "parameter_count",
    "remove_gates",
    "save_compacted",
    "save_unit_mask",
    "structure_of",
    "to_weight_mask",
    "unit_mask_config",
]
