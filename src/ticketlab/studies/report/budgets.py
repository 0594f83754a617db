"""A sweep's search and fine-tuning budgets as a fraction of the papers' (`budget_rows`, for the report's
header): a negative result at a small fraction of the paper's budget says "not shown at this budget",
not "does not reproduce".

The papers' budgets (Liu et al. 2022, Tables 1 and 2): TAMT searched 11K, 17K and 22K steps for 50%,
70% and 90% sparsity (3K-22K over 20-90%), IMP 2.79K steps per 10% of sparsity (11.17K for 50%), each at
batch 16 of 512-token sequences; fine-tuning is 3 epochs of the whole training set at batch 32 (GLUE).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..sweep.methods import base_method
from .cells import method_label

PAPER_BATCH, PAPER_LENGTH = 16, 512  # search: sequences per step, tokens per sequence
TAMT_STEPS = {0.2: 3000, 0.3: 6000, 0.4: 8000, 0.5: 11000, 0.6: 14000, 0.7: 17000, 0.8: 20000, 0.9: 22000}
IMP_STEPS_PER_TENTH = 2792  # Liu et al.: 27.92K steps for 2 epochs, one pruning of 10% per 2.792K
FINETUNE_EPOCHS, FINETUNE_BATCH = 3, 32
# Training-set sizes of the GLUE tasks (the papers fine-tune on all of each).
GLUE_TRAIN = {
    "sst2": 67349,
    "cola": 8551,
    "mrpc": 3668,
    "rte": 2490,
    "stsb": 5749,
    "qnli": 104743,
    "qqp": 363846,
    "mnli": 392702,
}


def paper_search_steps(method: str, sparsity: float) -> float | None:
    """The paper's search steps for `method` at `sparsity` (TAMT: Table 2, linear between its
    points; IMP: 2.792K per 10% after the first pruning at step 0), None for a method it did not search."""
    base = base_method(method)
    if base == "imp":
        return max(0.0, sparsity * 10 - 1) * IMP_STEPS_PER_TENTH
    if not base.startswith("tamt"):
        return None
    points = sorted(TAMT_STEPS.items())
    if sparsity <= points[0][0]:
        return points[0][1] * sparsity / points[0][0]
    for (s0, n0), (s1, n1) in zip(points, points[1:], strict=False):
        if sparsity <= s1:
            return n0 + (n1 - n0) * (sparsity - s0) / (s1 - s0)
    return float(points[-1][1])


def _ratio(ours: float, paper: float) -> str:
    """'1/85' (or '2.0x' at or above the paper's)."""
    if ours <= 0 or paper <= 0:
        return "—"
    return f"{ours / paper:.1f}x" if ours >= paper else f"1/{paper / ours:.0f}"


def search_rows(searches: list[Any]) -> list[list[str]]:
    """Per (method, sparsity) searched: steps and tokens against the paper's, as a fraction."""
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for r in searches:
        groups[(method_label(r.config), r.config["sparsity"])].append(r)
    rows = []
    for (method, s), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        paper = paper_search_steps(method, s)
        steps = max((r.metrics.get("steps") or r.config.get("steps") or 0) for r in runs)
        settings = runs[0].config.get("settings") or {}
        batch, length = settings.get("batch_size"), settings.get("max_length")
        if paper is None or not steps:
            continue
        tokens = steps * batch * length if batch and length else None
        paper_tokens = paper * PAPER_BATCH * PAPER_LENGTH
        rows.append(
            [
                method,
                f"{round(s * 100, 4):g}%",
                f"{steps:g} × {batch or '?'} × {length or '?'}",
                f"{paper / 1000:.1f}K × {PAPER_BATCH} × {PAPER_LENGTH}",
                _ratio(steps, paper),
                "—" if tokens is None else _ratio(tokens, paper_tokens),
            ]
        )
    return rows


def finetune_rows(finetunes: list[Any]) -> list[list[str]]:
    """Per task and training-set size: examples seen (steps × batch) against the paper's 3 epochs of
    the whole training set at batch 32, as a fraction."""
    groups: dict[tuple[str, str, int | None], list[Any]] = defaultdict(list)
    for r in finetunes:
        groups[(r.config["task_label"], r.config["task"], r.config.get("train_size"))].append(r)
    rows = []
    for (label, task, size), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2] or 0)):
        full = GLUE_TRAIN.get(task)
        steps = max(int(r.metrics.get("steps") or 0) for r in runs)
        batch = (runs[0].config.get("settings") or {}).get("batch_size")
        if full is None or not steps or not batch:
            continue
        paper_steps = FINETUNE_EPOCHS * full / FINETUNE_BATCH
        rows.append(
            [
                label,
                "all" if size is None else str(size),
                f"{steps} × {batch}",
                f"{steps * batch / (size or full):.2g}",
                f"{paper_steps:,.0f} × {FINETUNE_BATCH} (3 epochs of {full:,})",
                _ratio(steps * batch, paper_steps * FINETUNE_BATCH),
            ]
        )
    return rows
