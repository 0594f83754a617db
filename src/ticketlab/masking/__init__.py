"""Masks over pre-trained weights: targets, the Mask type, applying/removing, mask files, export."""

from .apply import (
    BinaryMask,
    MaskParametrization,
    apply_mask,
    attach,
    current_mask,
    dense_weight,
    has_masks,
    is_masked,
    masks_disabled,
    remove_mask,
)
from .export import export_pretrained
from .hub import mask_dir, push_mask
from .io import MaskConfig, check_fits, load_mask, load_mask_onto, save_mask, weights_hash
from .mask import Mask
from .named import active_mask, add_mask, delete_mask, mask_names, named_mask, set_active_mask
from .peft_tickets import get_peft_model, load_peft_model, merge_under_mask, ticket_record
from .targets import default_targets, find_targets, targets_repr
from .ticket import load_ticket, save_ticket

__all__ = [
    "BinaryMask",
    "Mask",
    "MaskConfig",
    "MaskParametrization",
    "active_mask",
    "add_mask",
    "apply_mask",
    "attach",
    "check_fits",
    "current_mask",
    "default_targets",
    "delete_mask",
    "dense_weight",
    "export_pretrained",
    "find_targets",
    "get_peft_model",
    "has_masks",
    "is_masked",
    "load_mask",
    "load_mask_onto",
    "load_peft_model",
    "load_ticket",
    "mask_names",
    "mask_dir",
    "masks_disabled",
    "merge_under_mask",
    "named_mask",
    "push_mask",
    "remove_mask",
    "save_mask",
    "save_ticket",
    "set_active_mask",
    "targets_repr",
    "ticket_record",
    "weights_hash",
]
