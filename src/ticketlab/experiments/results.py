"""Reading a sweep's store back as tables: every number a report prints comes from here, with the
ids of the runs behind it.

Scores are each fine-tuning run's best dev score of its task's main metric (what the papers report),
on the 0-100 scale of `ticketlab.metrics`. A cell (method, sparsity, task, training-set size) pools
every run on it, i.e. mask seeds x fine-tuning seeds (TAMT §4.1.3: 3 x 3 = 9 runs; OMP 1 x 3); its
std is the sample standard deviation (ddof=1) over those runs, 0 for a single run. The task average
is taken per (mask seed, fine-tuning seed) first, then mean ± std over those pairs.

A ticket found on one task (`imp-task`, Chen et al. §5) is grouped as `imp-task@<source task>`, and
`transfer()` lays those out as the source x target matrix. `paired()` compares two methods with a
t-test whose unit is a mask whenever either method has several (a crossed masks x fine-tuning seeds
design: see `Paired`), and the
fine-tuning seed only when each has one mask: then the test measures the fine-tuning noise of those
two masks, not how much another search would have moved the result.

Which runs are the "main" grid: masks from the largest search budget of their (method, sparsity,
seed, settings) — smaller budgets and masks saved along a search are the search-cost curve — and,
per task, the training-set size with the most runs (ties: the whole training set, then the
largest) — the others are the data-scarcity curve.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats as sps

from ..errors import TicketlabError
from .methods import report_order
from .store import DB_NAME, RunRecord, Store

AVG = "avg"


@dataclass(frozen=True)
class Score:
    """One finished fine-tuning run."""

    id: str
    method: str
    sparsity: float
    task: str
    metric: str
    train_size: int | None
    mask_seed: int | None
    seed: int
    search: str | None  # id of the search run that made the mask
    step: int | None  # mask saved at this search step (None: the search's final mask)
    search_steps: int | None
    value: float

    @property
    def mask(self) -> tuple[str | None, int | None]:
        return (self.search, self.step)


@dataclass
class Cell:
    values: list[float]
    run_ids: list[str]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); 0 for one value."""
        if len(self.values) < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))


def stats(cells: Iterable[tuple[float, str]]) -> Cell:
    pairs = list(cells)
    return Cell([v for v, _ in pairs], [i for _, i in pairs])


def method_label(config: dict[str, Any]) -> str:
    """What a run's results are grouped under: its method, and for a ticket found on a task its source
    (`imp-task@sst2`). A search config names the source as a mapping, a fine-tuning config by its label."""
    source = config.get("source")
    if isinstance(source, dict):
        source = source.get("label")
    return f"{config['method']}@{source}" if source else config["method"]


def wins(cell: Cell, full: Cell) -> bool:
    """Chen et al.'s winning-ticket criterion: mean at least the full model's mean minus one sample std."""
    return cell.mean >= full.mean - full.std


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
    reason: str | None = None  # why no verdict: "floor", "one run" (`metrics.no_verdict`)

    @property
    def delta_std(self) -> float | None:
        """Difference to the full model in units of the full model's std (None without a spread)."""
        if self.full is None or self.full.std == 0:
            return None
        return (self.cell.mean - self.full.mean) / self.full.std

    @property
    def winning(self) -> bool | None:
        return None if self.full is None or self.at_floor or self.reason else wins(self.cell, self.full)


MASK, FT_SEED = "mask", "fine-tuning seed"  # the unit of a paired comparison
MAIN = "main"  # the training-set size of the main grid (a data curve's sizes are numbers, or None: all)


