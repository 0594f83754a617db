"""Pre-training performance of subnetworks: MLM dev loss and accuracy, KD dev loss (TAMT Fig. 5).

Every block of the --corpus files is scored (no split). 15% of the tokens are corrupted (80/10/10)
with a fixed seed per block, so all models and masks see the same masked positions. KD is TAMT
Eq. 6 between the subnetwork and its own dense model (0 without a mask). A mask found by TAMT-MLM
carries its trained MLM head (mlm_head.safetensors), which is used unless --ignore-mlm-head.
Without --model, each mask is evaluated on the base model recorded in it.

Examples:
  ticketlab evaluate-pretrain --model ../shared/models/bert-mini-ref --full \\
      --mask masks/omp70 masks/tamt-mlm70 --corpus ../shared/data/wikitext-2/test.txt --max-length 128
  ticketlab evaluate-pretrain --mask masks/imp70 --corpus test.txt --max-length 128 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..data.corpus import load_lm_blocks
from ..errors import ConfigError
from ..files import atomic_write_json
from ..masking import apply_mask, check_fits, load_mask
from ..modeling import head_of, load_config, load_model, load_tokenizer
from ..objectives import MLMCollator
from ..pretrain_eval import HEAD_FILE, evaluate_pretraining, load_head_state
from .common import add_model_argument

VERB = "evaluate-pretrain"
HELP = "MLM dev loss/accuracy and KD dev loss of a model and its subnetworks"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, required=False)
    p.add_argument("--mask", nargs="+", default=[], metavar="MASK_DIR", help="mask directories to evaluate")
    p.add_argument(
        "--full", action="store_true", help="also evaluate the full model (default without --mask)"
    )
    p.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help="dev text files or datasets")
    p.add_argument("--max-length", type=int, default=512, help="tokens per block (default 512)")
    p.add_argument("--max-blocks", type=int, help="evaluate only the first N blocks")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption (default 0)")
    p.add_argument("--no-kd", action="store_true", help="skip the KD loss (halves the time)")
    p.add_argument(
        "--ignore-mlm-head", action="store_true", help="use the base model's MLM head for every mask"
    )
    p.add_argument("--ignore-hash", action="store_true", help="apply masks found on other weights")
    p.add_argument("--text-column", default="text")
    p.add_argument("--cache-dir", metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--out", metavar="FILE", help="also write the results as JSON to FILE")


def _base(args, mask_dir: str | None) -> str:
    if args.model:
        return args.model
    if mask_dir is None:
        raise ConfigError("give --model (or --mask, whose base model is used)")
    return load_mask(mask_dir)[1].base_model


def evaluate_one(args, mask_dir: str | None, blocks_cache: dict) -> dict[str, Any]:
    base = _base(args, mask_dir)
    config = load_config(base)
    has_head = head_of(config) == "mlm"
    model = load_model(base, head="mlm" if has_head else "base")
    row: dict[str, Any] = {
        "name": Path(mask_dir).name if mask_dir else "full",
        "mask": mask_dir,
        "model": base,
    }
    if mask_dir is not None:
        mask, mc = load_mask(mask_dir)
        check_fits(mask, mc, model, source=mask_dir, check_hash=not args.ignore_hash)
        apply_mask(model, mask)
        row.update(method=mc.method, sparsity=round(mask.sparsity, 6))
        head = Path(mask_dir) / HEAD_FILE
        if has_head and head.is_file() and not args.ignore_mlm_head:
            load_head_state(model, head)
            row["mlm_head"] = "trained"
    else:
        row.update(method="full", sparsity=0.0)
    key = (base, args.max_length)
    if key not in blocks_cache:
        tokenizer = load_tokenizer(base)
        blocks, _ = load_lm_blocks(
            args.corpus, tokenizer, args.max_length, cache_dir=args.cache_dir, text_column=args.text_column
        )
        blocks_cache[key] = (blocks.take(args.max_blocks), MLMCollator(tokenizer))
    blocks, collator = blocks_cache[key]
    metrics = evaluate_pretraining(
        model,
        blocks,
        collator,
        batch_size=args.batch_size,
        seed=args.seed,
        mlm=has_head,
        kd=not args.no_kd,
        progress=True,
    )
    return {**row, **metrics}


def run(args: argparse.Namespace) -> int:
    if args.max_length < 8:
        raise ConfigError(f"--max-length must be >= 8, got {args.max_length}")
    targets: list[str | None] = ([None] if args.full or not args.mask else []) + list(args.mask)
    cache: dict = {}
    rows = [evaluate_one(args, m, cache) for m in targets]
    if args.out:
        atomic_write_json(args.out, rows)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'subnetwork':<{width}}  {'sparsity':>8}  {'MLM loss':>8}  {'MLM acc':>7}  {'KD loss':>8}")
    for r in rows:
        mlm = f"{r['mlm_loss']:8.4f}  {r['mlm_acc']:7.4f}" if "mlm_loss" in r else f"{'-':>8}  {'-':>7}"
        kd = f"{r['kd_loss']:8.4f}" if "kd_loss" in r else f"{'-':>8}"
        print(f"{r['name']:<{width}}  {r['sparsity']:8.1%}  {mlm}  {kd}")
    r0 = rows[0]
    masked = f", {r0['masked_tokens']:,} masked" if "masked_tokens" in r0 else ""
    size = f"{r0['blocks']:,} blocks of <= {args.max_length} tokens ({r0['tokens']:,} tokens{masked})"
    print(f"\n{size}, corruption seed {args.seed}")
    return 0
