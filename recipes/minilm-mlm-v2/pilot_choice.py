"""The pilot's rule, applied to its store (README "The fine-tuning protocol: the pilot"): per task, on
the selection half's last evaluation, the mean of the seeds: at each learning rate L is kept if 3L is
within 1 point of it, else 3L; among the learning rates, the higher at the length kept. Prints each
setting's scores (both halves) and the choice, and the full model's fine-tuning-seed SD per task:
the within-setting SD pooled over the task's settings (a run's score there: the mean of its two
halves, which for accuracy is its whole-dev score to within one example; for Matthews and Pearson a
close stand-in), the number the study's power planning uses. Given pilot-9L's store too, the
protocol against itself at 3x its steps (9L - 3L, both halves); only L and 3L choose.

    PYTHONPATH=src python recipes/minilm-mlm-v2/pilot_choice.py [STORE ...]
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics as st
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parents[2] / "docs" / "results" / "minilm-mlm-v2"  # the study's record
STORES = (HERE / "pilot" / "results.sqlite", HERE / "pilot-9L" / "results.sqlite")
LABEL = re.compile(r"^(?P<task>[a-z0-9]+)-(?P<lr>[0-9.e-]+)-(?P<length>L|3L|9L)$")
WITHIN = 1.0  # points: 3L within this of L keeps L


def runs(*stores: Path) -> dict[tuple[str, str, str], list[dict]]:
    """(task, lr, length) -> per fine-tuning seed {seed, steps, select, other} of the done runs."""
    out: dict = defaultdict(list)
    query = "SELECT config, metrics FROM runs WHERE kind = 'finetune' AND status = 'done'"
    rows = [r for store in stores for r in sqlite3.connect(f"file:{store}?mode=ro", uri=True).execute(query)]
    for c, m in rows:
        c, m = json.loads(c), json.loads(m)
        label = LABEL.match(c["task_label"])
        final, metric = m["final"], m["metric"]
        out[(label["task"], label["lr"], label["length"])].append(
            {
                "seed": c["seed"],
                "steps": final["step"],
                "select": final[f"select_{metric}"],
                "other": final[metric],
            }
        )
    return out


def mean(rows: list[dict], key: str) -> float:
    return st.mean(r[key] for r in rows)


def choose(by: dict, task: str) -> tuple[str, str] | None:
    """(lr, length) the rule picks for `task`, or None while a setting has fewer than 2 seeds."""
    lrs = sorted({lr for t, lr, _ in by if t == task}, key=float)
    kept = {}
    for lr in lrs:
        short, long_ = by.get((task, lr, "L"), []), by.get((task, lr, "3L"), [])
        if len(short) < 2 or len(long_) < 2:
            return None
        gain = mean(long_, "select") - mean(short, "select")
        kept[lr] = ("L", mean(short, "select")) if abs(gain) <= WITHIN else ("3L", mean(long_, "select"))
    lr = max(lrs, key=lambda x: kept[x][1])
    return lr, kept[lr][0]


def seed_sd(by: dict, task: str) -> tuple[float, int] | None:
    """The within-setting SD of a run's score (mean of its halves), pooled over `task`'s settings,
    and its degrees of freedom."""
    ss, df = 0.0, 0
    for (t, _, length), rows in by.items():
        if t == task and len(rows) > 1 and length != "9L":  # the pilot's settings only
            scores = [(r["select"] + r["other"]) / 2 for r in rows]
            ss += st.variance(scores) * (len(rows) - 1)
            df += len(rows) - 1
    return ((ss / df) ** 0.5, df) if df else None


def main(stores: list[Path]) -> None:
    by = runs(*stores)
    for task in dict.fromkeys(t for t, _, _ in sorted(by)):
        print(f"{task}:")
        for (t, lr, length), rows in sorted(by.items(), key=lambda kv: (float(kv[0][1]), kv[0][2] != "L")):
            if t == task:
                sel = ", ".join(f"{r['select']:.2f}" for r in sorted(rows, key=lambda r: r["seed"]))
                print(
                    f"  lr {lr} {length:2s} ({rows[0]['steps']} steps, {len(rows)} seeds): selection half "
                    f"{mean(rows, 'select'):.2f} [{sel}], other half {mean(rows, 'other'):.2f}"
                )
        choice, sd = choose(by, task), seed_sd(by, task)
        print(f"  choice: {'pending (a setting has < 2 seeds)' if choice is None else ' '.join(choice)}")
        if choice is not None and choice[1] == "3L" and len(nine := by.get((task, choice[0], "9L"), [])) > 1:
            three = by[(task, choice[0], "3L")]
            gains = [f"{mean(nine, h) - mean(three, h):+.2f}" for h in ("select", "other")]
            print(f"  9L - 3L at lr {choice[0]}: selection half {gains[0]}, other half {gains[1]}")
        if sd is not None:
            print(f"  full model's seed SD (pooled within settings): {sd[0]:.2f} ({sd[1]} df)")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]] or [s for s in STORES if s.is_file()])
