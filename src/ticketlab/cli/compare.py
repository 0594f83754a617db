"""Compare mask files: the matrix of Jaccard similarities |A∩B|/|A∪B| of their kept weights.

The mask distance of TAMT §4.2.5 is 1 - Jaccard. Two independent masks keeping a fraction p of the
weights have an expected Jaccard of p/(2-p) (0.18 at 70% sparsity).

Structured tickets are compared by the weights of their units (what they zero); when every mask is a
structured ticket, the Jaccard similarity of their kept heads and FFN units follows.

Example:
  ticketlab compare masks/omp70 masks/random70 masks/tamt70
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import TicketlabError
from ..core.files import to_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("masks", nargs="+", metavar="MASK_DIR")
    p.add_argument("--distance", action="store_true", help="print 1 - Jaccard instead")
    p.add_argument(
        "--per-matrix",
        action="store_true",
        help="the mean of per-matrix Jaccard similarities, as TAMT's compare_mask.py (default: one "
        "Jaccard pooled over all weights)",
    )
    p.add_argument("--json", action="store_true", help="print the matrix as JSON")


def label(path: str) -> str:
    return Path(path).name or path


def run(args: argparse.Namespace) -> int:
    from ..masks import Mask, load_mask  # lazy start-up: torch only when the verb runs
    from ..masks.unit_io import unit_jaccard_matrices

    if len(args.masks) < 2:
        raise TicketlabError("compare needs at least two mask directories")
    masks = [load_mask(m)[0].weights() for m in args.masks]  # similarity is over weights (no biases)
    for path, m in zip(args.masks[1:], masks[1:], strict=True):
        try:
            masks[0].check_compatible(m)
        except TicketlabError as e:
            raise TicketlabError(f"{path} vs {args.masks[0]}: {e}") from None
    n = len(masks)
    similarity = Mask.matrix_mean_jaccard if args.per_matrix else Mask.jaccard
    sim = [[1.0 if i == j else similarity(masks[i], masks[j]) for j in range(n)] for i in range(n)]
    if args.distance:
        sim = [[1.0 - v for v in row] for row in sim]
    labels = [label(m) for m in args.masks]
    units = unit_jaccard_matrices(args.masks)  # {} unless every mask is a structured ticket
    if args.distance:
        units = {k: [[1.0 - v for v in row] for row in m] for k, m in units.items()}
    if args.json:
        print(
            to_json(
                {
                    "labels": labels,
                    "sparsity": [m.sparsity for m in masks],
                    "distance" if args.distance else "jaccard": sim,
                    **({"units": units} if units else {}),
                },
                indent=2,
            )
        )
        return 0
    title = "distance" if args.distance else "jaccard"
    print_matrix(title, labels, sim)
    for kind, matrix in units.items():
        print()
        print_matrix(f"{kind} units", labels, matrix)
    print("\nsparsity: " + ", ".join(f"{lab} {m.sparsity:.1%}" for lab, m in zip(labels, masks, strict=True)))
    return 0


def print_matrix(title: str, labels: list[str], matrix: list[list[float]]) -> None:
    width = max(8, len(title), *(len(x) for x in labels))
    print(f"{title:<{width}}  " + "  ".join(f"{x:>{width}}" for x in labels))
    for lab, row in zip(labels, matrix, strict=True):
        print(f"{lab:<{width}}  " + "  ".join(f"{v:>{width}.4f}" for v in row))
