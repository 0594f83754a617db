"""The figures of a sweep report, after TAMT's Fig. 3, 5, 6, 8 and 9.

Each function draws one PNG from a `SweepResults` and returns None, or returns the reason it drew
nothing (the sweep has no data for it) so the report can say so instead of showing an empty plot.
matplotlib's object API with the Agg canvas: no display, no global pyplot state.

What the figures share (saving, panels, bands, the floor line) is `figure_kit.py`; Fig. 8's (the masks
themselves compared) are `mask_figures.py`; the figures of the other studies (Liang et al. Fig. 4,
Chen et al. Table 3, mask initialisation) are `study_figures.py`. `FIGURES` and `STUDY_FIGURES` list
them all for the report.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter

from ...core.files.atomic import atomic_write_csv
from ...tasks.glue import load_examples
from ...tasks.registry import get_task
from ..sweep.methods import method_color, report_order
from .cells import AVG, Cell, method_label
from .figure_kit import (
    DPI,
    FLOOR_LABEL,
    MARKERS,
    _at_main_size,
    _band,
    _common_tasks,
    _curves,
    _floor_line,
    _full_line,
    _legend,
    _panels,
    _save,
    _series_row,
    _task_floor,
    _task_title,
    pct,
)
from .mask_figures import _Masks, distance_from_omp, similarity
from .study_figures import loss_vs_search_steps, mask_init, phase_transition, transfer_matrix
from .tables import SweepResults

__all__ = [
    "DPI",
    "_Masks",
    "FIGURES",
    "FLOOR_LABEL",
    "MARKERS",
    "STUDY_FIGURES",
    "distance_from_omp",
    "loss_vs_search_steps",
    "mask_init",
    "pct",
    "phase_transition",
    "pretrain_loss_vs_score",
    "score_vs_sparsity",
    "score_vs_train_size",
    "search_cost",
    "similarity",
    "transfer_matrix",
]


# --------------------------------------------------------------------------- Fig. 3


def score_vs_sparsity(res: SweepResults, path: Path) -> str | None:
    """Score vs sparsity per task and averaged, mean ± std over seeds; the full model as a band and
    the constant predictor as a line. What is drawn (every point, band and line) is also written
    beside the PNG as CSV."""
    cells = res.cells()
    pruned = [m for m in res.methods if m != "full" and "@" not in m and res.sparsities(m)]
    if not pruned:
        return "no fine-tuning results of pruned models yet"
    panels = res.tasks + ([AVG] if len(res.tasks) > 1 else [])
    fig, axes = _panels(len(panels))
    drawn = []
    for ax, task in zip(axes, panels, strict=True):
        full = cells.get(("full", 0.0, task))
        _full_line(ax, full, res.methods)
        drawn += [_series_row("full", task, 0.0, full)] if full is not None else []
        if (floor := _task_floor(res, task)) is not None:
            _floor_line(ax, floor)
            drawn.append(_series_row(FLOOR_LABEL, task, 0.0, Cell([floor], [])))
        for m in pruned:
            xs = [s for s in res.sparsities(m) if (m, s, task) in cells]
            if xs:
                _band(
                    ax,
                    [100 * s for s in xs],
                    [cells[(m, s, task)] for s in xs],
                    method_color(m, res.methods),
                    m,
                )
                drawn += [_series_row(m, task, s, cells[(m, s, task)]) for s in xs]
        ax.set(title=_task_title(res, task), xlabel="sparsity (%)", ylabel="dev score")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    _save(fig, path)
    atomic_write_csv(path.with_suffix(".csv"), drawn)
    return None


# --------------------------------------------------------------------------- Fig. 5


def pretrain_loss_vs_score(res: SweepResults, path: Path) -> str | None:
    """Pre-training (MLM / KD) dev loss of each mask vs its downstream score averaged over tasks
    (± std over fine-tuning seeds), and the constant predictor's average."""
    losses = res.pretrain_losses()
    if not losses:
        if res.pretrain_pending():
            return "no pre-training evaluation has finished yet"
        return "no pre-training evaluation runs (add `pretrain_eval: {}` to the spec)"
    per_mask = res.mask_scores(_at_main_size(res), res.tasks)
    keys = sorted({k for v in losses.values() for k in v if k.endswith("_loss")})
    points = [(losses[m], per_mask[m]) for m in losses if m in per_mask]
    if not keys or not points:
        return "no mask has both a pre-training loss and scores on every task"
    sparsities = sorted({p["sparsity"] for p, _ in points if p["method"] != "full"})
    fig, axes = _panels(len(keys), width=4.6, height=3.6)
    for ax, key in zip(axes, keys, strict=True):
        for p, cell in points:
            if key not in p:
                continue
            m = p["method"]
            marker = "*" if m == "full" else MARKERS[sparsities.index(p["sparsity"]) % len(MARKERS)]
            ax.scatter(
                p[key],
                cell.mean,
                color=method_color(m, res.methods),
                marker=marker,
                s=60 if m == "full" else 25,
            )
            if cell.n > 1:  # ± std over fine-tuning seeds of the mask's task average
                ax.errorbar(
                    p[key], cell.mean, yerr=cell.std, color=method_color(m, res.methods), lw=0.8, capsize=2
                )
        _floor_line(ax, res.floor(res.tasks))
        ax.set(
            xlabel=f"{key.replace('_', ' ')} (dev)", ylabel="avg dev score", title=key.split("_")[0].upper()
        )
        ax.grid(alpha=0.3)
    handles = [
        axes[0].scatter([], [], color=method_color(m, res.methods), marker="o", label=m)
        for m in res.methods
        if any(p["method"] == m for p, _ in points)
    ]
    handles += [
        axes[0].scatter([], [], color="gray", marker=MARKERS[i % len(MARKERS)], label=pct(s))
        for i, s in enumerate(sparsities)
    ]
    if res.floor(res.tasks) is not None:
        handles.append(Line2D([], [], ls=":", color="dimgray", label=FLOOR_LABEL))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    _save(fig, path)
    return None


