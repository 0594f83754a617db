"""2:4 sparse tensor cores against dense: BERT-base's linears and its encoder forward, fp16 and bf16.

    python benchmarks/bench_semi_structured.py                       # batch 32 x 128, fp16 and bf16
    python benchmarks/bench_semi_structured.py --batch-size 64 --seq-len 256 --dtypes bf16 --json out.json

Every target linear of a randomly initialised BERT-base (12 x 768, FFN 3072; the speed of a matmul
does not depend on the values) is pruned 2:4 by magnitude with ticketlab's own selection
(`omp_mask(..., pattern="2:4")`), then converted with `torch.sparse.to_sparse_semi_structured`,
the path `ticketlab export --semi-structured` checks. Two measurements, dense and 2:4 side by
side in one run, each the median of --iters CUDA-event timings after --warmup:

  linear   y = x Wᵀ + b for each distinct linear shape of a layer (Q/K/V/attention out 768x768,
           FFN in 3072x768, FFN out 768x3072) on batch x seq tokens
  encoder  the whole BertModel forward (embeddings, 12 layers) with every target linear's weight a
           semi-structured tensor, against the same model dense

`--backend` picks torch's kernel for the 2:4 products: cuSPARSELt (torch's default where it is
built in) or CUTLASS. On an H100 with torch 2.11, cuSPARSELt's 2:4 products run 7-25x slower than
dense and CUTLASS's refuses the GPU (docs/results/benchmarks.md); torch's semi-structured tensors
are a prototype.

Needs a CUDA GPU with sparse tensor cores (Ampere or newer); without one it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable

import torch
from torch import nn

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def cuda_ms(fn: Callable[[], object], warmup: int, iters: int) -> float:
    """Median milliseconds of `fn` over `iters` runs after `warmup`, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bert_base(dtype: torch.dtype) -> nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(), add_pooling_layer=False).to("cuda", dtype).eval()


def sparsify(model: nn.Module) -> dict[str, nn.Linear]:
    """Prune every target linear 2:4 by magnitude (in place); the linears, by weight key."""
    from ticketlab.masks import find_targets
    from ticketlab.methods import omp_mask

    linears = {k: m for k, m in find_targets(model).items() if isinstance(m, nn.Linear)}
    mask = omp_mask(model, None, pattern="2:4", targets=[k.removesuffix(".weight") for k in linears])
    with torch.no_grad():
        for key, module in linears.items():
            module.weight.mul_(mask[key].to(module.weight.device))
    return linears


def to_semi_structured(linears: dict[str, nn.Linear]) -> None:
    from torch.sparse import to_sparse_semi_structured

    for module in linears.values():
        module.weight = nn.Parameter(to_sparse_semi_structured(module.weight.detach()), requires_grad=False)


@torch.inference_mode()
def measure(dtype_name: str, args: argparse.Namespace) -> list[dict]:
    from torch.sparse import to_sparse_semi_structured

    dtype, rows = DTYPES[dtype_name], []
    model = bert_base(dtype)
    linears = sparsify(model)
    tokens = args.batch_size * args.seq_len
    layer0 = {k: m for k, m in linears.items() if ".layer.0." in k}
    for key, module in layer0.items():  # one of each shape
        out_f, in_f = module.weight.shape
        if any(r["shape"] == f"{out_f}x{in_f}" for r in rows):
            continue
        x = torch.randn(tokens, in_f, device="cuda", dtype=dtype)
        w, b = module.weight.detach(), module.bias.detach()
        sparse = to_sparse_semi_structured(w)
        dense_ms = cuda_ms(lambda: torch.nn.functional.linear(x, w, b), args.warmup, args.iters)  # noqa: B023
        sparse_ms = cuda_ms(lambda: torch.nn.functional.linear(x, sparse, b), args.warmup, args.iters)  # noqa: B023
        rows.append(row("linear", dtype_name, f"{out_f}x{in_f}", key, tokens, dense_ms, sparse_ms))
    ids = torch.randint(1000, 30000, (args.batch_size, args.seq_len), device="cuda")
    dense_ms = cuda_ms(lambda: model(input_ids=ids), args.warmup, args.iters)
    to_semi_structured(linears)
    sparse_ms = cuda_ms(lambda: model(input_ids=ids), args.warmup, args.iters)
    rows.append(row("encoder", dtype_name, "bert-base", "BertModel.forward", tokens, dense_ms, sparse_ms))
    return rows


def row(kind: str, dtype: str, shape: str, what: str, tokens: int, dense: float, sparse: float) -> dict:
    return {
        "kind": kind,
        "dtype": dtype,
        "shape": shape,
        "what": what,
        "tokens": tokens,
        "dense_ms": round(dense, 4),
        "sparse_2_4_ms": round(sparse, 4),
        "speedup": round(dense / sparse, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp16", "bf16"])
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument(
        "--backend", choices=["cusparselt", "cutlass"], default="cusparselt", help="torch's 2:4 kernel"
    )
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU: 2:4 sparse tensor cores need one (Ampere or newer); nothing measured")
        return 0
    from torch.sparse import SparseSemiStructuredTensor

    SparseSemiStructuredTensor._FORCE_CUTLASS = args.backend == "cutlass"  # torch's documented switch
    print(
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, backend {args.backend} "
        f"(cuSPARSELt built in: {torch.backends.cusparselt.is_available()})"
    )
    rows = [r for name in args.dtypes for r in measure(name, args)]
    print(
        f"{'kind':<8} {'dtype':<5} {'shape':<10} {'tokens':>7} {'dense ms':>9} {'2:4 ms':>9} {'speed-up':>8}"
    )
    for r in rows:
        print(
            f"{r['kind']:<8} {r['dtype']:<5} {r['shape']:<10} {r['tokens']:>7} "
            f"{r['dense_ms']:>9.3f} {r['sparse_2_4_ms']:>9.3f} {r['speedup']:>7.2f}x"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
