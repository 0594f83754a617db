"""Compaction of a structured ticket: a physically smaller model without its pruned units.

`compact(model, units)` returns a sliced copy of the model (`inplace=True`: slices the model itself);
the slicing, per family, and the manifest are the model layer's (`ticketlab.models.compaction`), and so is
loading a compacted checkpoint (`ticketlab.models.load.load_compacted`, which `load_model` calls for
such a directory). `save_compacted(model, out_dir)` writes a Hugging Face checkpoint plus the
manifest, with the kept units and shapes of every layer, which HF configs cannot express (they have
one head count and one FFN size). Its `config.json` says `model_type: "ticketlab-compact"`, so a
plain `AutoModel*.from_pretrained` refuses it (unknown model type) instead of loading wrong shapes,
until `import ticketlab` registers the type (`ticketlab.masks.hf_auto`: the Auto classes then rebuild it).
Outputs equal the ticket's (as weights or as gates) to float tolerance (the sums run over fewer
terms). A model that carries masks (the ticket as weights, `apply_unit_mask`, or any other mask) is
compacted with its masks squashed into its weights (`remove_mask(squash=True)`): what it computes,
less the pruned units; the compacted model holds no parametrizations.

`multiple=N` keeps every FFN's width at a multiple of N by keeping some pruned neurons as zeros
(their weights set to zero first, so outputs are unchanged). A GPU's matrix kernels work in tiles:
on an H100 in bf16, at 64 x 512 tokens, BERT-base with 70% of its heads and neurons removed ran
1.25x the dense forward with its 922 neurons a layer and 1.83x with them padded to 960
(`docs/results/gpu-2026-11-27`). Heads need no padding: each is a whole head size already.

    from ticketlab.masks import compact, load_compacted, load_unit_mask, save_compacted

    units, config = load_unit_mask("tickets/winning50")
    save_compacted(compact(model, units), "compact/winning50", mask_config=config)
    small = load_compacted("compact/winning50")
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..core.errors import TicketlabError
from ..core.files.atomic import atomic_write_json
from ..core.files.inputs import read_json
from ..core.outputs import atomic_dir
from ..models.compaction import (  # noqa: F401 (is_compacted, refuse_compacted, MANIFEST: known here too)
    MANIFEST,
    MANIFEST_ATTR,
    MODEL_TYPE,
    check_sliceable,
    is_compacted,
    refuse_compacted,
    slice_units,
)
from ..models.load import save_tokenizer
from ..models.structure import structure_of
from .apply import is_masked, remove_mask
from .card import write_model_card
from .gates import get_gates
from .io import MaskConfig
from .ticket import head_of_model
from .units import UnitMask, apply_unit_mask

if TYPE_CHECKING:  # transformers is imported where it is used: `ticketlab info` reads masks without it
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def compact(
    model: PreTrainedModel, units: UnitMask, *, inplace: bool = False, multiple: int = 1
) -> PreTrainedModel:
    """A copy of `model` without the units `units` prunes; `model` is left as it was (its masks, if
    any, squashed into the copy).

    `inplace=True` slices `model` itself and returns it (no second copy in memory: the CLI and
    `load_compacted`, which own the model they compact). `multiple`: FFN widths kept at a multiple
    of it, with zero neurons (see the module docstring)."""
    if get_gates(model) is not None:
        raise TicketlabError("remove the gates before compacting (remove_gates(model))")
    if multiple < 1:
        raise TicketlabError(f"multiple: must be at least 1, got {multiple}")
    structure = structure_of(model)
    units.check_structure(structure, "unit mask")  # before the copy: a wrong mask costs nothing
    check_sliceable(model.config.model_type, structure, units.head)
    if not inplace:
        model = copy.deepcopy(model)
    if is_masked(model):  # zeros into the weights, then slicing (see the module docstring)
        remove_mask(model, squash=True)
    neurons = units.ffn_neurons()
    padded = pad_neurons(neurons, multiple) if neurons is not None else None
    if padded is not None and not torch.equal(padded, neurons):
        apply_unit_mask(model, units)  # the pruned neurons' weights to zero: the padding adds zeros
        remove_mask(model, squash=True)
    return slice_units(model, structure, units.head, padded, units.ffn)


def pad_neurons(neurons: Tensor, multiple: int) -> Tensor:
    """Kept neurons (bool [L, I]) plus, in each layer, the first pruned ones that bring the count up
    to a multiple of `multiple` (or to I)."""
    out = neurons.clone()  # [L, I]
    width = neurons.shape[1]
    for layer, row in enumerate(neurons):
        kept = int(row.sum())
        extra = min(width, -(-kept // multiple) * multiple) - kept
        if extra:
            out[layer, torch.nonzero(~row).flatten()[:extra]] = True
    return out


def parameter_count(model: nn.Module) -> int:
    """Parameters, each tied tensor counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_compacted(
    model: PreTrainedModel,
    out_dir: str | os.PathLike,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    mask_config: MaskConfig | None = None,
    inputs: tuple[str | os.PathLike | None, ...] = (),
) -> Path:
    """Write a compacted model (from `compact`) with its manifest, atomically; see the module docstring."""
    manifest = getattr(model, MANIFEST_ATTR, None)
    if manifest is None:
        raise TicketlabError("save_compacted needs a model from compact() or load_compacted()")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, kind="compacted model", inputs=inputs) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            save_tokenizer(tokenizer, tmp)
        config = read_json(tmp / "config.json", "model config")
        config["model_type"] = MODEL_TYPE  # see the module docstring: plain loaders must not load it
        atomic_write_json(tmp / "config.json", config)
        record = {**manifest, "mask": mask_config.to_dict() if mask_config is not None else None}
        atomic_write_json(tmp / MANIFEST, record)
        if mask_config is not None:  # the model card (README.md with Hub metadata), `masks.card`
            notes = (f"parameters: {parameter_count(model):,}",)
            write_model_card(tmp, mask_config, kind="compacted", head=head_of_model(model), notes=notes)
    return out_dir
