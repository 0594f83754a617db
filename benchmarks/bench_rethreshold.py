"""The re-threshold over a whole search, not only its first steps: TAMT's scores on the BERT-base shape
stepped by AdamW at TAMT-KD's learning rate, with gradients made of a fixed direction per score and
noise (no forward or backward: the re-threshold alone, in minutes).

    python benchmarks/bench_rethreshold.py                  # BERT-base, 700 steps, 2 threads
    python benchmarks/bench_rethreshold.py --threads 1 --layers 2

A search starts with every kept score at α·φ and every pruned one at 0, the cut between them: for its
first ~φ / lr steps (500 at TAMT-KD's 2e-5) no score reaches the cut, and the re-threshold is one count
of the scores at or above each cut (`bench_mask_training.py` times those steps). Then the kept scores
that the gradient pushes down meet the pruned ones pushed up, and from there on every matrix's count
moves at every step: each step settles every matrix in its band (`methods/tamt/band.py`). The fixed
direction per score makes that phase harsher than a search's (a real gradient changes sign), so its
figure is an upper bound. Printed: the median time per step before the first settle, and over the
last 100 steps, with how many matrices settled per step and how many selections from scratch there
were (`Thresholder.repair`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import BertConfig, BertForMaskedLM

from ticketlab.methods.tamt import band
from ticketlab.methods.tamt.search import Rethreshold, TamtConfig, make_thresholders, prepare_tamt
from ticketlab.train.optim import AdamW


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--layers", type=int, default=12, help="BERT-base's 12, or fewer for a quick look")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--noise", type=float, default=1.0, help="the noise's scale beside the fixed direction")
    return p.parse_args()


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(num_hidden_layers=args.layers)).train()
    config = TamtConfig(0.7, objective="kd")
    masks, groups = prepare_tamt(model, config)
    thresholders = make_thresholders(masks, 0.7, count=config.count)
    rethreshold = Rethreshold(thresholders)
    scores = groups[0]["params"]
    opt = AdamW(scores, lr=config.paper_lr)
    g = torch.Generator().manual_seed(1)
    direction = [torch.randn(s.shape, generator=g) for s in scores]
    # three draws of noise, one picked at random each step (a fresh draw of 85M a step would take
    # longer than all the rest)
    noises = [[torch.randn(s.shape, generator=g) * args.noise for s in scores] for _ in range(3)]
    settled, real = [0], band._settle

    def counted(*a, **k):
        settled[0] += 1
        return real(*a, **k)

    band._settle = counted
    times, settles = [], []
    for _ in range(args.steps):
        noise = noises[int(torch.randint(3, (), generator=g))]
        for s, d, n in zip(scores, direction, noise, strict=True):
            s.grad = d + n
        opt.step()
        settled[0] = 0
        t0 = time.perf_counter()
        rethreshold()
        times.append(time.perf_counter() - t0)
        settles.append(settled[0])
    report(args, times, settles, sum(t.fallbacks for t in thresholders), len(thresholders))


def report(args, times: list[float], settles: list[int], fallbacks: int, matrices: int) -> None:
    first = next((i for i, n in enumerate(settles) if n), len(settles))
    print(f"BERT-base shape, {args.layers} layers, {matrices} matrices, {args.threads} threads, lr TAMT-KD's")
    if first > 1:
        print(f"  steps 2-{first}, nothing moved:  {statistics.median(times[1:first]) * 1e3:6.1f} ms/step")
    tail = slice(max(first, len(times) - 100), len(times))
    if first < len(times):
        per = statistics.mean(settles[tail])
        print(
            f"  steps {tail.start + 1}-{len(times)}, settling:  {statistics.median(times[tail]) * 1e3:6.1f}"
            f" ms/step, {per:.1f} matrices settled a step"
        )
    print(f"  selections from scratch after the first: {fallbacks} (first settle at step {first + 1})")


if __name__ == "__main__":
    main()
