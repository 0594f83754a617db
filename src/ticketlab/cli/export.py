"""Export a masked model as a standard Hugging Face checkpoint with the pruned weights set to zero.

`AutoModel*.from_pretrained(OUT)` reloads it with the zeros intact; no ticketlab needed to use it.

Example:
  ticketlab export --model ../shared/models/bert-mini-ref --mask masks/omp70 --out exported/omp70
"""

from __future__ import annotations

import argparse

from ..files import check_output
from ..masking import check_fits, export_pretrained, load_mask
from ..structured.compact import refuse_compacted
from .common import add_head_argument, add_model_argument, load_with_head

HELP = "write a plain HF checkpoint of a masked model (zeros in place)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    p.add_argument("--mask", required=True, metavar="MASK_DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    add_head_argument(p)
    p.add_argument(
        "--ignore-hash",
        action="store_true",
        help="apply the mask even if the model's weights differ from those it was found on",
    )


def run(args: argparse.Namespace) -> int:
    inputs = [args.model, args.mask]
    check_output(args.out, kind="exported model", inputs=inputs)  # before loading anything
    # per-layer head and FFN sizes do not fit a plain HF config: the checkpoint would not load
    refuse_compacted(args.model, "a plain HF checkpoint (one head count, one FFN size) is exported from")
    mask, config = load_mask(args.mask)
    model, head, tokenizer = load_with_head(args.model, args.head)
    check_fits(mask, config, model, source=args.mask, check_hash=not args.ignore_hash)
    export_pretrained(model, args.out, mask=mask, config=config, tokenizer=tokenizer, inputs=inputs)
    print(f"exported {head} model with {mask.sparsity:.1%} of target weights zero -> {args.out}")
    return 0