@dataclass
class Paired:
    """Method `a` minus method `b` at one sparsity and task: one difference per unit, a mask (`unit`
    MASK: `seeds` are mask seeds) or a fine-tuning seed (FT_SEED: each method has one mask).

    Masks as the unit, `grid` holds each mask's difference per fine-tuning seed (rows: `seeds`;
    columns: the fine-tuning seeds every mask has) and the test is that of a crossed design: the
    standard error is var(mask means)/K + var(seed means)/F under a square root, with
    Satterthwaite's degrees of freedom. The seed term is the fine-tuning noise every mask shares: a
    one-mask baseline's (OMP, `full`) enters every difference alike, so the spread of the mask
    means alone does not show it, and a t-test on them alone rejects a true null far more often than
    5% (tests/test_report.py measures it). Conservative: the masks x seeds interaction counts in
    both terms."""

    a: str
    b: str
    sparsity: float
    task: str
    seeds: list[int | None]  # the units: mask seeds (None: one deterministic mask) or fine-tuning seeds
    diffs: list[float]  # a - b, one per unit in `seeds`
    run_ids: list[str]
    p_holm: float | None = None  # `p` Holm-adjusted over the report's family (`comparisons()`)
    unit: str = FT_SEED
    masks: tuple[int, int] = (1, 1)  # masks of a and of b behind the differences
    grid: list[list[float]] | None = None  # masks as the unit: a - b per mask (row) and seed (column)
    train_size: int | str | None = MAIN  # a data curve's size (None: the whole set), or the main grid

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return Cell(self.diffs, []).mean

    @property
    def std(self) -> float:
        return Cell(self.diffs, []).std

    def _noise(self) -> list[tuple[float, int]] | None:
        """(variance of the mean, its degrees of freedom) per source of noise; None: no test."""
        if self.n < 2:
            return None
        if self.grid is None:
            return [(self.std**2 / self.n, self.n - 1)]
        k, f = len(self.grid), len(self.grid[0])
        seed_means = [sum(col) / k for col in zip(*self.grid, strict=True)]
        terms = [(self.std**2 / k, k - 1)]
        if f >= 2:
            terms.append((Cell(seed_means, []).std ** 2 / f, f - 1))
        elif 1 in self.masks:  # one seed: the baseline's fine-tuning noise cannot be estimated
            return None
        return terms

    @property
    def se(self) -> float | None:
        """Standard error of `mean` (None: no test)."""
        noise = self._noise()
        return None if noise is None else math.sqrt(sum(v for v, _ in noise))

    @property
    def df(self) -> float | None:
        """Degrees of freedom of the t-test (Satterthwaite's where there are two sources of noise)."""
        noise = self._noise()
        if noise is None:
            return None
        total, parts = sum(v for v, _ in noise), sum(v * v / d for v, d in noise)
        return total * total / parts if parts > 0 else float(sum(d for _, d in noise))

    @property
    def ci95(self) -> tuple[float, float] | None:
        """Student-t 95% interval of the mean difference (None where there is no test)."""
        se, df = self.se, self.df
        if se is None or df is None:
            return None
        half = float(sps.t.ppf(0.975, df)) * se
        return (self.mean - half, self.mean + half)

    @property
    def p(self) -> float | None:
        """Two-sided t-test p-value (None where there is no test: below two units, one seed against a
        one-mask baseline, and when every difference is zero: both methods scored the same on every
        seed, typically both at a constant predictor, which is no test and must not count in a
        family's correction; identical non-zero diffs: 0)."""
        se, df = self.se, self.df
        if se is None or df is None or self.identical:
            return None
        if se == 0:
            return 0.0
        return float(2 * sps.t.sf(abs(self.mean / se), df))

    @property
    def identical(self) -> bool:
        """Both methods scored exactly the same on every seed (every cell of the grid): nothing to test."""
        cells = [d for row in self.grid for d in row] if self.grid is not None else self.diffs
        return all(d == 0 for d in cells)

    @property
    def mde(self) -> float | None:
        """The smallest true difference this design finds with 80% power at α = 0.05, given the
        observed noise of the design (`metrics.detectable_effect`; None where there is no test)."""
        from ..metrics import detectable_effect  # scipy.optimize: only when asked

        se, df = self.se, self.df
        return None if self.identical or se is None or df is None else detectable_effect(se, df)

    @property
    def verdict(self) -> str:
        """From the Holm-adjusted p-value when the comparison is one of a family, else the raw one."""
        if self.identical and self.n:
            return "identical"
        p = self.p_holm if self.p_holm is not None else self.p
        if p is None or p >= 0.05:
            return "within noise"
        return f"{self.a} > {self.b}" if self.mean > 0 else f"{self.a} < {self.b}"


@dataclass
class WinningTicket:
    method: str
    task: str
    sparsity: float | None  # highest sparsity that wins; None: none does
    cell: Cell | None  # the method's cell there
    full: Cell | None  # the full model's cell (its mean and std set the bar)
    at_floor: bool = False  # the full model is within one std of a constant predictor: no verdict
    reason: str | None = None  # why no verdict: "floor", "one run" (`metrics.no_verdict`)


