"""Cost of mask training: one TAMT step vs one dense MLM training step, same model and batch.

    python benchmarks/bench_mask_training.py                       # bert-mini-ref, batch 16 x 128
    python benchmarks/bench_mask_training.py --model bert-base --batch-size 4 --steps 15
    python benchmarks/bench_mask_training.py --memory              # peak memory, one process each
    python benchmarks/bench_mask_training.py --model bert-base --batch-size 32 --autocast bfloat16  # GPU
    ... --syncs / --profile                                        # host syncs by line / top operators
    ... --compile                                                  # every row under torch.compile

A step is what `train.loop.train` does per optimizer step: forward + backward of the loss, gradient
clipping, AdamW step and, for TAMT, the exact re-thresholding of every mask. Dense = all weights
train on MLM (masked positions only, the same loss code). TAMT-MLM trains the scores and the MLM
head; TAMT-KD trains the scores with the KD loss (one extra teacher forward, no MLM head).
`tamt-mlm-ib` is TAMT-MLM with the optimizer stepped inside the backward (`--optimizer-in-backward`:
no clipping, less memory); `-bf16` rows keep the scores, their gradients and moments in bf16
(`--score-dtype bfloat16`: stochastic rounding, 6 bytes less per target weight); `-flat` rows keep
all scores in one buffer (`scores.FlatScores`: the same bits, one optimizer step and one count
over all scores instead of one per matrix; opt-in, as it is no faster on a GPU and slower on a
CPU). The peer rows are TAMT as its reference implementation does it (`peer_tamt.py`:
clone-and-index binariser, MLM head over every position, threshold by a full kthvalue every step,
or every 1000 steps as the reference does, so not inside the timed window). `--compile` takes the dense,
TAMT-MLM, TAMT-KD and bf16 rows' whole step (forward, loss, backward, clipping, AdamW and, for TAMT,
the re-threshold's part of fixed shapes) as one graph (`train.whole_step.WholeStep`,
`torch.compile(fullgraph=True)`), as `ticketlab search --compile` does: dense and TAMT get the same
treatment. The MLM loss then runs the head over every position (a shape that does not depend on
the batch), and the losses are not read back. The other rows (optimizer in the backward, flat
buffer, peers) compile their forward and loss as the training loop's `compile=True` does, and TAMT's
re-threshold (`thresholds.settle`) as one graph. On a GPU the step is bound by the host's kernel
launches, which compiling fuses into fewer (on an H100, compiling the model and loss alone took
TAMT-MLM's step from 90 to 59 ms: docs/results/benchmarks.md); compiling happens in the warm-up
steps and takes minutes per model there, so give it some. Each TAMT row prints the re-threshold's
time per step (a whole compiled step holds its settle: the time printed is then its repair outside
the graph, reading one flag) and how many of its matrix-steps were settled from scratch
(`Thresholder.repair`: rare by design).
All methods are timed interleaved in one process (median and minimum of --steps after --warmup),
so a busy machine slows them alike; ratios are printed against dense (on a shared machine the
minimum is the steadier estimate: contention only ever adds time). `--memory` runs each method in
its own subprocess and reports the peak resident memory of its training steps (ru_maxrss, restarted
after the set-up where Linux allows; on a GPU, torch's peak allocated memory); the memory held
before the model was built and the set-up's own peak are printed too. The children run with
glibc's `MALLOC_MMAP_THRESHOLD_=131072` unless it is set: every tensor over 128 KB then has pages of
its own, given back when it is freed, so that RSS follows the live tensors. With glibc's default,
freed gradients and activations stay resident, by amounts that vary from run to run (dense BERT-base
peaks 420 MB higher, TAMT-KD 240-400 MB). `--model bert-base`
is a randomly initialised BERT-base shape (12 x 768, vocabulary 30522) with the bert-mini-ref
tokenizer. Targets at BERT-base, 2 CPU threads: TAMT-MLM <= 1.05x and TAMT-KD <= 1.35x a dense
step; TAMT peak memory <= dense + 4 bytes per target weight, and <= dense with the optimizer in the
backward.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mask_training_rows import METHODS, MINI, Runner, make_batch, make_runner  # noqa: E402
from ticketlab.models.load import load_tokenizer  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_methods(args) -> dict:
    tokenizer = load_tokenizer(MINI if args.model == "bert-base" else args.model)
    batch = make_batch(tokenizer, args.batch_size, args.length)
    methods = args.methods
    runners = {m: make_runner(m, args.model, args.lr) for m in methods}
    device = torch.device(args.device)
    for r in runners.values():
        r.to(device, args.autocast, args.compile)
    batch = {k: v.to(device) for k, v in batch.items()}
    times: dict[str, list[float]] = {m: [] for m in methods}
    for rep in range(args.warmup + args.steps):
        k = rep % len(methods)
        order = methods[k:] + methods[:k]  # rotate, so no method always runs first
        for m in order:
            sync(device)
            t0 = time.perf_counter()
            runners[m].step(batch)
            sync(device)
            if rep >= args.warmup:
                times[m].append(time.perf_counter() - t0)
    med = {m: statistics.median(v) for m, v in times.items()}
    low = {m: min(v) for m, v in times.items()}
    rethreshold = {m: statistics.median(runners[m].rethreshold_s[args.warmup :]) for m in methods[1:]}
    fallbacks = {  # selections from scratch after the first, over the matrix-steps (`Thresholder.repair`)
        m: [
            sum(getattr(t, "fallbacks", 0) for t in runners[m].thresholders),
            len(runners[m].thresholders) * runners[m].steps,
        ]
        for m in methods[1:]
        if runners[m].thresholders
    }
    return {
        "model": args.model,
        "batch": [args.batch_size, args.length],
        "device": str(device),
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "lr": args.lr,
        "median_s": med,
        "min_s": low,
        "all_s": times,
        "ratio_to_dense": {m: med[m] / med["dense"] for m in methods},
        "ratio_to_dense_min": {m: low[m] / low["dense"] for m in methods},
        "rethreshold_s": rethreshold,
        "rethreshold_fallbacks": fallbacks,
    }


def _setup(args, method: str) -> tuple[Runner, dict[str, torch.Tensor]]:
    """One method's runner and the batch on the device, after --warmup steps."""
    tokenizer = load_tokenizer(MINI if args.model == "bert-base" else args.model)
    device = torch.device(args.device)
    batch = {k: v.to(device) for k, v in make_batch(tokenizer, args.batch_size, args.length).items()}
    runner = make_runner(method, args.model, args.lr).to(device, args.autocast, args.compile)
    for _ in range(args.warmup):
        runner.step(batch)
    return runner, batch


