"""One-shot pruning of a pre-trained model into a mask file.

  omp     one-shot magnitude pruning: keep the largest |W| (TAMT's default ranking is local)
  random  random pruning with the same per-matrix (local) or overall (global) sparsity

Example:
  ticketlab prune omp --model ../shared/models/bert-mini-ref --sparsity 0.7 --out masks/omp70
"""

from __future__ import annotations

import argparse

from ..files import check_output
from ..masking import MaskConfig, save_mask
from ..masking.io import CONFIG_NAME
from ..modeling import load_model
from ..pruning import ONE_SHOT
from .common import add_model_argument, add_targets_argument, sparsity_arg

HELP = "one-shot pruning (omp, random) of a pre-trained model into a mask file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("method", choices=sorted(ONE_SHOT), help="pruning method")
    add_model_argument(p)
    p.add_argument(
        "--sparsity", type=sparsity_arg, required=True, help="fraction of target weights set to zero"
    )
    p.add_argument(
        "--ranking",
        choices=["local", "global"],
        default="local",
        help="rank weights per matrix (local, TAMT) or over all targets (global, Chen et al.)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for random pruning")
    add_targets_argument(p)
    p.add_argument("--out", required=True, metavar="DIR", help="mask directory to write")


def run(args: argparse.Namespace) -> int:
    check_output(args.out, kind="mask", signature=CONFIG_NAME, inputs=[args.model])  # before any work
    model = load_model(args.model, head="base")
    mask = ONE_SHOT[args.method](
        model, args.sparsity, ranking=args.ranking, targets=args.targets, seed=args.seed
    )
    config = MaskConfig.for_model(
        model,
        mask,
        method=args.method,
        sparsity=args.sparsity,
        base_model=args.model,
        targets=args.targets,
        ranking=args.ranking,
        seed=args.seed if args.method == "random" else None,
    )
    save_mask(mask, config, args.out)
    print(f"{args.method}: {mask.sparsity:.2%} of {mask.numel:,} target weights pruned -> {args.out}")
    return 0
