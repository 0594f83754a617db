"""Search a mask by training: TAMT (mask training on MLM / KD / MLM+KD) or IMP (iterative pruning).

  tamt  task-agnostic mask training (Liu et al. 2022): real-valued scores per weight, W ⊙ 1[S >= φ]
        in the forward pass, straight-through gradients to the scores, frozen weights, exact
        sparsity after every step (--pattern 2:4: exactly 2 of every 4 consecutive weights kept);
        initialised from OMP (default) or a random mask.
  imp   iterative magnitude pruning with rewinding (Chen et al. 2020): train the weights on MLM
        (or on a downstream task with --task), prune 10% more by magnitude every 1/(R-1) of the
        run starting at step 0, rewind the survivors to θ0 (or θ at --rewind-to) and start the
        optimizer and schedule afresh. --variant chen (default): one global ranking over the
        encoder's matrices, word embeddings not pruned (Chen et al.'s code); --variant tamt: every
        matrix pruned to the target, word embeddings included (TAMT's IMP baseline).

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
import logging

from ..api import DEFAULT_MAX_LENGTH, SearchConfig, search
from ..files import to_json
from ..objectives import OBJECTIVES
from ..pruning import ImpConfig, SearchResult, TamtConfig
from ..pruning.tamt import SCORE_DTYPES
from ..training import make_accelerator
from .common import add_model_argument, add_pattern_argument, add_targets_argument, sparsity_arg

HELP = "search a mask by training: tamt (mask training on MLM/KD) or imp (iterative magnitude pruning)"


def steps_list(value: str) -> list[int]:
    """argparse type: '100,200,300' -> [100, 200, 300]."""
    try:
        out = [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of steps: {value!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"steps must be positive integers, got {value!r}")
    return out


def _common(p: argparse.ArgumentParser, *, ranking: str | None, pattern: bool = False) -> None:
    add_model_argument(p)
    p.add_argument(
        "--sparsity",
        type=sparsity_arg,
        required=not pattern,
        help="fraction of target weights set to zero" + (" (or give --pattern)" if pattern else ""),
    )
    if pattern:  # exactly N of every M kept after every step
        add_pattern_argument(p)
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
    t.add_argument(
        "--optimizer-in-backward",
        action="store_true",
        help="less memory: step each tensor inside the backward and free its gradient (no gradient "
        "clipping; one process, no fp16, no --grad-accum)",
    )
    t.add_argument("--seed", type=int, default=0, help="data order, corruption, random init")
    t.add_argument(
        "--ranking",
        choices=["local", "global"],
        default=ranking,
        help="rank per matrix (local) or over all targets (global); default "
        + (ranking or "the variant's (chen: global, tamt: local)"),
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
    _common(t, ranking="local", pattern=True)
    g = t.add_argument_group("TAMT")
    g.add_argument("--objective", choices=OBJECTIVES, default="mlm", help="training objective (default mlm)")
    g.add_argument("--init", choices=["omp", "random"], default="omp", help="initial mask (default omp)")
    g.add_argument("--threshold", type=float, default=0.01, help="φ of Eq. 3/5 (default 0.01)")
    g.add_argument("--alpha", type=float, default=2.0, help="α of Eq. 5: initial score α·φ (default 2)")
    g.add_argument("--freeze-head", action="store_true", help="TAMT-MLM: keep the MLM head frozen")
    g.add_argument("--head-lr", type=float, help="TAMT-MLM: learning rate of the MLM head (default: --lr)")
    g.add_argument(
        "--score-dtype",
        choices=list(SCORE_DTYPES),
        default="float32",
        help="bfloat16: scores, their gradients and Adam moments in bf16 with stochastic rounding "
        "(6 bytes less per target weight: less memory than dense training)",
    )
    i = sub.add_parser(
        "imp",
        help="iterative magnitude pruning with rewinding (IMP)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(i, ranking=None)
    g = i.add_argument_group("IMP")
    g.add_argument(
        "--variant",
        choices=["chen", "tamt", "legacy"],
        default="chen",
        help="chen (default): global ranking over the encoder's matrices, no word embeddings; "
        "tamt: per-matrix ranking, word embeddings included; legacy: ticketlab's old IMP (global "
        "over all targets, one optimizer across rounds)",
    )
    g.add_argument(
        "--pooler", action="store_true", help="prune the pooler too, as both papers' code does (task models)"
    )
    g.add_argument("--prune-rate", type=float, default=0.1, help="sparsity added per round (default 0.1)")
    g.add_argument(
        "--rewind-to", type=float, metavar="FRAC", help="rewind to θ at FRAC of the run (default θ0)"
    )
    g.add_argument("--task", help="task-specific IMP: a task id or task.json (instead of --corpus)")
    g.add_argument("--data-dir", metavar="DIR", help="GLUE root or task folder for --task")


# --------------------------------------------------------------------------- arguments -> config


def search_config(args: argparse.Namespace) -> SearchConfig:
    if args.method == "tamt":
        method: TamtConfig | ImpConfig = TamtConfig(
            sparsity=args.sparsity,
            objective=args.objective,
            init=args.init,
            ranking=args.ranking,
            threshold=args.threshold,
            alpha=args.alpha,
            train_head=not args.freeze_head,
            head_lr=args.head_lr,
            seed=args.seed,
            score_dtype=args.score_dtype,
            targets=args.targets,
            pattern=args.pattern,
        )
    else:
        method = ImpConfig(
            sparsity=args.sparsity,
            prune_rate=args.prune_rate,
            ranking=args.ranking,
            rewind_to=args.rewind_to,
            targets=args.targets,
            variant=args.variant,
            pooler=args.pooler,
        )
    return SearchConfig(
        model=args.model,
        method=method,
        steps=args.steps,
        out=args.out,
        task=getattr(args, "task", None),
        data_dir=getattr(args, "data_dir", None),
        progress=not args.no_progress,
        **{k: getattr(args, k) for k in SEARCH_OPTIONS},
    )


# Options that are fields of SearchConfig under the same name.
SEARCH_OPTIONS = (
    "corpus dev dev_fraction text_column max_length cache_dir batch_size lr warmup_steps weight_decay "
    "grad_accum max_grad_norm mixed_precision optimizer_in_backward seed save_at save_every eval_every "
    "dev_blocks eval_batch_size no_eval keep_checkpoint log_every"
).split()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ticketlab").setLevel(logging.INFO)  # the library's notes and corpus summary
    config = search_config(args)
    acc = make_accelerator(config.mixed_precision)
    result = search(config, accelerator=acc)
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
        print("dev: " + to_json(shown if shown.keys() - {"step"} else others))
    if not s.get("ranks_agree", True):
        print("warning: the processes ended with different masks (see run/log.jsonl)")
