"""Fine-tune a subnetwork (a model with a mask) or the full model on a GLUE task or SQuAD v1.1.

The mask stays on: pruned weights are exactly zero at every step; all other weights and a fresh
task head train. Defaults follow TAMT Table 1 (GLUE: lr 2e-5, batch 32, length 128, 3 epochs, eval
every 50 steps, 500 for MNLI; SQuAD: lr 3e-5, batch 16, length 384, 2 epochs, eval every 1000).
The reported dev score is never one the same data chose (`--checkpoint held-out`): the last
evaluation, or with `--select-fraction F` the step a seeded fraction F of dev picked, scored on the
rest (super tickets: 0.1); `--checkpoint best-dev` reports the papers' best dev score, chosen and
scored on one dev set (optimistic). With several seeds, mean ± std.

Tasks: cola sst2 mrpc stsb qqp mnli qnli rte wnli squad, or a custom one (`task.json` in its data
folder, or `--task path/to/task.json`). --data-dir is a GLUE root (DIR/SST-2/train.tsv) or the task
folder; without it the data comes from the `datasets` hub (online only).

Your own task: a folder with its train and dev files and a task.json naming their columns, e.g.
  {"id": "reviews", "text_a": "text", "label": "sentiment", "labels": ["neg", "pos"],
   "files": {"train": "train.csv", "dev": "dev.csv"}}
then `--task reviews --data-dir FOLDER`. The files are tab-separated with a header row (default
names train.tsv, dev.tsv), or comma-separated when a name ends in .csv (quoted as spreadsheets and
pandas write them). Other fields: text_b (the second text of a pair task), kind ("classification",
or "regression": a number as the label), labels (the label strings as in the files; default "0",
"1"), metrics (classification: accuracy, f1, mcc, default accuracy; regression: pearson, spearman,
default both) and main_metric (the one that picks the best step), header (false: no header row,
columns as 0-based indices), and the task's defaults lr, batch_size, max_length, epochs, eval_every.

RUN_DIR gets results.json (best and final scores, mean ± std over seeds) and one folder per seed
(seed-1/: config.json, log.jsonl, result.json with the eval history, model/ with --save-model).
Run the same command again to resume an interrupted run; a finished one is not repeated.
Several GPUs: accelerate launch --no_python ticketlab finetune ...

Examples:
  ticketlab finetune --model models/minilm-mlm --task mrpc \\
      --data-dir path/to/glue --out runs/mrpc-full
  ticketlab finetune --model models/minilm-mlm --mask masks/omp70 --task sst2 \\
      --data-dir path/to/glue --seeds 1 2 3 --train-samples 1000 --out runs/sst2-omp70-1k
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import ticketlab as tl

from ..verbs.finetune_config import FinetuneConfig
from ..verbs.finetune_results import FinetuneResult, seed_dir
from .common import add_config_arguments, add_model_argument, config_from_args, data_dir_of

# The `FinetuneConfig` fields each verb that fine-tunes offers, by option group (see `add_config_arguments`).
SCHEDULE = ("lr", "batch_size", "max_length", "epochs", "max_steps", "eval_every")
PROTOCOL = (
    *SCHEDULE,
    *("train_samples", "data_seed", "eval_samples", "metric", "warmup_ratio", "weight_decay"),
    *("grad_accum", "mixed_precision", "recipe"),
)
# Which score is reported: `finetune`'s own (super tickets select with `SuperConfig`'s fraction).
SELECTION = ("checkpoint", "select_fraction", "select_seed")
SQUAD = ("doc_stride", "squad_windows", "n_best", "max_answer_length")
# Settings that leave the result alone (outside a run's identity): what is written, and how fast.
OUTPUT = (
    *("save_model", "eval_batch_size", "save_every", "keep_checkpoint", "check_hash", "progress"),
    "compile",
)


def add_arguments(p: argparse.ArgumentParser, *, selection: bool = True) -> None:
    add_model_argument(p)
    add_config_arguments(p, FinetuneConfig, ["mask", "task", "data_dir"])
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (resumed if it exists)")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[1], metavar="S", help="one run per seed (default: 1)"
    )
    g = p.add_argument_group("protocol (default: the task's TAMT Table 1 values)")
    add_config_arguments(g, FinetuneConfig, PROTOCOL)
    if selection:
        add_config_arguments(g, FinetuneConfig, SELECTION)
    add_config_arguments(p.add_argument_group("SQuAD"), FinetuneConfig, SQUAD)
    add_config_arguments(p.add_argument_group("output and speed"), FinetuneConfig, OUTPUT)


def finetune_config(args: argparse.Namespace, *, selection: bool = True) -> FinetuneConfig:
    fields = ("model", "task", "mask", *PROTOCOL, *(SELECTION if selection else ()), *SQUAD, *OUTPUT)
    return config_from_args(FinetuneConfig, args, fields, data_dir=data_dir_of(args))


def _scores(record: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in record.items() if k != "step")


def _print_run(r: FinetuneResult) -> None:
    skipped = sum(r.skipped.values())
    note = f"; {skipped} malformed rows skipped" if skipped else ""
    print(
        f"seed {r.seed}: best {_scores(r.best)} (step {r.best.get('step')}); "
        f"final {_scores(r.final)} (step {r.final.get('step')}); "
        f"reported ({r.checkpoint}) {r.metric} {r.reported_score:.2f}; "
        f"{r.steps} steps on {r.n_train} examples in {r.train_time_s:.0f}s + eval {r.eval_time_s:.0f}s{note}",
        flush=True,
    )


def reported_line(summary: dict[str, Any], what: str) -> str:
    """The score results.json reports, under the name it has there (`checkpoint`: held-out or
    best-dev) and what that is: which step, scored on which dev data."""
    runs = summary["runs"]
    if summary["checkpoint"] == "best-dev":
        which = "the best step, chosen and scored on the same dev set"
    elif runs and runs[0].get("selected_by"):
        which = "the step the selection part of dev picked, scored on the rest"
    else:
        which = "the last evaluation: no step chosen on the dev set"
    r, n = summary["reported"], summary["reported"]["n"]
    score = f"{r['mean']:.2f}" + (f" ± {r['std']:.2f} over {n} seeds" if n > 1 else "")
    return (
        f"{summary['task']} {what}, reported ({summary['checkpoint']}: {which}): {summary['metric']} {score}"
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    config = finetune_config(args)
    for s in args.seeds:
        if (seed_dir(args.out, s) / "checkpoint.pt").is_file():
            print(f"seed {s}: resuming from {seed_dir(args.out, s) / 'checkpoint.pt'}", flush=True)
    summary = tl.finetune_seeds(config, args.seeds, args.out, on_result=_print_run)
    what = f"mask {args.mask} ({summary['sparsity']:.1%} sparse)" if args.mask else "full model"
    n = len(args.seeds)
    for kind in ("best", "final"):
        parts = [
            f"{k} {v['mean']:.2f}" + (f" ± {v['std']:.2f}" if n > 1 else "") for k, v in summary[kind].items()
        ]
        print(f"{summary['task']} {what}, {kind}{f' over {n} seeds' if n > 1 else ''}: {', '.join(parts)}")
    print(reported_line(summary, what))
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0