@dataclass
class SweepResults:
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
        "one run", or None (`metrics.no_verdict`)."""
        from ..metrics import floor_of_average, no_verdict

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
                if full is not None and reason is None:
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
        "mlm") fine-tuned on every target task; empty when the sweep has no task-specific tickets."""
        cells = self.cells()
        found = [m for m in self.methods if "@" in m]
        out = []
        for s in sorted({s for m in found for s in self.sparsities(m)}):
            rows = [(m.split("@", 1)[1], m) for m in found if s in self.sparsities(m)]
            rows += [("mlm", "imp")] if s in self.sparsities("imp") else []
            for source, m in rows:
                for target in self.tasks:
                    if (m, s, target) in cells:
                        full, cell = cells.get(("full", 0.0, target)), cells[(m, s, target)]
                        why = self.no_verdict(target, full, cell) if full is not None else None
                        out.append(TransferCell(source, target, s, cell, full, why == "floor", why))
        return out

    # ------------------------------------------------------------------ paired comparisons
    def _runs(self, method: str, sparsity: float, task: str, size: int | str | None = MAIN) -> list[Score]:
        """The runs of `method` at `sparsity` on `task` (not AVG): the main grid's, or with `size`
        those of the main grid's masks fine-tuned on that many examples (a data curve)."""
        scores = self.main_scores() if size == MAIN else self.sized_scores(task, size)
        return [
            s
            for s in scores
            if s.method == method and s.task == task and (method == "full" or s.sparsity == sparsity)
        ]

    def sized_scores(self, task: str, size: int | None) -> list[Score]:
        """Runs of the main grid's masks (and the full model) on `task` fine-tuned on `size` examples."""
        return [
            s
            for s in self.scores
            if s.task == task and s.train_size == size and (s.search is None or s.mask in self.main_masks)
        ]

    def curve_sizes(self, task: str) -> list[int | None]:
        """The training-set sizes of `task`'s data curve other than the main grid's (None: all of it,
        last)."""
        main = self.main_size.get(task)
        sizes = {s.train_size for s in self.scores if s.task == task and s.train_size != main}
        return sorted(sizes, key=lambda n: (n is None, n or 0))

    def _per_mask(
        self,
        method: str,
        sparsity: float,
        task: str,
        ft_seeds: set[int] | None = None,
        size: int | str | None = MAIN,
    ) -> dict[int | None, dict[int, list[Score]]]:
        """Mask seed -> fine-tuning seed -> its runs (the seeds in `ft_seeds` only, if given); task
        AVG: the per-task runs of every task, for the fine-tuning seeds every task has."""
        tasks = self.tasks if task == AVG else [task]
        out: dict[int | None, dict[int, list[Score]]] = defaultdict(lambda: defaultdict(list))
        for t in tasks:
            for s in self._runs(method, sparsity, t, size):
                if ft_seeds is None or s.seed in ft_seeds:
                    out[s.mask_seed][s.seed].append(s)
        if task == AVG:  # a seed counts only where every task has a run
            for per_seed in out.values():
                for f in [f for f, v in per_seed.items() if {s.task for s in v} != set(tasks)]:
                    del per_seed[f]
        return {m: dict(v) for m, v in out.items() if v}

    @staticmethod
    def _mean(runs: list[Score]) -> float:
        """Mean of one unit's runs: per task first, then over tasks (AVG weighs tasks equally)."""
        by_task: dict[str, list[float]] = defaultdict(list)
        for s in runs:
            by_task[s.task].append(s.value)
        return sum(sum(v) / len(v) for v in by_task.values()) / len(by_task)

    def paired(
        self, a: str, b: str, sparsity: float, task: str, size: int | str | None = MAIN
    ) -> Paired | None:
        """`a` - `b` at `sparsity` on `task` (or AVG), on the main grid or, with `size`, on a data
        curve's runs of that many training examples; see `_paired`."""
        p = self._paired(a, b, sparsity, task, size)
        if p is not None:
            p.train_size = size
        return p

    def _paired(self, a: str, b: str, sparsity: float, task: str, size: int | str | None) -> Paired | None:
        """`a` - `b` at `sparsity` on `task` (or AVG): a t-test whose unit is a mask when either
        method has several, else a fine-tuning seed.

        Masks as the unit: each mask's difference is taken per fine-tuning seed, over the seeds that
        every mask of both methods has (so the seeds' shared data order and head initialisation
        cancel in each difference), and masks are paired by mask seed; a method with one mask (OMP,
        `full`, or a search run with one seed) is the baseline of every mask of the other. Why not
        Welch's test on the two sets of mask means: the usual comparison is against OMP, one
        deterministic mask, which has no mask-to-mask spread to estimate, and Welch would also lose
        the fine-tuning pairing. The masks x seeds grid goes to `Paired`, whose standard error holds
        both the masks' spread and the fine-tuning noise they share; n is the number of masks, and a
        method's luck with one mask no longer passes for a method effect.
        With one mask each, the runs of one fine-tuning seed are paired (n: fine-tuning seeds): the
        test is about these two masks, and the report says so."""
        ma, mb = self._per_mask(a, sparsity, task, size=size), self._per_mask(b, sparsity, task, size=size)
        if not ma or not mb:
            return None
        shared = set.intersection(*(set(v) for v in [*ma.values(), *mb.values()]))
        if not shared:
            return self._per_seed(a, b, sparsity, task, ma, mb)
        ma, mb = (self._per_mask(m, sparsity, task, shared, size) for m in (a, b))
        if len(ma) == 1 and len(mb) == 1:
            (ra,), (rb,) = ma.values(), mb.values()
            units = sorted(shared)
            pairs = [(ra[f], rb[f]) for f in units]
            diffs = [self._mean(x) - self._mean(y) for x, y in pairs]
            ids = list(dict.fromkeys(s.id for x, y in pairs for s in (*x, *y)))
            return Paired(a, b, sparsity, task, units, diffs, ids, unit=FT_SEED)
        if len(ma) == 1 or len(mb) == 1:
            units = sorted(mb if len(ma) == 1 else ma, key=_seed_order)
        else:
            units = sorted(ma.keys() & mb.keys(), key=_seed_order)
        if not units:
            return None
        one = lambda per, k: per[k] if len(per) > 1 else next(iter(per.values()))  # noqa: E731
        seeds = sorted(shared)
        # masks x fine-tuning seeds: a - b of mask k on seed f (a one-mask side enters every row)
        grid = [[self._mean(one(ma, k)[f]) - self._mean(one(mb, k)[f]) for f in seeds] for k in units]
        ids = list(
            dict.fromkeys(s.id for k in units for side in (ma, mb) for v in one(side, k).values() for s in v)
        )
        diffs = [sum(row) / len(row) for row in grid]
        return Paired(a, b, sparsity, task, units, diffs, ids, unit=MASK, masks=(len(ma), len(mb)), grid=grid)

    def _per_seed(self, a: str, b: str, sparsity: float, task: str, ma: dict, mb: dict) -> Paired | None:
        """Masks that share no fine-tuning seed: a per-seed design (a super ticket of seed s comes from
        seed s's full model and is fine-tuned with seed s only), so the masks of one seed pair, and
        the test is over seeds, each difference holding both masks' and fine-tunings' noise."""
        units = sorted(ma.keys() & mb.keys(), key=_seed_order)
        if len(ma) < 2 or len(mb) < 2 or not units:
            return None
        grid = [[self._mean(ma[k][f]) - self._mean(mb[k][g])] for k in units for f in ma[k] for g in mb[k]]
        if len(grid) != len(units):  # a mask fine-tuned with several seeds: not this design
            return None
        runs = (s for k in units for side in (ma, mb) for v in side[k].values() for s in v)
        ids = list(dict.fromkeys(s.id for s in runs))
        diffs = [row[0] for row in grid]
        return Paired(a, b, sparsity, task, units, diffs, ids, unit=MASK, masks=(len(ma), len(mb)), grid=grid)

    def comparisons(self) -> list[Paired]:
        """The comparisons the papers make: every pruned method against OMP, each TAMT variant against
        IMP, a method variant (`base/name`) against its base, and winning super tickets against
        random and losing ones, at every sparsity both were run at, per task and on the average."""
        pruned = [m for m in self.methods if m != "full" and "@" not in m]
        pairs = [(m, "omp") for m in pruned if m != "omp" and "omp" in pruned]
        from .methods import base_method  # `imp/tamt`, `tamt-kd/random-init`: variants of a method

        imps = [m for m in pruned if base_method(m) == "imp"]
        pairs += [(m, i) for m in pruned if base_method(m).startswith("tamt") for i in imps]
        # a variant against its own method (TAMT from a random mask vs from OMP's, Liu et al. §4.2.4)
        pairs += [(m, base_method(m)) for m in pruned if base_method(m) != m and base_method(m) in pruned]
        # winning tickets against random and losing ones of the same level (Liang et al. Fig. 4)
        if "st-winning" in pruned:
            pairs += [("st-winning", m) for m in ("st-random", "st-losing") if m in pruned]
        pairs = list(dict.fromkeys(pairs))  # `omp/x` is both a pruned method and OMP's variant
        out = []
        for a, b in pairs:
            for s in sorted(set(self.sparsities(a)) & set(self.sparsities(b))):
                for task in [*self.tasks, *([AVG] if len(self.tasks) > 1 else [])]:
                    p = self.paired(a, b, s, task)
                    if p is not None:
                        out.append(p)
        out += self._curve_comparisons(pairs)
        from ..metrics import holm

        # one family: every comparison a report prints (Holm: no dependence assumed between them)
        for c, adjusted in zip(out, holm([c.p for c in out]), strict=True):
            c.p_holm = adjusted
        return out

    def _curve_comparisons(self, pairs: list[tuple[str, str]]) -> list[Paired]:
        """The same pairs on each data curve's sizes (TAMT Fig. 9), per task (the curves' sizes differ
        between tasks, so no average)."""
        out = []
        for task in self.tasks:
            for size in self.curve_sizes(task):
                for a, b in pairs:
                    for s in sorted(set(self.sparsities(a)) & set(self.sparsities(b))):
                        p = self.paired(a, b, s, task, size)
                        if p is not None:
                            out.append(p)
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


