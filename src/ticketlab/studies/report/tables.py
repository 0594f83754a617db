"""A sweep's results as tables: `SweepResults` (made by `results.load_results`) holds every finished
fine-tuning's `Score` and lays them out as cells per (method, sparsity, task), winning tickets, the
transfer matrix and pre-training losses per mask; paired tests come from `paired.Comparisons`, in
one Holm family with the tests of the analyses its spec names (`analyses.py`: a paper's claims).

A cell (method, sparsity, task, training-set size) pools every run on it, i.e. mask seeds x
fine-tuning seeds (TAMT §4.1.3: 3 x 3 = 9 runs; OMP 1 x 3); its std is the sample standard
deviation (ddof=1) over those runs, 0 for a single run. The task average is taken per (mask seed,
fine-tuning seed) first, then mean ± std over those pairs.

A ticket found on one task (`imp-task`, Chen et al. §5) is grouped as `imp-task@<source task>`, and
`transfer()` lays those out as the source x target matrix.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.errors import TicketlabError
from ...core.files.inputs import read_json
from ...tasks.metrics import floor_of_average, no_verdict
from ..store import RunRecord
from .analyses import Analysis
from .cells import AVG, Cell, Score, method_label, stats, wins
from .paired import Comparisons


@dataclass
class TransferCell:
    """One cell of the transfer matrix: a ticket found on `source` ("mlm": the MLM-IMP ticket),
    fine-tuned on `target`."""

    source: str
    target: str
    sparsity: float
    cell: Cell
    full: Cell | None  # the full model on the target
    at_floor: bool = False  # the full model on the target is within one std of a constant predictor
    reason: str | None = None  # why no verdict: "floor", "one run" (`tasks.metrics.no_verdict`)

    @property
    def delta_std(self) -> float | None:
        """Difference to the full model in units of the full model's std (None without a spread)."""
        if self.full is None or self.full.std == 0:
            return None
        return (self.cell.mean - self.full.mean) / self.full.std

    @property
    def winning(self) -> bool | None:
        return None if self.full is None or self.at_floor or self.reason else wins(self.cell, self.full)


@dataclass
class WinningTicket:
    method: str
    task: str
    sparsity: float | None  # highest sparsity that wins; None: none does
    cell: Cell | None  # the method's cell there
    full: Cell | None  # the full model's cell (its mean and std set the bar)
    at_floor: bool = False  # the full model is within one std of a constant predictor: no verdict
    reason: str | None = None  # why no verdict: "floor", "one run" (`tasks.metrics.no_verdict`), "no runs"


