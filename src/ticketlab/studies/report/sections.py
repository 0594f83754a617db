"""The report's markdown sections, one function per table of `report.md`: the main table (also as
plain text for terminals), winning tickets, super tickets, the transfer matrix, paired comparisons
and the data-scarcity table; the search side's (budgets, pre-training losses, the loss along a
search, the search cost) are `search_sections.py`; the verdict on the papers' orders, `orders.py`.

Each takes a `SweepResults` and, where its numbers get footnotes, a `Footnotes` (the run ids behind
each number); `report._markdown` puts them together with the figures.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..stats import CROSSED
from ..supertickets import super_picks
from .cells import AVG, Cell, pct, stats
from .comparison import MAIN, NO_SPREAD, ONE_STOCHASTIC_MASK, Comparison
from .orders import order_verdict
from .results import PROTOCOLS
from .tables import SweepResults


def fmt(cell: Cell | None, digits: int = 1) -> str:
    if cell is None:
        return "—"
    if cell.n > 1:
        return f"{cell.mean:.{digits}f} ± {cell.std:.{digits}f}"
    return f"{cell.mean:.{digits}f}"


def size(n: int | None) -> str:
    return "all" if n is None else str(n)


class Footnotes:
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


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def main_rows(res: SweepResults, cell_text) -> tuple[list[str], list[list[str]]]:
    """The main table: one row per method and target sparsity, one column per task and the average.
    Its sparsity is the one the row's masks achieved, of the model's default targets, with the target
    beside it where the two differ (Chen et al.'s IMP keeps the word embeddings dense)."""
    cells = res.cells()
    cols = res.tasks + ([AVG] if len(res.tasks) > 1 else [])
    header = ["method", "sparsity"] + [
        "avg" if t == AVG else f"{t} ({res.metric_of.get(t, '?')})" for t in cols
    ]
    rows = []
    for m in res.methods:
        for s in [0.0] if m == "full" else res.sparsities(m):
            if any((m, s, t) in cells for t in cols):
                rows.append([m, achieved_text(res, m, s), *(cell_text(cells.get((m, s, t))) for t in cols)])
    return header, rows


def achieved_text(res: SweepResults, method: str, sparsity: float) -> str:
    """'43.2% (target 50%)': the sparsity a row's masks achieved (`SweepResults.achieved`) to 0.1%,
    and its target where they differ by more than that rounding; the target alone, marked, where
    none was measured."""
    if method == "full":
        return "0%"
    share = res.achieved(method, sparsity)
    if share is None:
        return f"{pct(sparsity)} (target)"
    text = f"{share * 100:.1f}%"
    return text if abs(share - sparsity) < 0.0005 else f"{text} (target {pct(sparsity)})"


def main_table_text(res: SweepResults) -> str:
    """The main table as aligned plain text, for terminals (`ticketlab demo` prints it)."""
    header, rows = main_rows(res, fmt)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(
            x.ljust(w) if i < 2 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def floor_note(res: SweepResults) -> list[str]:
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


def winning_section(res: SweepResults, note) -> str:
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
            if w is not None and w.reason is not None:
                row.append(w.reason)  # "floor", "one run" or "no runs": no verdict
            elif w is None or w.full is None:
                row.append("n/a")
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
            "to judge by (no verdict); 'no runs': the method has no fine-tuning on the task yet. "
            "In brackets: the method's score there.",
            "",
            table(["method", *("avg" if t == AVG else t for t in cols)], [["full model", *full], *rows]),
        ]
    )


def super_section(res: SweepResults, note) -> str | None:
    """Super tickets (Liang et al. 2021), when the store has structured tickets: per task the full
    model, the super ticket (mean ± std over seeds of each seed's pick) and the levels picked."""
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
            table(["task", "full model", "super ticket", "levels picked"], rows),
        ]
    )


def _signed(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:+.{digits}f}"