def _seed_order(seed: int | None) -> tuple[bool, int]:
    return (seed is not None, seed or 0)


def _ordered(names: Iterable[str], canonical: list[str]) -> list[str]:
    seen = list(dict.fromkeys(names))
    return [n for n in canonical if n in seen] + [n for n in seen if n not in canonical]


def _main_masks(searches: list[RunRecord]) -> set[tuple[str, None]]:
    """Final masks of the largest budget per (method, sparsity, seed, settings, corpus, model)."""
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for r in searches:
        c = r.config
        key = json.dumps([c["model"], method_label(c), c["sparsity"], c["seed"], c["settings"], c["corpus"]])
        groups[key].append(r)
    return {(max(g, key=lambda r: r.config["steps"] or 0).id, None) for g in groups.values()}


def _main_sizes(scores: list[Score]) -> dict[str, int | None]:
    out = {}
    for task in dict.fromkeys(s.task for s in scores):
        counts = Counter(s.train_size for s in scores if s.task == task)
        out[task] = max(counts, key=lambda n: (counts[n], n is None, n or 0))
    return out


def _floors(records: Iterable[RunRecord], tasks: list[str]) -> dict[str, float]:
    """Each task's constant-predictor score on the split its main metric is read on, from the data
    its fine-tunings read (a task whose data is not here gets none); AVG when every task has one."""
    from ..data.glue import load_examples
    from ..metrics import constant_score
    from ..tasks import get_task

    out: dict[str, float] = {}
    tried: set[str] = set()  # each task's data is read once, found or not
    for r in records:
        label = r.config.get("task_label")
        if r.kind != "finetune" or r.status != "done" or label in tried or r.config.get("data") is None:
            continue
        tried.add(label)
        try:
            spec = get_task(r.config["task"], r.config["data"])
            if spec.kind == "squad":  # no constant answer to score
                continue
            dev = load_examples(spec, r.config["data"], spec.eval_splits[0])
        except Exception:  # moved or missing data: the report goes on without this floor
            continue
        floor = constant_score(r.metrics["metric"], dev.labels)
        if floor is not None:
            out[label] = floor
    if tasks and all(t in out for t in tasks):
        out[AVG] = sum(out[t] for t in tasks) / len(tasks)
    return out


