"""Show a mask file: its provenance and a per-matrix sparsity table.

A structured ticket shows its heads and FFN units kept per layer instead.

Example:
  ticketlab info masks/omp70
"""

from __future__ import annotations

import argparse

from ..core.files import to_json
from ..masks.pattern import pattern_line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("mask", metavar="MASK_DIR")
    p.add_argument("--json", action="store_true", help="print config and per-matrix sparsity as JSON")


def run(args: argparse.Namespace) -> int:
    from ..masks import load_mask  # lazy start-up: torch only when the verb runs
    from ..masks.unit_io import summary as units_summary
    from ..masks.unit_io import units_line

    mask, config = load_mask(args.mask)
    if args.json:
        shown = {"config": config.to_dict(), "sparsity": mask.sparsity, "per_matrix": mask.per_matrix()}
        if biases := mask.biases():  # masked biases (FFN sub-layers' weight form): not in the sparsity
            shown["biases"] = {n: 1.0 - int(t.sum()) / t.numel() for n, t in biases.items()}
        print(to_json(shown, indent=2))
        return 0
    print(f"mask:       {args.mask}")
    print(f"method:     {config.method} (ranking {config.ranking}, seed {config.seed})")
    if config.kind == "structured":
        print(f"units:      {units_line(config.units)}")
        print(f"level:      target {config.sparsity:.1%} of units; {mask.sparsity:.1%} of their weights zero")
    else:
        print(f"sparsity:   target {config.sparsity:.1%}, achieved {mask.sparsity:.1%}")
        print(f"pattern:    {pattern_line(config.pattern)}")
    print(f"base model: {config.base_model} [{config.model_type}] {config.base_model_hash[:19]}")
    if config.search:
        print(
            "search:     "
            + ", ".join(f"{k}={v}" for k, v in config.search.items() if not isinstance(v, (dict, list)))
        )
    print()
    print(units_summary(config.units) if config.kind == "structured" else mask.summary())
    return 0
