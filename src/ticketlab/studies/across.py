"""Ticket importance across tasks (Liang et al. 2021 §8, Fig. 6).

From the importance scores that super-ticket studies of several tasks on the same model saved
(`supertickets.py`: one `importance/` per seed in each full-model run), per unit (attention head, FFN
sub-layer or FFN neuron):

  normalised score   s_t,k(u) = I_t,k(u) / Σ_v I_t,k(v): the raw score of unit u for task t and seed
                     k divided by the sum over every unit of the same kind (heads, FFN units). Raw
                     gradient magnitudes scale with each task's loss and label count; divided by their
                     sum, a task's scores are a distribution over units, so tasks weigh the same. Head
                     scores are the raw ones (`head_raw`): the per-layer ℓ2 normalisation of
                     `importance.py` would make every layer's heads weigh the same.
  task score         s_t(u) = mean over seeds k of s_t,k(u) (n = seeds, std beside it)
  ticket importance  I(u) = mean over tasks of s_t(u)
  task share         p_t(u) = s_t(u) / Σ_t' s_t'(u)   (sums to one over tasks; 0 for every task when
                     no task's score is positive)

A unit is *dominated* by task t when p_t(u) >= `dominant` and no other task's share is as large.
Only thresholds above 1/T (T tasks) can tell: at 1/T or below some task always reaches it. The
default is halfway between an even share and all of it, (1 + 1/T) / 2: 3/4 for two tasks, 2/3 for
three.

    OUT/importance_across.csv   one row per unit: importance, per task its score, std, n and share
    OUT/importance_across.png   a stacked bar per unit, units by decreasing importance (one panel per
                                unit kind), each bar split into the tasks' shares
    OUT/importance_across.md    the tasks, their seeds and studies, the dominated units
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.errors import TicketlabError
from ..core.files.atomic import atomic_write_bytes, atomic_write_csv, atomic_write_text
from ..core.outputs import atomic_dir
from ..methods.super_tickets.importance import Importance
from .records import study_in
from .report.figure_kit import plain_text
from .store import Store

KIND = "ticket importance"  # the output kind (`core.outputs.check_output`)
CSV_FILE, FIGURE_FILE, MD_FILE = "importance_across.csv", "importance_across.png", "importance_across.md"
FILES = (CSV_FILE, FIGURE_FILE, MD_FILE)
_UNIT_KINDS = ("head", "ffn", "neuron")


@dataclass
class TaskScores:
    """One task's importance files, one per seed, gathered from the studies."""

    task: str
    runs: list[tuple[int, Path]] = field(default_factory=list)  # (seed, importance directory)


@dataclass
class UnitRow:
    unit: str  # "L3.H7", "L3.FFN", "L3.N1021"
    kind: str  # "head", "ffn", "neuron"
    importance: float
    score: dict[str, float]  # task -> mean normalised score over seeds
    std: dict[str, float]
    n: dict[str, int]
    share: dict[str, float]  # task -> share (sums to one over tasks, or all zero)

    def dominant(self, threshold: float) -> str | None:
        """The task whose share is at least `threshold`, unless another task's is as large (a tie
        at 0.5 is two tasks, not one dominating)."""
        (task, share), *rest = sorted(self.share.items(), key=lambda kv: -kv[1])
        tied = bool(rest) and rest[0][1] == share
        return task if share >= threshold and not tied else None


def gather(studies: Sequence[str | os.PathLike]) -> dict[str, TaskScores]:
    """Task -> its full-model runs' importance directories, from the results stores of `studies`
    (super-ticket study directories, or sweeps that super-ticket studies joined)."""
    found: dict[str, TaskScores] = {}
    where: dict[tuple[str, int], Path] = {}
    models: dict[str, Path] = {}  # the content key of each model the studies ran on -> a study
    for study in studies:
        root = Path(study)
        study_in(root)
        with Store(root, readonly=True) as store:
            records = store.runs(kind="finetune", status="done")
        _one_model(root, records, models)
        n_before = sum(len(t.runs) for t in found.values())
        for r in records:
            rel = (r.metrics or {}).get("importance_dir")
            if r.config.get("method") != "full" or not rel:
                continue
            task, seed = r.config.get("task_label"), r.config.get("seed")
            if not (isinstance(task, str) and type(seed) is int and isinstance(rel, str)):
                raise TicketlabError(
                    f"{root}: run {r.id} is not a super-ticket study's row (its task, seed "
                    "or importance folder is missing or of the wrong type)"
                )
            if (task, seed) in where:  # the same task and seed twice would count a seed twice
                raise TicketlabError(
                    f"{root}: task {task} seed {seed} was already read from {where[task, seed]}; "
                    "give each task's study once"
                )
            where[task, seed] = root
            found.setdefault(task, TaskScores(task)).runs.append((seed, root / rel))
        if sum(len(t.runs) for t in found.values()) == n_before:
            raise TicketlabError(
                f"{root}: holds no finished super-ticket full-model run with importance scores"
            )
    if len(found) < 2:
        raise TicketlabError(
            f"importance across tasks needs at least two tasks; the studies hold {', '.join(found) or 'none'}"
        )
    return found


