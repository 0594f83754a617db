"""`write_report(sweep_dir)`: a markdown report, its PNG figures and CSV tables, from the store alone.

    SWEEP_DIR/report/report.md            tables, figures, what was skipped and why, failed runs
    SWEEP_DIR/report/results.csv          one row per cell (method, sparsity, task, train size,
                                          search steps): n, mean, std, min, max and the run ids
    SWEEP_DIR/report/winning_tickets.csv  highest winning sparsity per method and task
    SWEEP_DIR/report/pretrain_losses.csv  MLM / KD dev loss per mask, with run ids
    SWEEP_DIR/report/paired.csv           method A - method B per sparsity and task, masks as the
                                          unit, the test the seeds make valid (`studies.stats`):
                                          masks and seeds of each side, means, the test, SE, df,
                                          t-interval, p, Holm's p, MDE and its α, verdict (no test
                                          for a stochastic method's one mask), labels
    SWEEP_DIR/report/pretrain_tests.csv   the tests on pre-training loss of the analyses the spec names
                                          (if any, `analyses.py`, `loss_tests.py`; TAMT's claims:
                                          loss at equal steps, Spearman's rho of loss and score, loss
                                          along the search); in paired.csv's Holm family
    SWEEP_DIR/report/declared.csv         the claims the spec declared, tested as the study's one
                                          Holm family (`declared.py`; the other tests exploratory)
    SWEEP_DIR/report/transfer.csv         source x target matrix of task-specific tickets (if any)
    SWEEP_DIR/report/figures/*.png        (fig3 also as .csv: every point and band drawn)

Every number in the markdown tables has a footnote with the ids of the runs it averages (look them
up with `ticketlab report --run ID` or in `results.sqlite`).

This module writes the report's directory and puts `report.md` together; its tables are written by
`sections.py` and `search_sections.py` (markdown) and `csvs.py` (CSV), its figures by `plots.py`; the
analyses the spec names (`analyses.py`, recipes outside the library) add their tests and sections.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...core.errors import MaskFileError, TicketlabError
from ...core.files.atomic import atomic_write_text
from ...core.outputs import atomic_dir
from ...methods.registry import methods
from ..store import owner_gone
from ..sweep.methods import base_method
from ..sweep.plan import expand
from ..sweep.spec import load_spec, spec_json
from ..sweep.sweep_spec import SweepSpec
from . import plots
from .analyses import Analysis
from .csvs import write_csvs
from .declared import declared_section
from .figure_kit import plain_text
from .results import load_results
from .search_sections import budget_section, loss_along_search_section, pretrain_section, search_cost_section
from .sections import (
    Footnotes,
    data_curve_section,
    floor_note,
    fmt,
    main_rows,
    main_table_text,
    paired_section,
    pct,
    protocol_note,
    size,
    super_section,
    table,
    transfer_section,
    winning_section,
)
from .tables import SweepResults

__all__ = [
    "STALE_AFTER",
    "Report",
    "fmt",
    "main_rows",
    "main_table_text",
    "pct",
    "report_files",
    "sweep_inputs",
    "write_csvs",
    "write_report",
]

STALE_AFTER = 600.0  # seconds without a heartbeat after which a running run counts as interrupted


@dataclass
class Report:
    path: Path  # report.md
    main_table: str  # plain-text main table
    figures: dict[str, Path] = field(default_factory=dict)  # drawn figures
    skipped: dict[str, str] = field(default_factory=dict)  # figure -> why it was not drawn


def write_report(
    sweep_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    all_runs: bool = False,
    spec: str | os.PathLike | SweepSpec | None = None,
    analyses: Sequence[Analysis] | None = None,
) -> Report:
    """Render the report of a sweep directory (the runs of its last spec, of `spec`, a spec file or
    one read, or `all_runs`); returns where it is and the main table. `analyses`: what recipes add
    (their tests in the Holm family, their sections); None: those the spec names (`analyses.py`)."""
    plan = None
    if spec is not None:
        loaded = spec if isinstance(spec, SweepSpec) else load_spec(spec)
        plan, source = ([r.id for r in expand(loaded)], spec_json(loaded)), loaded.source
    res = load_results(sweep_dir, all_runs=all_runs, plan=plan, analyses=analyses)
    if plan is not None and plan[0] and res.not_swept == len(set(plan[0])) and res.left_out:
        raise TicketlabError(
            f"{source}: none of its runs is in {res.sweep_dir} (run ids hash the settings and the "
            "model, corpus and task files by content: are they the ones this sweep ran on?)"
        )
    out = Path(out_dir) if out_dir is not None else res.sweep_dir / "report"
    # Checked before drawing: a user's results.csv is not overwritten, nor a sweep input written into.
    # A `report/` folder without our marker is the user's, even in a sweep's directory.
    with atomic_dir(out, kind="report", writes=report_files(), inputs=sweep_inputs(res)) as tmp:
        drawn = _render(res, tmp)
    # Files of an earlier report the new one lacks (a figure no longer drawn) went with the swap.
    figures = {f: out / p.relative_to(tmp) for f, p in drawn.figures.items()}
    return dataclasses.replace(drawn, path=out / drawn.path.name, figures=figures)


def report_files() -> list[str]:
    """Every file a report may write (relative to its directory)."""
    tables = ["results.csv", "winning_tickets.csv", "transfer.csv", "paired.csv", "pretrain_losses.csv"]
    tables.append("pretrain_tests.csv")  # the loss tests of the spec's analyses, where there are any
    tables.append("declared.csv")  # the study's declared claims (`declared.py`), where it has any
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


# A study of masks alone (`tasks: {}`, and no fine-tuning in the store): the figures of scores say so
# rather than what a study with tasks would add to draw them.
MASKS_ALONE = "this study fine-tunes nothing (`tasks: {}`)"
SCORE_FIGURES = frozenset(f for f, _, _ in plots.FIGURES if f != "fig8_similarity.png")


def _render(res: SweepResults, out: Path) -> Report:
    """Draw the figures and write the tables and the markdown into `out` (a fresh directory)."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    report = Report(path=out / "report.md", main_table=main_table_text(res))
    masks = plots._Masks(res)  # mask files are read once for both Fig. 8 panels
    for fname, _, fn in [*plots.FIGURES, *plots.STUDY_FIGURES]:
        path = out / "figures" / fname
        kw = {"masks": masks} if fn in (plots.distance_from_omp, plots.similarity) else {}
        try:
            with plain_text():
                reason = fn(res, path, **kw)
        except MaskFileError as e:  # e.g. a store copied without its masks/
            # named as `_shown` names the store: a committed report reads the same from every checkout
            shown = str(e).replace(str(res.sweep_dir), str(_shown(res.sweep_dir)))
            reason = f"a mask file is missing or unreadable ({shown})"
        if reason is None:
            report.figures[fname] = path
        elif fname not in {f for f, _, _ in plots.STUDY_FIGURES}:
            report.skipped[fname] = MASKS_ALONE if fname in SCORE_FIGURES and res.masks_alone else reason
    write_csvs(res, out)
    atomic_write_text(report.path, _markdown(res, report, out))
    return report


