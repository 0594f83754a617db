"""Paired comparisons of two methods in a sweep's results: which runs pair up (the design) and the
t-test on their differences (`Paired`), in one Holm family over every comparison a report prints.

`SweepResults.paired()` compares two methods with a t-test whose unit is a mask whenever either
method has several (a crossed masks x fine-tuning seeds design: see `Paired`), and the fine-tuning
seed only when each has one mask: then the test measures the fine-tuning noise of those two masks,
not how much another search would have moved the result. The design is `Comparisons`, a part of
`tables.SweepResults` (it reads that class's fields and selections).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from scipy import stats as sps

from .cells import AVG, Cell, Score

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


def _seed_order(seed: int | None) -> tuple[bool, int]:
    return (seed is not None, seed or 0)


class Comparisons:
    """The paired comparisons of a sweep's results, mixed into `tables.SweepResults`: they read its
    fields (`scores`, `tasks`, `methods`, `main_masks`, `main_size`) and selections (`main_scores`,
    `sparsities`)."""

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