def _one_model(root: Path, records: list, models: dict[str, Path]) -> None:
    """Refuse a study whose full-model runs with importance scores read another model's weights than
    the studies before it (their recorded content keys): one model's units compared across tasks."""
    for r in records:
        key = ((r.provenance or {}).get("inputs") or {}).get("model")
        scored = r.config.get("method") == "full" and (r.metrics or {}).get("importance_dir")
        if not scored or not isinstance(key, str):
            continue  # a row without scores (a sweep's own), or that recorded no key: not compared
        models.setdefault(key, root)
        if len(models) > 1:
            other = next(p for k, p in models.items() if k != key)
            raise TicketlabError(
                f"{root}: its full-model runs read other model weights than {other}'s; importance across "
                "tasks compares the units of one model"
            )


def _raw(imp: Importance) -> dict[str, torch.Tensor]:
    """Unit kind -> raw scores (heads before their per-layer normalisation)."""
    out = {k: t for k, t in imp.tensors().items() if k != "head"}
    return {"head": imp.head_raw, **out}


def normalised(imp: Importance) -> dict[str, torch.Tensor]:
    """Every unit kind's raw scores divided by their sum (see the module docstring)."""
    out = {}
    for kind, t in _raw(imp).items():
        total = float(t.double().sum())
        out[kind] = t.double() / total if total > 0 else torch.zeros_like(t, dtype=torch.float64)
    return out


def _unit_names(kind: str, shape: tuple[int, ...]) -> list[str]:
    if kind == "ffn":
        return [f"L{layer}.FFN" for layer in range(shape[0])]
    tag = "H" if kind == "head" else "N"
    return [f"L{layer}.{tag}{i}" for layer in range(shape[0]) for i in range(shape[1])]


def _task_scores(t: TaskScores, shapes: dict[str, tuple[int, ...]] | None, source: str):
    """(kind -> [seeds, units] normalised scores, the shapes) of one task's seeds, all alike."""
    stacked: dict[str, list[torch.Tensor]] = {}
    for seed, path in sorted(t.runs):
        scores = normalised(Importance.load(path))
        got = {k: tuple(v.shape) for k, v in scores.items()}
        if shapes is not None and got != shapes:
            raise TicketlabError(
                f"{path}: task {t.task} seed {seed} scores units {got}, but {source} scores {shapes}; "
                "the studies must be of the same model and FFN granularity"
            )
        shapes, source = got, f"{path}"
        for k, v in scores.items():
            stacked.setdefault(k, []).append(v.flatten())
    return {k: torch.stack(v) for k, v in stacked.items()}, shapes, source


def across_tasks(tasks: dict[str, TaskScores]) -> list[UnitRow]:
    """One row per unit: importance, per task score (mean, std, n over seeds) and share."""
    per_task: dict[str, dict[str, torch.Tensor]] = {}
    shapes, source = None, ""
    for name in sorted(tasks):
        per_task[name], shapes, source = _task_scores(tasks[name], shapes, source)
    rows = []
    for kind in (k for k in _UNIT_KINDS if k in shapes):
        for i, unit in enumerate(_unit_names(kind, shapes[kind])):
            col = {t: s[kind][:, i] for t, s in per_task.items()}
            score = {t: float(v.mean()) for t, v in col.items()}
            total = sum(score.values())
            rows.append(
                UnitRow(
                    unit=unit,
                    kind=kind,
                    importance=total / len(score),
                    score=score,
                    std={t: float(v.std()) if len(v) > 1 else float("nan") for t, v in col.items()},
                    n={t: len(v) for t, v in col.items()},
                    share={t: s / total if total > 0 else 0.0 for t, s in score.items()},
                )
            )
    return rows


def default_dominant(n_tasks: int) -> float:
    """Halfway between an even share (1/T) and all of it."""
    return (1.0 + 1.0 / n_tasks) / 2


