"""`write_report(sweep_dir)`: a markdown report, its PNG figures and CSV tables, from the store alone.

    SWEEP_DIR/report/report.md            tables, figures, what was skipped and why, failed runs
    SWEEP_DIR/report/results.csv          one row per cell (method, sparsity, task, train size,
                                          search steps): n, mean, std, min, max and the run ids
    SWEEP_DIR/report/winning_tickets.csv  highest winning sparsity per method and task
    SWEEP_DIR/report/pretrain_losses.csv  MLM / KD dev loss per mask, with run ids
    SWEEP_DIR/report/paired.csv           method A - method B per sparsity and task, paired by
                                          mask (or by fine-tuning seed when each method has one
                                          mask): unit, n, masks, mean, std, t-interval, p, verdict
    SWEEP_DIR/report/transfer.csv         source x target matrix of task-specific tickets (if any)
    SWEEP_DIR/report/figures/*.png        (fig3 also as .csv: every point and band drawn)

Every number in the markdown tables has a footnote with the ids of the runs it averages (look them
up with `ticketlab report --run ID` or in `results.sqlite`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import MaskFileError, TicketlabError
from ..files import atomic_dir, atomic_write_csv, atomic_write_text, mark_output
from . import plots
from .cells import AVG, Cell, method_label, stats
from .paired import MAIN, MASK, Paired
from .plan import expand
from .results import load_results
from .spec import load_spec, spec_json
from .store import owner_gone
from .tables import SweepResults

STALE_AFTER = 600.0  # seconds without a heartbeat after which a running run counts as interrupted


def fmt(cell: Cell | None, digits: int = 1) -> str:
    if cell is None:
        return "—"
    if cell.n > 1:
        return f"{cell.mean:.{digits}f} ± {cell.std:.{digits}f}"
    return f"{cell.mean:.{digits}f}"


def pct(s: float) -> str:
    return f"{round(s * 100, 4):g}%"


def _size(n: int | None) -> str:
    return "all" if n is None else str(n)


class _Footnotes:
    """Markdown footnotes listing the run ids behind each number; the number says how many runs."""

    def __init__(self):
        self.notes: list[str] = []

    def __call__(self, cell: Cell | None, digits: int = 1) -> str:
        if cell is None:
            return "—"
        self.notes.append(", ".join(cell.run_ids))
        return f"{fmt(cell, digits)} (n={cell.n})[^{len(self.notes)}]"

    def render(self) -> str:
        return "\n".join(f"[^{i}]: runs {ids}" for i, ids in enumerate(self.notes, 1))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def main_rows(res: SweepResults, cell_text) -> tuple[list[str], list[list[str]]]:
    """The main table: one row per method and sparsity, one column per task and the average."""
    cells = res.cells()
    cols = res.tasks + ([AVG] if len(res.tasks) > 1 else [])
    header = ["method", "sparsity"] + [
        "avg" if t == AVG else f"{t} ({res.metric_of.get(t, '?')})" for t in cols
    ]
    rows = []
    for m in res.methods:
        for s in [0.0] if m == "full" else res.sparsities(m):
            if any((m, s, t) in cells for t in cols):
                rows.append(
                    [m, "0%" if m == "full" else pct(s), *(cell_text(cells.get((m, s, t))) for t in cols)]
                )
    return header, rows


def main_table_text(res: SweepResults) -> str:
    """The main table as aligned plain text, for terminals (`ticketlab demo` prints it)."""
    header, rows = main_rows(res, fmt)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(
            x.ljust(w) if i < 2 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def _floor_note(res: SweepResults) -> list[str]:
    """The constant predictor's score per task, and the tasks where the full model has not left it."""
    tasks = [t for t in res.tasks if t in res.floors]
    if not tasks:
        return []
    cells = res.cells()
    flat = [t for t in res.tasks if res.at_floor(t, cells.get(("full", 0.0, t)))]
    text = (
        "A constant predictor (one label for every dev example, the best such label) scores "
        + ", ".join(f"{t} {res.floors[t]:.1f}" for t in tasks)
        + "."
    )
    if flat:
        text += (
            f" On {', '.join(flat)} the full model is within one std of that floor: it learnt (almost) "
            "nothing at this budget, so these columns cannot rank the masks, and no ticket is called "
            "winning there."
        )
    return [text, ""]


