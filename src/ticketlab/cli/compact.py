"""Compact a model with a structured ticket: remove its pruned heads, FFN neurons and FFN sub-layers.

The result is a smaller, faster model whose outputs equal the ticketed model's (to float tolerance).
HF configs cannot express per-layer head counts, so the directory holds a manifest
(`ticketlab_compact.json`) and is reloaded with `ticketlab.masks.load_compacted(DIR)`; a plain
`from_pretrained` refuses it.

Example:
  ticketlab compact --model ../shared/models/bert-mini-ref --mask tickets/winning50 --out compact/w50
"""

from __future__ import annotations

import argparse

from ..core.outputs import check_output
from ..models.load import load_config
from .common import add_head_argument, add_model_argument, load_with_head


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    p.add_argument("--mask", required=True, metavar="TICKET_DIR", help="a structured ticket")
    p.add_argument("--out", required=True, metavar="DIR")
    add_head_argument(p)
    p.add_argument(
        "--ignore-hash",
        action="store_true",
        help="apply the ticket even if the model's weights differ from those it was found on "
        "(e.g. the model fine-tuned with the ticket)",
    )


def run(args: argparse.Namespace) -> int:
    from ..masks import check_unit_fits, compact, load_unit_mask, parameter_count, save_compacted
    from ..models.compaction import refuse_compacted
    from ..models.structure import unit_arch  # lazy start-up: torch only when the verb runs

    inputs = (args.model, args.mask)
    check_output(args.out, kind="compacted model", inputs=inputs)  # before loading anything
    refuse_compacted(args.model, "a structured ticket is compacted from")
    unit_arch(load_config(args.model).model_type)  # a family without units (ALBERT), whatever the mask
    units, config = load_unit_mask(args.mask)
    model, head, tokenizer = load_with_head(args.model, args.head)
    check_unit_fits(units, config, model, source=args.mask, check_hash=not args.ignore_hash)
    before = parameter_count(model)
    compact(model, units, inplace=True)  # the model is ours: no second copy
    save_compacted(model, args.out, tokenizer=tokenizer, mask_config=config, inputs=inputs)
    kept = units.kept_per_layer()
    heads = sum(len(h) for h in kept["heads"])
    print(
        f"compacted {head} model: {heads}/{units.head.numel()} heads, "
        f"{parameter_count(model) / 1e6:.2f}M of {before / 1e6:.2f}M parameters -> {args.out}"
    )
    return 0
