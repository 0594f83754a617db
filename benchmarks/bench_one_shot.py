"""Time Wanda and SparseGPT (`ticketlab prune wanda|sparsegpt`) on the project's model.

    python benchmarks/bench_one_shot.py                        # 128 x 128 tokens, 70% and 2:4
    python benchmarks/bench_one_shot.py --calibration 16       # a quick check that it runs

Both are one calibration pass: on `models/minilm-mlm` (6 layers, hidden 384) with 128 sequences of
128 tokens drawn from WikiText-2's valid.txt (`--corpus`), each should take under a minute on
2 CPU cores. The time printed is the pruning (`PruneResult.time_s`: the layer-by-layer pass and the
solver), then the whole call (the corpus's tokenizing, cached after the first run, and writing the
mask included). Run it on a quiet machine: a busy one slows every line alike. TAMT's search, for
scale, is thousands of optimizer steps of the whole model (`benchmarks/bench_mask_training.py`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from ticketlab.models.load import load_model
from ticketlab.verbs.prune import PruneConfig, prune

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "models" / "minilm-mlm"))
    p.add_argument("--corpus", default=str(SHARED / "data" / "wikitext-2" / "valid.txt"))
    p.add_argument("--calibration", type=int, default=128)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, head="base")  # loaded once: its time is not the method's
    print(f"{args.model}: {args.calibration} x {args.length} tokens of {args.corpus}, {args.threads} threads")
    print(f"{'method':<10} {'pattern':<8} {'sparsity':>8} {'prune s':>8} {'call s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("wanda", "sparsegpt"):
            for sparsity, pattern in ((0.7, None), (None, "2:4")):
                out = Path(tmp) / f"{method}-{pattern or sparsity}".replace(":", "-")
                t0 = time.perf_counter()
                done = prune(
                    PruneConfig(
                        args.model,
                        method,
                        sparsity,
                        out,
                        pattern=pattern,
                        corpus=[args.corpus],
                        calibration=args.calibration,
                        calibration_length=args.length,
                    ),
                    model=model,
                )
                call = time.perf_counter() - t0
                shape = pattern or "elem"
                print(f"{method:<10} {shape:<8} {done.mask.sparsity:>8.1%} {done.time_s:>8.1f} {call:>8.1f}")


if __name__ == "__main__":
    main()
