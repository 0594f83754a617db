"""`ticketlab compact`: `compact(CompactConfig) -> Compacted`, a model with a structured ticket's pruned
heads, FFN neurons and FFN sub-layers removed: a smaller model whose outputs equal the ticketed
model's (reloaded with `ticketlab.masks.load_compacted(DIR)`), written in the dtype its base is stored in
(a float16 base gives a float16 model: half the bytes of float32, the same values; ticketlab's
loaders cast it to float32 to compute).

The command line declares its options itself (`cli/compact.py`), so this module is read only when the
verb runs and imports what it runs at the top.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.checks import check_config
from ..core.outputs import check_output
from ..masks import check_unit_fits, load_unit_mask, parameter_count, save_compacted
from ..masks import compact as compact_model
from ..models.compaction import refuse_compacted
from ..models.load import load_config
from ..models.structure import unit_arch
from .export import Head, load_with_head


@dataclass
class CompactConfig:
    """Compact `model` with the structured ticket `mask` into `out`."""

    model: str  # local directory or hub id
    mask: str | os.PathLike  # a structured ticket
    out: str | os.PathLike
    head: Head = "auto"  # the head to load the model with (auto: the one in its config)
    ignore_hash: bool = False  # apply the ticket even if the weights differ (e.g. fine-tuned with it)

    def __post_init__(self) -> None:
        check_config(self)  # types and choices (head)


@dataclass
class Compacted:
    out: Path
    head: str  # the head the model was loaded with
    heads: int  # heads kept, of `all_heads`
    all_heads: int
    parameters: int  # of the compacted model, and of the model before
    parameters_before: int


def stored_dtype(model: str) -> torch.dtype:
    """The floating dtype a checkpoint's config records for its weights (float32 where it records
    none, or one that is not floating: transformers' default)."""
    dtype = load_config(model).dtype
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def compact(config: CompactConfig) -> Compacted:
    """Compact and write the model; every input is read before `out` is made."""
    inputs = (config.model, config.mask)
    check_output(config.out, kind="compacted model", inputs=inputs)  # before loading anything
    refuse_compacted(config.model, "a structured ticket is compacted from")
    unit_arch(load_config(config.model).model_type)  # a family without units (ALBERT), whatever the mask
    units, mc = load_unit_mask(config.mask)
    model, head, tokenizer = load_with_head(config.model, config.head)
    check_unit_fits(units, mc, model, source=config.mask, check_hash=not config.ignore_hash)
    before = parameter_count(model)
    compact_model(model, units, inplace=True)  # the model is ours: no second copy
    model.to(stored_dtype(config.model))  # loaded in float32: a smaller model, not a wider one
    save_compacted(model, config.out, tokenizer=tokenizer, mask_config=mc, inputs=inputs)
    heads = sum(len(h) for h in units.kept_per_layer()["heads"])
    return Compacted(Path(config.out), head, heads, units.head.numel(), parameter_count(model), before)