def transfer_section(res: SweepResults, note) -> str | None:
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
        parts += ["", f"**Sparsity {pct(sp)}**", "", table(["source \\ target", *targets], [full, *rows])]
    return "\n".join(parts)


def _units(c: Comparison) -> str:
    """Masks × fine-tuning seeds of each side: '3×3 vs 1×3', and ', crossed seeds' where they share
    their fine-tuning seeds (the crossed-seeds test)."""
    crossed = ", crossed seeds" if c.test == CROSSED else ""
    return f"{c.masks[0]}×{c.seeds[0]} vs {c.masks[1]}×{c.seeds[1]}{crossed}"


def verdict(c: Comparison) -> str:
    """The verdict, with its labels ('unequal sparsity ...': not a comparison of equal budgets)."""
    return "; ".join([c.verdict, *c.labels])


def _test_cells(c: Comparison) -> list[str]:
    """Δ ± SE, its 95% interval, Holm's p, the MDE and the verdict of one comparison (the raw p is
    in paired.csv only: the report's prose reads corrected p-values)."""
    ci = c.ci95
    return [
        _signed(c.mean, 2) + ("" if c.se is None else f" ± {c.se:.2f} SE"),
        "—" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]",
        "—" if c.p_holm is None else f"{c.p_holm:.3f}",
        "—" if c.mde is None else f"{c.mde:.2f}",
        verdict(c),
    ]


def family_note(family: list[Comparison], others: list[Any] | None = None, whose: str = "") -> str:
    """The report's Holm family: how many tests (the comparisons and the `others`, those of the
    spec's analyses, `whose`: their names), and the comparisons that are none."""
    tests = sum(c.p is not None for c in [*family, *(others or [])])
    if any(c.exploratory for c in family):
        return (
            f"Exploratory: this study declared its claims before its runs, and those alone are its Holm "
            f"family (section 'Declared claims'); these {tests} tests are estimates, Δ ± SE with its 95% "
            "CI and the MDE, without a verdict or a corrected p."
        )
    why: dict[str, int] = defaultdict(int)
    for c in family:
        if c.why_not is not None:
            why[c.why_not] += 1
    out = (
        f"Holm family: the {tests} tests of this report (the comparisons below"
        + (" and the data-scarcity section's" if any(c.train_size != MAIN for c in family) else "")
        + (f" and those of {whose}" if any(t.p is not None for t in others or []) else "")
        + "); p (Holm) is adjusted over all of them"
    )
    if why:
        out += "; no test, so not in it: " + ", ".join(f"{n} {w}" for w, n in sorted(why.items()))
    return out + "."


