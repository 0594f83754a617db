"""TAMT's Fig. 8: the masks themselves compared, each mask file read once (`_Masks`): every mask's
score vs its distance from the OMP mask of its sparsity (left), and the Jaccard similarity between
the final masks of every method and seed (right). Listed in `plots.FIGURES`."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ...masks import load_mask
from ...methods import registry as library
from ..sweep.methods import base_method, method_color, report_order
from .cells import Cell, method_label
from .figure_kit import _at_main_size, _band, _common_tasks, _floor_line, _legend, _panels, _save, pct
from .tables import SweepResults

# --------------------------------------------------------------------------- Fig. 8


class _Masks:
    """Mask files of a sweep, each loaded once."""

    def __init__(self, res: SweepResults):
        self.res, self.cache = res, {}

    def __call__(self, mask: tuple):
        if mask not in self.cache:
            self.cache[mask] = load_mask(self.res.mask_dir(*mask))[0]
        return self.cache[mask]


def _omp_masks(res: SweepResults) -> dict[float, tuple]:
    return {
        r.config["sparsity"]: (r.id, None)
        for r in res.runs("search")
        if r.config["method"] == "omp" and (r.id, None) in res.main_masks
    }


def _no_omp(res: SweepResults) -> str:
    """Why there is no OMP mask: a study of structured tickets alone (super tickets) cannot have one;
    any other can add it."""
    searched = {base_method(r.config["method"]) for r in res.runs("search")}
    units = {m.name for m in library.methods().values() if m.pattern == "units"}
    if searched and searched <= units:
        return "its tickets are heads and FFN units, which OMP (a weight mask) cannot be compared with"
    return "no OMP mask to measure distances from (add `omp` to the methods)"


def distance_from_omp(res: SweepResults, path: Path, masks: _Masks | None = None) -> str | None:
    """Avg score of every mask vs its distance (1 - Jaccard) from the OMP mask of its sparsity."""
    omp = _omp_masks(res)
    if not omp:
        return _no_omp(res)
    masks = masks or _Masks(res)
    scored = {s.mask for s in _at_main_size(res) if s.search is not None and s.sparsity in omp}
    panels = []
    for sp in sorted(omp):
        at = {m for m in scored if res.records[m[0]].config["sparsity"] == sp}
        tasks = _common_tasks(res, at)
        if len(at) > 1 and tasks:
            panels.append((sp, at, tasks))
    if not panels:
        return "no sparsity has scored masks besides OMP's"
    fig, axes = _panels(len(panels), width=4.4, height=3.4)
    for ax, (sp, at, tasks) in zip(axes, panels, strict=True):
        per_mask = res.mask_scores(_at_main_size(res), tasks)
        # (method, search steps) -> [(distance, score)] over mask seeds
        groups: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
        for m in sorted(at, key=lambda m: (m[1] or 0, m[0])):  # a fixed order: the same mask read first
            if m in per_mask:
                c = res.records[m[0]].config
                steps = m[1] if m[1] is not None else c["steps"]
                groups[(method_label(c), steps)].append((masks(m).distance(masks(omp[sp])), per_mask[m].mean))
        for method in res.methods:
            pts = [
                (sum(d for d, _ in v) / len(v), Cell([x for _, x in v], []))
                for (m, _), v in groups.items()
                if m == method
            ]
            pts.sort(key=lambda p: p[0])
            if pts:
                _band(ax, [d for d, _ in pts], [c for _, c in pts], method_color(method, res.methods), method)
        _floor_line(ax, res.floor(tasks))
        ax.set(
            title=f"{pct(sp)} sparsity",
            xlabel="mask distance from OMP",
            ylabel=f"avg score ({', '.join(tasks)})",
        )
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    _save(fig, path)
    return None


def similarity(res: SweepResults, path: Path, masks: _Masks | None = None, max_panels: int = 4) -> str | None:
    """Jaccard similarity between the final masks of every method and seed, one panel per sparsity."""
    masks = masks or _Masks(res)
    finals: dict[float, list[tuple[str, tuple]]] = defaultdict(list)
    for r in res.runs("search"):
        if (r.id, None) in res.main_masks:
            c = r.config
            label = method_label(c) + (f" #{c['seed']}" if c["seed"] is not None else "")
            finals[c["sparsity"]].append((label, (r.id, None)))
    sparsities = sorted(s for s, v in finals.items() if len(v) >= 2)
    if not sparsities:
        return "fewer than two masks at every sparsity"
    if len(sparsities) > max_panels:  # evenly spaced ones
        sparsities = [
            sparsities[round(i * (len(sparsities) - 1) / (max_panels - 1))] for i in range(max_panels)
        ]
    order = report_order() + res.methods
    fig, axes = _panels(len(sparsities), width=5.6, height=5.4)
    for ax, sp in zip(axes, sparsities, strict=True):
        items = sorted(finals[sp], key=lambda x: (order.index(x[0].split(" #")[0]), x[0]))
        n = len(items)
        sim = [[1.0] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                sim[i][j] = sim[j][i] = masks(items[i][1]).jaccard(masks(items[j][1]))
        im = ax.imshow(sim, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(n), [x[0] for x in items], rotation=90, fontsize="x-small")
        ax.set_yticks(range(n), [x[0] for x in items], fontsize="x-small")
        if n <= 16:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, f"{sim[i][j]:.2f}", ha="center", va="center", fontsize=6,
                            color="black" if sim[i][j] > 0.6 else "white")  # fmt: skip
        ax.set_title(f"Jaccard similarity, {pct(sp)} sparsity")
        fig.colorbar(im, ax=ax, shrink=0.8)
    _save(fig, path)
    return None
