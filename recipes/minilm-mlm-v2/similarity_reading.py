"""The mask-similarity readings of README "Mask similarity", from `curve_similarity.csv`: the
Jaccard with OMP's mask of TAMT's masks along their searches (the study's, this spec's plan), each
step's range over the search seeds, and the optimiser test (`similarity.yaml`, TAMT-KD with the
reference's BertAdam settings) read against those ranges by the rule written before it ran, once
each variant's 6 masks exist:

- above every TAMT-MLM mask's per-matrix Jaccard at 2,000 steps: the reference's optimiser settings
  are the reason (at this budget);
- above every default TAMT-KD mask's but not every TAMT-MLM one's: they account for part of it;
- otherwise (inside or below TAMT-KD's range): they are not the reason.

Rows of searches outside the study's plan (minilm-mlm's, made under other TAMT defaults) are left
out of the ranges and listed apart.

    PYTHONPATH=src python recipes/minilm-mlm-v2/similarity_reading.py
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parents[2] / "docs" / "results" / "minilm-mlm-v2"  # the study's record
CSV = HERE / "curve_similarity.csv"
STORE = HERE / "results.sqlite"
WAYS = ("omp_per_matrix", "omp_pooled", "omp_encoder")
TEST = "tamt-kd/bertadam"


def plan_ids(store: Path = STORE) -> set[str]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    row = db.execute("SELECT value FROM meta WHERE key = 'plan'").fetchone()
    return set(json.loads(row[0])) if row else set()


def ranges(rows: list[dict], way: str) -> dict[tuple[str, int], tuple[int, float, float]]:
    """(method, step) -> (masks, lowest, highest) of `way`."""
    by: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in rows:
        by[(r["method"], int(r["step"]))].append(float(r[way]))
    return {k: (len(v), min(v), max(v)) for k, v in sorted(by.items())}


MASKS = 6  # each variant's masks in the study: the ranges are read once all are there


def reading(test: float, kd: tuple[int, float, float], mlm: tuple[int, float, float]) -> str:
    if test > mlm[2]:
        return "above every TAMT-MLM mask: the reference's optimiser settings are the reason at this budget"
    if test > kd[2]:
        return "above TAMT-KD's range, not above every TAMT-MLM mask: they account for part of the order"
    return "inside or below TAMT-KD's range: the reference's optimiser settings are not the reason"


def main() -> None:
    rows = list(csv.DictReader(CSV.open()))
    plan = plan_ids()
    study = [r for r in rows if r["run_id"] in plan and r["method"] in ("tamt-mlm", "tamt-kd")]
    test = [r for r in rows if r["method"] == TEST]
    other = [r for r in rows if r not in study and r not in test]
    for way in WAYS:
        print(f"{way}: masks, lowest-highest Jaccard with OMP's mask")
        for (method, step), (n, lo, hi) in ranges(study, way).items():
            print(f"  {method:9s} {step:5d} steps: {n} masks, {lo:.4f}-{hi:.4f}")
        for r in sorted(test, key=lambda r: int(r["step"])):
            print(f"  {TEST} seed {r['search_seed']} {int(r['step']):5d} steps: {float(r[way]):.4f}")
    if other:
        print(f"left out (searches outside the study's plan): {len(other)} rows, e.g. {other[0]['method']}")
    final = ranges(study, "omp_per_matrix")
    kd, mlm = final.get(("tamt-kd", 2000)), final.get(("tamt-mlm", 2000))
    done = [float(r["omp_per_matrix"]) for r in test if int(r["step"]) == 2000]
    if not (kd and mlm and done) or min(kd[0], mlm[0]) < MASKS:
        print(f"reading: not yet (the study's {MASKS} TAMT-KD and {MASKS} TAMT-MLM masks and the test's)")
        return
    for value in done:
        print(f"reading (per matrix, 2,000 steps): {value:.4f}: {reading(value, kd, mlm)}")


if __name__ == "__main__":
    main()
