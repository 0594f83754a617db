"""Domain adaptation (Liang et al. 2021 §7, Table 4): from models fine-tuned on task A onto task B
with 0.1%, 1%, 10% and 100% of B's training data.

STUDY is a super-ticket study of task A run with --keep-models: per seed, its super ticket (its
fine-tuned weights, its units kept pruned) and its full model fine-tuned on A are each fine-tuned on
B with the same seed, head initialisation and training subset (seeded and nested: the 1% set holds
the 0.1% set). OUT gets runs/ (resumable: rerun the same command), adaptation.json, adaptation.csv
and adaptation.md (mean ± std over seeds with n; super - full paired per seed; no verdict where the
full model is at a constant predictor's score).

Example:
  ticketlab super --model models/minilm-mlm --task sst2 --data-dir path/to/glue \\
      --seeds 1 2 3 --keep-models --out super/sst2
  ticketlab adapt super/sst2 --task mrpc --data-dir path/to/glue --out adapt/sst2-mrpc
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .. import studies
from ..core.files.inputs import read_text
from ..studies.adapt_config import FRACTIONS, AdaptConfig
from ..verbs.finetune_config import FinetuneConfig
from .common import add_config_arguments, config_from_args, data_dir_of
from .finetune import SCHEDULE

ON_B = (*SCHEDULE, "progress")  # the `FinetuneConfig` options of task B's protocol


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "study", metavar="STUDY", help="a super-ticket study of task A (ticketlab super --keep-models)"
    )
    p.add_argument("--task", required=True, metavar="TASK", help="task B: a task id or a task.json")
    p.add_argument("--data-dir", metavar="DIR", help="GLUE root or task B's folder (default: the hub)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (resumed if it exists)")
    p.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=list(FRACTIONS),
        metavar="F",
        help="fractions of B's training set (default: 0.001 0.01 0.1 1)",
    )
    g = p.add_argument_group("protocol on B (default: the task's TAMT Table 1 values)")
    add_config_arguments(g, FinetuneConfig, ON_B)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    sources = studies.super_sources(args.study)
    given = {"model": sources[0].model, "task": args.task, "data_dir": data_dir_of(args)}
    protocol = config_from_args(FinetuneConfig, args, ON_B, **given)
    result = studies.run_adaptation(AdaptConfig(protocol, sources, args.fractions), args.out)
    print(read_text(Path(args.out) / "adaptation.md", "adaptation report"))
    return 0 if result else 1
