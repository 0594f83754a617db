"""The report's CSV tables (`write_csvs`): results.csv (every cell, curves included, with run ids),
winning_tickets.csv, transfer.csv (when there are task-specific tickets), paired.csv,
pretrain_losses.csv, pretrain_tests.csv (when the spec's analyses have tests on pre-training loss) and
declared.csv (when the spec declares its claims), from a `SweepResults`.
"""

from __future__ import annotations

from pathlib import Path

from ...core.files.atomic import atomic_write_csv
from .cells import AVG, Cell
from .comparison import MAIN
from .declared import declared_rows
from .loss_tests import Correlation, LossTest
from .sections import size
from .tables import SweepResults


def _num(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _exact(x: float | None) -> str:
    """An unrounded p (the shortest text that reads back as the same float): a family Holm-adjusts
    it again (recipes/family.py), and p rounded to 4 places can cross a Holm threshold."""
    return "" if x is None else repr(float(x))


def _cell_row(c: Cell) -> dict:
    return {
        "n": c.n,
        "mean": _num(c.mean),
        "std": _num(c.std),
        "min": _num(min(c.values)),
        "max": _num(max(c.values)),
        "run_ids": " ".join(c.run_ids),
    }


def _claim_row(t: LossTest | Correlation) -> dict:
    """One test on pre-training loss (`loss_tests`): a loss difference (`estimate` = mean_a − mean_b,
    with SE, df, MDE) or Spearman's rho over `masks_a` masks (`estimate` = rho, MDE in |rho|)."""
    if isinstance(t, Correlation):
        what = {"part": t.part, "loss": t.loss, "task": t.task, "a": "every final mask", "b": ""}
        pooled = "all" if t.sparsity is None else t.sparsity  # all: every sparsity and the full model
        what |= {"sparsity": pooled, "steps_a": "", "steps_b": "", "masks_a": t.n, "masks_b": ""}
        numbers = {"mean_a": "", "mean_b": "", "statistic": "spearman_rho", "estimate": _num(t.rho)}
        numbers |= {"se": "", "df": "", "p": _exact(t.p), "p_holm": _num(t.p_holm), "mde80": _num(t.mde)}
        seeds = {"masks_a_seeds": " ".join(t.methods), "masks_b_seeds": ""}
    else:
        what = {"part": t.part, "loss": t.loss, "task": "", "a": t.a.method, "b": t.b.method}
        what |= {"sparsity": t.sparsity, "steps_a": t.a.steps, "steps_b": t.b.steps}
        what |= {"masks_a": t.masks[0], "masks_b": t.masks[1]}
        numbers = {"mean_a": _num(t.a.mean, 6), "mean_b": _num(t.b.mean, 6), "statistic": "mean_diff"}
        numbers |= {"estimate": _num(t.mean, 6), "se": _num(t.se, 6), "df": _num(t.df), "p": _exact(t.p)}
        numbers |= {"p_holm": _num(t.p_holm), "mde80": _num(t.mde, 6)}
        seeds = {
            "masks_a_seeds": " ".join(map(str, t.a.masks)),
            "masks_b_seeds": " ".join(map(str, t.b.masks)),
        }
    labels = "" if isinstance(t, Correlation) else "; ".join(t.labels)
    return (
        what | numbers | {"verdict": t.verdict, "labels": labels} | seeds | {"run_ids": " ".join(t.run_ids)}
    )


def _result_rows(res: SweepResults) -> list[dict]:
    """results.csv: every cell (curves included, `grid` says which), then each method's average over
    tasks."""
    groups: dict[tuple, list] = {}
    for s in res.scores:
        key = (s.method, s.sparsity, s.task, s.train_size, s.search_steps, res.is_main(s))
        groups.setdefault(key, []).append(s)
    rows = []
    for (m, sp, t, n, steps, main), v in groups.items():
        what = {"method": m, "sparsity": sp, "task": t, "metric": res.metric_of.get(t, "")}
        what |= {"train_size": n, "search_steps": steps, "grid": "main" if main else "curve"}
        rows.append(what | _cell_row(Cell([x.value for x in v], [x.id for x in v])))
    for (m, sp, t), c in res.cells().items():
        if t == AVG:
            what = {"method": m, "sparsity": sp, "task": AVG, "metric": "", "train_size": None}
            rows.append(what | {"search_steps": None, "grid": "main"} | _cell_row(c))
    return rows


def _win_rows(res: SweepResults) -> list[dict]:
    """winning_tickets.csv: each method's sparsest winning ticket per task, beside the full model."""
    return [
        {
            "method": x.method,
            "task": x.task,
            "winning_sparsity": x.reason if x.reason is not None else x.sparsity,
            "mean": _num(x.cell and x.cell.mean),
            "std": _num(x.cell and x.cell.std),
            "full_mean": _num(x.full and x.full.mean),
            "full_std": _num(x.full and x.full.std),
            "constant_predictor": _num(res.floors.get(x.task)),
            "run_ids": " ".join(x.cell.run_ids) if x.cell else "",
        }
        for x in res.winning_tickets()
    ]


def _paired_rows(comps: list) -> list[dict]:
    """paired.csv: each paired comparison with its test, interval, MDE, verdict and run ids."""
    sized = any(c.train_size != MAIN for c in comps)  # a data curve's: a column for the size
    return [
        {"a": c.a.method, "b": c.b.method, "sparsity": c.sparsity, "task": c.task}
        | ({"train_size": c.train_size if c.train_size == MAIN else size(c.train_size)} if sized else {})
        | {"masks_a": c.masks[0], "seeds_a": c.seeds[0], "masks_b": c.masks[1], "seeds_b": c.seeds[1]}
        | {"mean_a": _num(c.a.mean), "mean_b": _num(c.b.mean), "mean_diff": _num(c.mean)}
        | {"test": c.test, "se_diff": _num(c.se), "df": _num(c.df), "p": _exact(c.p)}
        | {"p_holm": _num(c.p_holm), "mde_alpha": f"{c.alpha:.4g}"}
        | {
            "mde80": _num(c.mde),
            "ci95_low": _num(c.ci95 and c.ci95[0]),
            "ci95_high": _num(c.ci95 and c.ci95[1]),
        }
        | {"verdict": c.verdict, "labels": "; ".join(c.labels)}
        | {"masks_a_seeds": " ".join(map(str, c.a.masks)), "masks_b_seeds": " ".join(map(str, c.b.masks))}
        | {"run_ids": " ".join(c.run_ids)}
        for c in comps
    ]


def write_csvs(res: SweepResults, out: Path) -> None:
    """results.csv (every cell, curves included), winning_tickets.csv, pretrain_losses.csv."""
    rows = _result_rows(res)
    atomic_write_csv(out / "results.csv", rows)

    wins = _win_rows(res)
    atomic_write_csv(out / "winning_tickets.csv", wins)

    transfer = [
        {"source": c.source, "target": c.target, "sparsity": c.sparsity}
        | _cell_row(c.cell)
        | {
            "full_mean": _num(c.full and c.full.mean),
            "full_std": _num(c.full and c.full.std),
            "delta_std": _num(c.delta_std),
            "winning": c.winning,
        }
        for c in res.transfer()
    ]
    if transfer:
        atomic_write_csv(out / "transfer.csv", transfer)
    comps, claims = res.family()
    paired = _paired_rows(comps)
    atomic_write_csv(out / "paired.csv", paired)
    loss_tests = [t for t in claims if isinstance(t, (LossTest, Correlation))]
    if loss_tests:  # as transfer.csv: only where there is something (a report without stays as it was)
        atomic_write_csv(out / "pretrain_tests.csv", [_claim_row(t) for t in loss_tests])
    if declared := declared_rows(res):  # a study that declared its claims (`declared.py`)
        atomic_write_csv(out / "declared.csv", declared)

    losses = res.pretrain_losses().values()
    keys = sorted({k for v in losses for k in v if k.endswith("_loss")})
    fields = ("method", "sparsity", "achieved_sparsity", "mask_seed", "search_steps")
    atomic_write_csv(
        out / "pretrain_losses.csv",
        [{k: p[k] for k in fields} | {k: p.get(k) for k in keys} | {"run_id": p["id"]} for p in losses],
    )
