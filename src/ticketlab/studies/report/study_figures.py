"""The figures of the studies beside TAMT's, drawn when a store has their runs: Liang et al.'s phase
transition of structured tickets (Fig. 4), Chen et al.'s transfer matrix of task-specific IMP tickets
(Table 3), Liu et al.'s mask initialisation (§4.2.4) and their search-cost claim on pre-training
loss (§4.2.3: TAMT reaches IMP's loss in fewer steps). Each draws one PNG from a `SweepResults` and
returns None, or the reason it drew nothing; `plots.STUDY_FIGURES` lists them for the report.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ...core.files.atomic import atomic_write_csv
from ...methods.registry import methods as registered_methods
from ..supertickets import super_picks
from ..sweep.methods import base_method, method_color
from .cells import AVG, Cell
from .figure_kit import (
    _at_main_size,
    _band,
    _common_tasks,
    _curves,
    _floor_line,
    _legend,
    _panels,
    _save,
    _series_row,
    _task_title,
    pct,
)
from .tables import SweepResults

# --------------------------------------------------------------------------- Liang et al. Fig. 4


def unit_methods(res: SweepResults) -> list[str]:
    """The methods of `res` whose masks prune units (heads, FFN units: the registry's pattern
    "units"), in report order: winning, random and losing structured tickets."""
    units = {n for n, m in registered_methods().items() if m.pattern == "units"}
    return [m for m in res.methods if base_method(m) in units]


def phase_transition(res: SweepResults, path: Path) -> str | None:
    """Score vs level (fraction of heads and FFN units pruned) of winning, random and losing structured
    tickets (each method that prunes units), mean ± std over seeds, with the full model's band and each
    seed's super ticket."""
    cells = res.cells()
    tickets = unit_methods(res)
    tasks = [t for t in res.tasks if any(m in tickets and k == t for m, _, k in cells)]
    if not tasks:
        return "no structured tickets in this store (`ticketlab super` makes them)"
    picks = super_picks(list(res.records.values()))
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        full = cells.get(("full", 0.0, task))
        if full is not None:  # black: beside the tickets' colours, as in Liang et al. Fig. 4
            ax.axhline(full.mean, ls="--", color="black", lw=1.2, label="full model")
            ax.axhspan(full.mean - full.std, full.mean + full.std, color="black", alpha=0.08)
        for m in tickets:
            xs = [s for s in res.sparsities(m) if (m, s, task) in cells]
            if xs:
                c = method_color(m, res.methods)
                _band(ax, [100 * s for s in xs], [cells[(m, s, task)] for s in xs], c, m)
        mine = [p for (t, _), p in picks.items() if t == task]
        if mine:
            xs, ys = [100 * p.level for p in mine], [p.score for p in mine]
            star = {"marker": "*", "s": 140, "color": "gold", "edgecolor": "black", "zorder": 5}
            ax.scatter(xs, ys, label="super ticket (per seed)", **star)
        _floor_line(ax, res.floor([task]))
        ax.set(title=_task_title(res, task), xlabel="heads and FFN units pruned (%)", ylabel="dev score")
        ax.set_xlim(0, 100 * max(res.sparsities()) + 5)
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    _save(fig, path)
    return None


# --------------------------------------------------------------------------- Chen et al. Table 3