def _winning_section(res: SweepResults, note) -> str:
    wins = res.winning_tickets()
    if not wins:
        return "_No pruned-model results yet._"
    cols = res.tasks + ([AVG] if len(res.tasks) > 1 else [])
    by = {(w.method, w.task): w for w in wins}
    rows = []
    for m in [m for m in res.methods if m != "full"]:
        row = [m]
        for t in cols:
            w = by.get((m, t))
            if w is None or w.full is None:
                row.append("n/a")
            elif w.reason is not None:
                row.append(w.reason)  # "floor" or "one run": no verdict
            elif w.sparsity is None:
                row.append("none")
            else:
                row.append(f"{pct(w.sparsity)} ({note(w.cell)})")
        rows.append(row)
    full = [note(by[(next(m for m in res.methods if m != "full"), t)].full) for t in cols]
    return "\n".join(
        [
            "Highest sparsity at which each method still finds a winning ticket (Chen et al. 2020): its mean "
            "score is at least the full model's mean minus one standard deviation of the full model's runs "
            "(sample std over its fine-tuning seeds; for the average, over the per-seed task averages). "
            "'none': not even the lowest sparsity wins; 'n/a': no full-model runs to compare with; "
            "'floor': the full model is within one std of a constant predictor (no verdict; on the average "
            "when any of its tasks is); 'one run': the full model or the ticket has a single run, so no std "
            "to judge by (no verdict). "
            "In brackets: the method's score there.",
            "",
            _table(["method", *("avg" if t == AVG else t for t in cols)], [["full model", *full], *rows]),
        ]
    )


def _super_section(res: SweepResults, note) -> str | None:
    """Super tickets (Liang et al. 2021), when the store has structured tickets: per task the full
    model, the super ticket (mean ± std over seeds of each seed's pick) and the levels picked."""
    from .supertickets import super_picks

    picks = super_picks(list(res.records.values()))
    if not picks:
        return None
    cells, rows = res.cells(), []
    for task in dict.fromkeys(t for t, _ in picks):
        mine = [p for (t, _), p in sorted(picks.items()) if t == task]
        chosen = Cell([p.score for p in mine], [p.run_id or "?" for p in mine])
        levels = ", ".join(f"{pct(p.level)} (seed {p.seed})" for p in mine)
        rows.append([task, note(cells.get(("full", 0.0, task))), note(chosen), levels])
    return "\n".join(
        [
            "The super ticket of a seed is its winning ticket with the best score on the selection part "
            "of the dev set (a seeded 10%); every score here, the full model's included, is on the other "
            "part, at the training step the selection part picked.",
            "",
            _table(["task", "full model", "super ticket", "levels picked"], rows),
        ]
    )


def _signed(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:+.{digits}f}"


def _transfer_section(res: SweepResults, note) -> str | None:
    """Chen et al. Table 3: rows are the tasks a ticket was found on, columns the tasks it is
    fine-tuned on; each cell with its difference to the full model in units of the full model's std."""
    cells = res.transfer()
    if not cells:
        return None
    parts = [
        "A task-specific IMP ticket (`imp-task`) found on the row's task, fine-tuned on the column's task; "
        "row `mlm` is the IMP ticket found on the MLM objective at the same sparsity. Each cell: mean ± "
        "sample std over its runs (n), then the difference to the full model on that task in units of "
        "the full model's std (σ); ★ marks a winning ticket (mean ≥ full mean − 1 std, Chen et al.), "
        "never on a target where the full model is within one std of a constant predictor.",
    ]
    for sp in sorted({c.sparsity for c in cells}):
        at = [c for c in cells if c.sparsity == sp]
        targets = [t for t in res.tasks if any(c.target == t for c in at)]
        rows = []
        for src in dict.fromkeys(c.source for c in at):
            row = [src]
            for t in targets:
                c = next((c for c in at if c.source == src and c.target == t), None)
                star = " ★" if c is not None and c.winning else ""
                row.append("—" if c is None else f"{note(c.cell)} ({_signed(c.delta_std)}σ){star}")
            rows.append(row)
        full = ["full model", *(note(next(c.full for c in at if c.target == t)) for t in targets)]
        parts += ["", f"**Sparsity {pct(sp)}**", "", _table(["source \\ target", *targets], [full, *rows])]
    return "\n".join(parts)


