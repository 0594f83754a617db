"""Pre-train a small BERT from scratch with masked-LM on your corpus (what `ticketlab demo` does first).

Sizes follow the BERT miniatures (Turc et al. 2019): tiny L2/H128, mini L4/H256, small L4/H512,
medium L8/H512, base L12/H768; --hidden/--layers/--heads/--intermediate override them. Give either
a tokenizer directory or --build-tokenizer (a word-level vocabulary of the corpus's most frequent
words), and either --steps or --time-budget. The output is a standard Hugging Face checkpoint
(BertForMaskedLM + tokenizer) with pretrain.json (dev MLM loss vs the unigram baseline). An
interrupted run resumes from its last checkpoint when the same command is run again.

Examples:
  ticketlab pretrain --corpus books/*.txt --build-tokenizer --config-size mini --time-budget 600 --out my-bert
  ticketlab pretrain --corpus train.txt --dev dev.txt --tokenizer tok/ --steps 2000 --max-length 64 --out m
"""

from __future__ import annotations

import argparse

from ..pretrain import SIZES, PretrainConfig, pretrain

HELP = "pre-train a small BERT from scratch with masked-LM (model + tokenizer checkpoint)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help="text files or saved datasets")
    p.add_argument(
        "--dev", nargs="+", metavar="PATH", help="dev text (default: the tail of each corpus file)"
    )
    tok = p.add_mutually_exclusive_group(required=True)
    tok.add_argument("--tokenizer", metavar="DIR", help="an existing tokenizer (e.g. a model directory)")
    tok.add_argument(
        "--build-tokenizer", action="store_true", help="build a word-level tokenizer from the corpus"
    )
    p.add_argument("--vocab-size", type=int, default=8192, help="with --build-tokenizer (default 8192)")
    p.add_argument("--config-size", choices=list(SIZES), default="tiny", help="model size preset (tiny)")
    for name in ("hidden", "layers", "heads", "intermediate"):
        p.add_argument(f"--{name}", type=int, help=f"override the preset's {name} size")
    p.add_argument("--max-length", type=int, default=128, help="tokens per training block (128)")
    p.add_argument(
        "--positions", type=int, help="position embeddings (default: --max-length; more for longer inputs)"
    )
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="optimizer steps")
    budget.add_argument(
        "--time-budget", type=float, metavar="SECONDS", help="training time; steps are set by timing a few"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, help="default: 6%% of the steps")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, help="steps between dev evaluations (default: 10 per run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="where tokenized corpora are cached (default: ~/.cache/ticketlab)")
    p.add_argument("--out", required=True, metavar="DIR", help="output model directory")


def run(args: argparse.Namespace) -> int:
    config = PretrainConfig(
        size=args.config_size,
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        intermediate=args.intermediate,
        max_length=args.max_length,
        positions=args.positions,
        steps=args.steps,
        time_budget=args.time_budget,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        dropout=args.dropout,
        eval_every=args.eval_every,
        seed=args.seed,
    )
    result = pretrain(
        config,
        args.corpus,
        args.out,
        tokenizer=args.tokenizer,  # None with --build-tokenizer
        vocab_size=args.vocab_size,
        dev=args.dev,
        cache_dir=args.cache_dir,
    )
    print(("already trained: " if result.cached else "") + result.summary())
    print(f"model -> {args.out}")
    return 0
