"""The SDs behind spec.yaml's `pilot_sd` and the README's power table, from minilm-mlm's committed store.

For each method at 70%, each fine-tuning's last evaluation (`final_score`: the reading this study
uses) on SST-2 and CoLA, split into a mask component (between masks) and a fine-tuning seed component
(within a mask) by the one-way ANOVA of 3 masks x 3 seeds. STS-B was not run there: its components
are taken to be CoLA's (the noisier task measured), so the endpoint (the mean of SST-2, CoLA and
STS-B) has variance (SST-2 + 2 x CoLA) / 9 per component. A unit's SD is that of a mask's mean over
k fine-tuning seeds (mask + seed / k); OMP's (one mask) is one seed's. Then the MDE (80% power) at
α = 0.05 / 4 of each declared comparison for masks x seeds.

At the pilot's protocol (`--pilot STORE`, default the committed `pilot/results.sqlite`): each
method's seed component on a task is scaled by the ratio of the full model's seed variance at the
pilot (pooled within its settings, `pilot_choice.seed_sd`) to the full model's at minilm-mlm's
protocol (its 3 seeds); STS-B's by the pilot's STS-B against minilm-mlm's CoLA. The mask components
are kept as measured (how a longer fine-tuning moves the spread between masks is not known before
the study's own masks are fine-tuned). Designs then give OMP and `full` their own fine-tuning seeds
(`methods.<m>.finetune_seeds`), and each line its fine-tuning core-hours at the pilot's per-run
times at the chosen protocol.

At the study's own masks (`--study STORE`, the SD check of README "Power"): each method's
components measured on this study's store, the endpoint of a fine-tuning seed being the mean of its
three tasks' last evaluations (a mask counts once all three are done for a seed): the mask component
from the spread of the masks' means less their seed component / k, the seed component from the
spread within a mask; OMP's and the full model's from their seeds alone. SDs only: no difference
between methods is printed. Then the MDEs at 6-20 masks x 2 seeds (OMP at 10), and the fewest masks
a side that give claim 1 an MDE <= 1.5.

    PYTHONPATH=src python recipes/minilm-mlm-v2/power.py [--pilot STORE]
    PYTHONPATH=src python recipes/minilm-mlm-v2/power.py --study sweeps/minilm-mlm-v2/results.sqlite
"""

from __future__ import annotations

import json
import sqlite3
import statistics as st
import sys
from collections import defaultdict
from pathlib import Path

from ticketlab.studies.stats import detectable_effect, welch

HERE = Path(__file__).resolve().parents[2] / "docs" / "results" / "minilm-mlm-v2"  # the study's record
STORE = HERE.parent / "minilm-mlm" / "results.sqlite"
ALPHA = 0.05 / 4
CLAIMS = (("tamt-kd", "imp"), ("tamt-mlm", "imp"), ("imp", "omp"))


def scores(store: Path = STORE) -> dict[tuple[str, int | None], dict[tuple[str, int], float]]:
    """(method, mask seed) -> {(task, fine-tuning seed): last evaluation} of the store's plan."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
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


def full_seed_var(runs, task: str) -> float:
    """The full model's fine-tuning-seed variance on `task` at minilm-mlm's protocol (3 seeds)."""
    return st.variance(v[(task, s)] for (m, _), v in runs.items() if m == "full" for s in (0, 1, 2))


def pilot_scale(runs, store: Path) -> dict[str, float] | None:
    """Per task of the endpoint, the factor on a seed variance from minilm-mlm's protocol to the
    pilot's (None: the pilot has no SD for a task yet)."""
    import pilot_choice as choice  # beside this script (its folder is the first on sys.path)

    by = choice.runs(store)
    out = {}
    for task, old in (("sst2", "sst2"), ("cola", "cola"), ("stsb", "cola")):
        sd = choice.seed_sd(by, task)
        if sd is None:
            return None
        out[task] = sd[0] ** 2 / full_seed_var(runs, old)
        print(
            f"{task}: the full model's seed SD {sd[0]:.2f} at the pilot ({sd[1]} df), "
            f"{full_seed_var(runs, old) ** 0.5:.2f} at minilm-mlm's protocol ({old}): "
            f"x {out[task]:.3f} on a seed variance"
        )
    return out


def endpoint_components(runs, scale: dict[str, float] | None) -> dict[str, tuple[float, float]]:
    """method -> (mask variance, seed variance) of its endpoint score (the mean of 3 tasks)."""
    out = {}
    for method in ("omp", "random", "imp", "tamt-mlm", "tamt-kd"):
        (ms, ss), (mc, sc) = components(runs, method, "sst2"), components(runs, method, "cola")
        k = scale or {"sst2": 1.0, "cola": 1.0, "stsb": 1.0}
        out[method] = ((ms + 2 * mc) / 9, (ss * k["sst2"] + sc * k["cola"] + sc * k["stsb"]) / 9)
        print(
            f"{method:9s} SD mask / seed: SST-2 {ms**0.5:.2f} / {(ss * k['sst2']) ** 0.5:.2f}, "
            f"CoLA {mc**0.5:.2f} / {(sc * k['cola']) ** 0.5:.2f}; "
            f"endpoint {out[method][0] ** 0.5:.2f} / {out[method][1] ** 0.5:.2f}; "
            f"a unit at 3 seeds {(out[method][0] + out[method][1] / 3) ** 0.5:.2f}"
        )
    return out


