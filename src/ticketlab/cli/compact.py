"""Compact a model with a structured ticket: remove its pruned heads, FFN neurons and FFN sub-layers.

The result is a smaller, faster model whose outputs equal the ticketed model's (to float tolerance).
HF configs cannot express per-layer head counts, so the directory holds a manifest
(`ticketlab_compact.json`) and is reloaded with `ticketlab.masks.load_compacted(DIR)`; a plain
`from_pretrained` refuses it.

Example:
  ticketlab compact --model models/minilm-mlm --mask tickets/winning50 --out compact/w50
"""

from __future__ import annotations

import argparse

import ticketlab as tl

from .common import add_head_argument, add_model_argument


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
    fields = ("model", "mask", "out", "head", "ignore_hash")
    done = tl.compact(tl.CompactConfig(**{f: getattr(args, f) for f in fields}))
    print(
        f"compacted {done.head} model: {done.heads}/{done.all_heads} heads, "
        f"{done.parameters / 1e6:.2f}M of {done.parameters_before / 1e6:.2f}M parameters -> {args.out}"
    )
    return 0
