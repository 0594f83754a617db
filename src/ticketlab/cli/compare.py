"""Compare mask files (the matrix of Jaccard similarities |A∩B|/|A∪B| of their kept weights), or
fine-tuning runs (a table of each run's task, score as mean ± SD over its seeds with their number,
mask, sparsity, seeds and checkpoint).

The mask distance of TAMT §4.2.5 is 1 - Jaccard. Two independent masks keeping a fraction p of the
weights have an expected Jaccard of p/(2-p) (0.18 at 70% sparsity).

Structured tickets are compared by the weights of their units (what they zero); when every mask is a
structured ticket, the Jaccard similarity of their kept heads and FFN units follows.

Fine-tuning run folders (`ticketlab finetune --out RUN_DIR`: RUN_DIR holds results.json, each
RUN_DIR/seed-N result.json) are put side by side in one table; the table tests nothing.

Examples:
  ticketlab compare masks/omp70 masks/rand70 masks/tamt-kd70
  ticketlab compare runs/sentiment-omp70 runs/sentiment-tamt70
"""

from __future__ import annotations

import argparse

import ticketlab as tl

from ..core.errors import ConfigError
from ..core.files.atomic import to_json
from ..verbs.compare_runs import is_run_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "masks",
        nargs="+",
        metavar="DIR",
        help="two or more mask directories, or fine-tuning run folders (results.json or result.json)",
    )
    p.add_argument("--distance", action="store_true", help="print 1 - Jaccard instead")
    p.add_argument(
        "--per-matrix",
        action="store_true",
        help="the mean of per-matrix Jaccard similarities, as TAMT's compare_mask.py (default: one "
        "Jaccard pooled over all weights)",
    )
    p.add_argument(
        "--ignore-hash",
        action="store_true",
        help="compare masks found on other weights (their recorded hashes differ), position by position",
    )
    p.add_argument("--json", action="store_true", help="print the matrix as JSON")


def run(args: argparse.Namespace) -> int:
    runs = [is_run_dir(path) for path in args.masks]
    if any(runs):
        return compare_runs(args, runs)
    config = tl.CompareConfig(
        args.masks, distance=args.distance, per_matrix=args.per_matrix, check_hash=not args.ignore_hash
    )
    done = tl.compare(config)
    if args.json:
        print(to_json(done.to_dict(), indent=2))
        return 0
    print_matrix("distance" if args.distance else "jaccard", done.labels, done.matrix)
    for kind, matrix in done.units.items():
        print()
        print_matrix(f"{kind} units", done.labels, matrix)
    shown = zip(done.labels, done.sparsity, strict=True)
    print("\nsparsity: " + ", ".join(f"{lab} {s:.1%}" for lab, s in shown))
    return 0


def print_matrix(title: str, labels: list[str], matrix: list[list[float]]) -> None:
    width = max(8, len(title), *(len(x) for x in labels))
    print(f"{title:<{width}}  " + "  ".join(f"{x:>{width}}" for x in labels))
    for lab, row in zip(labels, matrix, strict=True):
        print(f"{lab:<{width}}  " + "  ".join(f"{v:>{width}.4f}" for v in row))


def compare_runs(args: argparse.Namespace, runs: list[bool]) -> int:
    """The table of fine-tuning runs; masks among them, or the masks' options, refused."""
    if not all(runs):
        other = args.masks[runs.index(False)]
        raise ConfigError(f"{other}: not a fine-tuning run folder; compare takes masks, or runs, not both")
    if args.distance or args.per_matrix:
        raise ConfigError("--distance and --per-matrix compare masks, not fine-tuning runs")
    table = tl.compare_runs(tl.CompareRunsConfig(args.masks))
    print(to_json(table.to_dict(), indent=2) if args.json else table.text())
    return 0