def _rekey(sweep_dir: Path) -> None:
    """Re-key a store whose ids hashed its inputs' paths (`plan.rekey_store`), so that a spec's
    plan finds its runs; a store that cannot be written is read as it is."""
    from .plan import ids_outdated, rekey_store

    with Store(sweep_dir, readonly=True) as store:
        if not ids_outdated(store) or not store.statuses():
            return
    try:
        with Store(sweep_dir) as store:
            rekey_store(store)
    except TicketlabError:
        pass


# What the report takes from a row's config, by kind (and from a finished fine-tuning's metrics).
_NEEDS = {
    "search": ("method", "sparsity", "seed", "steps", "model", "settings", "corpus"),
    "pretrain-eval": ("method", "sparsity", "mask", "mask_seed", "search_steps"),
    "finetune": ("method", "sparsity", "mask", "mask_seed", "search_steps", "task", "task_label", "data")
    + ("seed", "train_size"),
}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def unusable(r: Any) -> str | None:
    """Why the report cannot read run `r` (a config without a field it takes, a finished
    fine-tuning without a metric name and a finite score), or None. Such a row is a corrupt row:
    left out with a warning, as one whose JSON does not read."""
    config, metrics = r.config, r.metrics or {}
    missing = [k for k in _NEEDS.get(r.kind, ()) if k not in config]
    if missing:
        return f"config has no {missing[0]!r}"
    if r.kind in _NEEDS and (not isinstance(config["method"], str) or not _number(config["sparsity"])):
        method, sparsity = config["method"], config["sparsity"]
        return f"config holds no method name and sparsity (method {method!r}, sparsity {sparsity!r})"
    mask = config.get("mask")
    if mask is not None and not (isinstance(mask, dict) and {"search", "step"} <= mask.keys()):
        return f"config's mask {mask!r} names no search and step"
    done = r.kind == "finetune" and r.status == "done"
    if done and (not isinstance(metrics.get("metric"), str) or not _number(metrics.get("score"))):
        metric, score = metrics.get("metric"), metrics.get("score")
        return f"metrics hold no metric name and finite score (metric {metric!r}, score {score!r})"
    return None