def paired_section(res: SweepResults) -> str:
    family, others = res.family()
    comps = [c for c in family if c.train_size == MAIN]  # a data curve's are in its own section
    if not comps:
        return "_No two methods share a sparsity yet._"
    rows = [
        [f"{c.a.method} − {c.b.method}", pct(c.sparsity), c.task, _units(c), *_test_cells(c)] for c in comps
    ]
    intro = (
        "Differences of scores between two methods, masks as the unit. Each mask's score is its mean "
        "over its fine-tuning seeds (on 'avg': over tasks of its per-task means); a method's is the mean "
        "of its masks'. Δ is the difference of the two method means ± its standard error (SE), from "
        "the test the fine-tuning seeds make valid: where no seed serves two masks, Welch's test on the "
        "units' means with Satterthwaite's degrees of freedom (a unit: a mask, or, for the one mask of a "
        "deterministic method (the full model, OMP, importance-ranked super tickets), a fine-tuning "
        "seed); where the masks share their seeds, the crossed-seeds test on the seeds both sides share "
        "(a seed shifts every mask of a method together: its method × seed interaction is in the SE, "
        "on J − 1 degrees of freedom for J shared seeds; one shared seed: no test). No mask "
        "of one method is paired with a mask of the other (a search seed means nothing across methods). "
        f"A stochastic method (random, IMP, TAMT, random tickets) with one mask gets no test: "
        f"'{ONE_STOCHASTIC_MASK}'. 'n' is masks × fine-tuning seeds per mask of each side. "
        + family_note(family, others, " and ".join(a.name for a in res.analyses))
        + (
            " The MDE is the smallest true Δ this design detects with 80% power at α = 0.05 at its "
            "observed noise."
            if any(c.exploratory for c in family)
            else " Holm's step-down keeps the chance of any false verdict among them below 5%; the verdict "
            "reads p (Holm), and 'within noise' (p (Holm) ≥ 0.05) says nothing of differences below the "
            "MDE, the smallest true Δ this design detects with 80% power at α = 0.05 (uncorrected) at its "
            "observed noise."
        )
        + " 'identical': every run of both methods scored the same (no test). "
        f"'{NO_SPREAD}': each "
        "side's mask means (a deterministic mask's seeds) agree and the sides differ, so the SE is 0 "
        "and no p can be read (no test). 'floor': the full "
        "model is within one std of the task's constant predictor (the task was not learnt at this "
        "budget), so no comparison on it is tested (the average over tasks keeps its test: a task at "
        "its floor dilutes a difference of averages, it does not make one). 'unequal sparsity': "
        "the two methods' masks prune different shares of the model's targets (Chen et al.'s IMP keeps "
        "the word embeddings dense), so the comparison is not one of equal budgets. Each comparison's "
        "uncorrected p, degrees of freedom and run ids are in `paired.csv`."
    )
    header = ["comparison", "sparsity", "task", "n (masks×seeds)", "Δ ± SE", "95% CI", "p (Holm)", "MDE"]
    verdict_line = order_verdict(comps)
    return (
        intro + "\n\n" + table([*header, "verdict"], rows) + ("\n\n" + verdict_line if verdict_line else "")
    )


def protocol_note(res: SweepResults) -> str:
    """Which data chose each score's checkpoint and which data scored it (`results.reported_score`)."""
    counts: dict[str, int] = defaultdict(int)
    for s in res.scores:
        counts[s.protocol] += 1
    if not counts:
        return ""
    parts = [f"{n} of {len(res.scores)} runs: {PROTOCOLS[p]}" for p, n in sorted(counts.items())]
    return "Checkpoint selection and reporting: " + "; ".join(parts) + "."


def data_curve_section(res: SweepResults, note) -> list[str]:
    """TAMT Fig. 9 as a table: per task and training-set size, each method's score (the main grid's
    masks), and the report's paired comparisons at that size (Holm over the report's whole family)."""
    tasks = [t for t in res.tasks if res.curve_sizes(t)]
    if not tasks:
        return []
    tests: dict[tuple, list[Comparison]] = defaultdict(list)
    for c in res.comparisons():
        tests[(c.a.method, c.sparsity, c.task, c.train_size)].append(c)
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
                    ours = [
                        c for c in tests[(m, sp, t, MAIN if n == main else n)] if (c.b.method, sp) in curves
                    ]
                    c = ours[0] if ours else None
                    test = [f"− {c.b.method}", _units(c), *_test_cells(c)] if c is not None else [""] * 7
                    rows.append(
                        [t, size(n), m, "0%" if m == "full" else pct(sp), str(masks), note(cell), *test]
                    )
    header = ["task", "examples", "method", "sparsity", "masks", "score (n runs)"]
    header += ["vs", "n (masks×seeds)", "Δ ± SE", "95% CI", "p (Holm)", "MDE", "verdict"]
    intro = (
        "Each method's masks of the main grid (and the full model) fine-tuned on seeded subsets of each "
        "size (TAMT §4.2.6; 'all': the whole training set): mean ± SD (sample standard deviation) over "
        "every run (masks × fine-tuning seeds), with the number of masks; the main grid's size is the "
        "curve's last point. On the right, the comparisons of the main table at that size: the same "
        "test, in the same Holm family as the comparisons above."
    )
    return [intro, "", table(header, rows), ""]
