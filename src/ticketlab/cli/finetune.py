"""Fine-tune a subnetwork (a model with a mask) or the full model on a GLUE task or SQuAD v1.1.

The mask stays on: pruned weights are exactly zero at every step; all other weights and a fresh
task head train. Defaults follow TAMT Table 1 (GLUE: lr 2e-5, batch 32, length 128, 3 epochs, eval
every 50 steps, 500 for MNLI; SQuAD: lr 3e-5, batch 16, length 384, 2 epochs, eval every 1000).
The best dev score during training is reported, with the final one; with several seeds, mean ± std.

Tasks: cola sst2 mrpc stsb qqp mnli qnli rte wnli squad, or a custom one (`task.json` in its data
folder, or `--task path/to/task.json`). --data-dir is a GLUE root (DIR/SST-2/train.tsv) or the task
folder; without it the data comes from the `datasets` hub (online only).

RUN_DIR gets results.json (best and final scores, mean ± std over seeds) and one folder per seed
(seed-1/: config.json, log.jsonl, result.json with the eval history, model/ with --save-model).
Run the same command again to resume an interrupted run; a finished one is not repeated.
Several GPUs: accelerate launch --no_python ticketlab finetune ...

Examples:
  ticketlab finetune --model ../shared/models/bert-mini-ref --task mrpc \\
      --data-dir ../shared/data/glue --out runs/mrpc-full
  ticketlab finetune --model ../shared/models/bert-mini-ref --mask masks/omp70 --task sst2 \\
      --data-dir ../shared/data/glue --seeds 1 2 3 --train-samples 1000 --out runs/sst2-omp70-1k
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..finetune import FinetuneConfig, FinetuneResult, finetune_seeds, seed_dir
from ..tasks import BUILTIN
from .common import add_model_argument

HELP = "fine-tune a (model, mask) on a GLUE task or SQuAD; best and final dev scores"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    p.add_argument("--mask", metavar="MASK_DIR", help="mask directory (default: the full model)")
    p.add_argument(
        "--task", required=True, metavar="TASK", help=f"{' '.join(BUILTIN)}, a custom task id or a task.json"
    )
    p.add_argument("--data-dir", metavar="DIR", help="GLUE root or task folder (default: the hub, online)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (resumed if it exists)")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[1], metavar="S", help="one run per seed (default: 1)"
    )
    g = p.add_argument_group("protocol (default: the task's TAMT Table 1 values)")
    g.add_argument("--lr", type=float)
    g.add_argument("--batch-size", type=int, help="global batch size")
    g.add_argument("--max-length", type=int, help="tokens per example (SQuAD: per window)")
    g.add_argument("--epochs", type=float)
    g.add_argument("--max-steps", type=int, help="cap on the number of optimizer steps (quick runs)")
    g.add_argument("--eval-every", type=int, metavar="STEPS")
    g.add_argument("--train-samples", type=int, metavar="N", help="seeded subset of N training examples")
    g.add_argument("--data-seed", type=int, help="seed of that subset (default: the run seed)")
    g.add_argument(
        "--eval-samples",
        type=int,
        metavar="N",
        help="score only the first N dev examples (not for reporting)",
    )
    g.add_argument("--metric", help="metric that picks the best step (default: the task's main metric)")
    g.add_argument("--warmup-ratio", type=float, default=0.0)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    q = p.add_argument_group("SQuAD")
    q.add_argument(
        "--doc-stride",
        type=int,
        default=128,
        help="tokens shared by consecutive context windows (transformers run_qa convention)",
    )
    q.add_argument("--n-best", type=int, default=20)
    q.add_argument("--max-answer-length", type=int, default=30)
    o = p.add_argument_group("output")
    o.add_argument(
        "--save-model", action="store_true", help="also save the fine-tuned weights (zeros in place)"
    )
    o.add_argument("--eval-batch-size", type=int, default=64)
    o.add_argument("--save-every", type=int, default=100, metavar="STEPS", help="checkpoint interval")
    o.add_argument("--keep-checkpoint", action="store_true", help="keep checkpoint.pt when a run finishes")
    o.add_argument(
        "--ignore-hash", action="store_true", help="apply the mask even if it was found on other weights"
    )
    o.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args: argparse.Namespace) -> FinetuneConfig:
    data_dir = args.data_dir
    if data_dir is None and args.task.endswith(".json"):
        data_dir = str(Path(args.task).parent)  # a task.json sits with its data
    return FinetuneConfig(
        model=args.model,
        task=args.task,
        data_dir=data_dir,
        mask=args.mask,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        epochs=args.epochs,
        max_steps=args.max_steps,
        eval_every=args.eval_every,
        train_samples=args.train_samples,
        data_seed=args.data_seed,
        eval_samples=args.eval_samples,
        metric=args.metric,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        grad_accum=args.grad_accum,
        mixed_precision=args.mixed_precision,
        doc_stride=args.doc_stride,
        n_best=args.n_best,
        max_answer_length=args.max_answer_length,
        eval_batch_size=args.eval_batch_size,
        check_hash=not args.ignore_hash,
        save_model=args.save_model,
        save_every=args.save_every,
        keep_checkpoint=args.keep_checkpoint,
        progress=not args.no_progress,
    )


def _scores(record: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in record.items() if k != "step")


def _print_run(r: FinetuneResult) -> None:
    skipped = sum(r.skipped.values())
    note = f"; {skipped} malformed rows skipped" if skipped else ""
    print(
        f"seed {r.seed}: best {_scores(r.best)} (step {r.best.get('step')}); "
        f"final {_scores(r.final)} (step {r.final.get('step')}); "
        f"{r.steps} steps on {r.n_train} examples in {r.train_time_s:.0f}s + eval {r.eval_time_s:.0f}s{note}",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    config = _config(args)
    for s in args.seeds:
        if (seed_dir(args.out, s) / "checkpoint.pt").is_file():
            print(f"seed {s}: resuming from {seed_dir(args.out, s) / 'checkpoint.pt'}", flush=True)
    summary = finetune_seeds(config, args.seeds, args.out, on_result=_print_run)
    what = f"mask {args.mask} ({summary['sparsity']:.1%} sparse)" if args.mask else "full model"
    n = len(args.seeds)
    for kind in ("best", "final"):
        parts = [
            f"{k} {v['mean']:.2f}" + (f" ± {v['std']:.2f}" if n > 1 else "") for k, v in summary[kind].items()
        ]
        print(f"{summary['task']} {what}, {kind}{f' over {n} seeds' if n > 1 else ''}: {', '.join(parts)}")
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0