def _usable(records: list[Any], store: Path) -> dict[str, Any]:
    """The records the report can read; each other one is named in a warning, once."""
    out = {}
    for r in records:
        why = unusable(r)
        if why is None:
            out[r.id] = r
        else:
            print(f"warning: {store}: run {r.id}: corrupt row ({why}); left out", file=sys.stderr)
    return out


def load_results(
    sweep_dir: str | os.PathLike,
    *,
    all_runs: bool = False,
    plan: tuple[list[str], dict[str, Any]] | None = None,
) -> SweepResults:
    """A sweep's store, ready for tables and figures: the runs of the last spec swept there (runs
    of earlier versions of the spec, e.g. with another lr, would otherwise be pooled into the same
    cells) and of the last run of every study (`ticketlab super`, `ticketlab mtl`) written there, or
    with `all_runs` every run in the store. `plan`: (run ids, spec as JSON) of another spec to show
    instead of the last one (a sweep run in stages, each a smaller spec)."""
    sweep_dir = Path(sweep_dir).resolve()
    if not (sweep_dir / DB_NAME).is_file():
        raise TicketlabError(
            f"{sweep_dir}: not a sweep directory (no {DB_NAME}; run `ticketlab sweep` first)"
        )
    _rekey(sweep_dir)
    with Store(sweep_dir, readonly=True) as store:  # a report changes nothing else in the store
        records = _usable(store.runs(), store.path)
        spec = store.get_meta("spec", {}) or {}
        plan_ids = store.get_meta("plan")
        studies = store.get_meta("studies") or {}  # `ticketlab super` / `mtl` runs: name -> run ids
    if plan is not None:
        plan_ids, spec = plan
    left_out, not_swept = 0, len(set(plan_ids or []) - records.keys())
    if (plan_ids is not None or studies) and not all_runs:
        keep = set(plan_ids or []).union(*studies.values())
        left_out = sum(i not in keep for i in records)
        records = {i: r for i, r in records.items() if i in keep}
    scores = []
    for r in records.values():
        if r.kind != "finetune" or r.status != "done":
            continue
        c = r.config
        scores.append(
            Score(
                id=r.id,
                method=method_label(c),
                sparsity=c["sparsity"],
                task=c["task_label"],
                metric=r.metrics["metric"],
                train_size=c["train_size"],
                mask_seed=c["mask_seed"],
                seed=c["seed"],
                search=c["mask"]["search"] if c["mask"] else None,
                step=c["mask"]["step"] if c["mask"] else None,
                search_steps=c["search_steps"],
                value=float(r.metrics["score"]),
            )
        )
    searches = [r for r in records.values() if r.kind == "search" and r.status == "done"]
    tasks = list(dict.fromkeys(s.task for s in scores))  # tasks with results (failures: see the report)
    methods = _ordered(
        (method_label(r.config) for r in records.values() if r.kind != "pretrain-eval"), report_order()
    )
    return SweepResults(
        sweep_dir=sweep_dir,
        records=records,
        scores=scores,
        tasks=tasks,
        methods=methods,
        metric_of={s.task: s.metric for s in scores},
        main_masks=_main_masks(searches),
        main_size=_main_sizes(scores),
        spec=spec,
        not_swept=not_swept,
        floors=_floors(records.values(), tasks),
        left_out=left_out,
    )
