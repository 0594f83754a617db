"""Export a masked model as a standard Hugging Face checkpoint with the pruned weights set to zero.

`AutoModel*.from_pretrained(OUT)` reloads it with the zeros intact; no ticketlab needed to use it.

Example:
  ticketlab export --model ../shared/models/bert-mini-ref --mask masks/omp70 --out exported/omp70
  ticketlab export --model ../shared/models/bert-mini-ref --mask masks/omp-2-4 --out exported/omp-2-4 \
      --semi-structured bf16      (a 2:4 mask, on a CUDA GPU: weights torch.sparse takes as 2:4)
  ticketlab export --model runs/sst2-omp70/seed-1/model --mask masks/omp70 --head seq-cls \
      --base ../shared/models/bert-mini-ref --out tickets/sst2-omp70
                                  (a fine-tuned ticket as a small artefact beside its base:
                                   ticketlab.masks.load_ticket("tickets/sst2-omp70") reloads it)
"""

from __future__ import annotations

import argparse

from ..core.outputs import check_output
from ..masks.pattern import SEMI_DTYPE_NAMES
from .common import add_head_argument, add_model_argument, load_with_head


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
    p.add_argument(
        "--semi-structured",
        nargs="?",
        const="fp16",
        choices=sorted(SEMI_DTYPE_NAMES),
        metavar="DTYPE",
        help="a 2:4 mask's checkpoint in fp16 (default) or bf16, every linear target checked with "
        "torch.sparse.to_sparse_semi_structured (needs a CUDA GPU)",
    )
    p.add_argument(
        "--base",
        metavar="PATH_OR_ID",
        help="write a small artefact instead of a checkpoint: the mask and the weights of --model (a "
        "fine-tuned ticket) that differ from this base model, which it records with a hash",
    )


def run(args: argparse.Namespace) -> int:
    if args.base is not None:
        return _export_ticket(args)
    # lazy start-up: torch only when the verb runs
    from ..masks import check_fits, export_pretrained, load_mask
    from ..masks.export import SEMI_DTYPES, require_semi_structured
    from ..models.compaction import refuse_compacted

    inputs = [args.model, args.mask]
    check_output(args.out, kind="exported model", inputs=inputs)  # before loading anything
    # per-layer head and FFN sizes do not fit a plain HF config: the checkpoint would not load
    refuse_compacted(args.model, "a plain HF checkpoint (one head count, one FFN size) is exported from")
    mask, config = load_mask(args.mask)
    if args.semi_structured:
        require_semi_structured(config, args.mask)  # before loading the model
    model, head, tokenizer = load_with_head(args.model, args.head)
    check_fits(mask, config, model, source=args.mask, check_hash=not args.ignore_hash)
    dtype = SEMI_DTYPES[args.semi_structured] if args.semi_structured else None
    export_pretrained(
        model, args.out, mask=mask, config=config, tokenizer=tokenizer, inputs=inputs, semi_structured=dtype
    )
    kind = f" ({config.pattern}, {args.semi_structured})" if args.semi_structured else ""
    print(f"exported {head} model{kind} with {mask.sparsity:.1%} of target weights zero -> {args.out}")
    return 0


def _export_ticket(args: argparse.Namespace) -> int:
    """`--base`: the fine-tuned ticket in --model as an artefact against --base (`masks.ticket`)."""
    # lazy start-up: torch only when the verb runs
    from ..core.errors import ConfigError
    from ..masks import check_fits, load_mask
    from ..masks.ticket import WEIGHTS_NAME, save_ticket
    from ..models.compaction import refuse_compacted

    if args.semi_structured:
        raise ConfigError("--semi-structured writes a checkpoint; --base writes a ticket artefact: not both")
    inputs = [args.model, args.mask, args.base]
    check_output(args.out, kind="ticket", inputs=inputs)
    refuse_compacted(args.model, "a ticket artefact is written from")
    mask, config = load_mask(args.mask)
    model, head, _ = load_with_head(args.model, args.head)
    check_fits(mask, config, model, source=args.mask, check_hash=False)  # fine-tuned: the base is checked
    out = save_ticket(
        model, args.out, base=args.base, mask=mask, mask_config=config, check_hash=not args.ignore_hash
    )
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    stored = (out / WEIGHTS_NAME).stat().st_size
    print(
        f"wrote the {head} ticket ({mask.sparsity:.1%} of target weights zero) against {args.base}: "
        f"{size / 1e6:.2f} MB ({stored / 1e6:.2f} MB of weights) -> {args.out}"
    )
    return 0
