"""Super tickets (Liang et al. 2021): fine-tune, score heads and FFN units, prune, rewind, select.

For every seed: fine-tune the full model; compute the importance E|dL/dgate| of every attention head
and FFN unit over the training set; prune the same fraction of heads and of FFN units at every level
(10%...80%) into winning (least important pruned), random and losing (most important pruned)
tickets; fine-tune every ticket again from the pre-trained weights with the same seed and schedule;
pick the super ticket, the winning level with the best score on a seeded 10% of the dev set. Every
score reported is on the other 90%, at the training step the 10% picked.

OUT gets results.sqlite (one row per ticket and fine-tuning: `ticketlab report OUT` draws the phase
transition, score vs level for winning, random and losing tickets), super.json (the super ticket per
seed, mean ± std), runs/ (fine-tuning runs; importance/ in each full-model run) and masks/ (the
tickets, structured mask directories: `ticketlab info`, `--mask` everywhere). Rerun the same command
to resume.

Fine-tuning options are those of `ticketlab finetune` (defaults: the task's TAMT Table 1 values).

--importance-only stops after the importance scores: each seed's full model is fine-tuned and its
heads and FFN units scored (OUT/runs/<run>/importance/: importance.json and .safetensors, read by
`ticketlab.methods.super_tickets.importance.Importance.load(DIR)`), and no ticket is made. The same
command without it goes on from there. (`ticketlab importance` is another thing: importance across
tasks, from finished super-ticket studies.)

Example:
  ticketlab super --model models/minilm-mlm --task mrpc --data-dir path/to/glue \\
      --seeds 1 2 3 --levels 0.1 0.3 0.5 --out super/mrpc
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from .. import studies
from ..core.progress import logs_to
from ..studies.super_config import PROGRESS, SuperConfig
from . import finetune as finetune_cli
from .common import add_config_arguments, config_from_args
from .finetune import finetune_config

if TYPE_CHECKING:
    from ..studies.supertickets import SuperResult

# The `SuperConfig` options besides the fine-tuning protocol (and --seeds, which is `finetune`'s).
STUDY = (
    *("levels", "units", "kinds", "granularity", "select_fraction", "select_seed", "importance_batch_size"),
    *("importance", "keep_models", "importance_only", "random_draw"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    finetune_cli.add_arguments(p, selection=False)
    add_config_arguments(p.add_argument_group("super tickets"), SuperConfig, STUDY)
    # finetune's --mask, left out of the help and refused as it is parsed (before its path is looked for)
    mask = next(a for a in p._actions if a.dest == "mask")
    mask.type, mask.help = _no_mask, argparse.SUPPRESS


def _no_mask(value: str) -> str:
    raise argparse.ArgumentTypeError("super tickets start from the full model")


def super_config(args: argparse.Namespace) -> SuperConfig:
    return config_from_args(
        SuperConfig, args, ["seeds", *STUDY], finetune=finetune_config(args, selection=False)
    )


def _cell(v: dict) -> str:
    return f"{v['mean']:.2f} ± {v['std']:.2f}" if v.get("n", 0) > 1 else f"{v['mean']:.2f}" if v else "—"


def print_result(r: SuperResult) -> None:
    methods = list(r.tickets)
    levels = sorted({float(lv) for m in methods for lv in r.tickets[m]})
    print(f"{r.task} ({r.metric}, report part of dev; mean ± std over seeds)")
    print("level  " + "  ".join(f"{m:>16}" for m in methods))
    for lv in levels:
        cells = [_cell(r.tickets[m].get(f"{lv:g}", {})) for m in methods]
        print(f"{lv:>5.0%}  " + "  ".join(f"{c:>16}" for c in cells))
    print(f"full model:   {_cell(r.full)}")
    picks = ", ".join(f"seed {p.seed}: {p.level:.0%}" for p in r.picks)
    print(f"super ticket: {_cell(r.super)} ({picks})")
    if r.skipped:
        print(f"{r.skipped} runs are running in another process; rerun when they finish")
    print(f"results: {r.out_dir}/super.json, {r.out_dir}/results.sqlite (ticketlab report {r.out_dir})")


def print_importance(r: SuperResult) -> None:
    """Where each seed's importance scores are, and its least and most important heads."""
    for seed, where in sorted(r.importance.items()):
        name = studies.head_ranking(where)
        least, most = ", ".join(name[:3]), ", ".join(name[-3:])
        print(f"seed {seed}: {where} (least important heads: {least}; most: {most})")
    if r.skipped:
        print(f"{r.skipped} runs are running in another process; rerun when they finish")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    # a line per row as it starts and finishes, on stdout as a sweep prints them (stderr keeps an
    # error to its one line)
    with logs_to(PROGRESS, logging.INFO, logging.StreamHandler(sys.stdout), propagate=False):
        config = super_config(args)
        result = studies.run_super(config, args.out)
    (print_importance if config.importance_only else print_result)(result)
    return 0
