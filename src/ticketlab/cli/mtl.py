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
  ticketlab mtl --model ../shared/models/bert-mini-ref --tasks mrpc sst2 --data-dir ../shared/data/glue \\
      --tickets super/mrpc/masks/st-winning_l30_seed1_* super/sst2/masks/st-winning_l20_seed1_* \\
      --out mtl/mrpc-sst2
"""

from __future__ import annotations

import argparse
import logging

from ..experiments.mtl import MtlConfig, run_mtl
from .common import add_model_argument

HELP = "ticket sharing: multi-task learning where each task updates only its structured ticket"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    p.add_argument("--tasks", nargs="+", required=True, metavar="TASK", help="GLUE-style tasks")
    p.add_argument("--tickets", nargs="+", metavar="TICKET", help="one structured ticket per task, in order")
    p.add_argument("--data-dir", metavar="DIR", help="GLUE root holding every task")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (resumed if it exists)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1], metavar="S")
    g = p.add_argument_group("protocol")
    g.add_argument("--lr", type=float, default=5e-5)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--max-length", type=int, help="default: each task's")
    g.add_argument("--epochs", type=float, default=5.0)
    g.add_argument("--max-steps", type=int, help="cap on the multi-task steps")
    g.add_argument("--eval-every", type=int, default=100, metavar="STEPS")
    g.add_argument("--warmup-ratio", type=float, default=0.1)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--train-samples", type=int, metavar="N", help="seeded subset of each task's training set")
    g.add_argument("--eval-samples", type=int, metavar="N", help="score only the first N dev examples")
    g.add_argument("--select-fraction", type=float, help="pick best steps on this seeded part of dev")
    g.add_argument("--select-seed", type=int, default=0)
    f = p.add_argument_group("per-task fine-tuning afterwards")
    f.add_argument("--finetune-after", action="store_true")
    f.add_argument("--finetune-lr", type=float, help="default: --lr")
    f.add_argument("--finetune-epochs", type=float, help="default: the task's")
    f.add_argument("--finetune-max-steps", type=int)
    o = p.add_argument_group("output")
    o.add_argument("--save-every", type=int, default=100, metavar="STEPS", help="checkpoint interval")
    o.add_argument("--ignore-hash", action="store_true", help="apply tickets found on other weights")
    o.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace) -> MtlConfig:
    return MtlConfig(
        model=args.model,
        tasks=args.tasks,
        tickets=args.tickets,
        data_dir=args.data_dir,
        seeds=args.seeds,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        epochs=args.epochs,
        max_steps=args.max_steps,
        eval_every=args.eval_every,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        train_samples=args.train_samples,
        eval_samples=args.eval_samples,
        select_fraction=args.select_fraction,
        select_seed=args.select_seed,
        finetune_after=args.finetune_after,
        finetune_lr=args.finetune_lr,
        finetune_epochs=args.finetune_epochs,
        finetune_max_steps=args.finetune_max_steps,
        check_hash=not args.ignore_hash,
        save_every=args.save_every,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    summary = run_mtl(config_from_args(args), args.out)
    for method, per_task in summary.items():
        cells = [
            f"{t} {v['mean']:.2f}" + (f" ± {v['std']:.2f}" if v["n"] > 1 else "") for t, v in per_task.items()
        ]
        print(f"{method}: {', '.join(cells)}")
    print(f"results: {args.out}/mtl.json, {args.out}/results.sqlite (ticketlab report {args.out})")
    return 0
