"""Compact a model with a structured ticket: remove its pruned heads, FFN neurons and FFN sub-layers.

The result is a smaller, faster model whose outputs equal the ticketed model's (to float tolerance).
HF configs cannot express per-layer head counts, so the directory holds a manifest
(`ticketlab_compact.json`) and is reloaded with `ticketlab.masks.load_compacted(DIR)`; a plain
`from_pretrained` refuses it.

--time also times the encoder's forward, dense and compacted, on a random batch (float32, interleaved,
median and minimum of --time-reps after a warm-up each): how much faster your ticket runs on your
machine. A busy machine slows both alike; the minimum is the steadier figure there.

Example:
  ticketlab compact --model models/minilm-mlm --mask tickets/winning50 --out compact/w50
  ticketlab compact --model models/minilm-mlm --mask tickets/winning50 --out compact/w50 --time
  ticketlab compact ... --multiple 64 --time --device cuda     # FFN widths fit a GPU's tiles
"""

from __future__ import annotations

import argparse

import ticketlab as tl

from ..core.errors import ConfigError
from .common import add_head_argument, add_model_argument, at_least


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    p.add_argument("--mask", required=True, metavar="TICKET_DIR", help="a structured ticket")
    p.add_argument("--out", required=True, metavar="DIR", help="the compacted model to write")
    add_head_argument(p)
    p.add_argument(
        "--ignore-hash",
        action="store_true",
        help="apply the ticket even if the model's weights differ from those it was found on "
        "(e.g. the model fine-tuned with the ticket)",
    )
    p.add_argument(
        "--multiple",
        type=at_least(1),
        default=1,
        metavar="N",
        help="keep every FFN's width at a multiple of N by keeping some pruned neurons as zeros "
        "(outputs unchanged): GPU matrix kernels run much faster at multiples of 64 (default: 1)",
    )
    t = p.add_argument_group("timing")
    t.add_argument("--time", action="store_true", help="time the dense and the compacted encoder's forward")
    t.add_argument("--time-reps", type=at_least(1), metavar="N", help="timed forwards of each (default: 5)")
    t.add_argument("--time-batch-size", type=at_least(1), metavar="B", help="sequences (default: 8)")
    t.add_argument(
        "--time-length",
        type=at_least(1),
        metavar="L",
        help="tokens each (default: 128, or the model's positions if fewer)",
    )
    t.add_argument("--device", help="where to time: cpu (default), cuda, cuda:1, ...")


TIMING = ("time_reps", "time_batch_size", "time_length", "device")  # options of --time, None unless given


def run(args: argparse.Namespace) -> int:
    fields = ("model", "mask", "out", "head", "ignore_hash", "multiple")
    given = {f: getattr(args, f) for f in fields}
    timing = {f: getattr(args, f) for f in TIMING if getattr(args, f) is not None}
    if timing and not args.time:
        raise ConfigError(f"--{next(iter(timing)).replace('_', '-')} sets the timing: add --time")
    if args.time:
        given.update({"time_reps": 5, **timing})
    config = tl.CompactConfig(**given)
    done = tl.compact(config)
    print(
        f"compacted {done.head} model: {done.heads}/{done.all_heads} heads, "
        f"{done.parameters / 1e6:.2f}M of {done.parameters_before / 1e6:.2f}M parameters -> {args.out}"
    )
    if done.timing is not None:
        dense, small = done.timing["dense"], done.timing["compacted"]
        sequences, length = done.timed_batch or (0, 0)
        batch = f"{sequences} x {length} tokens on {config.device}"
        print(
            f"encoder forward, {batch}, median (min) of {config.time_reps}: "
            f"dense {dense.median_ms:.1f} ms ({dense.min_ms:.1f}), compacted "
            f"{small.median_ms:.1f} ms ({small.min_ms:.1f}): {dense.median_ms / small.median_ms:.2f}x "
            f"({dense.min_ms / small.min_ms:.2f}x)"
        )
    return 0
