"""An exploratory family of every test of the committed reports, Holm-corrected together: a reading
across studies, not a test of any one's claims. A study states its own family, the claims its spec
declared before its runs (`ticketlab.studies.sweep.declared`); this one grows with every study and
so weakens all of them, which is why it decides nothing. It holds: the downstream comparisons
(`paired.csv`: Welch on the means of per-mask means) and the tests of TAMT's claims on
pre-training loss (`pretrain_tests.csv`: loss at equal steps, Spearman's rho of loss and score,
loss along a search). Writes `family.csv`:
`significant` where p (Holm over the family) < 0.05, and its `direction` (a loss claim as claimed or
against it; a downstream difference `a > b` or `a < b`). Holm reads each test's unrounded p (the
reports write it in full: p rounded to 4 places can cross a Holm threshold).

    PYTHONPATH=src python recipes/family.py

A test two studies share (the same runs: imp-variants reuses bert-mini-ref's OMP and TAMT-KD rows) counts
once. The super-ticket studies on bert-mini-ref (`super-tickets/bert-mini-ref-3seeds`) have no committed
store, so their `paired.csv` is the earlier design's and is not in the family.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ticketlab.studies.stats import holm

HERE = Path(__file__).resolve().parents[1] / "docs" / "results"  # the studies' records
REPORTS = [
    "bert-mini-ref",
    "all-minilm-l6-v2",
    "imp-variants",
    "imp-variants-minilm",
    "mask-init",
    "data-scarcity",
    "super-tickets/minilm-sst2-3seeds/sst2",
    "minilm-mlm",
]
KEEP = ("a", "b", "sparsity", "task", "train_size", "masks_a", "seeds_a", "masks_b", "seeds_b")
# a loss test's search steps per side: the search-cost rows of one pair differ only in them
STEPS = ("steps_a", "steps_b")
NUMBERS = ("mean_diff", "se_diff", "p", "p_holm", "mde80", "verdict", "labels")
# pretrain_tests.csv's columns under paired.csv's names (a Spearman row: estimate = rho, no b, no SE)
CLAIM_COLUMNS = {"mean_diff": "estimate", "se_diff": "se"}


def _downstream(study: str, r: dict) -> dict:
    if "p" not in r:  # all-minilm-l6-v2's paired.csv is not re-rendered here: its p are Welch's
        r = r | {"p": r["p_welch"]}
    return (
        {"study": study, "test": "downstream", "loss": ""}
        | {k: r.get(k, "main") for k in KEEP}
        | dict.fromkeys(STEPS, "")
        | {k: r[k] for k in NUMBERS}
    )


def _claim(study: str, r: dict) -> dict:
    kept = {k: r.get(k, "") for k in KEEP} | {"train_size": "main"}
    return (
        {"study": study, "test": r["part"], "loss": r["loss"]}
        | kept
        | {k: r.get(k, "") for k in STEPS}
        | {k: r[CLAIM_COLUMNS.get(k, k)] for k in NUMBERS}
    )


def family() -> list[dict]:
    """Every distinct test of the `REPORTS`' paired.csv and pretrain_tests.csv, with its p
    Holm-corrected over all of them; a test two studies share (the same runs) counts once."""
    rows, seen = [], set()
    for study in REPORTS:
        for name, p_column, row in (
            ("paired.csv", "p", _downstream),
            ("pretrain_tests.csv", "p", _claim),
        ):
            if not (HERE / study / name).is_file():
                continue
            with open(HERE / study / name) as f:
                for r in csv.DictReader(f):
                    what = (r.get("part", ""), r.get("loss", ""), r.get("task", ""), r.get("sparsity", ""))
                    key = (name, what, frozenset(r["run_ids"].split()))
                    if not r.get(p_column, r.get("p_welch")) or key in seen:
                        continue
                    seen.add(key)
                    rows.append(row(study, r))
    for r, p in zip(rows, holm([float(r["p"]) for r in rows]), strict=True):
        r["p_holm_readme"] = f"{p:.4f}"
        r["significant"], r["direction"] = p < 0.05, _direction(r) if p < 0.05 else ""
    return rows


def _direction(r: dict) -> str:
    """Which way a test went: a loss claim (a negative estimate: lower loss, rho < 0) as claimed or
    against it; a downstream difference by its sign (some pairs have no claimed order: a variant
    against its method, random against OMP)."""
    x = float(r["mean_diff"])
    if r["test"] != "downstream":
        return "as claimed" if x < 0 else "against the claim"
    return f"{r['a']} {'>' if x > 0 else '<'} {r['b']}"


def write(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    rows = family()
    write(rows, HERE / "family.csv")
    found = [r for r in rows if r["significant"]]
    print(f"exploratory: {len(rows)} tests, {len(found)} with p (Holm over all of them) < 0.05")
    for r in found:
        print(
            f"  {r['study']}: {r['test']} {r['loss']} {r['a']} {r['b']} {r['sparsity']} {r['task']} "
            f"{r['steps_a']}: "
            f"{r['mean_diff']} (p Holm {r['p_holm_readme']}; {r['direction']})"
        )


if __name__ == "__main__":
    main()