# --------------------------------------------------------------------------- Fig. 6


def search_cost(res: SweepResults, path: Path) -> str | None:
    """Score vs search steps and vs search time, per method, at each sparsity with a search curve."""
    curves = _curves(res)
    if not curves:
        return (
            "no method has fine-tuned masks from two or more search budgets (a `search_curve:` block "
            "makes them; their fine-tunings may not have run yet)"
        )
    tasks = _common_tasks(res, {m for v in curves.values() for ms in v.values() for m in ms})
    if not tasks:
        return "the masks along the search curves share no task"
    per_mask = res.mask_scores(_at_main_size(res), tasks)
    sparsities = sorted({s for _, s in curves})
    fig, axes = _panels(2 * len(sparsities), ncols=2)
    for i, sp in enumerate(sparsities):
        ax_steps, ax_time = axes[2 * i], axes[2 * i + 1]
        for (m, s), by_steps in curves.items():
            if s != sp:
                continue
            steps = sorted(k for k in by_steps if all(x in per_mask for x in by_steps[k]))
            cells = [Cell([per_mask[x].mean for x in by_steps[k]], []) for k in steps]
            times = [sum(res.search_time(*x) or 0.0 for x in by_steps[k]) / len(by_steps[k]) for k in steps]
            _band(ax_steps, steps, cells, method_color(m, res.methods), m)
            _band(ax_time, times, cells, method_color(m, res.methods), m)
        for ax in (ax_steps, ax_time):
            omp = [per_mask[x].mean for x in per_mask if _method_of(res, x) == ("omp", sp)]
            if omp:
                ax.axhline(omp[0], ls=":", color=method_color("omp", res.methods), label="omp")
            _floor_line(ax, res.floor(tasks))
            ax.grid(alpha=0.3)
        ax_steps.set(
            title=f"{pct(sp)} sparsity", xlabel="search steps", ylabel=f"avg score ({', '.join(tasks)})"
        )
        ax_time.set(title=f"{pct(sp)} sparsity", xlabel="search time (s, evaluation excluded)")
    _legend(fig, axes)
    _save(fig, path)
    return None


def _method_of(res: SweepResults, mask: tuple) -> tuple[str, float] | None:
    if mask[0] is None:
        return None
    c = res.records[mask[0]].config
    return (method_label(c), c["sparsity"])


# --------------------------------------------------------------------------- Fig. 9


def _whole_sizes(res: SweepResults) -> dict[str, int]:
    """Task label -> the number of training examples, for tasks whose data is here (the x of runs
    on the whole training set, `train_size` null)."""
    out: dict[str, int] = {}
    for r in res.runs("finetune"):
        c = r.config
        label = c.get("task_label")
        if label in out or c.get("data") is None:
            continue
        try:
            spec = get_task(c["task"], c["data"])
            if spec.kind != "squad":
                out[label] = len(load_examples(spec, c["data"], "train"))
        except Exception:  # moved or missing data: the curve goes without its whole-set point
            continue
    return out