def transfer_matrix(res: SweepResults, path: Path) -> str | None:
    """The transfer matrix per sparsity: a ticket found on each source task (rows; "mlm": the MLM-IMP
    ticket) fine-tuned on each target (columns). Colour: the difference to the full model on the
    target in units of the full model's std; text: mean ± std, n runs, a star where it wins."""
    cells = res.transfer()
    if not cells:
        return "no task-specific tickets (add `imp-task` to the methods)"
    sparsities = sorted({c.sparsity for c in cells})
    targets = [t for t in res.tasks if any(c.target == t for c in cells)]
    sources = list(dict.fromkeys(c.source for c in cells))
    fig, axes = _panels(len(sparsities), width=1.7 * len(targets) + 1.5, height=0.8 * len(sources) + 1.2)
    for ax, sp in zip(axes, sparsities, strict=True):
        at = {(c.source, c.target): c for c in cells if c.sparsity == sp}
        rows = [src for src in sources if any(k[0] == src for k in at)]
        grid = np.full((len(rows), len(targets)), np.nan)
        for (src, tgt), c in at.items():
            if c.delta_std is not None:
                grid[rows.index(src), targets.index(tgt)] = c.delta_std
        vmax = max(3.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 3.0
        im = ax.imshow(grid, cmap="RdBu", vmin=-vmax, vmax=vmax, aspect="auto")
        fig.colorbar(im, ax=ax, label="difference to the full model (its std)")
        for (src, tgt), c in at.items():
            star = " ★" if c.winning else ""
            text = f"{c.cell.mean:.1f} ± {c.cell.std:.1f}{star}\nn={c.cell.n}"
            dark = c.delta_std is not None and abs(c.delta_std) > 0.6 * vmax  # legible on deep colours
            ax.text(targets.index(tgt), rows.index(src), text, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")  # fmt: skip
        ax.set_xticks(range(len(targets)), targets)
        ax.set_yticks(range(len(rows)), rows)
        ax.set(title=f"IMP tickets at {pct(sp)}: source (rows) → target", xlabel="target task")
    _save(fig, path)
    return None


# --------------------------------------------------------------------------- mask initialisation


def _variant_groups(res: SweepResults) -> dict[str, list[str]]:
    """Base method -> its labels in the sweep, where a variant (`tamt-kd/random-init`) runs beside
    another label of the same method."""
    groups: dict[str, list[str]] = defaultdict(list)
    for m in res.methods:
        groups[base_method(m)].append(m)
    return {b: ms for b, ms in groups.items() if len(ms) > 1 and any(m != b for m in ms)}


def mask_init(res: SweepResults, path: Path) -> str | None:
    """Liu et al. §4.2.4: for a method run under two labels (TAMT from OMP and from a random mask),
    the dev score (avg over tasks) and the pre-training losses vs search steps, mean ± std over masks
    (n per point in the CSV)."""
    groups = _variant_groups(res)
    curves = {k: v for k, v in _curves(res).items() if any(k[0] in ms for ms in groups.values())}
    losses: dict[tuple[str, float], dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for key, p in res.pretrain_losses().items():
        if key[0] is not None and p["search_steps"]:
            losses[(p["method"], p["sparsity"])][p["search_steps"]].append(p)

    def budgets(base: str, sp: float) -> set[int]:  # search steps with a point of any of base's labels
        return {n for m in groups[base] for n in [*curves.get((m, sp), {}), *losses.get((m, sp), {})]}

    # a curve needs two budgets: labels searched once each (`imp/chen`, `imp/tamt`) are no curve
    panels = sorted(
        {
            (b, s)
            for b, ms in groups.items()
            for (m, s) in [*curves, *losses]
            if m in ms
            if len(budgets(b, s)) > 1
        }
    )
    if not panels:
        return (
            "no method is swept under two labels (`tamt-kd` and `tamt-kd/random-init`) with masks from two "
            "or more search budgets (`search_curve:` or `save_at`)"
        )
    keys = sorted(
        {k for v in losses.values() for ps in v.values() for p in ps for k in p if k.endswith("_loss")}
    )
    tasks = _common_tasks(res, {m for v in curves.values() for ms in v.values() for m in ms})
    per_mask = res.mask_scores(_at_main_size(res), tasks) if tasks else {}
    fig, axes = _panels(len(panels) * (1 + len(keys)), ncols=1 + len(keys))
    rows = []
    for i, (base, sp) in enumerate(panels):
        row_axes = axes[i * (1 + len(keys)) : (i + 1) * (1 + len(keys))]
        for m in groups[base]:
            found = (curves, losses, per_mask)
            rows += _label_bands(row_axes, m, sp, found, keys, method_color(m, res.methods))
        row_axes[0].set(
            title=f"{base} at {pct(sp)}", xlabel="search steps", ylabel=f"avg score ({', '.join(tasks)})"
        )
        for ax, key in zip(row_axes[1:], keys, strict=True):
            ax.set(title=f"{base} at {pct(sp)}", xlabel="search steps", ylabel=f"dev {key}")
        for ax in row_axes:
            ax.grid(alpha=0.3)
    _legend(fig, axes)
    _save(fig, path)
    atomic_write_csv(path.with_suffix(".csv"), rows)
    return None


def _label_bands(row_axes: list, m: str, sp: float, found: tuple, keys: list[str], c: str) -> list[dict]:
    """Label `m`'s bands at sparsity `sp` in one row of `mask_init`'s panels: the score over search
    steps, then each pre-training loss in `keys` (`found`: the curves, the losses and the masks'
    scores); returns their CSV rows."""
    curves, losses, per_mask = found
    rows: list[dict] = []
    by_steps = curves.get((m, sp), {})
    steps = sorted(k for k in by_steps if all(x in per_mask for x in by_steps[k]))
    cells = [Cell([per_mask[x].mean for x in by_steps[k]], []) for k in steps]
    _band(row_axes[0], steps, cells, c, m)
    rows += [
        {**_series_row(m, AVG, sp, x), "y": "score", "search_steps": k}
        for k, x in zip(steps, cells, strict=True)
    ]
    for ax, key in zip(row_axes[1:], keys, strict=True):
        at = losses.get((m, sp), {})
        ls = sorted(n for n in at if any(key in p for p in at[n]))
        cells = [Cell([p[key] for p in at[n] if key in p], []) for n in ls]
        _band(ax, ls, cells, c, m)
        rows += [
            {**_series_row(m, AVG, sp, x), "y": key, "search_steps": n}
            for n, x in zip(ls, cells, strict=True)
        ]
    return rows


# --------------------------------------------------------------------------- search cost on the loss


def _losses_by_steps(res: SweepResults) -> dict[tuple[str, float], dict[int, dict[str, dict]]]:
    """(method, sparsity) -> search steps -> search id -> the pre-training evaluation of its mask at
    those steps (a mask saved at the last step and the final mask count once)."""
    out: dict[tuple[str, float], dict[int, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for (search, _), p in res.pretrain_losses().items():
        if search is not None and p["search_steps"]:
            out[(p["method"], p["sparsity"])][p["search_steps"]][search] = p
    return out


def loss_vs_search_steps(res: SweepResults, path: Path) -> str | None:
    """Liu et al.'s search-cost claim on the pre-training loss: each dev loss of the masks saved along
    a search (`search_curve:`) vs its steps, mean ± std over masks, with the final masks of the
    methods searched to one budget (IMP: a point at its steps and a dashed line across) and OMP's
    (dotted) as references, at each sparsity with such a curve. n per point in the CSV."""
    losses = _losses_by_steps(res)
    curves = {k for k, v in losses.items() if len(v) > 1}
    if not curves:
        return "no method has pre-training evaluations of masks from two or more search budgets"
    keys = sorted(
        {
            k
            for v in losses.values()
            for ps in v.values()
            for p in ps.values()
            for k in p
            if k.endswith("_loss")
        }
    )
    omp = {(p["sparsity"]): p for p in res.pretrain_losses().values() if p["method"] == "omp"}
    sparsities = sorted({s for _, s in curves})
    fig, axes = _panels(len(sparsities) * len(keys), ncols=len(keys))
    rows = []
    for i, sp in enumerate(sparsities):
        for ax, key in zip(axes[i * len(keys) : (i + 1) * len(keys)], keys, strict=True):
            for (m, s), by_steps in sorted(
                losses.items(), key=lambda kv: res.methods.index(kv[0][0]) if kv[0][0] in res.methods else 99
            ):
                steps = sorted(n for n in by_steps if any(key in p for p in by_steps[n].values()))
                if s != sp or not steps:
                    continue
                cells = [
                    Cell(
                        [p[key] for p in by_steps[n].values() if key in p],
                        [p["id"] for p in by_steps[n].values() if key in p],
                    )
                    for n in steps
                ]
                c = method_color(m, res.methods)
                _band(ax, steps, cells, c, m)
                if (m, s) not in curves:  # one budget: a reference the curves are read against
                    ax.axhline(cells[0].mean, ls="--", color=c, lw=1)
                rows += [
                    {**_series_row(m, AVG, sp, x), "y": key, "search_steps": n}
                    for n, x in zip(steps, cells, strict=True)
                ]
            if sp in omp and key in omp[sp]:
                ax.axhline(omp[sp][key], ls=":", color=method_color("omp", res.methods), label="omp")
            ax.set(title=f"{pct(sp)} sparsity", xlabel="search steps", ylabel=f"dev {key}", xscale="log")
            ticks = sorted({n for (_, s), v in losses.items() if s == sp for n in v})
            ax.set_xticks(ticks, [str(n) for n in ticks])  # the budgets themselves, not powers of ten
            ax.minorticks_off()
            ax.grid(alpha=0.3)
    _legend(fig, axes)
    _save(fig, path)
    atomic_write_csv(path.with_suffix(".csv"), rows)
    return None
