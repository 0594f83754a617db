"""Claim 2 (pre-training loss predicts the downstream score) on units that are not clustered: Spearman's
ρ over the 13 final masks (what the report tests), over the 5 method means (OMP, random, IMP,
TAMT-MLM, TAMT-KD: the masks of one method sit in a tight cluster, so 13 masks are not 13
independent units) and over the 9 searched masks alone (IMP, TAMT-MLM, TAMT-KD: random's floor
scores and high losses out).

A mask's score on a task is the mean of its fine-tuning seeds' reported scores (the store's
`score`, read on the 80% of dev that chose nothing); on the average, the mean over the tasks. A
method's value is the mean of its masks'. ρ and p are the report's own (`Correlation`: exact p by
enumerating the orderings up to 8 units, scipy's t approximation above). Exploratory: no family,
no Holm.

Usage (from the worktree's root):
    PYTHONPATH=src python recipes/minilm-mlm/loss_correlations.py
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from statistics import mean

from ticketlab.studies.report.loss_tests import Correlation

HERE = Path(__file__).resolve().parents[2] / "docs" / "results" / "minilm-mlm"  # the study's record
TASKS = ("sst2", "mrpc", "cola")
LOSSES = ("mlm_loss", "kd_loss")
SEARCHED = ("imp", "tamt-mlm", "tamt-kd")

Mask = tuple[str, int | None]  # (method, mask seed)


def final_losses() -> dict[Mask, dict[str, float]]:
    """Each final 70% mask's dev losses (`pretrain_losses.csv`; masks along a search left out)."""
    with (HERE / "pretrain_losses.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["method"] != "full" and r["search_steps"] in ("", "2000")]
    return {
        (r["method"], int(r["mask_seed"]) if r["mask_seed"] else None): {k: float(r[k]) for k in LOSSES}
        for r in rows
    }


def mask_scores() -> dict[Mask, dict[str, float]]:
    """Each mask's mean score over its fine-tuning seeds, per task and on their average."""
    db = sqlite3.connect(f"file:{HERE / 'results.sqlite'}?mode=ro", uri=True)
    plan = set(json.loads(db.execute("SELECT value FROM meta WHERE key = 'plan'").fetchone()[0]))
    runs: dict[Mask, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i, config, metrics in db.execute("SELECT id, config, metrics FROM runs WHERE kind = 'finetune'"):
        c = json.loads(config)
        if i in plan and c["method"] != "full" and metrics:
            runs[(c["method"], c["mask_seed"])][c["task"]].append(json.loads(metrics)["score"])
    db.close()
    out = {}
    for mask, per_task in runs.items():
        out[mask] = {t: mean(per_task[t]) for t in TASKS}
        out[mask]["avg"] = mean(out[mask][t] for t in TASKS)
    return out


def correlation(units: list, losses: dict, scores: dict, loss: str, task: str) -> Correlation:
    return Correlation(
        loss,
        task,
        [str(u) for u in units],
        [losses[u][loss] for u in units],
        [scores[u][task] for u in units],
        [],
    )


def method_means(values: dict[Mask, dict[str, float]]) -> dict[str, dict[str, float]]:
    by: dict[str, list[dict[str, float]]] = defaultdict(list)
    for (method, _), v in values.items():
        by[method].append(v)
    return {m: {k: mean(v[k] for v in vs) for k in vs[0]} for m, vs in by.items()}


def main() -> None:
    losses, scores = final_losses(), mask_scores()
    masks = sorted(losses, key=str)
    units = {
        "13 final masks": (masks, losses, scores),
        "5 method means": (sorted(method_means(losses)), method_means(losses), method_means(scores)),
        "9 searched masks": ([m for m in masks if m[0] in SEARCHED], losses, scores),
    }
    print(f"{'units':<17} {'loss':<8} {'task':<5} {'rho':>6} {'p':>7}")
    for name, (keys, ls, ss) in units.items():
        for loss in LOSSES:
            for task in (*TASKS, "avg"):
                c = correlation(keys, ls, ss, loss, task)
                print(f"{name:<17} {loss:<8} {task:<5} {c.rho:>+6.3f} {c.p:>7.4f}")


if __name__ == "__main__":
    main()
