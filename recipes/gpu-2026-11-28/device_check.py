"""The device check of minilm-mlm-v2's GPU runs: 15 fine-tunings finished on the CPU, run again on the GPU.

Pairs each run's score on the two devices (same run id: same config, mask, seed and data order), forms
the endpoint of each unit (full model seeds 0-1, OMP seeds 0-2: the mean of SST-2, CoLA and STS-B) and
applies the rule written before the call (README.md): the GPU's runs join the study's store if the 95%
t interval of the mean paired GPU - CPU endpoint difference covers 0.

    python recipes/gpu-2026-11-28/device_check.py GPU_CHECK_STORE CPU_STORE [--out device_check.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sqlite3
import statistics
from pathlib import Path

from scipy import stats

UNIT = re.compile(r"ft_(?P<task>sst2|cola|stsb)_(?P<unit>full|omp_s70)_ft(?P<seed>\d+)(_|$)")
PAIRS, UNITS = 15, 5  # as declared: full seeds 0-1 and OMP seeds 0-2, on 3 tasks


def scores(store: Path) -> dict[str, tuple[float, float]]:
    """Each finished fine-tuning's (score, when its row was made) by run id."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    rows = db.execute("select id, metrics, created from runs where status = 'done' and kind = 'finetune'")
    return {i: (json.loads(m)["score"], created) for i, m, created in rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("gpu", type=Path, help="the GPU's copy of the store, where the 15 runs were run again")
    p.add_argument("cpu", type=Path, help="the study's store (the CPU's results)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[2]
        / "docs"
        / "results"
        / "gpu-2026-11-28"
        / "device_check.csv",
    )
    args = p.parse_args()

    db = sqlite3.connect(f"file:{args.gpu}?mode=ro", uri=True)
    names = dict(db.execute("select id, name from runs"))
    gpu, cpu = scores(args.gpu), scores(args.cpu)
    # run again on the GPU: the rows removed from its copy before the call, which its sweep made
    # anew, later than any row of the CPU's store (both also hold older plans' rows under the same
    # names, finished once, on the CPU)
    newest = max(created for _, created in cpu.values())
    again = [i for i in gpu if i in cpu and gpu[i][1] > newest and UNIT.match(names[i])]
    rows = sorted((names[i], cpu[i][0], gpu[i][0]) for i in again)
    if len(rows) != PAIRS or len({n for n, _, _ in rows}) != PAIRS:
        raise SystemExit(f"device_check: {len(rows)} re-run pairs found, {PAIRS} declared")

    with args.out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "cpu", "gpu", "gpu_minus_cpu"])
        for name, c, g in rows:
            w.writerow([name, f"{c:.4f}", f"{g:.4f}", f"{g - c:.4f}"])

    by_task: dict[str, list[float]] = {}
    units: dict[tuple[str, str], dict[str, float]] = {}
    for name, c, g in rows:
        m = UNIT.match(name)
        by_task.setdefault(m["task"], []).append(g - c)
        units.setdefault((m["unit"], m["seed"]), {})[m["task"]] = g - c
    print(f"{len(rows)} paired runs; per task, mean GPU - CPU (SD):")
    for task, d in sorted(by_task.items()):
        print(f"  {task}: {statistics.mean(d):+.2f} ({statistics.stdev(d):.2f}), n {len(d)}")
    d = [statistics.mean(t.values()) for t in units.values() if len(t) == 3]  # whole units only
    if len(d) != UNITS:
        raise SystemExit(f"device_check: {len(d)} whole units found, {UNITS} declared")
    mean, se = statistics.mean(d), statistics.stdev(d) / len(d) ** 0.5
    half = stats.t.ppf(0.975, len(d) - 1) * se
    print(f"endpoint: {len(d)} units, differences {', '.join(f'{x:+.2f}' for x in d)}")
    ci = f"[{mean - half:+.2f}, {mean + half:+.2f}]"
    print(f"  mean {mean:+.2f} ± {se:.2f} (SE), 95% CI {ci}, df {len(d) - 1}")
    join = mean - half <= 0 <= mean + half
    print(
        "rule: the interval covers 0: the GPU's runs join the study's store"
        if join
        else "rule: the interval excludes 0: the GPU's runs stay out"
    )


if __name__ == "__main__":
    main()
