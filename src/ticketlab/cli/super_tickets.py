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

Example:
  ticketlab super --model ../shared/models/bert-mini-ref --task mrpc --data-dir ../shared/data/glue \\
      --seeds 1 2 3 --levels 0.1 0.3 0.5 --out super/mrpc
"""

from __future__ import annotations

import argparse
import logging

from ..errors import ConfigError
from ..experiments.supertickets import SuperConfig, SuperResult, run_super
from ..structured.tickets import KINDS, LEVELS
from . import finetune as finetune_cli

VERB = "super"
HELP = "super tickets: importance, winning/random/losing structured tickets, rewinding, selection"


def add_arguments(p: argparse.ArgumentParser) -> None:
    finetune_cli.add_arguments(p)
    g = p.add_argument_group("super tickets")
    g.add_argument(
        "--levels",
        type=float,
        nargs="+",
        default=list(LEVELS),
        metavar="P",
        help="fractions of heads and of FFN units pruned, in (0, 1) (default: 0.1 ... 0.8)",
    )
    g.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="tickets to build")
    g.add_argument(
        "--granularity",
        choices=["layer", "neuron"],
        default="layer",
        help="FFN unit: the whole sub-layer (the paper's) or each neuron",
    )
    g.add_argument("--select-fraction", type=float, default=0.1, help="dev fraction that selects (0.1)")
    g.add_argument("--select-seed", type=int, default=0, help="seed of that dev split")
    g.add_argument("--importance-batch-size", type=int, help="default: the fine-tuning batch size")
    g.add_argument(
        "--importance",
        choices=["example", "token", "batch"],
        default="example",
        help="|dL/dgate| per example (the paper's E_x, default), per token (the reference code's), or "
        "of each batch's mean (ticketlab's first version: signs cancel inside a batch)",
    )
    g.add_argument(
        "--keep-models",
        action="store_true",
        help="keep the fine-tuned weights of the full models and winning tickets (`ticketlab adapt` "
        "starts from them)",
    )


def config_from_args(args: argparse.Namespace) -> SuperConfig:
    if args.mask is not None:
        raise ConfigError("--mask: super tickets start from the full model")
    return SuperConfig(
        finetune=finetune_cli._config(args),
        seeds=args.seeds,
        levels=args.levels,
        kinds=args.kinds,
        granularity=args.granularity,
        select_fraction=args.select_fraction,
        select_seed=args.select_seed,
        importance_batch_size=args.importance_batch_size,
        importance=args.importance,
        keep_models=args.keep_models,
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


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    print_result(run_super(config_from_args(args), args.out))
    return 0
