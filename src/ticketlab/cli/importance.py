"""Ticket importance across tasks (Liang et al. 2021 §8, Fig. 6), from super-ticket studies.

Each STUDY is a `ticketlab super` output directory (or a sweep that super-ticket studies joined); the
importance scores its full-model runs saved are read per task and seed. Per unit (head, FFN unit):
every task's score normalised to sum to one over the units of its kind (tasks weigh the same), the
ticket importance (the mean over tasks) and each task's share (its score over the tasks' sum). A
unit is dominated by a task whose share is at least --dominant.

OUT gets importance_across.csv (every unit: importance, per task score, std, n seeds, share, the
dominating task), importance_across.png (stacked bars, units by decreasing importance) and
importance_across.md (the dominated units named).

Example:
  ticketlab importance super/sst2 super/mrpc super/cola --out reports/importance
"""

from __future__ import annotations

import argparse

from .. import studies
from .common import at_least


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("studies", nargs="+", metavar="STUDY", help="super-ticket study directories")
    p.add_argument("--out", metavar="DIR", required=True, help="output directory")
    p.add_argument(
        "--dominant",
        type=float,
        metavar="SHARE",
        help="a unit is dominated by a task with at least this share (above 1/tasks; default halfway "
        "between an even share and all: 0.75 for two tasks, 0.667 for three)",
    )
    p.add_argument(
        "--top", type=at_least(1), default=40, metavar="N", help="units drawn per kind (default 40)"
    )


def run(args: argparse.Namespace) -> int:
    rows = studies.write_importance_across(args.studies, args.out, dominant=args.dominant, top=args.top)
    threshold = args.dominant if args.dominant is not None else studies.default_dominant(len(rows[0].score))
    dominated = sum(r.dominant(threshold) is not None for r in rows)
    print(f"{len(rows)} units, {dominated} dominated by one task: {args.out}/importance_across.md")
    return 0
