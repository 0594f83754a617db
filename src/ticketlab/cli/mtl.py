"""Ticket sharing for multi-task learning (Liang et al. 2021, Algorithm 1).

One encoder shared by all tasks, one classifier head per task, each task's structured ticket (its
super ticket, e.g. from `ticketlab super`) as its subnetwork. Minibatches of all tasks are shuffled
together; a step on task i runs the encoder gated by ticket i and updates only what ticket i holds
(its heads and FFN units, the shared embeddings and LayerNorms, its own head): every other weight,
its Adam moments and step count stay bit-identical, weight decay included. Units no task keeps are
pruned for all. Without --tickets it is plain multi-task learning (every task keeps everything).
--finetune-after then fine-tunes each task alone from the multi-task weights, gated by its ticket.

Defaults follow Liang et al. A.2.1 (lr 5e-5, batch 32, 5 epochs, warm-up 10%, gradient norm 1;
AdamW here, Adamax there). OUT gets results.sqlite (one row per task and stage: `ticketlab report
OUT`), mtl.json (mean ± std over seeds) and seed-<s>/ (the multi-task weights, fine-tuning runs).
Rerun the same command to resume.

Example:
  ticketlab mtl --model models/minilm-mlm --tasks mrpc sst2 --data-dir path/to/glue \\
      --tickets super/mrpc/masks/st-winning_l30_seed1_* super/sst2/masks/st-winning_l20_seed1_* \\
      --out mtl/mrpc-sst2
"""

from __future__ import annotations

import argparse
import logging

from .. import studies
from ..studies.mtl_config import MtlConfig
from .common import add_config_arguments, add_model_argument, config_from_args

# The `MtlConfig` options, by group (--model is every verb's).
SETUP = ("tasks", "tickets", "data_dir")
PROTOCOL = (
    *("lr", "batch_size", "max_length", "epochs", "max_steps", "eval_every", "warmup_ratio"),
    *("weight_decay", "train_samples", "eval_samples", "select_fraction", "select_seed"),
)
AFTER = ("finetune_after", "finetune_lr", "finetune_epochs", "finetune_max_steps")
OUTPUT = ("save_every", "check_hash", "progress")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    add_config_arguments(p, MtlConfig, SETUP)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (resumed if it exists)")
    add_config_arguments(p, MtlConfig, ["seeds"])
    add_config_arguments(p.add_argument_group("protocol"), MtlConfig, PROTOCOL)
    add_config_arguments(p.add_argument_group("per-task fine-tuning afterwards"), MtlConfig, AFTER)
    add_config_arguments(p.add_argument_group("output"), MtlConfig, OUTPUT)


def mtl_config(args: argparse.Namespace) -> MtlConfig:
    return config_from_args(MtlConfig, args, ["model", *SETUP, "seeds", *PROTOCOL, *AFTER, *OUTPUT])


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    summary = studies.run_mtl(mtl_config(args), args.out)
    for method, per_task in summary.items():
        cells = [
            f"{t} {v['mean']:.2f}" + (f" ± {v['std']:.2f}" if v["n"] > 1 else "") for t, v in per_task.items()
        ]
        print(f"{method}: {', '.join(cells)}")
    print(f"results: {args.out}/mtl.json, {args.out}/results.sqlite (ticketlab report {args.out})")
    return 0
