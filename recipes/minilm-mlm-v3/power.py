"""The units of minilm-mlm-v3, sized by power from minilm-mlm-v2's store.

A unit of a searched method is one mask with its own fine-tuning seed (a sweep draws it per mask);
of OMP (one deterministic mask a sparsity) one fine-tuning seed. Each declared claim is Welch's t on
unit means at alpha = 0.05 / 4 (Holm's first step over the four claims), 80% power: its MDE is
`studies.stats.detectable_effect(SE, df)`, SE and Satterthwaite's df from the design's variances.
The endpoint of one fine-tuning is the mean of SST-2 accuracy, CoLA MCC and STS-B Pearson, each its
run's last evaluation, at minilm-mlm-v2's protocol (this study's).

- At 70%, from minilm-mlm-v2 (`--store`): within a mask, the variance between fine-tuning seeds
  pooled over its searched methods (IMP, TAMT-MLM, TAMT-KD, 2 seeds a mask); OMP's over its 10 seeds.
  Between masks, v2's REML mask component (0.109 points^2): its one-way ANOVA puts the component at
  or below 0, and 0 would size the study on the luckiest reading.
- At 90%, nothing had been fine-tuned at this protocol: every variance there is the 70% one times
  f, shown at f = 1, 2, 3; with `--study` (this study's store), f is also read from OMP's seeds at
  90% against v2's OMP seeds at 70% (at least 1). That the ratio carries over from OMP to the
  searched methods is an assumption; the verdicts' MDEs are computed on the study's own units.

Core-hours from v2's `provenance.wall_s` on the machine this study runs on (`cpu: AVX2`, two sweeps
on two cores): a fine-tuning on the three tasks 1.6 (0.56 + 0.53 + 0.51), any method's; a search
TAMT-KD 1.87, IMP 1.8 (v2's 1.34 on the other machine x TAMT-KD's ratio between them, 1.33); Wanda's
seconds. The runs v2 holds are reused: its TAMT-KD searches at 70%, the full model's, OMP's at 70%
and random's fine-tunings at their pinned seeds.

    PYTHONPATH=src python recipes/minilm-mlm-v3/power.py [--store S]
    PYTHONPATH=src python recipes/minilm-mlm-v3/power.py --study docs/results/minilm-mlm-v3/results.sqlite
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics as st
from collections import defaultdict

from ticketlab.studies.stats import detectable_effect, welch

ALPHA = 0.05 / 4
PROTOCOL = {"sst2": 3, "cola": 6, "stsb": 3}  # each task's epochs at lr 1e-4 (v2's spec)
MASK_VAR = 0.109  # v2's REML mask component, points^2
HOURS = {"finetune": 1.6, "imp": 1.8, "tamt-kd": 1.87}  # core-hours a unit (3 tasks) / a search
V2 = "docs/results/minilm-mlm-v2/results.sqlite"


def scores(store: str) -> list[dict]:
    """Each done fine-tuning of a store: its method, sparsity, seeds, task, lr, epochs and score."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        rows = db.execute("select config, metrics from runs where kind = 'finetune' and status = 'done'")
        out = []
        for cfg_text, metrics in rows:
            cfg = json.loads(cfg_text)
            s = cfg["settings"]
            out.append(
                {
                    **{k: cfg.get(k) for k in ("method", "sparsity", "mask_seed", "seed", "task")},
                    "lr": s.get("lr"),
                    "epochs": s.get("epochs"),
                    "score": json.loads(metrics)["score"],
                    "select_fraction": s.get("select_fraction"),
                }
            )
    return out


