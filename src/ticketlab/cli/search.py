"""Search a mask by training: TAMT (mask training on MLM / KD / MLM+KD) or IMP (iterative pruning).

  tamt  task-agnostic mask training (Liu et al. 2022): real-valued scores per weight, W ⊙ 1[S >= φ]
        in the forward pass, straight-through gradients to the scores, frozen weights, exact
        sparsity after every step; initialised from OMP (default) or a random mask.
  imp   iterative magnitude pruning with rewinding (Chen et al. 2020): train the weights on MLM
        (or on a downstream task with --task), prune 10% more by global magnitude every 1/(R-1)
        of the run starting at step 0, rewind the survivors to θ0 (or θ at --rewind-to).

Defaults follow TAMT Table 1: batch 16, length 512, lr 5e-5 (TAMT-KD: 2e-5), AdamW, linear decay.
OUT becomes a mask directory (use it as --mask OUT anywhere); it also holds run/log.jsonl (the
search log), steps/step-N/ (masks saved with --save-at), mlm_head.safetensors (TAMT-MLM's trained
head) and rewound_model/ (IMP --rewind-to). Interrupted? Run the same command again: it resumes
from the last checkpoint; a finished search is not repeated. Several processes (DDP; the global
batch is split between them and the result is the same):
  accelerate launch --num_processes 4 --no_python ticketlab search tamt ...            (GPUs)
  ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --no_python \
      ticketlab search tamt ...                                                        (CPUs, gloo)

Examples:
  ticketlab search tamt --model ../shared/models/bert-mini-ref \\
      --corpus ../shared/data/wikitext-2/valid.txt --dev ../shared/data/wikitext-2/test.txt \\
      --max-length 128 --sparsity 0.7 --objective mlm --steps 300 --save-at 100,200 --out masks/tamt-mlm70
  ticketlab search imp --model ../shared/models/bert-mini-ref --corpus wiki.txt --sparsity 0.7 \\
      --steps 600 --out masks/imp70
  ticketlab search imp --model ../shared/models/bert-mini-ref --task sst2 \\
      --data-dir ../shared/data/glue --sparsity 0.5 --steps 500 --out masks/imp-sst2-50
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs

from ..data.corpus import load_lm_corpus
from ..errors import ConfigError
from ..modeling import head_of, load_config, load_model, load_tokenizer
from ..objectives import OBJECTIVES, MLMCollator, pretraining_loss
from ..pretrain_eval import evaluate_pretraining
from ..pruning.imp import ImpConfig, search_imp
from ..pruning.search import SearchObjective, SearchResult
from ..pruning.tamt import TamtConfig, search_tamt
from ..training import TrainConfig
from .common import add_model_argument, add_targets_argument, sparsity_arg

HELP = "search a mask by training: tamt (mask training on MLM/KD) or imp (iterative magnitude pruning)"
DEFAULT_MAX_LENGTH = 512  # TAMT Table 1


def steps_list(value: str) -> list[int]:
    """argparse type: '100,200,300' -> [100, 200, 300]."""
    try:
        out = [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of steps: {value!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"steps must be positive integers, got {value!r}")
    return out


def _common(p: argparse.ArgumentParser, *, ranking: str) -> None:
    add_model_argument(p)
    p.add_argument(
        "--sparsity", type=sparsity_arg, required=True, help="fraction of target weights set to zero"
    )
    p.add_argument("--steps", type=int, required=True, help="optimizer steps of the search")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output (mask) directory; resumed if it exists"
    )
    d = p.add_argument_group("corpus")
    d.add_argument(
        "--corpus", nargs="+", metavar="PATH", help="text files or saved `datasets` dirs to train on"
    )
    d.add_argument("--dev", nargs="+", metavar="PATH", help="dev corpus (default: carved from --corpus)")
    d.add_argument("--dev-fraction", type=float, default=0.05, help="tail of each source used as dev")
    d.add_argument("--text-column", default="text", help="column of `datasets` sources (default: text)")
    d.add_argument(
        "--max-length",
        type=int,
        help=f"tokens per block (default {DEFAULT_MAX_LENGTH} for corpora, the task's for --task)",
    )
    d.add_argument("--cache-dir", metavar="DIR", help="tokenized-corpus cache (default ~/.cache/ticketlab)")
    t = p.add_argument_group("training")
    t.add_argument("--batch-size", type=int, default=16, help="global batch size (default 16)")
    t.add_argument("--lr", type=float, help="learning rate (default: TAMT Table 1)")
    t.add_argument("--warmup-steps", type=int, default=0)
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation micro-steps")
    t.add_argument("--max-grad-norm", type=float, default=1.0)
    t.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    t.add_argument("--seed", type=int, default=0, help="data order, corruption, random init")
    t.add_argument(
        "--ranking",
        choices=["local", "global"],
        default=ranking,
        help=f"rank per matrix (local) or over all targets (global); default {ranking}",
    )
    add_targets_argument(t)
    o = p.add_argument_group("saving and evaluation")
    o.add_argument(
        "--save-at", type=steps_list, default=[], metavar="STEPS", help="e.g. 100,200: masks on the way"
    )
    o.add_argument("--save-every", type=int, default=100, help="checkpoint every N steps (default 100)")
    o.add_argument("--eval-every", type=int, help="dev evaluation every N steps (default: at the end only)")
    o.add_argument("--dev-blocks", type=int, default=256, help="dev blocks for evaluation during the search")
    o.add_argument("--eval-batch-size", type=int, default=32)
    o.add_argument("--no-eval", action="store_true", help="skip dev evaluation entirely")
    o.add_argument("--keep-checkpoint", action="store_true", help="keep run/checkpoint.pt after finishing")
    o.add_argument("--log-every", type=int, default=10)
    o.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="method", required=True, metavar="METHOD")
    t = sub.add_parser(
        "tamt",
        help="task-agnostic mask training (TAMT)",
        description=(__doc__ or "").split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(t, ranking="local")
    g = t.add_argument_group("TAMT")
    g.add_argument("--objective", choices=OBJECTIVES, default="mlm", help="training objective (default mlm)")
    g.add_argument("--init", choices=["omp", "random"], default="omp", help="initial mask (default omp)")
    g.add_argument("--threshold", type=float, default=0.01, help="φ of Eq. 3/5 (default 0.01)")
    g.add_argument("--alpha", type=float, default=2.0, help="α of Eq. 5: initial score α·φ (default 2)")
    g.add_argument("--freeze-head", action="store_true", help="TAMT-MLM: keep the MLM head frozen")
    g.add_argument("--head-lr", type=float, help="TAMT-MLM: learning rate of the MLM head (default: --lr)")
    i = sub.add_parser(
        "imp",
        help="iterative magnitude pruning with rewinding (IMP)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(i, ranking="global")
    g = i.add_argument_group("IMP")
    g.add_argument("--prune-rate", type=float, default=0.1, help="sparsity added per round (default 0.1)")
    g.add_argument(
        "--rewind-to", type=float, metavar="FRAC", help="rewind to θ at FRAC of the run (default θ0)"
    )
    g.add_argument("--task", help="task-specific IMP: a task id or task.json (instead of --corpus)")
    g.add_argument("--data-dir", metavar="DIR", help="GLUE root or task folder for --task")


# --------------------------------------------------------------------------- setup


def _accelerator(mixed_precision: str) -> Accelerator:
    # Every process derives the same masks from the same synchronised scores, so DDP need not
    # re-broadcast the mask buffers before every forward (`ranks_agree` checks it at the end).
    # torch 2.13 calls the option deprecated in favour of one accelerate cannot pass yet.
    warnings.filterwarnings("ignore", message=".*broadcast_buffers. is deprecated", category=FutureWarning)
    return Accelerator(
        mixed_precision=mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )


def _max_positions(config) -> int:
    n = getattr(config, "max_position_embeddings", 512)
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        n -= (config.pad_token_id or 1) + 1  # RoBERTa's positions start after the padding index
    return n


def _lm_objective(args, tokenizer, acc: Accelerator, name: str, kd_eval: bool) -> SearchObjective:
    if not args.corpus:
        raise ConfigError("give --corpus (text files or saved datasets) to search on")
    with acc.main_process_first():
        corpus = load_lm_corpus(
            args.corpus,
            tokenizer,
            args.max_length,
            dev=args.dev,
            dev_fraction=args.dev_fraction,
            cache_dir=args.cache_dir,
            text_column=args.text_column,
            progress=acc.is_main_process and not args.no_progress,
        )
    if acc.is_main_process:
        print(f"corpus: {corpus.summary()}")
    collator = MLMCollator(tokenizer)
    dev = corpus.dev.take(args.dev_blocks)
    mlm_eval = name != "kd" or args._has_head

    def eval_fn(model):
        return evaluate_pretraining(
            model, dev, collator, batch_size=args.eval_batch_size, mlm=mlm_eval, kd=kd_eval
        )

    info = {
        "corpus": [str(p) for p in args.corpus],
        "dev": [str(p) for p in args.dev] if args.dev else corpus.info["dev_split"],
        "max_length": args.max_length,
        "train_blocks": len(corpus.train),
        "train_tokens": corpus.train.num_tokens,
        "eval_dev_blocks": len(dev),
    }
    return SearchObjective(
        name=name,
        dataset=corpus.train,
        collate_fn=collator,
        loss_fn=pretraining_loss(name),
        eval_fn=None if args.no_eval else eval_fn,
        info=info,
    )


def _train_config(args, lr: float, *, metric: str | None = None, greater: bool = True) -> TrainConfig:
    return TrainConfig(
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        grad_accum=args.grad_accum,
        max_grad_norm=args.max_grad_norm if args.max_grad_norm > 0 else None,
        eval_every=args.eval_every,
        save_every=args.save_every,
        log_every=args.log_every,
        seed=args.seed,
        mixed_precision=args.mixed_precision,
        metric=metric,
        greater_is_better=greater,
        progress=not args.no_progress,
        desc=f"search {args.method}",
    )


SETTING_KEYS = (
    "method model corpus dev dev_fraction text_column max_length sparsity steps batch_size lr "
    "warmup_steps weight_decay grad_accum max_grad_norm mixed_precision seed ranking targets objective "
    "init threshold alpha freeze_head head_lr prune_rate rewind_to task data_dir"
).split()


def _settings(args) -> dict[str, Any]:
    """What defines a search: a resumed run must have been started with the same values."""
    return {k: getattr(args, k, None) for k in SETTING_KEYS}


# --------------------------------------------------------------------------- the verbs


def _load(args, need_head: bool):
    config = load_config(args.model)
    has_head = head_of(config) == "mlm"
    torch.manual_seed(args.seed)  # a fresh MLM head (checkpoint without one) is seeded too
    model = load_model(args.model, head="mlm" if need_head or has_head else "base")
    args._has_head = has_head or need_head
    return model, config, has_head


def run_tamt(args, acc: Accelerator) -> SearchResult:
    tamt = TamtConfig(
        sparsity=args.sparsity,
        objective=args.objective,
        init=args.init,
        ranking=args.ranking,
        threshold=args.threshold,
        alpha=args.alpha,
        train_head=not args.freeze_head,
        head_lr=args.head_lr,
        seed=args.seed,
        targets=args.targets,
    )
    need_head = "mlm" in args.objective
    model, config, has_head = _load(args, need_head)
    if need_head and not has_head:
        if args.freeze_head:
            raise ConfigError(f"{args.model} has no MLM head: a frozen random head cannot be used for MLM")
        if acc.is_main_process:
            print(
                f"note: {args.model} has no MLM head; a fresh one (transform, bias) is trained with the masks"
            )
    args.max_length = args.max_length or DEFAULT_MAX_LENGTH
    _check_length(args, config)
    tokenizer = load_tokenizer(args.model)
    objective = _lm_objective(args, tokenizer, acc, args.objective, kd_eval=True)
    objective.info["fresh_mlm_head"] = need_head and not has_head
    lr = args.lr or tamt.default_lr
    return search_tamt(
        model,
        objective,
        tamt,
        _train_config(args, lr),
        args.out,
        base_model=str(args.model),
        save_at=args.save_at,
        settings={**_settings(args), "lr": lr},
        accelerator=acc,
        keep_checkpoint=args.keep_checkpoint,
    )


def run_imp(args, acc: Accelerator) -> SearchResult:
    imp = ImpConfig(
        sparsity=args.sparsity,
        prune_rate=args.prune_rate,
        ranking=args.ranking,
        rewind_to=args.rewind_to,
        rewind_head=args.task is not None,
        targets=args.targets,
    )
    tokenizer = load_tokenizer(args.model)
    if args.task is not None:
        from ..finetune import load_task_model, task_objective

        if args.corpus:
            raise ConfigError("give either --corpus (IMP on MLM) or --task (task-specific IMP), not both")
        with acc.main_process_first():
            task = task_objective(args.task, tokenizer, args.data_dir, max_length=args.max_length)
        model, _ = load_task_model(args.model, task.spec, seed=args.seed)
        objective = SearchObjective(
            name=task.spec.id,
            dataset=task.dataset,
            collate_fn=task.collate_fn,
            loss_fn=task.loss_fn,
            eval_fn=None if args.no_eval else task.eval_fn,
            info={"task": task.spec.id, "data_dir": args.data_dir, "n_train": task.n_train},
        )
        lr = args.lr or task.spec.lr
        train_config = _train_config(args, lr, metric=task.metric, greater=task.greater_is_better)
    else:
        model, config, has_head = _load(args, need_head=True)
        if not has_head and acc.is_main_process:
            print(f"note: {args.model} has no MLM head; IMP trains a fresh one with the weights")
        args.max_length = args.max_length or DEFAULT_MAX_LENGTH
        _check_length(args, config)
        objective = _lm_objective(args, tokenizer, acc, "mlm", kd_eval=True)
        lr = args.lr or 5e-5  # Table 1
        train_config = _train_config(args, lr)
    return search_imp(
        model,
        objective,
        imp,
        train_config,
        args.out,
        base_model=str(args.model),
        save_at=args.save_at,
        settings={**_settings(args), "lr": lr},
        accelerator=acc,
        keep_checkpoint=args.keep_checkpoint,
        tokenizer=tokenizer,
    )


def _check_length(args, config) -> None:
    limit = _max_positions(config)
    if args.max_length > limit:
        raise ConfigError(f"--max-length {args.max_length} exceeds the model's {limit} positions")


def run(args: argparse.Namespace) -> int:
    acc = _accelerator(args.mixed_precision)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != acc.num_processes:  # e.g. CPU processes that accelerate did not join into one group
        raise ConfigError(
            f"{launched} processes were launched but accelerate sees {acc.num_processes}: on CPUs set "
            "ACCELERATE_USE_CPU=true (`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu "
            "--num_processes 2 --no_python ticketlab search ...`)"
        )
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"{args.out}: exists and is not a directory")
    result = run_tamt(args, acc) if args.method == "tamt" else run_imp(args, acc)
    if acc.is_main_process:
        _report(result)
    return 0


def _report(result: SearchResult) -> None:
    mc, mask = result.config, result.mask
    if result.train is None:
        print(f"{result.out}: finished before ({mc.method}); nothing to do")
    s = mc.search
    line = f"{mc.method}: {mask.sparsity:.2%} of {mask.numel:,} target weights pruned"
    if "train_time_s" in s:
        line += f" in {s['steps']} steps ({s['train_time_s']:.0f} s)"
    print(f"{line} -> {result.out}")
    final = s.get("final_eval") or {}
    shown = {
        k: round(v, 4) for k, v in final.items() if k in ("mlm_loss", "mlm_acc", "kd_loss") or k == "step"
    }
    others = {k: v for k, v in final.items() if k not in ("blocks", "tokens", "masked_tokens", "mlm_ppl")}
    if final:
        print("dev: " + json.dumps(shown if shown.keys() - {"step"} else others))
    if not s.get("ranks_agree", True):
        print("warning: the processes ended with different masks (see run/log.jsonl)")
