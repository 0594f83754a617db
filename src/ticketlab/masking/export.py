"""Export a masked model as a plain Hugging Face checkpoint with the pruned weights set to zero."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from ..files import atomic_dir, atomic_write_json
from .apply import apply_mask, is_masked, remove_mask
from .io import MaskConfig
from .mask import Mask

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def export_pretrained(
    model: nn.Module,
    out_dir: str | os.PathLike,
    *,
    mask: Mask | None = None,
    config: MaskConfig | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Path:
    """Squash the model's masks (applying `mask` first if given) and `save_pretrained` it atomically.

    The model is left squashed: its pruned weights are zeros and it has no parametrizations, which is
    what `save_pretrained` needs (a parametrized model saved as-is reloads with random weights).
    `AutoModel*.from_pretrained(out_dir)` reloads it with the zeros intact. `out_dir` may not be one
    of `inputs` (e.g. the base model) nor a directory that is not an earlier export.
    """
    if mask is not None:
        apply_mask(model, mask)
    if is_masked(model):
        remove_mask(model, squash=True)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, kind="exported model", inputs=inputs) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if config is not None:
            atomic_write_json(tmp / "ticketlab_mask.json", config.to_dict())
    return out_dir
