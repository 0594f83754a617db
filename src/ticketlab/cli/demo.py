"""The whole pipeline offline, from nothing: a synthetic language, a tiny BERT pre-trained on it, a
sweep of pruning methods fine-tuned on three tasks, and the report (what `make demo` runs).

Steps (each cached under --out, so a second run only re-renders the report and an interrupted one
resumes): generate the language and its tasks (sentiment, acceptability, paraphrase); pre-train a
BERT (L2/H128) from scratch with MLM; search masks with OMP, random, IMP, TAMT-MLM and TAMT-KD at
50/70/90% sparsity and fine-tune each on each task, next to the full model; write the report with
its figures and print the main table. About 11 minutes on 2 free CPU cores the first time (a busy
machine is named in one line, with what it costs).

--model, --corpus and --tasks swap in real ones, each on its own (the rest stays synthetic):
  ticketlab demo --model models/minilm-mlm --corpus path/to/wiki.train.txt \\
      --dev-corpus path/to/wiki.valid.txt \\
      --tasks sst2 cola --data-dir path/to/glue --out demo-real
"""

from __future__ import annotations

import argparse
import time

import ticketlab as tl

from ..demo.config import BUDGETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", metavar="DIR", help="cache and output directory (demo-out)")
    p.add_argument(
        "--budget",
        choices=list(BUDGETS),
        default="default",
        help="how much work (default: ~11 min on 2 idle cores; test: seconds, for the tests)",
    )
    p.add_argument("--model", metavar="PATH_OR_ID", help="a pre-trained model instead of pre-training one")
    p.add_argument(
        "--corpus", nargs="+", metavar="PATH", help="mask-search corpus instead of the synthetic one"
    )
    p.add_argument(
        "--dev-corpus",
        nargs="+",
        metavar="PATH",
        help="its dev text (without it: the searches carve theirs from --corpus, and the masks' "
        "pre-training losses are not measured)",
    )
    p.add_argument(
        "--tasks", nargs="+", metavar="TASK", help="task ids (e.g. sst2 cola) instead of the synthetic"
    )
    p.add_argument("--data-dir", metavar="DIR", help="where --tasks' data is (e.g. a GLUE root)")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    result = tl.run_demo(
        args.out,
        args.budget,
        model=args.model,
        corpus=args.corpus,
        dev_corpus=args.dev_corpus,
        tasks=args.tasks,
        data_dir=args.data_dir,
    )
    minutes, seconds = divmod(round(time.perf_counter() - t0), 60)
    stages = ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items())
    print(f"\nreport: {result.report}\n\n{result.table}\n")
    print(
        f"done in {minutes}m{seconds:02d}s ({stages})"
        + ("" if result.ok else "; some runs failed, see the report")
    )
    return 0 if result.ok else 1
