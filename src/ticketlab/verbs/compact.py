"""`ticketlab compact`: `compact(CompactConfig) -> Compacted`, a model with a structured ticket's pruned
heads, FFN neurons and FFN sub-layers removed: a smaller model whose outputs equal the ticketed
model's (reloaded with `ticketlab.masks.load_compacted(DIR)`).

The command line declares its options itself (`cli/compact.py`), so this module is read only when the
verb runs and imports what it runs at the top.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
    save_compacted(model, config.out, tokenizer=tokenizer, mask_config=mc, inputs=inputs)
    heads = sum(len(h) for h in units.kept_per_layer()["heads"])
    return Compacted(Path(config.out), head, heads, units.head.numel(), parameter_count(model), before)
