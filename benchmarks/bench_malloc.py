"""CPU training step with glibc's default allocator settings vs `ticketlab.core.memory`'s (freed
memory kept in the heap), side by side in one run.

    python benchmarks/bench_malloc.py                    # models/minilm-mlm, OMP 70%, SST-2's shape
    python benchmarks/bench_malloc.py --steps 20 --rounds 3 --dense

The allocator's settings are the process's, so each setting runs in its own child process (the
same script with --child), alternating over --rounds so that a busy machine slows both alike. A
child loads the model that ships (`models/minilm-mlm`) with a sequence-classification head, masks
it with OMP at --sparsity (word embeddings included, as TAMT prunes them; --dense: no mask), and
times --steps optimizer steps (AdamW, one random batch of --batch x --length tokens, dropout on)
after 3 warm-up steps, on one torch thread. Printed per setting: CPU seconds per step (user +
system: free of waiting on a shared machine), wall seconds per step, minor page faults per step and
the peak resident size; then the ratio default / kept of the CPU time (the median over rounds).
The loss after the last step is printed too: the settings change where memory comes from, not the
arithmetic, so it must be the same bit for bit.

Target: >= 1.05x less CPU per masked step on `models/minilm-mlm` (glibc, one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ticketlab.core.memory import USER_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "minilm-mlm"


def child(args: argparse.Namespace) -> dict:
    """One setting's timings (this process's allocator as the parent set it up)."""
    import torch

    from ticketlab.core.memory import keep_freed_memory
    from ticketlab.masks import apply_mask
    from ticketlab.methods.omp.prune import omp_mask
    from ticketlab.tasks.objective import load_task_model
    from ticketlab.tasks.registry import get_task

    kept = keep_freed_memory() if args.child == "kept" else False
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, _ = load_task_model(str(MODEL), get_task("sst2"), 0)
    if not args.dense:
        apply_mask(model, omp_mask(model, args.sparsity))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, model.config.vocab_size, (args.batch, args.length), generator=g)
    labels = torch.randint(0, 2, (args.batch,), generator=g)

    def step() -> float:
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    for _ in range(3):
        step()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return {
        "setting": args.child,
        "applied": kept,
        "cpu_s": cpu / args.steps,
        "wall_s": wall / args.steps,
        "faults": (r1.ru_minflt - r0.ru_minflt) / args.steps,
        "peak_mb": r1.ru_maxrss / 1024,  # KiB on Linux
        "loss": loss.hex(),
    }


def run_child(setting: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in (*USER_SETTINGS, "GLIBC_TUNABLES"):
        env.pop(k, None)  # the default setting is glibc's own, the kept one keep_freed_memory's
    cmd = [sys.executable, __file__, "--child", setting, *sys.argv[1:]]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: at least 1")
    return value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=positive, default=10)
    p.add_argument("--rounds", type=positive, default=2)
    p.add_argument("--batch", type=positive, default=32)
    p.add_argument("--length", type=positive, default=50, help="tokens per example (SST-2's batches: ~50)")
    p.add_argument("--sparsity", type=float, default=0.7)
    p.add_argument("--dense", action="store_true", help="no mask: the dense model's step")
    p.add_argument("--child", choices=("default", "kept"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    rows: dict[str, list[dict]] = {"default": [], "kept": []}
    for _ in range(args.rounds):
        for setting in rows:
            r = run_child(setting, args)
            rows[setting].append(r)
            note = "" if setting == "default" or r["applied"] else "  (not applied: allocator settings left)"
            print(
                f"{setting:8s} cpu {r['cpu_s']:.3f} s/step  wall {r['wall_s']:.3f} s/step  "
                f"page faults {r['faults']:.0f}/step  peak {r['peak_mb']:.0f} MB  loss {r['loss']}{note}",
                flush=True,
            )
    cpu = {s: statistics.median(r["cpu_s"] for r in rs) for s, rs in rows.items()}
    same = len({r["loss"] for rs in rows.values() for r in rs}) == 1
    what = "dense" if args.dense else f"OMP {args.sparsity:.0%}"
    print(
        f"{what}, {args.batch} x {args.length}: CPU per step default / kept = "
        f"{cpu['default'] / cpu['kept']:.3f}x (median of {args.rounds} rounds); "
        f"final loss {'identical' if same else 'DIFFERS'} across settings"
    )


if __name__ == "__main__":
    main()