def _transfer_part(res: SweepResults, report: Report, note, figure) -> list[str]:
    section = transfer_section(res, note)
    if section is None:
        return []
    fname = "table3_transfer.png"
    caption = "Transfer matrix: colour is the difference to the full model in units of its std"
    drawn = figure(fname, caption) if fname in report.figures else f"*{caption}: not drawn.*"
    return ["## Transfer between tasks (Chen et al. Table 3)", "", section, "", drawn, ""]


def _super_part(res: SweepResults, report: Report, note, figure) -> list[str]:
    fname = "fig4_phase_transition.png"
    section = super_section(res, note)
    if section is None and fname not in report.figures:
        return []
    section = section or (
        "_No winning tickets here: they and the super ticket need a task's importance scores "
        "(`ticketlab super`)._"
    )
    caption = "Phase transition: score vs fraction of heads and FFN units pruned (Liang et al. Fig. 4)"
    drawn = figure(fname, caption) if fname in report.figures else f"*{caption}: not drawn.*"
    return ["## Super tickets", "", section, "", drawn, ""]


def _study_figure(report: Report, figure, fname: str) -> list[str]:
    """A figure of `plots.STUDY_FIGURES` where the store had its runs (mask initialisation, Liu et al.
    §4.2.4: a method swept under two labels; the loss along a search), with where its points are."""
    if fname not in report.figures:
        return []
    caption = next(c for f, c, _ in plots.STUDY_FIGURES if f == fname)
    return [figure(fname, caption) + f" Every point with its n: `figures/{Path(fname).stem}.csv`.", ""]


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
        f"From `{_shown(res.sweep_dir / 'results.sqlite')}` as of its last finished run ({_as_of(res)}).  ",
        f"Base model: `{spec.get('model', '?')}`. Runs: {counts}.{left_out}",
        "",
        *budget_section(res),
    ]


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it lies below it (a committed store's report
    then reads the same from every checkout), else as it is."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _as_of(res: SweepResults) -> str:
    """When the store's last run finished (not when the report was drawn: a report drawn again from
    the same store is the same file)."""
    times = [r.finished for r in res.records.values() if r.finished]
    return datetime.fromtimestamp(max(times), UTC).isoformat(timespec="seconds") if times else "no run yet"


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


