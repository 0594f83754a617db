"""Show a mask directory: its provenance and a per-matrix sparsity table.

A structured ticket shows its heads and FFN units kept per layer instead.

Example:
  ticketlab info masks/omp70
"""

from __future__ import annotations

import argparse

import ticketlab as tl

from ..core.files.atomic import to_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("mask", metavar="MASK_DIR")
    p.add_argument("--json", action="store_true", help="print config and per-matrix sparsity as JSON")


def run(args: argparse.Namespace) -> int:
    shown = tl.info(tl.InfoConfig(args.mask))
    print(to_json(shown.to_dict(), indent=2) if args.json else "\n".join(shown.lines()))
    return 0