def endpoints(rows: list[dict], sparsity: float) -> dict[tuple[str, int | None], list[float]]:
    """{(method, mask seed): [the endpoint of each fine-tuning seed with its three tasks done]}."""
    cells: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        ours = PROTOCOL.get(r["task"]) == r["epochs"] and r["lr"] == 1e-4 and not r.get("select_fraction")
        if ours and r["sparsity"] == sparsity:
            cells[(r["method"], r["mask_seed"], r["seed"])][r["task"]] = r["score"]
    out: dict[tuple, list[float]] = defaultdict(list)
    for (method, mask, _seed), scores in cells.items():
        if len(scores) == len(PROTOCOL):
            out[(method, mask)].append(st.mean(scores.values()))
    return out


def within(cells: dict, methods: tuple[str, ...]) -> tuple[float, int]:
    """(the variance between fine-tuning seeds within a mask, pooled over `methods`' masks, its df;
    NaN at 0 df: fewer than two seeds of any mask done)."""
    parts = [(st.variance(v), len(v) - 1) for (m, _), v in cells.items() if m in methods and len(v) > 1]
    df = sum(d for _, d in parts)
    return (sum(var * d for var, d in parts) / df if df else math.nan), df


def mde(a: tuple[float, int], b: tuple[float, int]) -> float:
    """The MDE of Welch's t between two arms, each (a unit's variance, its number of units)."""
    se, df = welch([(var / n, n - 1) for var, n in (a, b)])
    return float(detectable_effect(float(se), float(df), alpha=ALPHA))


def design(masks: int, omp: int, w: float, w_omp: float, f: float) -> str:
    """The four claims' MDEs and the core-hours still to spend for one design: `masks` masks a searched
    arm (IMP and TAMT-KD at both sparsities, Wanda at 70%), one fine-tuning seed each; `omp` pinned
    seeds of OMP's mask at each sparsity (minilm-mlm-v2's first 10 at 70% are reused)."""
    unit70, unit90 = MASK_VAR + w, f * (MASK_VAR + w)
    mdes = [
        mde((unit70, masks), (unit70, masks)),  # TAMT-KD > IMP, 70%
        mde((unit90, masks), (unit90, masks)),  # TAMT-KD > IMP, 90%
        mde((unit90, masks), (f * w_omp, omp)),  # IMP > OMP, 90%
        mde((unit70, masks), (unit70, masks)),  # TAMT-KD > Wanda, 70%
    ]
    units = 5 * masks + omp + max(0, omp - 10)  # IMP, TAMT-KD x 2 sparsities, Wanda; OMP at 90% (+70%)
    searches = 2 * masks * HOURS["imp"] + masks * HOURS["tamt-kd"]  # TAMT-KD's 70% masks: v2's
    cells = " ".join(f"{m:9.2f}" for m in mdes)
    return f"{masks:5} {omp:4} {f:5.1f} {cells} {units * HOURS['finetune'] + searches:9.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default=V2)
    ap.add_argument("--study", help="this study's store: f from OMP's seeds at 90%%")
    args = ap.parse_args()
    v2 = endpoints(scores(args.store), 0.7)
    w, w_df = within(v2, ("imp", "tamt-mlm", "tamt-kd"))
    w_omp, omp_df = within(v2, ("omp",))
    print(f"70%: seeds within a searched mask {w:.3f} ({w_df} df), OMP's seeds {w_omp:.3f} ({omp_df} df)")
    fs = {1.0, 2.0, 3.0}
    if args.study:
        omp90, omp90_df = within(endpoints(scores(args.study), 0.9), ("omp",))
        if omp90_df:
            fs.add(round(max(1.0, omp90 / w_omp), 2))
            print(f"90%: OMP's seeds {omp90:.3f} ({omp90_df} df): f = {max(1.0, omp90 / w_omp):.2f}")
        else:
            print("90%: f not measured yet (fewer than two of OMP's seeds at 90% done on all three tasks)")
    print("masks  omp  f_90  KD>IMP70  KD>IMP90 IMP>OMP90 KD>Wanda70  core-h")
    for f_90 in sorted(fs):
        for masks, omp in [(7, 10), (8, 10), (9, 10), (8, 12)]:
            print(design(masks, omp, w, w_omp, f_90))


if __name__ == "__main__":
    main()
