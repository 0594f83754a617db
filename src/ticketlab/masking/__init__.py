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
from .targets import default_targets, find_targets, targets_repr

__all__ = [
    "BinaryMask",
    "Mask",
    "MaskConfig",
    "MaskParametrization",
    "apply_mask",
    "attach",
    "check_fits",
    "current_mask",
    "default_targets",
    "dense_weight",
    "export_pretrained",
    "find_targets",
    "has_masks",
    "is_masked",
    "load_mask",
    "load_mask_onto",
    "mask_dir",
    "masks_disabled",
    "push_mask",
    "remove_mask",
    "save_mask",
    "targets_repr",
    "weights_hash",
]
