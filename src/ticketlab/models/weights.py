"""A checkpoint's weights as loading finds them: safetensors only, each file whole (`check_weights`:
unpickling a file can run its code), every value finite (`check_finite`), each tensor's shape from
the headers without reading data (`disk_shapes`), and the keys of a checkpoint saved with or without
a head as a given model keys them (`align_keys`, `encoder_prefix`, `body_prefixes`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from torch import Tensor, nn

from ..core.errors import MaskFileError, TicketlabError
from ..core.files.inputs import open_safetensors
from .arch import ARCHS

if TYPE_CHECKING:  # annotations only: a mask's reader (`info`) imports this module without transformers
    from transformers import PreTrainedModel

PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")  # torch.save / pickle files


def check_weights(path: Path) -> list[Path]:
    """The safetensors files of model directory `path`, each whole (its header read and its data
    the size the header says), or one error: weights in pickled files only are refused with the
    command that converts them."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickled = sorted(p for pattern in PICKLED for p in path.glob(pattern))
        if not pickled:
            raise TicketlabError(f"{path}: no model.safetensors (the model's weights) in the directory")
        bin_, out = pickled[0], path / "model.safetensors"
        raise TicketlabError(
            f"{bin_}: pickled weights (unpickling can run code), and ticketlab reads safetensors only; "
            'if you trust the file, convert it once: python -c "import torch, safetensors.torch as st; '
            f"st.save_file({{k: v.contiguous().clone() for k, v in torch.load('{bin_}', "
            f"weights_only=True).items()}}, '{out}', metadata={{'format': 'pt'}})\""
        )
    for f in files:
        try:
            with open_safetensors(f) as opened:
                opened.keys()
        except (SafetensorError, OSError) as e:  # safetensors checks the data covers what the header says
            raise TicketlabError(f"{f}: corrupt or truncated safetensors file ({e})") from None
    return files


def not_finite(tensors: Iterable[tuple[str, Tensor]]) -> tuple[str, int] | None:
    """The first float tensor holding nan or inf, and how many such values, else None: weights like
    that rank as kept by magnitude and make every loss nan. A reduction per tensor, no copies."""
    for key, t in tensors:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return key, int((~torch.isfinite(t)).sum())
    return None


def check_finite(model: nn.Module, name: str) -> nn.Module:
    """`model`, or one error when a float parameter or buffer holds nan or inf: nothing computed
    from such weights would be a result. One pass over the weights per load."""
    bad = not_finite([*model.named_parameters(), *model.named_buffers()])
    if bad is not None:
        raise TicketlabError(
            f"{name}: the model's weights are not finite ({bad[1]} nan/inf values in {bad[0]}); "
            "it cannot be pruned or trained: use an intact checkpoint"
        )
    return model


def disk_shapes(path: Path) -> dict[str, Any]:
    """Each tensor's shape in a folder's safetensors files, from their headers (no data read)."""
    shapes: dict[str, Any] = {}
    for f in sorted(path.glob("model*.safetensors")):
        try:
            with open_safetensors(f) as opened:
                shapes.update({k: tuple(opened.get_slice(k).get_shape()) for k in opened.keys()})  # noqa: SIM118
        except (SafetensorError, OSError) as e:
            raise MaskFileError(f"{f}: corrupt or truncated safetensors file ({e})") from None
    return shapes


def encoder_prefix(model: PreTrainedModel) -> str:
    """'bert.' for a model with a head, '' for the bare encoder (whose keys have no prefix)."""
    return "" if model.base_model is model else f"{model.base_model_prefix}."


def body_prefixes(model: PreTrainedModel) -> tuple[str, ...]:
    """State-dict prefixes of the embeddings and layers (where the family keeps them: DistilBERT's
    `transformer.`, ModernBERT's `layers.`): what must always load."""
    arch = ARCHS.get(model.config.model_type)
    parts = (arch.embeddings, arch.layers) if arch is not None else ("embeddings", "encoder")
    return tuple(f"{encoder_prefix(model)}{part.split('.')[0]}." for part in parts)


def align_keys(state: dict[str, Tensor], model: PreTrainedModel) -> dict[str, Tensor]:
    """The saved tensors keyed as `model` keys them: a checkpoint saved with a head loads as the bare
    encoder ('bert.x' -> 'x') and a bare one under a head ('x' -> 'bert.x'), as `from_pretrained` does."""
    prefix = f"{model.base_model_prefix}."
    saved_with_head = any(k.startswith(prefix) for k in state)
    if encoder_prefix(model) and not saved_with_head:
        return {prefix + k: t for k, t in state.items()}
    if not encoder_prefix(model) and saved_with_head:
        return {k.removeprefix(prefix): t for k, t in state.items()}
    return state
