r"""Export a masked model as a standard Hugging Face checkpoint with the pruned weights set to zero.

`AutoModel*.from_pretrained(OUT)` reloads it with the zeros intact; no ticketlab needed to use it.

Examples:
  ticketlab export --model models/minilm-mlm --mask masks/omp70 --out exported/omp70

A 2:4 mask as weights torch.sparse takes as 2:4 (on a CUDA GPU):
  ticketlab export --model models/minilm-mlm --mask masks/omp-2-4 --out exported/omp-2-4 \
      --semi-structured bf16

SparseGPT's reconstructed weights (written beside its mask): a sparse model, not a ticket:
  ticketlab export --model models/minilm-mlm --mask masks/sparsegpt70 --reconstructed \
      --out exported/sparsegpt70

A fine-tuned ticket as a small artefact beside its base, which
`ticketlab.load_ticket("tickets/sst2-omp70")` reloads:
  ticketlab export --model runs/sst2-omp70/seed-1/model --mask masks/omp70 --head seq-cls \
      --base models/minilm-mlm --out tickets/sst2-omp70
"""

from __future__ import annotations

import argparse

import ticketlab as tl

from ..masks.pattern import SEMI_DTYPE_NAMES
from .common import add_head_argument, add_model_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    p.add_argument("--mask", required=True, metavar="MASK_DIR", help="the mask directory to apply")
    p.add_argument("--out", required=True, metavar="DIR", help="the checkpoint (or --base artefact) to write")
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
        "--reconstructed",
        action="store_true",
        help="write the mask's reconstructed weights (SparseGPT writes them beside its mask) instead of "
        "the base model's: a sparse model, not a ticket",
    )
    p.add_argument(
        "--base",
        metavar="PATH_OR_ID",
        help="write a small artefact instead of a checkpoint: the mask and the weights of --model (a "
        "fine-tuned ticket) that differ from this base model, which it records with a hash",
    )


def run(args: argparse.Namespace) -> int:
    fields = ("model", "mask", "out", "head", "ignore_hash", "semi_structured", "base", "reconstructed")
    done = tl.export(tl.ExportConfig(**{f: getattr(args, f) for f in fields}))
    if args.base is not None:
        print(
            f"wrote the {done.head} ticket ({done.sparsity:.1%} of target weights zero) against {args.base}: "
            f"{done.size / 1e6:.2f} MB ({done.stored / 1e6:.2f} MB of weights) -> {args.out}"
        )
        return 0
    kind = f" ({done.pattern}, {args.semi_structured})" if args.semi_structured else ""
    kind += (
        " with SparseGPT's reconstructed weights (a sparse model, not a ticket)" if done.reconstructed else ""
    )
    print(f"exported {done.head} model{kind} with {done.sparsity:.1%} of target weights zero -> {args.out}")
    return 0