def score_vs_train_size(res: SweepResults, path: Path) -> str | None:
    """Score vs number of fine-tuning examples, per task and averaged, for each method and sparsity.
    Runs on the whole training set (`all` in `data_curve.train_sizes`, or the main runs when they use
    every example) are the last point, at the task's number of examples; the average over tasks has
    it only where the tasks' sizes agree."""
    main = [s for s in res.scores if s.method == "full" or s.mask in res.main_masks]
    curves = {(s.method, s.sparsity) for s in main if s.train_size is not None}
    whole = _whole_sizes(res)
    sized = [
        dataclasses.replace(s, train_size=s.train_size or whole[s.task])
        for s in main
        if (s.method, s.sparsity) in curves and (s.train_size is not None or s.task in whole)
    ]
    sizes_of: dict[tuple, set[int]] = defaultdict(set)
    by_task: dict[tuple, set[int]] = defaultdict(set)  # tasks of different sizes are no curve
    for s in sized:
        sizes_of[(s.method, s.sparsity)].add(s.train_size)
        by_task[(s.method, s.sparsity, s.task)].add(s.train_size)
    order = report_order() + res.methods
    curved = {(m, sp) for (m, sp, _), v in by_task.items() if len(v) >= 2}
    lines = sorted(curved, key=lambda k: (order.index(k[0]), k[1]))
    if not lines:
        return "no method was fine-tuned on two or more training-set sizes (add a `data_curve:` block)"
    tasks = [t for t in res.tasks if any(s.task == t for s in sized)]
    panels = tasks + ([AVG] if len(tasks) > 1 else [])
    sparsities = sorted({s for m, s in lines if m != "full"})
    fig, axes = _panels(len(panels))
    for ax, task in zip(axes, panels, strict=True):
        for m, sp in lines:
            xs, cells = [], []
            for n in sorted(sizes_of[(m, sp)]):
                at = [s for s in sized if s.train_size == n and s.method == m and s.sparsity == sp]
                cell = res.average_cells(at, tasks).get((m, sp, AVG)) if task == AVG else None
                if task != AVG:
                    vals = [(s.value, s.id) for s in at if s.task == task]
                    cell = Cell([v for v, _ in vals], [i for _, i in vals]) if vals else None
                if cell is not None:
                    xs.append(n)
                    cells.append(cell)
            if xs:
                label = m if m == "full" else f"{m} {pct(sp)}"
                marker = "*" if m == "full" else MARKERS[sparsities.index(sp) % len(MARKERS)]
                _band(ax, xs, cells, method_color(m, res.methods), label, marker=marker)
        _floor_line(ax, res.floor(tasks if task == AVG else [task]))
        ax.set_xscale("log")
        # matplotlib's default log labels are mathtext ($10^{3}$), which `plain_text` draws as written
        ax.xaxis.set_major_formatter(LogFormatter())
        ax.xaxis.set_minor_formatter(LogFormatter())
        ax.set(title=_task_title(res, task), xlabel="fine-tuning examples", ylabel="dev score")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    _save(fig, path)
    return None


# (file name, caption, function): the report draws them in this order.
FIGURES: list[tuple[str, str, Callable[..., str | None]]] = [
    ("fig3_score_vs_sparsity.png", "Score vs sparsity (TAMT Fig. 3)", score_vs_sparsity),
    (
        "fig5_pretrain_loss_vs_score.png",
        "Pre-training loss vs downstream score (TAMT Fig. 5)",
        pretrain_loss_vs_score,
    ),
    ("fig6_search_cost.png", "Score vs search steps and time (TAMT Fig. 6)", search_cost),
    ("fig8_distance_from_omp.png", "Score vs mask distance from OMP (TAMT Fig. 8, left)", distance_from_omp),
    ("fig8_similarity.png", "Mask similarity between methods and seeds (TAMT Fig. 8, right)", similarity),
    ("fig9_train_size.png", "Score vs number of fine-tuning examples (TAMT Fig. 9)", score_vs_train_size),
]
# Figures of studies a store may not have at all (`ticketlab super`): drawn when it has their runs,
# otherwise neither drawn nor listed as skipped.
STUDY_FIGURES: list[tuple[str, str, Callable[..., str | None]]] = [
    (
        "fig4_phase_transition.png",
        "Phase transition of structured tickets (Liang et al. Fig. 4)",
        phase_transition,
    ),
    (
        "table3_transfer.png",
        "Transfer of task-specific IMP tickets between tasks (Chen et al. Table 3)",
        transfer_matrix,
    ),
    (
        "fig_mask_init.png",
        "Mask initialisation: score and pre-training loss vs search steps (Liu et al. §4.2.4)",
        mask_init,
    ),
    (
        "fig6_loss_vs_search_steps.png",
        "Pre-training loss vs search steps: the search-cost claim on the loss (TAMT §4.2.3)",
        loss_vs_search_steps,
    ),
]