def check_dominant(threshold: float, n_tasks: int) -> None:
    if not 1.0 / n_tasks < threshold <= 1.0:
        raise TicketlabError(
            f"dominant share {threshold:g}: with {n_tasks} tasks it must be in (1/{n_tasks}, 1] "
            f"(at {1 / n_tasks:.3g} or below some task always reaches it)"
        )


def csv_rows(rows: list[UnitRow], threshold: float) -> list[dict]:
    out = []
    for r in rows:
        row: dict = {"unit": r.unit, "kind": r.kind, "importance": r.importance}
        for t in r.score:
            row.update(
                {f"{t}_score": r.score[t], f"{t}_std": r.std[t], f"{t}_n": r.n[t], f"{t}_share": r.share[t]}
            )
        row["dominated_by"] = r.dominant(threshold) or ""
        out.append(row)
    return out


def draw(rows: list[UnitRow], path: Path, top: int = 40) -> None:
    """Stacked bars, one panel per unit kind: the `top` most important units, each bar's height its
    ticket importance, split into the tasks' parts (share x importance)."""
    with plain_text():
        _draw(rows, path, top)


def _draw(rows: list[UnitRow], path: Path, top: int) -> None:

    kinds = [k for k in _UNIT_KINDS if any(r.kind == k for r in rows)]
    tasks = list(rows[0].score)
    fig = Figure(figsize=(max(6.0, 0.22 * top + 2), 3.2 * len(kinds)), layout="constrained")
    FigureCanvasAgg(fig)
    titles = {"head": "attention heads", "ffn": "FFN sub-layers", "neuron": "FFN neurons"}
    for i, kind in enumerate(kinds):
        ax = fig.add_subplot(len(kinds), 1, i + 1)
        units = sorted((r for r in rows if r.kind == kind), key=lambda r: -r.importance)[:top]
        bottom = [0.0] * len(units)
        for j, t in enumerate(tasks):
            part = [r.importance * r.share[t] for r in units]
            ax.bar(range(len(units)), part, bottom=bottom, color=f"C{j % 10}", label=t)
            bottom = [b + p for b, p in zip(bottom, part, strict=True)]
        ax.set_xticks(range(len(units)), [r.unit for r in units], rotation=90, fontsize=7)
        n_all = sum(r.kind == kind for r in rows)
        ax.set_title(f"{titles[kind]}: ticket importance and task shares (top {len(units)} of {n_all})")
        ax.set_ylabel("importance (mean over tasks)")  # the bar; its parts: each task's share of it
        if i == 0:
            ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _markdown(tasks: dict[str, TaskScores], rows: list[UnitRow], threshold: float) -> str:
    lines = ["# Ticket importance across tasks (Liang et al. §8)", ""]
    for name, t in sorted(tasks.items()):
        lines.append(f"- {name}: n = {len(t.runs)} seeds ({', '.join(str(s) for s, _ in sorted(t.runs))})")
    lines += ["", f"Units dominated by one task (share >= {threshold:g} of {len(tasks)} tasks):", ""]
    dominated = [(r, r.dominant(threshold)) for r in rows if r.dominant(threshold)]
    for task in sorted(tasks):
        mine = sorted((r for r, d in dominated if d == task), key=lambda r: -r.importance)
        named = ", ".join(f"{r.unit} ({r.share[task]:.2f})" for r in mine) or "none"
        lines.append(f"- {task}: {len(mine)} units: {named}")
    lines += ["", f"![importance]({FIGURE_FILE})", "", f"Every unit: `{CSV_FILE}`.", ""]
    return "\n".join(lines)


def write_importance_across(
    studies: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    dominant: float | None = None,
    top: int = 40,
) -> list[UnitRow]:
    """Read the studies, write OUT's CSV, figure and markdown (atomically), return the rows
    (`dominant`: None for `default_dominant` of the number of tasks)."""
    if top < 1:
        raise TicketlabError(f"top must be >= 1, got {top}")
    tasks = gather(studies)
    dominant = default_dominant(len(tasks)) if dominant is None else dominant
    check_dominant(dominant, len(tasks))
    rows = across_tasks(tasks)
    with atomic_dir(out, kind=KIND, writes=FILES, inputs=list(studies)) as tmp:
        atomic_write_csv(tmp / CSV_FILE, csv_rows(rows, dominant))
        draw(rows, tmp / FIGURE_FILE, top)
        atomic_write_text(tmp / MD_FILE, _markdown(tasks, rows, dominant))
    return rows
