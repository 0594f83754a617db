"""Export a masked model as a plain Hugging Face checkpoint with the pruned weights set to zero."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.sparse import to_sparse_semi_structured

from ..core.errors import ConfigError, MaskMismatchError
from ..core.files.atomic import atomic_write_json
from ..core.outputs import atomic_dir
from ..models.load import save_tokenizer
from .apply import apply_mask, is_masked, remove_mask, resolve_modules
from .card import write_model_card
from .io import MaskConfig
from .mask import Mask, is_bias_key
from .pattern import SEMI_DTYPE_NAMES, SEMI_STRUCTURED
from .ticket import head_of_model

# what 2:4 sparse tensor cores take (their names without torch: `pattern.SEMI_DTYPE_NAMES`)
SEMI_DTYPES = dict(zip(SEMI_DTYPE_NAMES, (torch.float16, torch.bfloat16), strict=True))


def require_semi_structured(config: MaskConfig, source: str | os.PathLike) -> None:
    """Refuse, before any loading, a 2:4 export of a mask that is not 2:4 or on a machine without
    a CUDA GPU (`to_sparse_semi_structured` is what checks the weights, and it runs on one)."""
    if config.pattern != SEMI_STRUCTURED:
        raise ConfigError(
            f"{source}: a semi-structured export needs a {SEMI_STRUCTURED} mask, this one is "
            f"{config.pattern or 'elementwise'} (prune or search with --pattern {SEMI_STRUCTURED})"
        )
    if not torch.cuda.is_available():
        raise ConfigError("a semi-structured export needs a CUDA GPU (sparse tensor cores): none found")


def check_semi_structured(model: nn.Module, keys: Iterable[str], dtype: torch.dtype) -> None:
    """Convert every linear target to a 2:4 sparse tensor on the GPU, as a user of the export will:
    one line naming the first weight `torch.sparse.to_sparse_semi_structured` refuses."""
    for key, module in resolve_modules(model, list(keys)).items():
        if not isinstance(module, nn.Linear) or is_bias_key(key):  # embeddings are gathered, never
            continue  # multiplied as 2:4; a bias is added
        try:
            to_sparse_semi_structured(module.weight.detach().to("cuda", dtype))
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            shape = tuple(module.weight.shape)
            raise MaskMismatchError(f"{key} {shape}: not a 2:4 sparse tensor: {first}") from None


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
    semi_structured: torch.dtype | None = None,
) -> Path:
    """Squash the model's masks (applying `mask` first if given) and `save_pretrained` it atomically.

        The model is left squashed: its pruned weights are zeros and it has no parametrizations, which is
        what `save_pretrained` needs (a parametrized model saved as-is reloads with random weights).
        `AutoModel*.from_pretrained(out_dir)` reloads it with the zeros intact. With the mask's `config`,
    it also writes the model card (README.md with Hub metadata, `masks.card`). `out_dir` may not be one
        of `inputs` (e.g. the base model) nor a directory that is not an earlier export.
        `semi_structured` (fp16 or bf16; a 2:4 `mask`): the checkpoint is written in that dtype once
        every linear target has been converted to a 2:4 sparse tensor on the GPU.
    """
    if mask is not None:
        apply_mask(model, mask)
    if is_masked(model):
        remove_mask(model, squash=True)
    if semi_structured is not None:
        if mask is None:  # the targets to check are the mask's
            raise ConfigError("a semi-structured export needs its 2:4 mask (mask=)")
        model.to(semi_structured)
        check_semi_structured(model, mask, semi_structured)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, kind="exported model", inputs=inputs) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            save_tokenizer(tokenizer, tmp)
        if config is not None:
            atomic_write_json(tmp / "ticketlab_mask.json", config.to_dict())
            sparsity = mask.sparsity if mask is not None else None
            write_model_card(tmp, config, kind="checkpoint", head=head_of_model(model), sparsity=sparsity)
    return out_dir
