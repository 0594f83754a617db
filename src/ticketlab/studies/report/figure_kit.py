"""What the report's figures share: one PNG per figure (`_save`, Agg canvas, no pyplot state), panels,
a method's mean ± std band, the full model's and the constant predictor's lines, titles and one
legend per figure; and the selections of results several figures draw from (the main grid's scores,
the masks along a search, the tasks every mask was fine-tuned on, one CSV row per drawn point).

The figures themselves are in `plots.py` (TAMT's) and `study_figures.py` (super tickets, transfer,
mask initialisation).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ...core.files.atomic import atomic_write_bytes
from ..sweep.methods import method_color
from .cells import AVG, Cell, Score
from .tables import SweepResults

DPI = 100
MARKERS = "osD^vP*Xh"


@contextlib.contextmanager
def plain_text() -> Iterator[None]:
    """Draw every label as written: a task label or a task id may hold '$' (`sst$x^^y$` is a valid
    file name), which matplotlib would parse as mathtext and refuse, and with it every later report."""
    with matplotlib.rc_context({"text.parse_math": False}):
        yield


def pct(s: float) -> str:
    return f"{round(s * 100, 4):g}%"


def _panels(n: int, width: float = 4.0, height: float = 3.2, ncols: int = 4):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    return fig, axes


def _save(fig: Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _band(ax, xs, cells: list[Cell], c: str, label: str, marker: str = "o") -> None:
    means = [x.mean for x in cells]
    ax.plot(xs, means, marker=marker, color=c, label=label, ms=4)
    if len(xs) == 1 and cells[0].n > 1:  # a band over one x has no width: a bar instead
        ax.errorbar(xs, means, yerr=[cells[0].std], color=c, capsize=3, lw=1)
    elif any(x.n > 1 for x in cells):
        ax.fill_between(
            xs, [x.mean - x.std for x in cells], [x.mean + x.std for x in cells], color=c, alpha=0.15
        )


def _full_line(ax, full: Cell | None, methods: list[str]) -> None:
    if full is None:
        return
    c = method_color("full", methods)
    ax.axhline(full.mean, ls="--", color=c, label="full", lw=1.2)
    if full.n > 1:
        ax.axhspan(full.mean - full.std, full.mean + full.std, color=c, alpha=0.1)


FLOOR_LABEL = "constant predictor"


def _floor_line(ax, floor: float | None) -> None:
    """The score of predicting one label for every dev example: a method on this line learnt nothing."""
    if floor is not None:
        ax.axhline(floor, ls=":", color="dimgray", lw=1.2, label=FLOOR_LABEL)


def _task_floor(res: SweepResults, task: str) -> float | None:
    return res.floor(res.tasks) if task == AVG else res.floor([task])


def _task_title(res: SweepResults, task: str) -> str:
    return "average over tasks" if task == AVG else f"{task} ({res.metric_of.get(task, 'score')})"


def _legend(fig: Figure, axes) -> None:
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if handles:
        fig.legend([handles[lab] for lab in labels], labels, loc="outside right upper", fontsize="small")


def _series_row(method: str, task: str, sparsity: float, c: Cell) -> dict:
    """One drawn point and its band, mean ± sample std over the n runs (std 0 for one run)."""
    what = {"method": method, "task": task, "sparsity": sparsity, "n": c.n}
    return what | {"mean": c.mean, "std": c.std, "lower": c.mean - c.std, "upper": c.mean + c.std}


def _at_main_size(res: SweepResults) -> list[Score]:
    return [s for s in res.scores if s.train_size == res.main_size.get(s.task)]


def _curves(res: SweepResults) -> dict[tuple[str, float], dict[int, list[tuple]]]:
    """(method, sparsity) -> search steps -> masks (search id, step), where there are >=2 step counts."""
    masks = {s.mask: s for s in _at_main_size(res) if s.search is not None and s.search_steps}
    by: dict[tuple, dict[int, list[tuple]]] = defaultdict(lambda: defaultdict(list))
    for mask, s in masks.items():
        by[(s.method, s.sparsity)][s.search_steps].append(mask)
    return {k: v for k, v in by.items() if len(v) >= 2}


def _common_tasks(res: SweepResults, masks: set[tuple]) -> list[str]:
    tasks_of: dict[tuple, set[str]] = defaultdict(set)
    for s in _at_main_size(res):
        if s.mask in masks:
            tasks_of[s.mask].add(s.task)
    common = set.intersection(*tasks_of.values()) if tasks_of else set()
    return [t for t in res.tasks if t in common]