def _units(c: Paired) -> str:
    """The n of a comparison and its unit: '3 masks' or '3 ft seeds (1 mask each)'."""
    if c.unit == MASK:
        return f"{c.n} mask{'s' if c.n != 1 else ''} ({c.masks[0]} vs {c.masks[1]})"
    return f"{c.n} ft seed{'s' if c.n != 1 else ''} (1 mask each)"


def _test_cells(c: Paired) -> list[str]:
    """Δ ± SE, its 95% interval, p, Holm's p, the MDE and the verdict of one comparison."""
    ci = c.ci95
    return [
        _signed(c.mean, 2) + ("" if c.se is None else f" ± {c.se:.2f}"),
        "—" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]",
        "—" if c.p is None else f"{c.p:.3f}",
        "—" if c.p_holm is None else f"{c.p_holm:.3f}",
        "—" if c.mde is None else f"{c.mde:.2f}",
        c.verdict,
    ]


def _paired_section(res: SweepResults) -> str:
    family = res.comparisons()
    comps = [c for c in family if c.train_size == MAIN]  # a data curve's are in its own section
    if not comps:
        return "_No two methods share a sparsity and fine-tuning seeds yet._"
    rows = [[f"{c.a} − {c.b}", pct(c.sparsity), c.task, _units(c), *_test_cells(c)] for c in comps]
    curve = len(family) - len(comps)
    also = f" and the {curve} of the data-scarcity section" if curve else ""
    one_mask = sum(c.unit != MASK for c in comps)
    caveat = (
        f" {one_mask} of the {len(comps)} comparisons have one mask per method: their n counts "
        "fine-tuning seeds, so they measure fine-tuning noise around those two masks and say nothing of "
        "how much another search (seed) would have moved the result (give `seeds.search` several seeds)."
        if one_mask
        else ""
    )
    intro = (
        "Differences of dev scores between two methods, by a t-test whose unit is a mask: each mask's "
        "difference is taken per fine-tuning seed, over the seeds every mask of both methods has (runs "
        "of one seed share the data order and the head's initialisation, which so cancels), masks are "
        "paired by mask seed, and a method with a single mask (OMP, the full model) is the baseline of "
        "every mask of the other; n is the number of masks (in brackets: the masks of each method). The "
        "standard error is that of a crossed masks × seeds design: the masks' spread over their number "
        "plus the seeds' spread over theirs (the fine-tuning noise every mask shares, a one-mask "
        "baseline's above all, which the masks' spread alone does not show), with Satterthwaite's "
        "degrees of freedom; it is conservative. When each method has one mask the unit is the "
        "fine-tuning seed (paired by seed) and the column says so."
        + caveat
        + " Δ is the mean difference ± its standard error (of this design), the interval a "
        f"Student-t 95% interval, p a two-sided t-test and p (Holm) the same adjusted for the "
        f"{sum(c.p is not None for c in family)} tests of this table{also} (Holm's step-down: the chance "
        "of any false verdict among them stays below 5%). The verdict reads the adjusted p: 'within noise' "
        "means p (Holm) ≥ 0.05; 'identical': both methods scored the same on every unit (typically both at a "
        "constant predictor), no test, not counted in the correction. "
        "MDE is the smallest true Δ this design would detect with 80% power at the observed noise (the "
        "same t-test): 'within noise' says nothing about differences below it. "
        "Every comparison with its run ids is in `paired.csv`."
    )
    header = [
        "comparison",
        "sparsity",
        "task",
        "n (unit)",
        "Δ ± SE",
        "95% CI",
        "p",
        "p (Holm)",
        "MDE",
        "verdict",
    ]
    return intro + "\n\n" + _table(header, rows)