def _not_tickets_note(res: SweepResults) -> list[str]:
    """A line per reported method that writes a model beside its mask (SparseGPT): its rows are its
    ticket, and the other model is not."""
    known = methods()
    beside = {m: known[base_method(m)].beside_mask for m in res.methods if base_method(m) in known}
    lines = [
        f"*`{m}`: its rows fine-tune its ticket, θ0 under its mask; {what}, written beside the mask, "
        "is not fine-tuned here.*"
        for m, what in beside.items()
        if what
    ]
    return [*lines, ""] if lines else []


def _main_part(res: SweepResults, note: Footnotes, figure, main: tuple[list[str], list]) -> list[str]:
    """The main results table (`main`: its header and rows), the winning tickets and the paired
    comparisons: the report's downstream sections."""
    header, rows = main
    captions = {f: c for f, c, _ in plots.FIGURES}
    metric_note = ", ".join(f"{t}: {m}" for t, m in res.metric_of.items())
    sizes = ", ".join(f"{t}: {size(n)}" for t, n in res.main_size.items())
    return [
        "## Main results",
        "",
        "Dev score of each task's main metric (0-100; "
        f"{metric_note or 'no tasks yet'}), mean ± SD (sample standard deviation) over all runs of a "
        f"cell (mask seeds × fine-tuning seeds). Training-set sizes: {sizes or '—'}. 'avg' averages "
        "the tasks per seed pair first. Each footnote lists the run ids behind a number. 'sparsity' is "
        "the share of the model's default targets (word embeddings and encoder matrices) the row's "
        "masks prune, as measured, with the target beside it where they differ. " + protocol_note(res),
        "",
        table(header, rows) if rows else "_No finished fine-tuning runs yet._",
        "",
        *floor_note(res),
        *_not_tickets_note(res),
        figure("fig3_score_vs_sparsity.png", captions["fig3_score_vs_sparsity.png"]),
        "",
        "## Winning tickets",
        "",
        winning_section(res, note),
        "",
        "## Paired comparisons",
        "",
        paired_section(res),
        "",
    ]


def _markdown(res: SweepResults, report: Report, out: Path) -> str:
    note = Footnotes()
    header, rows = main_rows(res, note)  # first: the main table's footnotes come first

    def figure(fname: str, caption: str) -> str:
        if fname in report.figures:
            return f"![{caption}](figures/{fname})\n\n*{caption}.*"
        return f"*{caption}: not drawn — {report.skipped[fname]}.*"

    captions = {f: c for f, c, _ in plots.FIGURES}
    parts = [*_heading(res, res.spec or {}), *declared_section(res)]
    alone = res.masks_alone
    if alone:  # no downstream section has a cell
        parts += [
            "## Downstream results",
            "",
            "None: this study fine-tunes nothing (`tasks: {}`). Its masks are compared by their "
            "pre-training losses and their similarity, below.",
            "",
        ]
    else:
        parts += _main_part(res, note, figure, (header, rows))
    parts += [
        *_transfer_part(res, report, note, figure),
        *_super_part(res, report, note, figure),
        "## Pre-training loss" if alone else "## Pre-training loss and downstream score",
        "",
        pretrain_section(res, note),
        "",
        figure("fig5_pretrain_loss_vs_score.png", captions["fig5_pretrain_loss_vs_score.png"]),
        "",
        "## Search cost",
        "",
        search_cost_section(res),
        "",
        *([along, ""] if (along := loss_along_search_section(res, note)) else []),
        *_study_figure(report, figure, "fig6_loss_vs_search_steps.png"),
        figure("fig6_search_cost.png", captions["fig6_search_cost.png"]),
        "",
        *(line for a in res.analyses for line in a.section(res)),  # the spec's recipes' sections
        *_study_figure(report, figure, "fig_mask_init.png"),
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
        *data_curve_section(res, note),
        figure("fig9_train_size.png", captions["fig9_train_size.png"]),
        "",
        "Every cell, including the curves, is in `results.csv` with its run ids.",
    ]
    parts += [*_failed_part(res), "", note.render(), ""]
    return "\n".join(parts)