def count_syncs(args) -> dict[str, dict[str, float]]:
    """Host synchronisations per step on a GPU (`torch.cuda.set_sync_debug_mode`), by source line:
    each one stalls the CPU until the GPU has drained its queue."""
    out = {}
    for m in args.methods:
        runner, batch = _setup(args, m)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(args.steps):
                    runner.step(batch)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        where = collections.Counter(
            f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)
        )
        out[m] = {k: n / args.steps for k, n in where.most_common()}
    return out


def profile(args) -> None:
    """torch.profiler's top operators (self time) over --steps steps of each method."""
    from torch.profiler import ProfilerActivity, profile

    gpu = args.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    for m in args.methods:
        runner, batch = _setup(args, m)
        with profile(activities=activities) as prof:
            for _ in range(args.steps):
                runner.step(batch)
            if gpu:
                torch.cuda.synchronize()
        key = "self_cuda_time_total" if gpu else "self_cpu_time_total"
        print(f"== {m}: {args.steps} steps, sorted by {key}")
        print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=50))


def memory_child(args) -> None:
    """Run one method in this (fresh) process and print its peak memory as JSON."""
    tokenizer = load_tokenizer(MINI if args.model == "bert-base" else args.model)
    batch = make_batch(tokenizer, args.batch_size, args.length)
    device = torch.device(args.device)
    base_rss = _rss_now_mb()  # libraries and data loaded, no model yet
    runner = make_runner(args.child, args.model, args.lr).to(device, args.autocast)
    batch = {k: v.to(device) for k, v in batch.items()}
    setup_rss = _peak_rss_mb()  # building the model and the masks has transients of its own
    training_only = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated() / 2**20
    for _ in range(args.warmup + 2):
        runner.step(batch)
    out = {"method": args.child, "peak_rss_mb": _peak_rss_mb(), "rss_before_model_mb": base_rss}
    out |= {"setup_peak_rss_mb": setup_rss, "peak_rss_is_training_only": training_only}
    if args.child != "dense":  # the scores are the first param group: one per target weight
        out["target_weights"] = sum(p.numel() for p in runner.opt.param_groups[0]["params"])
    if device.type == "cuda":
        out.update(peak_cuda_mb=torch.cuda.max_memory_allocated() / 2**20, cuda_after_load_mb=base_cuda)
    print(json.dumps(out))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _reset_peak_rss() -> bool:
    """Restart the peak-RSS count (Linux: clear_refs 5), so the peak is that of the training steps."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure_memory(args) -> dict:
    rows = {}
    for m in args.methods:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            m,
            "--model",
            args.model,
            "--batch-size",
            str(args.batch_size),
        ]
        cmd += ["--length", str(args.length), "--threads", str(args.threads), "--device", args.device]
        cmd += ["--warmup", str(args.warmup), "--autocast", args.autocast]
        cmd += ["--lr", str(args.lr)] if args.lr else []
        env = {"MALLOC_MMAP_THRESHOLD_": "131072", **os.environ}  # RSS follows live tensors (see above)
        run = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        out = run.stdout.strip().splitlines()[-1]
        rows[m] = json.loads(out)
    key = "peak_cuda_mb" if "peak_cuda_mb" in rows["dense"] else "peak_rss_mb"
    return {
        "model": args.model,
        "batch": [args.batch_size, args.length],
        "metric": key,
        "rows": rows,
        "ratio_to_dense": {m: rows[m][key] / rows["dense"][key] for m in args.methods},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(MINI), help="model dir, or 'bert-base' (random BERT-base shape)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--steps", type=int, default=7, help="timed steps per method (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--lr", type=float, help="score learning rate (default: the search's, Table 1)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--autocast", choices=("no", "bfloat16"), default="no", help="the forward's autocast")
    p.add_argument("--memory", action="store_true", help="peak memory per method (subprocesses)")
    p.add_argument("--syncs", action="store_true", help="GPU: host synchronisations per step, by line")
    p.add_argument("--profile", action="store_true", help="torch.profiler's top operators per method")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile each row's whole step as one graph (forward and loss only where it cannot)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="rows (dense first)")
    p.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        memory_child(args)
        return
    if args.profile:
        profile(args)
        return
    if args.syncs:
        print(json.dumps(count_syncs(args), indent=2))
        return
    result = measure_memory(args) if args.memory else time_methods(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    batch, lr = result["batch"], args.lr or "default"
    compiled = ", torch.compile (whole step as one graph where it can)" if args.compile else ""
    print(f"model {result['model']}, batch {batch[0]} x {batch[1]}, lr {lr}{compiled}")
    if args.memory:
        print_memory(result)
    else:
        print_times(result, args.methods)


def print_memory(result: dict) -> None:
    """One line per method: its peak, what it held before, and its extra bytes per target weight."""
    dense = result["rows"]["dense"][result["metric"]]
    for m, row in result["rows"].items():
        before = row.get("rss_before_model_mb", 0.0)
        peak, ratio = row[result["metric"]], result["ratio_to_dense"][m]
        extra = (peak - dense) * 2**20 / row["target_weights"] if m != "dense" else None
        per = f"   {extra:+.2f} B per target weight" if extra is not None else ""
        setup = row.get("setup_peak_rss_mb")
        print(
            f"  {m:<16} peak {peak:7.0f} MB (before the model: {before:.0f} MB, set-up peak "
            f"{setup:.0f} MB)   ratio {ratio:.3f}{per}"
        )


def print_times(result: dict, methods: list[str]) -> None:
    """One line per method: median and minimum step time, their ratios to dense, the re-threshold's."""
    for m in methods:
        med, low = result["median_s"][m], result["min_s"][m]
        ratio, ratio_min = result["ratio_to_dense"][m], result["ratio_to_dense_min"][m]
        line = f"  {m:<13} median {med:7.3f} s/step (ratio {ratio:.3f})"
        line += f"  min {low:7.3f} s (ratio {ratio_min:.3f})"
        if m in result["rethreshold_s"]:
            line += f"  re-threshold {result['rethreshold_s'][m] * 1e3:.0f} ms"
        if m in result["rethreshold_fallbacks"]:
            done, of = result["rethreshold_fallbacks"][m]
            line += f" ({done} from scratch in {of} matrix-steps)"
        print(line)


if __name__ == "__main__":
    main()