def mdes(endpoint, masks: int, seeds: int, omp_seeds: int) -> list[float]:
    """MDE at α = 0.05 / 4 (80% power) of claims 1-3 at `masks` x `seeds` (OMP: 1 x `omp_seeds`)."""
    row = []
    for a, b in CLAIMS:
        parts = []
        for m in (a, b):
            mask, seed = endpoint[m]
            n = omp_seeds if m == "omp" else masks
            parts.append(((seed if m == "omp" else mask + seed / seeds) / n, n - 1))
        se, df = welch(parts)
        row.append(detectable_effect(float(se), float(df), alpha=ALPHA))
    return row


def print_designs(endpoint, designs) -> None:
    """One line per (masks, seeds, OMP's seeds): the MDE of each declared comparison."""
    for masks, seeds, omp_seeds in designs:
        row = mdes(endpoint, masks, seeds, omp_seeds)
        omp = "" if omp_seeds == seeds else f", OMP {omp_seeds} seeds"
        print(
            f"{masks} masks x {seeds} seeds{omp}: MDE "
            + ", ".join(f"{a} > {b} {x:.2f}" for (a, b), x in zip(CLAIMS, row, strict=True))
        )


TASKS = ("sst2", "cola", "stsb")


def study_components(runs) -> dict[str, tuple[float, float, int]]:
    """method -> (mask variance, seed variance, masks) of the endpoint, from the study's own store:
    per mask, the endpoint of each fine-tuning seed whose three tasks are done."""
    per: dict[str, list[list[float]]] = defaultdict(list)
    for (method, _), v in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, kv[0][1] or 0)):
        seeds = sorted({s for _, s in v})
        ends = [st.mean(v[(t, s)] for t in TASKS) for s in seeds if all((t, s) in v for t in TASKS)]
        if ends:
            per[method].append(ends)
    out = {}
    for method, masks in per.items():
        if method in ("omp", "full"):  # one mask: its spread is its seeds'
            seeds = masks[0]
            if len(seeds) > 1:
                out[method] = (0.0, st.variance(seeds), len(seeds))
            continue
        masks = [e for e in masks if len(e) > 1]
        if len(masks) < 2:
            continue
        k = st.mean(len(e) for e in masks)
        seed = st.mean(st.variance(e) for e in masks)
        between = st.variance([st.mean(e) for e in masks])
        out[method] = (max(0.0, between - seed / k), seed, len(masks))
    return out


def study_check(store: Path) -> None:
    """The SD check: each method's components on the study's own masks, the MDEs they give, and the
    fewest masks a side for an MDE <= 1.5 on claim 1."""
    comps = study_components(scores(store))
    for method, (mask, seed, n) in sorted(comps.items()):
        seeds = method in ("omp", "full")
        df = f"{n} seeds, {n - 1} df" if seeds else f"{n} masks: the mask SD on {n - 1} df"
        print(f"{method:9s} endpoint SD mask / seed: {mask**0.5:.2f} / {seed**0.5:.2f} ({df})")
    endpoint = {m: (mask, seed) for m, (mask, seed, _) in comps.items()}
    if not all(m in endpoint for c in CLAIMS for m in c):
        print("not every claim's methods have two units yet: no MDE")
        return
    print_designs(endpoint, [(m, 2, 10) for m in (6, 8, 10, 12, 16, 20)])
    enough = next((m for m in range(6, 41) if mdes(endpoint, m, 2, 10)[0] <= 1.5), None)
    print(f"claim 1 (tamt-kd > imp) MDE <= 1.5 at 2 seeds: {enough or 'more than 40'} masks a side")


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--study"]:
        if len(args) != 2:
            sys.exit("power.py: --study STORE (the study's results.sqlite)")
        study_check(Path(args[1]))
        return
    pilot = Path(args[1]) if args[:1] == ["--pilot"] and len(args) > 1 else HERE / "pilot" / "results.sqlite"
    runs = scores()
    print("At minilm-mlm's protocol:")
    print_designs(
        endpoint_components(runs, None),
        [(m, k, k) for m, k in ((5, 2), (5, 3), (6, 2), (6, 3), (8, 2), (10, 3))],
    )
    scale = pilot_scale(runs, pilot) if pilot.is_file() else None
    if scale is None:
        return
    print("At the pilot's protocol (seed components scaled, mask components as measured):")
    designs = ((6, 2, 10), (6, 3, 10), (8, 2, 10), (8, 3, 10), (10, 2, 10), (12, 2, 10))
    print_designs(endpoint_components(runs, scale), designs)


if __name__ == "__main__":
    main()
