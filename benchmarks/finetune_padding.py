"""Fine-tuning step time with dynamic padding (pad each batch to its longest example) vs padding
every example to max_length, measured side by side in one run on real SST-2 / MRPC batches.

    python benchmarks/finetune_padding.py [--model DIR] [--data-dir GLUE_ROOT] [--steps 5]

Defaults: ../shared/models/bert-mini-ref and ../shared/data/glue. Prints seconds per optimizer step
and the ratio padded / dynamic per task (the speed-up ticketlab's collate gives on this machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ticketlab.models.load import load_tokenizer
from ticketlab.tasks.objective import load_task_model, task_objective
from ticketlab.train.determinism import batch_indices

SHARED = Path(__file__).resolve().parents[2] / "shared"


def step_time(model, obj, pad_to: int | None, steps: int, batch_size: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    model.train()
    times = []
    for step in range(steps + 1):  # the first step warms up and is not counted
        idx, _ = batch_indices(len(obj.dataset), batch_size, step, seed=0)
        batch = obj.collate_fn([obj.dataset[i] for i in idx], None)
        if pad_to is not None:  # what a fixed-length collate would hand over
            width = batch["input_ids"].shape[1]
            batch = {
                k: torch.nn.functional.pad(v, (0, pad_to - width)) if v.ndim == 2 else v
                for k, v in batch.items()
            }
        t0 = time.perf_counter()
        loss = obj.loss_fn(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(SHARED / "models" / "bert-mini-ref"))
    p.add_argument("--data-dir", default=str(SHARED / "data" / "glue"))
    p.add_argument("--tasks", nargs="+", default=["sst2", "mrpc"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    args = p.parse_args()
    torch.manual_seed(0)
    print(
        f"model {args.model}, batch {args.batch_size}, {args.steps} steps, {torch.get_num_threads()} threads"
    )
    print(
        f"{'task':<6} {'mean tokens':>11} {'dynamic s/step':>15} {'padded s/step':>14} {'padded/dynamic':>15}"
    )
    for task in args.tasks:
        model, _ = load_task_model(args.model, task, seed=0)
        obj = task_objective(task, load_tokenizer(args.model), args.data_dir, max_length=args.max_length)
        dyn = step_time(model, obj, None, args.steps, args.batch_size)
        pad = step_time(model, obj, args.max_length, args.steps, args.batch_size)
        mean_len = float(obj.dataset.lengths().mean())
        print(f"{task:<6} {mean_len:>11.1f} {dyn:>15.3f} {pad:>14.3f} {pad / dyn:>14.1f}x")


if __name__ == "__main__":
    main()
