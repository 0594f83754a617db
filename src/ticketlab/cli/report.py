"""Write the report of a sweep directory: markdown, PNG figures and CSV tables.

  SWEEP_DIR/report/report.md      main table (mean ± std over seeds, run ids as footnotes), winning
                                  tickets, pre-training losses, search cost, figures
  SWEEP_DIR/report/figures/*.png  score vs sparsity (TAMT Fig. 3), pre-training loss vs score (Fig. 5),
                                  score vs search steps/time (Fig. 6), mask distance from OMP and
                                  similarity heatmap (Fig. 8), score vs fine-tuning examples (Fig. 9)
  SWEEP_DIR/report/*.csv          every cell with its run ids, winning tickets, pre-training losses

A spec that declares claims (`claims:`) has them tested first, as the report's one Holm family,
each with its MDE at the corrected level; every other comparison is then exploratory (declared.csv).
A claim's verdict waits until every planned run it reads is done ("interim" before). A spec's
`recipes:` (Python files outside the library: TAMT's claims on pre-training loss are
recipes/tamt/claims.py) add their tests to the Holm family and their sections to report.md. A figure
whose data the sweep lacks is not drawn; the report says why.

Example:
  ticketlab report sweeps/synthetic
  ticketlab report sweeps/synthetic --run 3f2a9c0d1e4b5a69     # one run: config, metrics, provenance
  ticketlab report sweeps/synthetic --spec examples/synthetic-sweep.yaml  # the runs of this spec
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..core.files.atomic import to_json
from ..studies import report as sweep_report
from ..studies.sweep.spec import load_spec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep_dir", metavar="SWEEP_DIR")
    p.add_argument("--out", metavar="DIR", default=None, help="report directory (default: SWEEP_DIR/report)")
    p.add_argument("--run", metavar="ID", default=None, help="print one run's record as JSON instead")
    p.add_argument(
        "--all-runs",
        action="store_true",
        help="every run in the store, not only those of the last spec swept into SWEEP_DIR",
    )
    p.add_argument(
        "--spec",
        metavar="SPEC.yaml",
        default=None,
        help="the runs of this spec instead of the last one swept into SWEEP_DIR (a sweep run in "
        "stages, each stage a smaller spec; pending runs are counted)",
    )


def run(args: argparse.Namespace) -> int:
    # `sweep_report`'s names are lazy exports: scipy and matplotlib are imported when the verb runs,
    # so a mistyped spec is refused first, at once (the directory is checked as every verb's inputs)
    spec = load_spec(args.spec) if args.spec is not None and args.run is None else None
    if args.run is not None:
        print(to_json(dataclasses.asdict(sweep_report.run_record(args.sweep_dir, args.run)), indent=2))
        return 0
    report = sweep_report.write_report(args.sweep_dir, args.out, all_runs=args.all_runs, spec=spec)
    print(f"report: {report.path}")
    for fname, reason in report.skipped.items():
        print(f"  not drawn: {Path(fname).stem}: {reason}")
    print(f"\n{report.main_table}")
    return 0