@dataclass
class SweepResults(Comparisons):
    sweep_dir: Path
    records: dict[str, RunRecord]
    scores: list[Score]
    tasks: list[str]
    methods: list[str]
    metric_of: dict[str, str]  # task -> its main metric
    main_masks: set[tuple[str | None, int | None]]  # (search id, step) of the main grid's masks
    main_size: dict[str, int | None]  # task -> training-set size of the main grid
    spec: dict[str, Any] = field(default_factory=dict)
    left_out: int = 0  # runs in the store but not in the last spec's plan
    not_swept: int = 0  # runs of the plan not in the store yet (the later stages of a staged sweep)
    floors: dict[str, float] = field(default_factory=dict)  # task -> a constant predictor's dev score
    # every declaration of this study's claims the store recorded ({study, hash, text, runs_done},
    # `sweep.declaration.record_declaration`), in order
    declarations: list[dict[str, Any]] = field(default_factory=list)
    # the studies whose declarations the store records besides (one whose store this one started from)
    other_studies: tuple[str, ...] = ()
    runs_done: int = 0  # the plan's finished runs (the store's without a plan), as a declaration counts them
    analyses: tuple[Analysis, ...] = ()  # what the spec's recipes add: tests in the family, sections

    @property
    def masks_alone(self) -> bool:
        """A study of masks alone: its spec has no task (`tasks: {}`) and no run was scored."""
        return (self.spec or {}).get("tasks", True) == {} and not self.metric_of

    # ------------------------------------------------------------------ selections
    def runs(self, kind: str, status: str = "done") -> list[RunRecord]:
        return [r for r in self.records.values() if r.kind == kind and r.status == status]

    def is_main(self, s: Score) -> bool:
        # runs without a searched mask (the full model, multi-task runs) are on the main grid
        return (s.search is None or s.mask in self.main_masks) and s.train_size == self.main_size.get(s.task)

    def main_scores(self) -> list[Score]:
        return [s for s in self.scores if self.is_main(s)]

    def sparsities(self, method: str | None = None) -> list[float]:
        return sorted(
            {s.sparsity for s in self.main_scores() if s.method != "full" and method in (None, s.method)}
        )

    def target_share(self, method: str, sparsity: float) -> float | None:
        """The fraction of the model's default targets (word embeddings and encoder matrices) the
        main grid's masks of `method` at `sparsity` prune: `sparsity`, except for a search that pruned
        the encoder only (Chen et al.'s IMP keeps the word embeddings dense), where it is `sparsity`
        times the encoder's share of those weights (None: the model's config.json is not readable)."""
        if method == "full":
            return 0.0
        found = [
            r
            for r in self.runs("search")
            if (r.id, None) in self.main_masks
            and method_label(r.config) == method
            and r.config.get("sparsity") == sparsity
        ]
        if not any(_imp_variant(r.config) == "chen" for r in found):
            return sparsity
        share = encoder_share(found[0].config.get("model"))
        return None if share is None else sparsity * share

    def achieved(self, method: str, sparsity: float) -> float | None:
        """The fraction of the model's default targets (word embeddings and encoder matrices) the main
        grid's masks of `method` at `sparsity` prune, as their searches measured it (mean over the
        masks): each mask's achieved sparsity, scaled to the default targets where it prunes the
        encoder only (Chen et al.'s IMP). None: no mask recorded one, or the model's config.json is
        not readable for that scale."""
        if method == "full":
            return 0.0
        found = [(self.records[i], step) for i, step in self.main_masks if i in self.records]
        found = [(r, step) for r, step in found if method_label(r.config) == method]
        found = [(r, step) for r, step in found if r.config.get("sparsity") == sparsity]
        values = [_mask_achieved(r.metrics, step) for r, step in found]
        if not values or None in values:
            return None
        chen = any(_imp_variant(r.config) == "chen" for r, _ in found)
        share = encoder_share(found[0][0].config.get("model")) if chen else 1.0
        return None if share is None else share * sum(values) / len(values)

    # ------------------------------------------------------------------ cells
    def cells(self, scores: list[Score] | None = None) -> dict[tuple[str, float, str], Cell]:
        """(method, sparsity, task) -> cell over the main grid; task AVG is the per-seed average."""
        scores = self.main_scores() if scores is None else scores
        groups: dict[tuple, list[Score]] = defaultdict(list)
        for s in scores:
            groups[(s.method, s.sparsity, s.task)].append(s)
        out = {k: stats((s.value, s.id) for s in v) for k, v in groups.items()}
        out.update(self.average_cells(scores))
        return out

    def average_cells(self, scores: list[Score], tasks: list[str] | None = None) -> dict[tuple, Cell]:
        """Average over `tasks` (default: all) per (mask seed, fine-tuning seed), then mean ± std.

        A (method, sparsity) gets an average only if every task has a run for each seed pair it uses.
        """
        tasks = self.tasks if tasks is None else tasks
        by_pair: dict[tuple, dict[tuple, dict[str, Score]]] = defaultdict(lambda: defaultdict(dict))
        for s in scores:
            if s.task in tasks:
                by_pair[(s.method, s.sparsity)][(s.search, s.step, s.mask_seed, s.seed)][s.task] = s
        out = {}
        for (method, sparsity), pairs in by_pair.items():
            if not pairs or any(set(per_task) != set(tasks) for per_task in pairs.values()):
                continue
            values = [sum(p[t].value for t in tasks) / len(tasks) for p in pairs.values()]
            ids = [p[t].id for p in pairs.values() for t in tasks]
            out[(method, sparsity, AVG)] = Cell(values, ids)
        return out

    def mask_scores(self, scores: list[Score], tasks: list[str]) -> dict[tuple, Cell]:
        """(search id, step) -> that mask's score averaged over `tasks`, one value per fine-tuning seed
        every task has (mean ± std over those seeds: a figure's error bar); a mask some task lacks
        runs of is left out. Without a seed common to every task: one value, the mean of the task means."""
        by_mask: dict[tuple, dict[str, list[Score]]] = defaultdict(lambda: defaultdict(list))
        for s in scores:
            if s.task in tasks:
                by_mask[s.mask][s.task].append(s)
        out = {}
        for mask, per_task in by_mask.items():
            if set(per_task) != set(tasks):
                continue
            ids = [x.id for t in tasks for x in per_task[t]]
            seeds = set.intersection(*({x.seed for x in per_task[t]} for t in tasks))
            if seeds:
                per_seed = [[x for t in tasks for x in per_task[t] if x.seed == f] for f in sorted(seeds)]
                out[mask] = Cell([self._mean(runs) for runs in per_seed], ids)
            else:
                means = [sum(x.value for x in per_task[t]) / len(per_task[t]) for t in tasks]
                out[mask] = Cell([sum(means) / len(means)], ids)
        return out

    def floor(self, tasks: list[str]) -> float | None:
        """The constant predictor's score averaged over `tasks` (None unless every one has a floor)."""
        if not tasks or any(t not in self.floors for t in tasks):
            return None
        return sum(self.floors[t] for t in tasks) / len(tasks)

    # ------------------------------------------------------------------ winning tickets
    def at_floor(self, task: str, full: Cell | None) -> bool:
        """The full model is within one std of a constant predictor on `task`: it learnt (almost)
        nothing, every mask 'wins', and the criterion says nothing. The average over tasks is at
        the floor when any of its tasks is."""
        return full is not None and self.no_verdict(task, full) == "floor"

    def no_verdict(self, task: str, full: Cell, ticket: Cell | None = None) -> str | None:
        """Why no winning-ticket verdict on `task` (or AVG) against `full` (and `ticket`): "floor",
        "one run", or None (`tasks.metrics.no_verdict`)."""
        if task == AVG:
            cells = self.cells()
            floor = floor_of_average([self.at_floor(t, cells.get(("full", 0.0, t))) for t in self.tasks])
        else:
            floor = self.floors.get(task)
        return no_verdict(full.mean, full.std, full.n, floor, None if ticket is None else ticket.n)

    def winning_tickets(self) -> list[WinningTicket]:
        """Chen et al.: the highest sparsity at which the method's mean score is at least the full
        model's mean minus one (sample) standard deviation of the full model's runs; no verdict on a
        task where the full model is at a constant predictor's score."""
        cells = self.cells()
        out = []
        for task in [*self.tasks, AVG]:
            full = cells.get(("full", 0.0, task))
            reason = self.no_verdict(task, full) if full is not None else None
            for method in self.methods:
                if method == "full":
                    continue
                best, why = None, reason
                if not any((method, s, task) in cells for s in self.sparsities(method)):
                    why = "no runs"  # nothing fine-tuned on it yet: neither a verdict nor 'none'
                elif full is not None and reason is None:
                    for s in self.sparsities(method):
                        c = cells.get((method, s, task))
                        if c is None:
                            continue
                        if self.no_verdict(task, full, c) is not None:  # one run of the ticket
                            why = why or "one run"
                        elif wins(c, full):
                            best, why = s, None
                c = cells.get((method, best, task)) if best is not None else None
                out.append(WinningTicket(method, task, best, c, full, reason == "floor", why))
        return out

    # ------------------------------------------------------------------ transfer (Chen et al. Table 3)
    def transfer(self) -> list[TransferCell]:
        """Tickets found on each source task (and the MLM-IMP ticket at the same sparsity, source
        "mlm") fine-tuned on every target task; empty when the sweep has no task-specific tickets.
        The MLM ticket is IMP under the task tickets' label: `imp-task@sst2` beside `imp`,
        `imp-task/chen@sst2` beside `imp/chen`."""
        cells = self.cells()
        found = [m for m in self.methods if "@" in m]
        mlm = sorted({"imp" + m.split("@", 1)[0].removeprefix("imp-task") for m in found} & set(self.methods))
        out = []
        for s in sorted({s for m in found for s in self.sparsities(m)}):
            rows = [(m.split("@", 1)[1], m) for m in found if s in self.sparsities(m)]
            rows += [("mlm", m) for m in mlm if s in self.sparsities(m)]
            for source, m in rows:
                for target in self.tasks:
                    if (m, s, target) in cells:
                        full, cell = cells.get(("full", 0.0, target)), cells[(m, s, target)]
                        why = self.no_verdict(target, full, cell) if full is not None else None
                        out.append(TransferCell(source, target, s, cell, full, why == "floor", why))
        return out

    # ------------------------------------------------------------------ pre-training evaluation
    def pretrain_losses(self) -> dict[tuple[str | None, int | None], dict[str, Any]]:
        """(search id, step) -> {"method", "sparsity", "mask_seed", "search_steps", "id", losses...}."""
        out = {}
        for r in self.runs("pretrain-eval"):
            c = r.config
            key = (c["mask"]["search"], c["mask"]["step"]) if c["mask"] else (None, None)
            metrics = dict(r.metrics)
            # The evaluation reports the achieved sparsity (70.0011%); rows group by the target.
            achieved = metrics.pop("sparsity", None)
            out[key] = {
                **metrics,
                "id": r.id,
                "method": method_label(c),
                "sparsity": c["sparsity"],
                "achieved_sparsity": achieved,
                "mask_seed": c["mask_seed"],
                "search_steps": c["search_steps"],
            }
        return out

    def pretrain_pending(self) -> bool:
        """Whether the spec asks for pre-training evaluations (`pretrain_eval:`), none finished yet."""
        return (self.spec or {}).get("pretrain_eval") is not None and not self.pretrain_losses()

    def mask_dir(self, search_id: str, step: int | None) -> Path:
        m = self.records[search_id].metrics
        if step is None:
            return self.sweep_dir / m["mask_dir"]
        return self.sweep_dir / next(i["mask_dir"] for i in m["intermediate"] if i["step"] == step)

    def search_time(self, search_id: str, step: int | None) -> float | None:
        m = self.records[search_id].metrics
        if step is None:
            return m.get("time_s")
        return next((i.get("time_s") for i in m["intermediate"] if i["step"] == step), None)


def encoder_share(model: str | None) -> float | None:
    """The encoder matrices' share of a BERT-style model's word embeddings plus encoder matrices (Q, K,
    V, attention output, FFN in and out), from its config.json; None where that does not read."""
    try:
        c = read_json(Path(str(model)) / "config.json", "model config")
        h, layers, ffn, vocab = (
            int(c[k]) for k in ("hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size")
        )
    except (TicketlabError, ValueError, KeyError, TypeError):
        return None
    encoder = layers * (4 * h * h + 2 * h * ffn)
    return encoder / (encoder + vocab * h)


def _mask_achieved(metrics: dict[str, Any], step: int | None) -> float | None:
    """A search's measured sparsity of its mask (of the mask's own targets), or of its mask at `step`."""
    if step is None:
        return metrics.get("achieved_sparsity")
    saved = [i for i in metrics.get("intermediate", []) if i.get("step") == step]
    return saved[0].get("achieved_sparsity") if saved else None


def _imp_variant(config: dict) -> str | None:
    """An IMP search's variant: its setting, else Chen et al.'s (the default); None: not IMP."""
    if method_label(config).split("/")[0] not in ("imp", "imp-task"):
        return None
    return (config.get("settings") or {}).get("variant", "chen")
