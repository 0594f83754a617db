"""Show a mask file: its provenance and a per-matrix sparsity table.

Example:
  ticketlab info masks/omp70
"""

from __future__ import annotations

import argparse
import json

from ..masking import load_mask

HELP = "summarise a mask file (method, base model, per-matrix sparsity)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("mask", metavar="MASK_DIR")
    p.add_argument("--json", action="store_true", help="print config and per-matrix sparsity as JSON")


def run(args: argparse.Namespace) -> int:
    mask, config = load_mask(args.mask)
    if args.json:
        print(
            json.dumps(
                {"config": config.to_dict(), "sparsity": mask.sparsity, "per_matrix": mask.per_matrix()},
                indent=2,
            )
        )
        return 0
    print(f"mask:       {args.mask}")
    print(f"method:     {config.method} (ranking {config.ranking}, seed {config.seed})")
    print(f"sparsity:   target {config.sparsity:.1%}, achieved {mask.sparsity:.1%}")
    print(f"base model: {config.base_model} [{config.model_type}] {config.base_model_hash[:19]}")
    if config.search:
        print(
            "search:     "
            + ", ".join(f"{k}={v}" for k, v in config.search.items() if not isinstance(v, (dict, list)))
        )
    print()
    print(mask.summary())
    return 0