def _data_curve_section(res: SweepResults, note) -> list[str]:
    """TAMT Fig. 9 as a table: per task and training-set size, each method's score (the main grid's
    masks), and the report's paired comparisons at that size (Holm over the report's whole family)."""
    tasks = [t for t in res.tasks if res.curve_sizes(t)]
    if not tasks:
        return []
    tests: dict[tuple, list[Paired]] = defaultdict(list)
    for c in res.comparisons():
        tests[(c.a, c.sparsity, c.task, c.train_size)].append(c)
    rows = []
    for t in tasks:
        main = res.main_size.get(t)
        curves = {(s.method, s.sparsity) for n in res.curve_sizes(t) for s in res.sized_scores(t, n)}
        for n in sorted({*res.curve_sizes(t), main}, key=lambda n: (n is None, n or 0)):
            at = [s for s in res.sized_scores(t, n) if (s.method, s.sparsity) in curves]
            for m in [m for m in res.methods if any(s.method == m for s in at)]:
                for sp in sorted({s.sparsity for s in at if s.method == m}):
                    cell = stats((s.value, s.id) for s in at if s.method == m and s.sparsity == sp)
                    masks = len({s.mask_seed for s in at if s.method == m and s.sparsity == sp})
                    # against a method of the curve (the main grid compares with more of them)
                    ours = [c for c in tests[(m, sp, t, MAIN if n == main else n)] if (c.b, sp) in curves]
                    c = ours[0] if ours else None
                    test = [f"− {c.b}", _units(c), *_test_cells(c)] if c is not None else [""] * 8
                    rows.append(
                        [t, _size(n), m, "0%" if m == "full" else pct(sp), str(masks), note(cell), *test]
                    )
    header = ["task", "examples", "method", "sparsity", "masks", "score (n runs)"]
    header += ["vs", "n (unit)", "Δ ± SE", "95% CI", "p", "p (Holm)", "MDE", "verdict"]
    intro = (
        "Each method's masks of the main grid (and the full model) fine-tuned on seeded subsets of each "
        "size (TAMT §4.2.6; 'all': the whole training set): mean ± sample std over every run (masks × "
        "fine-tuning seeds), with the number of masks; the main grid's size is the curve's last point. On "
        "the right, the paired comparisons of the main table at that size, same test and the same Holm "
        "family as the paired comparisons above."
    )
    return [intro, "", _table(header, rows), ""]


def _method_order(res: SweepResults, method: str) -> int:
    return res.methods.index(method) if method in res.methods else len(res.methods)


def _pretrain_section(res: SweepResults, note) -> str:
    losses = res.pretrain_losses()
    if not losses:
        return "_No pre-training evaluation in this sweep (add `pretrain_eval:` to the spec)._"
    keys = sorted({k for v in losses.values() for k in v if k.endswith("_loss")})
    groups: dict[tuple[str, float], dict[str, list]] = {}
    for mask, p in losses.items():
        if mask == (None, None) or mask in res.main_masks:  # masks along a search: see the CSV
            g = groups.setdefault((p["method"], p["sparsity"]), {k: [] for k in keys})
            for k in keys:
                if k in p:
                    g[k].append((p[k], p["id"]))
    rows = []
    for (m, s), g in sorted(groups.items(), key=lambda kv: (_method_order(res, kv[0][0]), kv[0][1])):
        cells = [Cell([v for v, _ in g[k]], [i for _, i in g[k]]) if g[k] else None for k in keys]
        rows.append([m, "0%" if m == "full" else pct(s), *(note(c, digits=3) for c in cells)])
    intro = (
        "Dev-set pre-training losses of the final masks (mean ± std over mask seeds; every mask, "
        "including those saved along a search, is in `pretrain_losses.csv`):"
    )
    return intro + "\n\n" + _table(["method", "sparsity", *keys], rows)


def _loss_along_search_section(res: SweepResults, note) -> str | None:
    """Pre-training loss by search steps, for every (method, sparsity) evaluated at two or more
    budgets (masks saved along a search, IMP re-run with smaller budgets): TAMT Fig. 6's question,
    which method reaches a loss first, without fine-tuning."""
    losses = {k: p for k, p in res.pretrain_losses().items() if k[0] is not None}
    keys = sorted({k for p in losses.values() for k in p if k.endswith("_loss")})
    groups: dict[tuple[str, float], dict[int, list[dict]]] = {}
    for p in losses.values():
        groups.setdefault((p["method"], p["sparsity"]), {}).setdefault(p["search_steps"], []).append(p)
    groups = {g: v for g, v in groups.items() if len(v) > 1}
    if not groups:
        return None
    steps = sorted({n for v in groups.values() for n in v})
    order = sorted(groups, key=lambda g: (_method_order(res, g[0]), g[1]))
    tables = []
    for k in keys:
        rows = []
        for g in order:
            cells = [stats((p[k], p["id"]) for p in groups[g].get(n, []) if k in p) for n in steps]
            rows.append([g[0], pct(g[1]), *(note(c, digits=3) if c.n else "—" for c in cells)])
        tables.append(f"`{k}`:\n\n" + _table(["method", "sparsity", *(f"{n} steps" for n in steps)], rows))
    intro = (
        "Pre-training loss on the dev corpus of the masks a search reached after each number of steps "
        "(masks saved along TAMT's run; IMP re-run with each budget), mean ± std over mask seeds:"
    )
    return "\n\n".join([intro, *tables])


