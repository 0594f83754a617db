"""Reconstructed weights beside a mask: SparseGPT's second artefact.

SparseGPT prunes and also updates the weights it keeps (the optimal brain surgeon's correction), so
its result is two things: the mask over the base weights θ0, a ticket like every other mask file,
and the mask with the updated weights, a sparse model that is not a ticket (its kept weights are
not θ0's). The second is stored as the smallest addition to the first: `reconstructed.safetensors`
in the mask directory, the updated target matrices by mask key (zeros where the mask prunes; the
word embeddings, pruned by magnitude, are θ0's and not stored). Every verb that takes a mask reads
the ticket and ignores the file; `ticketlab export --reconstructed` writes the sparse model from it,
and `info` names it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from ..core.errors import MaskFileError
from ..core.files.inputs import load_safetensors
from ..models.weights import not_finite
from .apply import resolve_modules
from .hub import mask_dir
from .mask import Mask

RECONSTRUCTED_NAME = "reconstructed.safetensors"
NOT_A_TICKET = "SparseGPT's reconstructed weights, a sparse model, not a ticket"


def reconstructed_file(path: str | os.PathLike) -> Path | None:
    """The reconstructed weights' file of the mask directory `path`, or None where it has none."""
    file = mask_dir(path) / RECONSTRUCTED_NAME
    return file if file.is_file() else None


def load_reconstructed(path: str | os.PathLike, mask: Mask) -> dict[str, Tensor]:
    """The reconstructed weights of the mask directory `path` (its mask `mask`), checked: every key
    one of the mask's, every shape the mask's, float and finite, zero wherever the mask prunes."""
    file = reconstructed_file(path)
    if file is None:
        raise MaskFileError(
            f"{path}: no {RECONSTRUCTED_NAME} (only SparseGPT writes reconstructed weights; the mask "
            "itself is exported without --reconstructed)"
        )
    try:
        weights = load_safetensors(file, "reconstructed weights", MaskFileError)
    except Exception as e:  # safetensors raises its own error types for corrupt/truncated files
        raise MaskFileError(f"{file}: corrupt or truncated safetensors file ({e})") from None
    for key, w in weights.items():
        if key not in mask:
            raise MaskFileError(f"{file}: '{key}' is not one of the mask's weights")
        if tuple(w.shape) != tuple(mask[key].shape):
            raise MaskFileError(
                f"{file}: '{key}' has shape {tuple(w.shape)}, the mask {tuple(mask[key].shape)}"
            )
        if not w.is_floating_point():
            raise MaskFileError(f"{file}: '{key}' holds {w.dtype}, not weights (a float type)")
        bad = not_finite([(key, w)])  # a kept weight of nan makes every output of the export nan
        if bad is not None:
            raise MaskFileError(f"{file}: '{key}' is not finite ({bad[1]} nan/inf values)")
        if bool((w[~mask[key]] != 0).any()):
            raise MaskFileError(f"{file}: '{key}' is not zero where the mask prunes")
    return weights


@torch.no_grad()
def load_weights_into(model: nn.Module, weights: dict[str, Tensor]) -> None:
    """Copy reconstructed weights into `model`'s (unmasked) target modules, in their dtype."""
    for key, module in resolve_modules(model, list(weights)).items():
        module.weight.copy_(weights[key].to(module.weight.dtype))
