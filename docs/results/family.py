"""The README's one family of tests: every test of the committed reports re-rendered under issue 35's
rules (Welch on the means of per-mask means), Holm-corrected together. Writes `family.csv`.

    PYTHONPATH=src python docs/results/family.py

A test two studies share (the same runs: imp-variants reuses bert-mini-ref's OMP and TAMT-KD rows) counts
once. The super-ticket studies on bert-mini-ref (`super-tickets/bert-mini-ref-3seeds`) have no committed
store, so their `paired.csv` is the earlier design's and is not in the family.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ticketlab.tasks.metrics import holm

HERE = Path(__file__).parent
REPORTS = [
    "bert-mini-ref",
    "all-minilm-l6-v2",
    "imp-variants",
    "imp-variants-minilm",
    "mask-init",
    "data-scarcity",
    "super-tickets/minilm-sst2-3seeds/sst2",
]
KEEP = ("a", "b", "sparsity", "task", "train_size", "masks_a", "seeds_a", "masks_b", "seeds_b")
NUMBERS = ("mean_diff", "se_diff", "p_welch", "p_holm", "mde80", "verdict", "labels")


def family() -> list[dict]:
    """Every distinct test of the `REPORTS`' paired.csv, with its p Holm-corrected over all of them."""
    rows, seen = [], set()
    for study in REPORTS:
        with open(HERE / study / "paired.csv") as f:
            for r in csv.DictReader(f):
                key = frozenset(r["run_ids"].split())
                if not r["p_welch"] or key in seen:
                    continue
                seen.add(key)
                rows.append(
                    {"study": study} | {k: r.get(k, "main") for k in KEEP} | {k: r[k] for k in NUMBERS}
                )
    for r, p in zip(rows, holm([float(r["p_welch"]) for r in rows]), strict=True):
        r["p_holm_readme"] = f"{p:.4f}"
        r["holds"] = p < 0.05
    return rows


def write(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    rows = family()
    write(rows, HERE / "family.csv")
    print(f"{len(rows)} tests, {sum(r['holds'] for r in rows)} hold after Holm over all of them")


if __name__ == "__main__":
    main()