def _search_cost_section(res: SweepResults) -> str:
    rows = {}
    for r in res.runs("search"):
        if (r.id, None) not in res.main_masks:
            continue
        c, m = r.config, r.metrics
        rows.setdefault((method_label(c), c["sparsity"]), []).append(
            (m.get("steps") or 0, m.get("time_s") or 0.0)
        )
    if not rows:
        return "_No searches in this sweep._"
    out = []
    for (method, s), v in sorted(rows.items(), key=lambda kv: (_method_order(res, kv[0][0]), kv[0][1])):
        out.append(
            [
                method,
                pct(s),
                str(len(v)),
                f"{sum(x for x, _ in v) / len(v):g}",
                f"{sum(t for _, t in v) / len(v):.1f}",
            ]
        )
    return _table(["method", "sparsity", "masks", "search steps", "search time (s)"], out)


@dataclass
class Report:
    path: Path  # report.md
    main_table: str  # plain-text main table
    figures: dict[str, Path] = field(default_factory=dict)  # drawn figures
    skipped: dict[str, str] = field(default_factory=dict)  # figure -> why it was not drawn


def _num(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _cell_row(c: Cell) -> dict:
    return {
        "n": c.n,
        "mean": _num(c.mean),
        "std": _num(c.std),
        "min": _num(min(c.values)),
        "max": _num(max(c.values)),
        "run_ids": " ".join(c.run_ids),
    }


def write_csvs(res: SweepResults, out: Path) -> None:
    """results.csv (every cell, curves included), winning_tickets.csv, pretrain_losses.csv."""
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
    atomic_write_csv(out / "results.csv", rows)

    wins = [
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
    comps = res.comparisons()
    sized = any(c.train_size != MAIN for c in comps)  # a data curve's: a column for the size
    paired = [
        {"a": c.a, "b": c.b, "sparsity": c.sparsity, "task": c.task, "unit": c.unit, "n": c.n}
        | ({"train_size": c.train_size if c.train_size == MAIN else _size(c.train_size)} if sized else {})
        | {"masks_a": c.masks[0], "masks_b": c.masks[1]}
        | {"mean_diff": _num(c.mean), "std_diff": _num(c.std), "se_diff": _num(c.se), "df": _num(c.df)}
        | {"p_paired_t": _num(c.p)}
        | {"p_holm": _num(c.p_holm), "mde80": _num(c.mde)}
        | {"ci95_low": _num(c.ci95 and c.ci95[0]), "ci95_high": _num(c.ci95 and c.ci95[1])}
        | {"verdict": c.verdict, "units": " ".join(map(str, c.seeds)), "run_ids": " ".join(c.run_ids)}
        for c in comps
    ]
    atomic_write_csv(out / "paired.csv", paired)

    losses = res.pretrain_losses().values()
    keys = sorted({k for v in losses for k in v if k.endswith("_loss")})
    fields = ("method", "sparsity", "achieved_sparsity", "mask_seed", "search_steps")
    atomic_write_csv(
        out / "pretrain_losses.csv",
        [{k: p[k] for k in fields} | {k: p.get(k) for k in keys} | {"run_id": p["id"]} for p in losses],
    )


def write_report(
    sweep_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    all_runs: bool = False,
    spec: str | os.PathLike | None = None,
) -> Report:
    """Render the report of a sweep directory (the runs of its last spec, of the spec file `spec`,
    or `all_runs`); returns where it is and the main table."""
    plan = None
    if spec is not None:
        loaded = load_spec(spec)
        plan = ([r.id for r in expand(loaded)], spec_json(loaded))
    res = load_results(sweep_dir, all_runs=all_runs, plan=plan)
    if plan is not None and plan[0] and res.not_swept == len(set(plan[0])) and res.left_out:
        raise TicketlabError(
            f"{spec}: none of its runs is in {res.sweep_dir} (run ids hash the settings and the model, "
            "corpus and task files by content: are they the ones this sweep ran on?)"
        )
    out = Path(out_dir) if out_dir is not None else res.sweep_dir / "report"
    # Checked before drawing: a user's results.csv is not overwritten, nor a sweep input written into.
    if out_dir is None and out.is_dir():
        mark_output(out, "report")  # the sweep's own report folder, from before markers: ours
    with atomic_dir(out, kind="report", writes=report_files(), inputs=sweep_inputs(res)) as tmp:
        drawn = _render(res, tmp)
    # Files of an earlier report the new one lacks (a figure no longer drawn) went with the swap.
    figures = {f: out / p.relative_to(tmp) for f, p in drawn.figures.items()}
    return dataclasses.replace(drawn, path=out / drawn.path.name, figures=figures)


def report_files() -> list[str]:
    """Every file a report may write (relative to its directory)."""
    tables = ["results.csv", "winning_tickets.csv", "transfer.csv", "paired.csv", "pretrain_losses.csv"]
    figures = [
        f
        for fname, _, _ in [*plots.FIGURES, *plots.STUDY_FIGURES]
        for f in (fname, Path(fname).stem + ".csv")
    ]
    return ["report.md", *tables, *(f"figures/{f}" for f in figures)]


def sweep_inputs(res: SweepResults) -> list[str]:
    """The files the sweep read (its model, corpus, task data): a report written into one of them
    would change what the runs' ids hash, and every finished run would count as pending again."""
    spec = res.spec or {}
    corpus = spec.get("corpus") or {}
    found = [spec.get("model"), *(corpus.get(k) or [] for k in ("train", "dev"))]
    found += [t.get("data") for t in (spec.get("tasks") or {}).values() if isinstance(t, dict)]
    flat = [p for x in found for p in (x if isinstance(x, list) else [x])]
    return [p for p in flat if isinstance(p, str)]


def _render(res: SweepResults, out: Path) -> Report:
    """Draw the figures and write the tables and the markdown into `out` (a fresh directory)."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    report = Report(path=out / "report.md", main_table=main_table_text(res))
    masks = plots._Masks(res)  # mask files are read once for both Fig. 8 panels
    for fname, _, fn in [*plots.FIGURES, *plots.STUDY_FIGURES]:
        path = out / "figures" / fname
        kw = {"masks": masks} if fn in (plots.distance_from_omp, plots.similarity) else {}
        try:
            reason = fn(res, path, **kw)
        except MaskFileError as e:  # e.g. a store copied without its masks/
            reason = f"a mask file is missing or unreadable ({e})"
        if reason is None:
            report.figures[fname] = path
        elif fname not in {f for f, _, _ in plots.STUDY_FIGURES}:
            report.skipped[fname] = reason
    write_csvs(res, out)
    atomic_write_text(report.path, _markdown(res, report, out))
    return report


def _transfer_part(res: SweepResults, report: Report, note, figure) -> list[str]:
    section = _transfer_section(res, note)
    if section is None:
        return []
    fname = "table3_transfer.png"
    caption = "Transfer matrix: colour is the difference to the full model in units of its std"
    drawn = figure(fname, caption) if fname in report.figures else f"*{caption}: not drawn.*"
    return ["## Transfer between tasks (Chen et al. Table 3)", "", section, "", drawn, ""]


def _super_part(res: SweepResults, report: Report, note, figure) -> list[str]:
    fname = "fig4_phase_transition.png"
    section = _super_section(res, note)
    if section is None and fname not in report.figures:
        return []
    section = section or (
        "_No winning tickets here: they and the super ticket need a task's importance scores "
        "(`ticketlab super`)._"
    )
    caption = "Phase transition: score vs fraction of heads and FFN units pruned (Liang et al. Fig. 4)"
    drawn = figure(fname, caption) if fname in report.figures else f"*{caption}: not drawn.*"
    return ["## Super tickets", "", section, "", drawn, ""]


def _mask_init_part(report: Report, figure) -> list[str]:
    """A method swept under two labels (`tamt-kd` and `tamt-kd/random-init`): Liu et al. §4.2.4."""
    fname = "fig_mask_init.png"
    if fname not in report.figures:
        return []
    caption = next(c for f, c, _ in plots.STUDY_FIGURES if f == fname)
    return [figure(fname, caption) + " Every point with its n: `figures/fig_mask_init.csv`.", ""]


def _statuses(res: SweepResults) -> dict[str, int]:
    """Runs per status; a run claimed by a process that is gone counts as interrupted (the next sweep
    runs it again), and the plan's runs not in the store yet as pending."""
    statuses: dict[str, int] = {}
    now = time.time()
    for r in res.records.values():
        status = "interrupted" if r.status == "running" and owner_gone(r, now, STALE_AFTER) else r.status
        statuses[status] = statuses.get(status, 0) + 1
    if res.not_swept:
        statuses["pending"] = statuses.get("pending", 0) + res.not_swept
    return statuses


def _heading(res: SweepResults, spec: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(_statuses(res).items()))
    left_out = (
        f" {res.left_out} runs of earlier versions of the spec are left out (`--all-runs` shows them)."
        if res.left_out
        else ""
    )
    return [
        f"# Sweep report: {spec.get('name') or res.sweep_dir.name}",
        "",
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} from "
        f"`{res.sweep_dir / 'results.sqlite'}`.  ",
        f"Base model: `{spec.get('model', '?')}`. Runs: {counts}.{left_out}",
        "",
    ]


def _failed_part(res: SweepResults) -> list[str]:
    """The failed runs grouped by the last line of their error."""
    failed = [r for r in res.records.values() if r.status == "failed"]
    if not failed:
        return []
    parts = ["", "## Failed runs", ""]
    by_error: dict[str, list] = {}
    for r in failed:
        lines = (r.error or "").strip().splitlines()
        by_error.setdefault(lines[-1] if lines else "(no message)", []).append(r)
    for error, rs in by_error.items():
        parts.append(f"- {len(rs)} run(s): {error}  ")
        parts.append("  " + ", ".join(f"`{r.id}` {r.name}" for r in rs))
    return parts


def _markdown(res: SweepResults, report: Report, out: Path) -> str:
    note = _Footnotes()
    spec = res.spec or {}
    header, rows = main_rows(res, note)
    metric_note = ", ".join(f"{t}: {m}" for t, m in res.metric_of.items())
    sizes = ", ".join(f"{t}: {_size(n)}" for t, n in res.main_size.items())

    def figure(fname: str, caption: str) -> str:
        if fname in report.figures:
            return f"![{caption}](figures/{fname})\n\n*{caption}.*"
        return f"*{caption}: not drawn — {report.skipped[fname]}.*"

    captions = {f: c for f, c, _ in plots.FIGURES}
    parts = [
        *_heading(res, spec),
        "## Main results",
        "",
        "Best dev score during fine-tuning of each task's main metric (0-100; "
        f"{metric_note or 'no tasks yet'}), mean ± sample std over all runs of a cell (mask seeds × "
        f"fine-tuning seeds). Training-set sizes: {sizes or '—'}. 'avg' averages the tasks per seed pair "
        "first. Each footnote lists the run ids behind a number.",
        "",
        _table(header, rows) if rows else "_No finished fine-tuning runs yet._",
        "",
        *_floor_note(res),
        figure("fig3_score_vs_sparsity.png", captions["fig3_score_vs_sparsity.png"]),
        "",
        "## Winning tickets",
        "",
        _winning_section(res, note),
        "",
        "## Paired comparisons",
        "",
        _paired_section(res),
        "",
        *_transfer_part(res, report, note, figure),
        *_super_part(res, report, note, figure),
        "## Pre-training loss and downstream score",
        "",
        _pretrain_section(res, note),
        "",
        figure("fig5_pretrain_loss_vs_score.png", captions["fig5_pretrain_loss_vs_score.png"]),
        "",
        "## Search cost",
        "",
        _search_cost_section(res),
        "",
        *([along, ""] if (along := _loss_along_search_section(res, note)) else []),
        figure("fig6_search_cost.png", captions["fig6_search_cost.png"]),
        "",
        *_mask_init_part(report, figure),
        "## Mask similarity",
        "",
        "Mask distance is 1 - Jaccard similarity |A∩B| / |A∪B| of the kept weights (TAMT §4.2.5).",
        "",
        figure("fig8_distance_from_omp.png", captions["fig8_distance_from_omp.png"]),
        "",
        figure("fig8_similarity.png", captions["fig8_similarity.png"]),
        "",
        "## Data scarcity",
        "",
        *_data_curve_section(res, note),
        figure("fig9_train_size.png", captions["fig9_train_size.png"]),
        "",
        "Every cell, including the curves, is in `results.csv` with its run ids.",
    ]
    parts += [*_failed_part(res), "", note.render(), ""]
    return "\n".join(parts)
