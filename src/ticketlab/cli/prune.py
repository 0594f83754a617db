r"""One-shot pruning of a pre-trained model into a mask file.

  omp        one-shot magnitude pruning: keep the largest |W| (TAMT's default ranking is local)
  random     random pruning with the same per-matrix (local) or overall (global) sparsity
  wanda      Wanda (Sun et al. 2024): |W|·‖X‖ per output row, X from calibration sequences of --corpus
  sparsegpt  SparseGPT (Frantar & Alistarh 2023): layer-wise OBS on the calibration inputs' Hessian;
             its mask over θ0 is a ticket, its reconstructed weights (written beside the mask,
             `export --reconstructed`) a sparse model, not a ticket

Example:
  ticketlab prune omp --model models/minilm-mlm --sparsity 0.7 --out masks/omp70
  ticketlab prune omp --model models/minilm-mlm --pattern 2:4 --out masks/omp-2-4
  ticketlab prune wanda --model models/minilm-mlm --corpus wiki.train.txt --calibration 128 \
      --sparsity 0.7 --out masks/wanda70
"""

from __future__ import annotations

import argparse
import dataclasses

from ..methods.registry import methods
from ..verbs.prune import PruneConfig, prune
from .common import (
    add_config_arguments,
    add_model_argument,
    add_pattern_argument,
    add_targets_argument,
    config_from_args,
    sparsity_arg,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    one_shot = methods("prune")
    listed = "; ".join(f"{name}: {m.help}" for name, m in one_shot.items())
    p.add_argument("method", choices=sorted(one_shot), help=f"pruning method ({listed})")
    add_model_argument(p)
    p.add_argument(
        "--sparsity", type=sparsity_arg, help="fraction of target weights set to zero (or give --pattern)"
    )
    add_pattern_argument(p)
    add_config_arguments(p, PruneConfig, ["ranking", "seed", "pooler"])
    add_targets_argument(p)
    calibration = p.add_argument_group("calibration (wanda, sparsegpt)")
    add_config_arguments(calibration, PruneConfig, ["corpus", "calibration", "calibration_length"])
    p.add_argument("--out", required=True, metavar="DIR", help="mask directory to write")


def run(args: argparse.Namespace) -> int:
    fields = [f.name for f in dataclasses.fields(PruneConfig)]  # every one is an option
    config = config_from_args(PruneConfig, args, fields)
    mask = prune(config).mask
    shape = f" ({config.pattern})" if config.pattern else ""
    print(f"{args.method}: {mask.sparsity:.2%}{shape} of {mask.numel:,} target weights pruned -> {args.out}")
    return 0
