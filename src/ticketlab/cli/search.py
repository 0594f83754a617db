"""Search a mask by training: TAMT (mask training on MLM / KD / MLM+KD) or IMP (iterative pruning).

  tamt  task-agnostic mask training (Liu et al. 2022): real-valued scores per weight, W ⊙ 1[S >= φ]
        in the forward pass, straight-through gradients to the scores, frozen weights, exact
        sparsity after every step (--pattern 2:4: exactly 2 of every 4 consecutive weights kept);
        initialised from OMP (default) or a random mask.
  imp   iterative magnitude pruning with rewinding (Chen et al. 2020): train the weights on MLM
        (or on a downstream task with --task), prune 10% more by magnitude every round, rewind the
        encoder to θ0 (or θ at --rewind-to) and start the optimizer and schedule afresh. On MLM the
        first pruning is at step 0 (LT_pretrain.py); with --task only after each full round, the
        task head training on (LT_glue.py). --variant chen (default): one global ranking over the
        encoder's matrices, word embeddings not pruned (Chen et al.'s code); --variant tamt: every
        matrix pruned to the target, word embeddings included (TAMT's IMP baseline). Both prune
        the checkpoint's pooler too, as both papers' code (--no-pooler: dense).

Defaults follow TAMT Table 1: batch 16, length 512, lr 5e-5 (TAMT-KD: 2e-5; IMP with --task: the
task's length and fine-tuning lr), AdamW (--optimizer bertadam: BertAdam whole, as TAMT's
train_kd.py), linear decay, except that a TAMT search too short for Table 1's lr to move a mask (a
few hundred steps) gets the lr at which one score can travel the Eq. 5 gap (alpha x phi) on its own
(50 steps at 70%: 5.8e-4); and TAMT's schedule: the search stops part-way down a longer linear
schedule, where TAMT took the mask of that sparsity in its 27,920-step run (Tab. 2; --schedule-steps
N sets the horizon, `search tamt --paper` takes the paper's own budget, e.g. 17,000 of 27,920 steps
at 70%). The search cost is reported in steps, tokens (steps x batch x length, TAMT's units) and
seconds.
OUT becomes a mask directory (use it as --mask OUT anywhere); it also holds run/log.jsonl (the
search log), steps/step-000100/ and so on (masks saved with --save-at 100,...), for TAMT-MLM
mlm_head.safetensors (its trained head) and for IMP with --rewind-to rewound_model/. Interrupted?
Run the same command again: it resumes from the last checkpoint; a finished search is not repeated.

Several processes (DDP) split the global batch between them. A model without dropout gives the mask
one process finds; with dropout (BERT's 0.1) each process draws its own dropout masks for its share
of the batch, so the mask is close to one process's but not the same (the search says so when it
starts). On GPUs, and on CPUs (gloo):
  accelerate launch --num_processes 4 --no_python ticketlab search tamt ...
  ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --no_python \\
      ticketlab search tamt ...

Examples:
  ticketlab search tamt --model models/minilm-mlm \\
      --corpus data/corpus/train.txt --dev data/corpus/dev.txt \\
      --max-length 128 --sparsity 0.7 --objective mlm --steps 300 --save-at 100,200 --out masks/tamt-mlm70
  ticketlab search imp --model models/minilm-mlm --corpus data/corpus/train.txt --sparsity 0.7 \\
      --steps 600 --out masks/imp70
  ticketlab search imp --model models/minilm-mlm --task sst2 \\
      --data-dir path/to/glue --sparsity 0.5 --steps 500 --out masks/imp-sst2-50
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import textwrap
import time
from typing import TYPE_CHECKING

import ticketlab as tl

from ..core.files.atomic import to_json
from ..core.progress import logs_to
from ..methods.registry import Method, methods
from ..verbs.search import SearchConfig
from .common import (
    add_config_arguments,
    add_model_argument,
    add_pattern_argument,
    add_targets_argument,
    config_from_args,
    data_dir_of,
    documented_fields,
    sparsity_arg,
)
from .help_format import HelpFormatter

if TYPE_CHECKING:
    from ..methods import SearchResult


def steps_list(value: str) -> list[int]:
    """argparse type: '100,200,300' -> [100, 200, 300]."""
    try:
        out = [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of steps: {value!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"steps must be positive integers, got {value!r}")
    return out


# The `SearchConfig` options, by group (--model, --sparsity, --pattern and --targets are by hand:
# shared with `prune`, and --sparsity takes '70%'); a method's own are its config's documented fields.
CORPUS = (
    *("corpus", "dev", "dev_fraction", "corpus_tokens", "text_column", "wikitext_markup", "max_length"),
    "cache_dir",
)
TRAINING = (
    *("batch_size", "lr", "warmup_steps", "weight_decay", "grad_accum", "max_grad_norm", "clip_per_tensor"),
    *("adam_eps", "optimizer", "mixed_precision", "compile", "optimizer_in_backward", "seed"),
)
SAVING = (
    *("save_at", "save_every", "eval_every", "dev_blocks", "eval_batch_size", "no_eval"),
    *("keep_checkpoint", "log_every", "progress"),
)
TASK = ("task", "data_dir")  # task-specific IMP
# Options of a method's config that are given by hand above (`seed` is `SearchConfig`'s too:
# TAMT's random init; --pattern where the method keeps N:M patterns).
BY_HAND = ("sparsity", "targets", "seed", "pattern")


def _common(p: argparse.ArgumentParser, method: Method) -> None:
    add_model_argument(p)
    pattern = "pattern" in _fields(method.config)  # exactly N of every M kept after every step
    p.add_argument(
        "--sparsity",
        type=sparsity_arg,
        required=not pattern,
        help="fraction of target weights set to zero" + (" (or give --pattern)" if pattern else ""),
    )
    if pattern:
        add_pattern_argument(p)
    if method.paper_budget:  # --steps may be left out for the paper's budget
        steps = {"required": False, "default": None}
    else:  # a schedule split over rounds or stages: the steps in all, always given
        steps = {"required": True, "help": "optimizer steps of the search in all (IMP: over every round)"}
    add_config_arguments(p, SearchConfig, ["steps", "out"], steps=steps)
    add_config_arguments(p, SearchConfig, ["schedule_steps", *(("paper",) if method.paper_budget else ())])
    add_config_arguments(p.add_argument_group("corpus"), SearchConfig, CORPUS)
    t = p.add_argument_group("training")
    add_config_arguments(t, SearchConfig, TRAINING)
    add_targets_argument(t)
    o = p.add_argument_group("saving and evaluation")
    add_config_arguments(o, SearchConfig, SAVING, save_at={"type": steps_list, "nargs": None, "default": []})


def _entries(paragraph: str, start: str) -> dict[str, str]:
    """The entries of an indented list in this module's docstring, by their first word: an entry is
    a line that begins with `start` (two spaces, or "  ticketlab search ") and the more deeply
    indented lines after it."""
    found: dict[str, list[str]] = {}
    key = None
    for line in paragraph.splitlines():
        if line.startswith(start) and not line.startswith(start + " "):
            key = line[len(start) :].split()[0]
            found.setdefault(key, [])
        if key is not None:
            found[key].append(line)
    return {k: "\n".join(v) for k, v in found.items()}


def method_description(name: str, help: str) -> str:
    """`ticketlab search NAME --help`'s description: the method's own entry of this module's
    docstring (its help line for a method registered elsewhere), what every search shares, and the
    method's examples."""
    first, methods_list, *shared, examples = (__doc__ or "").strip().split("\n\n")
    own = _entries(methods_list, "  ").get(name, f"  {name}  {help}")
    words = " ".join(own.split()[1:])  # the entry's text as one paragraph, without the method's name
    head = textwrap.fill(f"ticketlab search {name}: {words}", width=100)
    runs = _entries(examples, "  ticketlab search ").get(name)
    tail = [f"Examples:\n{runs}"] if runs else []
    return "\n\n".join([head, *shared, *tail])


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One sub-command per registered search method (`methods.registry`, verb "search")."""
    sub = p.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name, method in methods("search").items():
        m = sub.add_parser(
            name,
            help=method.help,
            description=method_description(name, method.help),
            formatter_class=HelpFormatter,
        )
        _common(m, method)
        g = m.add_argument_group(name.upper())
        add_config_arguments(g, method.config, documented_fields(method.config))
        if name == "imp":  # a script's `--pooler` asks for what IMP does by default: the pooler pruned
            g.add_argument(
                "--pooler", dest="no_pooler", action="store_false", default=False, help=argparse.SUPPRESS
            )
        if method.task:
            add_config_arguments(g, SearchConfig, TASK)


# --------------------------------------------------------------------------- arguments -> config


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def search_config(args: argparse.Namespace) -> SearchConfig:
    m = methods("search")[args.method]
    own = [*(f for f in BY_HAND if f in _fields(m.config)), *documented_fields(m.config)]
    method = config_from_args(m.config, args, own)
    budget = ["schedule_steps", *(("paper",) if m.paper_budget else ())]
    fields = ["model", "steps", "out", *budget, *CORPUS, *TRAINING, *SAVING, *(("task",) if m.task else ())]
    task = {"data_dir": data_dir_of(args)} if m.task else {}
    return config_from_args(SearchConfig, args, fields, method=method, **task)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started = time.perf_counter()
    with logs_to("ticketlab", logging.INFO):  # the library's notes and corpus summary
        result = tl.search(search_config(args))
    if result.main_process:
        _report(result, time.perf_counter() - started)
    return 0


def _report(result: SearchResult, wall_s: float) -> None:
    """The search's lines: what was pruned, in how many steps and tokens; the time of its training
    steps (the search cost, TAMT's Tab. 3) beside this command's wall time, which adds loading the
    model, reading the corpus and the dev evaluations; its dev losses."""
    mc, mask = result.config, result.mask
    if result.train is None:
        print(f"{result.out}: finished before ({mc.method}); nothing to do")
    s = mc.search
    line = f"{mc.method}: {mask.sparsity:.2%} of {mask.numel:,} target weights pruned"
    if "train_time_s" in s:
        tokens = f"{s['search_tokens']:,} tokens, " if "search_tokens" in s else ""
        line += (
            f" in {s['steps']} steps ({tokens}{s['train_time_s']:.0f} s of training; {wall_s:.0f} s in all)"
        )
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
