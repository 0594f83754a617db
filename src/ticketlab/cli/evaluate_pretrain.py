"""Pre-training performance of subnetworks: MLM dev loss and accuracy, KD dev loss (TAMT Fig. 5).

Every block of the --corpus files is scored (a dataset, saved or on the hub: its validation
split). 15% of the tokens are corrupted (80/10/10) with a fixed seed per block, so all models and
masks see the same masked positions. KD is TAMT Eq. 6 between the subnetwork and its own dense
model (0 without a mask), on the clean blocks (TAMT's KD dev data; --kd-input corrupted: on the
corrupted ones). As TAMT's eval_mlm.py, the MLM loss is made with the original pre-trained MLM head
for every method (--load_mlm_head false) and a dense decoder: only the input word embeddings are
masked. A mask found by TAMT-MLM carries its
trained MLM head (mlm_head.safetensors): --mlm-head trained scores it with that head instead, and
--decoder masked with the masked decoder (as an exported checkpoint computes). Without --model, each mask is
evaluated on the base model recorded in it (--full then needs --model: which full model is meant).

Examples:
  ticketlab evaluate-pretrain --model models/minilm-mlm --full \\
      --mask masks/omp70 masks/tamt-mlm70 --corpus data/corpus/dev.txt --max-length 128
  ticketlab evaluate-pretrain --mask masks/imp70 --corpus data/corpus/dev.txt --max-length 128 --json
"""

from __future__ import annotations

import argparse

from ..core.files.atomic import to_json
from ..verbs.evaluate_pretrain import PretrainEvalConfig, evaluate_pretraining
from .common import add_config_arguments, add_model_argument, config_from_args

# The `PretrainEvalConfig` options, in the order of `--help`.
OPTIONS = (
    *("masks", "full", "corpus", "max_length", "max_blocks", "batch_size", "seed", "no_kd"),
    *("mlm_head", "decoder", "kd_input", "ignore_mlm_head", "ignore_hash", "text_column", "cache_dir", "out"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, required=False)
    add_config_arguments(p, PretrainEvalConfig, OPTIONS)
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def pretrain_eval_config(args: argparse.Namespace) -> PretrainEvalConfig:
    return config_from_args(PretrainEvalConfig, args, ["model", *OPTIONS])


def run(args: argparse.Namespace) -> int:
    rows = evaluate_pretraining(pretrain_eval_config(args))
    if args.json:
        print(to_json(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'subnetwork':<{width}}  {'sparsity':>8}  {'MLM loss':>8}  {'MLM acc':>7}  {'KD loss':>8}")
    for r in rows:
        mlm = f"{r['mlm_loss']:8.4f}  {r['mlm_acc']:7.4f}" if "mlm_loss" in r else f"{'-':>8}  {'-':>7}"
        kd = f"{r['kd_loss']:8.4f}" if "kd_loss" in r else f"{'-':>8}"
        print(f"{r['name']:<{width}}  {r['sparsity']:8.1%}  {mlm}  {kd}")
    r0 = rows[0]
    masked = f", {r0['masked_tokens']:,} masked" if "masked_tokens" in r0 else ""
    size = f"{r0['blocks']:,} blocks of <= {r0['max_length']} tokens ({r0['tokens']:,} tokens{masked})"
    print(f"\n{size}, corruption seed {args.seed}")
    return 0
