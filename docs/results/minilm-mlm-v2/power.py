"""The SDs behind spec.yaml's `pilot_sd` and the README's power table, from minilm-mlm's committed store.

For each method at 70%, each fine-tuning's last evaluation (`final_score`: the reading this study
uses) on SST-2 and CoLA, split into a mask component (between masks) and a fine-tuning seed component
(within a mask) by the one-way ANOVA of 3 masks x 3 seeds. STS-B was not run there: its components
are taken to be CoLA's (the noisier task measured), so the endpoint (the mean of SST-2, CoLA and
STS-B) has variance (SST-2 + 2 x CoLA) / 9 per component. A unit's SD is that of a mask's mean over
k fine-tuning seeds (mask + seed / k); OMP's (one mask) is one seed's. Then the MDE (80% power) at
α = 0.05 / 4 of each declared comparison for masks x seeds.

    PYTHONPATH=src python docs/results/minilm-mlm-v2/power.py
"""

from __future__ import annotations

import json
import sqlite3
import statistics as st
from collections import defaultdict
from pathlib import Path

from ticketlab.tasks.scores import detectable_effect, welch

STORE = Path(__file__).resolve().parent.parent / "minilm-mlm" / "results.sqlite"
ALPHA = 0.05 / 4
CLAIMS = (("tamt-kd", "imp"), ("tamt-mlm", "imp"), ("imp", "omp"))


def scores() -> dict[tuple[str, int | None], dict[tuple[str, int], float]]:
    """(method, mask seed) -> {(task, fine-tuning seed): last evaluation} of the store's plan."""
    db = sqlite3.connect(f"file:{STORE}?mode=ro", uri=True)
    plan = set(json.loads(db.execute("SELECT value FROM meta WHERE key = 'plan'").fetchone()[0]))
    out: dict = defaultdict(dict)
    done = "SELECT id, config, metrics FROM runs WHERE kind = 'finetune' AND status = 'done'"
    for i, c, m in db.execute(done):
        if i in plan:
            c, m = json.loads(c), json.loads(m)
            out[(c["method"], c["mask_seed"])][(c["task_label"], c["seed"])] = m["final_score"]
    return out


def components(runs, method: str, task: str) -> tuple[float, float]:
    """(mask variance, seed variance) of `method` on `task`: ANOVA of masks x 3 seeds."""
    per = [[v[(task, s)] for s in (0, 1, 2)] for (m, _), v in runs.items() if m == method]
    seed = st.mean(st.variance(e) for e in per)
    between = st.variance([st.mean(e) for e in per]) if len(per) > 1 else 0.0
    return max(0.0, between - seed / 3), seed


def main() -> None:
    runs = scores()
    endpoint = {}
    for method in ("omp", "random", "imp", "tamt-mlm", "tamt-kd"):
        (ms, ss), (mc, sc) = components(runs, method, "sst2"), components(runs, method, "cola")
        endpoint[method] = ((ms + 2 * mc) / 9, (ss + 2 * sc) / 9)
        print(
            f"{method:9s} SD mask / seed: SST-2 {ms**0.5:.2f} / {ss**0.5:.2f}, "
            f"CoLA {mc**0.5:.2f} / {sc**0.5:.2f}; "
            f"endpoint {endpoint[method][0] ** 0.5:.2f} / {endpoint[method][1] ** 0.5:.2f}; "
            f"a unit at 3 seeds {(endpoint[method][0] + endpoint[method][1] / 3) ** 0.5:.2f}"
        )
    for masks, seeds in ((5, 2), (5, 3), (6, 2), (6, 3), (8, 2), (10, 3)):
        row = []
        for a, b in CLAIMS:
            parts = []
            for m in (a, b):
                mask, seed = endpoint[m]
                n = seeds if m == "omp" else masks
                parts.append(((seed if m == "omp" else mask + seed / seeds) / n, n - 1))
            se, df = welch(parts)
            row.append(f"{a} > {b} {detectable_effect(float(se), float(df), alpha=ALPHA):.2f}")
        print(f"{masks} masks x {seeds} seeds: MDE " + ", ".join(row))


if __name__ == "__main__":
    main()
