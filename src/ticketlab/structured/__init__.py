"""Structured tickets (Liang et al. 2021): heads and FFN units, gates, unit mask files, compaction.

- `units`: the units of a BERT-like encoder, `UnitMask` (kept heads / FFN sub-layers / neurons),
  conversion to the equivalent unstructured weight `Mask`.
- `gates`: gates ξ (heads), ν (FFN sub-layers), per-neuron gates, hooked onto an unmodified HF model.
"""

from .gates import Gates, apply_unit_mask, attach_gates, gates_disabled, get_gates, remove_gates
from .units import GRANULARITIES, Structure, UnitMask, encoder_layers, structure_of, to_weight_mask

__all__ = [
    "GRANULARITIES",
    "Gates",
    "Structure",
    "UnitMask",
    "apply_unit_mask",
    "attach_gates",
    "encoder_layers",
    "gates_disabled",
    "get_gates",
    "remove_gates",
    "structure_of",
    "to_weight_mask",
]
