"""Comparisons of two methods in a sweep's results (`Comparison`), in one Holm family over every
comparison a report prints, and a plain paired t-test (`Paired`) for designs whose pairs mean something
(a super ticket and the full model it came from, fine-tuned with one seed).

A comparison's unit is a mask. The design is two-level: masks are nested in methods and fine-tuning
seeds in masks. Each mask's score is its mean over its fine-tuning seeds (on the task average: the mean
over tasks of its per-task means); a method's score is the mean of its masks' scores. The test is
the one the runs' seeds make valid (`studies.stats.design_of`): where no fine-tuning seed serves two
masks, Welch's t-test on the units' means with Satterthwaite's degrees of freedom; where each arm has
one mask per seed and the arms share the seeds (a super ticket and the random ticket drawn from the
same seed's model), the paired t over those seeds; where the masks share their seeds, the
crossed-seeds test, which counts the method x seed interaction a shared seed brings (a seed shifts
every mask of a method together) on the seeds both arms share. Nothing pairs a mask of one method
with a mask of the other by its search seed: a search seed means nothing across methods. A
deterministic method (the full model, OMP, importance-ranked super tickets) has one mask, which is no
sample of a search: its units are its fine-tuning seeds. A stochastic method (random, IMP, TAMT,
random tickets) with one mask has no estimate of how much another search would move it: no test
("search variance not estimated (1 mask)"). `tests/test_calibration.py` measures the size and power
of the tests by simulation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from scipy import stats as sps

from ...methods.registry import methods as registered_methods
from ..stats import (
    CROSSED,
    PAIRED,
    WELCH,
    crossed_test,
    design_of,
    detectable_effect,
    holm,
    paired_test,
    t_test,
    unit_test,
)
from ..sweep.methods import base_method, sweep_methods
from ..sweep.plan import mask_seeds
from .cells import AVG, Cell, Score

MAIN = "main"  # the training-set size of the main grid (a data curve's sizes are numbers, or None: all)
ONE_STOCHASTIC_MASK = "search variance not estimated (1 mask)"
NO_SPREAD = "no spread"  # each side's runs agree within it, the sides differ: SE 0, no test
FLOOR = "floor"  # the full model is within one std of the task's constant predictor: no test on it
# A study that declared its claims (`declared`) tests those alone: every other test is an estimate
EXPLORATORY = "exploratory"
DECLARED = "declared claim (its verdict: declared.csv)"  # a comparison the study declared


def stochastic(label: str) -> bool:
    """Whether a method's mask is a draw of a seeded search (random, IMP, TAMT, random tickets): its
    registry entry's `seeded` (the full model, OMP and importance tickets are not, their one mask's
    only noise is its fine-tuning's); labels the registry does not know are."""
    spec = sweep_methods().get(base_method(label.split("@", 1)[0]))
    return spec.seeded if spec is not None else True


def against(label: str) -> tuple[str, ...]:
    """The methods a sweep's method label is tested against (its registry entry's `against`; a
    preset's are its method's, a variant label's its base's)."""
    named = {p.name: m for m in registered_methods().values() for p in m.named}
    method = named.get(base_method(label))
    return method.against if method is not None else ()


@dataclass
class Side:
    """One method's masks in a comparison: each mask's mean score (over its fine-tuning seeds) and, for
    one mask, its per-seed values (the variance of a deterministic mask's mean)."""

    method: str
    masks: list[int | None]  # mask seeds (None: one deterministic mask)
    means: list[float]  # per mask
    seeds: list[int]  # fine-tuning seeds per mask (the fewest any mask has)
    within: list[float]  # one mask's values per fine-tuning seed ([] with several masks)
    values: list[float]  # every run's score (or per-seed task average)
    run_ids: list[str]
    stochastic: bool = True
    per_seed: list[dict[int, float]] = field(default_factory=list)  # per mask: fine-tuning seed -> score

    @property
    def mean(self) -> float:
        return sum(self.means) / len(self.means)

    def units(self) -> list[float]:
        """Its independent units' scores: the masks' means, or one deterministic mask's seeds."""
        return self.means if len(self.means) >= 2 else self.within

    def at(self, seeds: list[int]) -> np.ndarray:
        """(masks, seeds) its masks' scores at `seeds` (each mask has every one of them)."""
        return np.array([[m[f] for f in seeds] for m in self.per_seed])

    def flat(self) -> bool:
        """Nothing to estimate its noise from: its mask means agree (several masks), or its one
        deterministic mask's fine-tuning seeds do (to rounding: a mean of the same scores in another
        order may differ in the last bit)."""
        values = self.means if len(self.means) >= 2 else self.within
        return len(values) >= 2 and max(values) - min(values) <= 1e-9 * max(1.0, abs(self.mean))

    def why_not(self) -> str | None:
        if len(self.means) >= 2:
            return None
        if self.stochastic:
            return ONE_STOCHASTIC_MASK
        return None if len(self.within) >= 2 else "one run"


@dataclass
class Comparison:
    """Method `a` minus method `b` at one sparsity and task (and training-set size): the test its
    design makes valid, Welch's on unit means or the crossed-seeds test (the module's docstring)."""

    a: Side
    b: Side
    sparsity: float
    task: str
    train_size: int | str | None = MAIN
    p_holm: float | None = None  # `p` Holm-adjusted over the report's family (`family()`)
    labels: list[str] = field(default_factory=list)  # e.g. "unequal sparsity": out of headlines
    floor: bool = False  # the full model is at the task's constant predictor (`SweepResults.at_floor`)
    exploratory: bool = False  # the study declared its claims and this is none of them: no verdict
    declared: str = ""  # the declared claim this comparison is (its verdict is declared.csv's)
    alpha: float = 0.05  # the level its MDE is at: a declared claim's is Holm's strictest, α / m

    @property
    def run_ids(self) -> list[str]:
        return list(dict.fromkeys([*self.a.run_ids, *self.b.run_ids]))

    @property
    def masks(self) -> tuple[int, int]:
        return len(self.a.means), len(self.b.means)

    @property
    def seeds(self) -> tuple[int, int]:
        """Fine-tuning seeds per mask of each side."""
        return len(self.a.seeds), len(self.b.seeds)

    @property
    def identical(self) -> bool:
        """Every run of both methods scored the same (typically both at a constant predictor)."""
        return len({*self.a.values, *self.b.values}) == 1

    @property
    def why_not(self) -> str | None:
        """Why there is no test (the full model at the task's floor, then identical scores, then a
        stochastic method's single mask, then no spread on either side), or None. At the floor the
        task was not learnt at this budget: a difference of two methods there is one of noise around
        a constant predictor. With no spread on either side Welch's SE is 0 and its p 0 whatever the
        difference: scores on a few hundred dev examples move in steps of one example, and two sides
        that each repeat one near-constant prediction differ by rounding, not by a tested effect."""
        if self.floor:
            return FLOOR
        if self.identical:
            return "identical"
        why = self.a.why_not() or self.b.why_not()
        if why is None and self.a.flat() and self.b.flat():
            return NO_SPREAD
        return why or (None if self.design[0] in (WELCH, PAIRED, CROSSED) else self.design[0])

    @cached_property
    def design(self) -> tuple[str, list[int]]:
        """(the test, the seeds it compares the arms on): `studies.stats.design_of` of the seeds each
        mask was fine-tuned with."""
        return design_of([list(m) for m in self.a.per_seed], [list(m) for m in self.b.per_seed])

    @property
    def test(self) -> str:
        """The test's name (`studies.stats.WELCH` or `CROSSED`), or "" where there is none."""
        return "" if self._result is None else self.design[0]

    @cached_property
    def _result(self) -> tuple[float, float, float, float] | None:
        """(difference, SE, df, p) of the design's test; None where there is no test."""
        test, seeds = self.design
        if self.why_not is not None:
            return None
        a, b = self.a, self.b
        if test == WELCH:
            if len(a.units()) < 2 or len(b.units()) < 2:
                return None
            out = unit_test(np.array(a.units()), np.array(b.units()))
        elif test == PAIRED:
            out = paired_test(*(np.array([_at(side, f) for f in seeds]) for side in (a, b)))
        else:
            out = crossed_test(a.at(seeds), b.at(seeds), (a.stochastic, b.stochastic))
        return tuple(float(x) for x in out)  # type: ignore[return-value]

    @property
    def mean(self) -> float:
        """a − b: the means of mask means, or where the seeds are crossed on the seeds both share."""
        return self.a.mean - self.b.mean if self._result is None else self._result[0]

    @property
    def se(self) -> float | None:
        return None if self._result is None else self._result[1]

    @property
    def df(self) -> float | None:
        return None if self._result is None else self._result[2]

    @property
    def p(self) -> float | None:
        """The design's two-sided p (None where there is no test: see `why_not` and `test`)."""
        return None if self._result is None else self._result[3]

    @property
    def ci95(self) -> tuple[float, float] | None:
        if self.se is None or self.df is None:
            return None
        half = float(sps.t.ppf(0.975, self.df)) * self.se
        return (self.mean - half, self.mean + half)

    @property
    def mde(self) -> float | None:
        """The smallest true difference this design finds with 80% power at `alpha` (0.05, one test,
        not Holm-corrected; a declared claim's α / m), given its observed noise
        (`studies.stats.detectable_effect`)."""
        if self.se is None or self.df is None:
            return None
        return detectable_effect(self.se, self.df, alpha=self.alpha)

    @property
    def verdict(self) -> str:
        """From the Holm-adjusted p (the report's family); why there is no test otherwise."""
        if self.why_not is not None:
            return self.why_not
        if self.declared:
            return DECLARED
        if self.exploratory:
            return EXPLORATORY
        if self.p_holm is None or self.p_holm >= 0.05:
            return "within noise"
        return f"{self.a.method} > {self.b.method}" if self.mean > 0 else f"{self.a.method} < {self.b.method}"


@dataclass
class Paired:
    """A paired t-test on `diffs`, one per unit in `seeds` (a design whose pairs mean something: a
    super ticket and the full model it came from, fine-tuned with the same seed)."""

    a: str
    b: str
    sparsity: float
    task: str
    seeds: list[int | None]
    diffs: list[float]  # a - b per unit
    run_ids: list[str]
    p_holm: float | None = None

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return Cell(self.diffs, []).mean

    @property
    def std(self) -> float:
        return Cell(self.diffs, []).std

    @property
    def identical(self) -> bool:
        return all(d == 0 for d in self.diffs)

    @property
    def p(self) -> float | None:
        if self.n < 2 or self.identical:
            return None
        return float(t_test(self.mean, self.std / math.sqrt(self.n), self.n - 1))

    @property
    def verdict(self) -> str:
        if self.identical and self.n:
            return "identical"
        p = self.p_holm if self.p_holm is not None else self.p
        if p is None or p >= 0.05:
            return "within noise"
        return f"{self.a} > {self.b}" if self.mean > 0 else f"{self.a} < {self.b}"


# method -> {"masks": search seeds, "finetune_seeds": pinned list or a number drawn per mask}
Units = dict[str, dict[str, Any]] | None


def within(s: Score, units: dict[str, Any] | None) -> bool:
    """Whether run `s` is one of the declared `units` of its method (None: the method undeclared)."""
    if units is None:
        return True
    masks, seeds = units.get("masks"), units.get("finetune_seeds")
    if masks is not None and s.mask_seed is not None and s.mask_seed not in masks:
        return False
    if isinstance(seeds, list):
        return s.seed in seeds
    key = "full" if s.search is None else s.search + ("" if s.step is None else f"@{s.step}")
    return seeds is None or s.seed in mask_seeds(seeds, key)


def _at(side: Side, seed: int) -> float:
    """The score of `side`'s one mask fine-tuned with `seed` (a paired design: one mask per seed)."""
    return next(m[seed] for m in side.per_seed if seed in m)


def _seed_order(seed: int | None) -> tuple[bool, int]:
    return (seed is not None, seed or 0)


class Comparisons:
    """The comparisons of a sweep's results, mixed into `tables.SweepResults`: they read its fields
    (`scores`, `tasks`, `methods`, `main_masks`, `main_size`) and selections (`main_scores`,
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
        self, method: str, sparsity: float, task: str, size: int | str | None = MAIN, only: Units = None
    ) -> dict[int | None, dict[int, list[Score]]]:
        """Mask seed -> fine-tuning seed -> its runs; task AVG: the per-task runs of every task, for
        the fine-tuning seeds every task has. `only`: the units a declaration named (`within`)."""
        tasks = self.score_tasks(task)
        out: dict[int | None, dict[int, list[Score]]] = defaultdict(lambda: defaultdict(list))
        for t in tasks:
            for s in self._runs(method, sparsity, t, size):
                if only is None or within(s, only.get(method)):
                    out[s.mask_seed][s.seed].append(s)
        if len(tasks) > 1:  # an average: a seed counts only where every task has a run
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

    def side(
        self, method: str, sparsity: float, task: str, size: int | str | None = MAIN, only: Units = None
    ) -> Side | None:
        """`method`'s masks at `sparsity` on `task` (or AVG): each mask's mean over its fine-tuning
        seeds (None: no runs); `only` those of the units a declaration named."""
        per_mask = self._per_mask(method, sparsity, task, size, only)
        if not per_mask:
            return None
        masks = sorted(per_mask, key=_seed_order)
        by_seed = {k: {f: self._mean(per_mask[k][f]) for f in sorted(per_mask[k])} for k in masks}
        per_seed = {k: list(v.values()) for k, v in by_seed.items()}
        runs = [s for k in masks for v in per_mask[k].values() for s in v]
        return Side(
            method,
            masks,
            [sum(v) / len(v) for v in per_seed.values()],
            sorted(min((per_mask[k] for k in masks), key=len)),
            per_seed[masks[0]] if len(masks) == 1 else [],
            [x for v in per_seed.values() for x in v],
            list(dict.fromkeys(s.id for s in runs)),
            stochastic(method),
            list(by_seed.values()),
        )

    def paired(
        self, a: str, b: str, sparsity: float, task: str, size: int | str | None = MAIN, only: Units = None
    ) -> Comparison | None:
        """`a` − `b` at `sparsity` on `task` (or AVG), on the main grid or, with `size`, on a data
        curve's runs of that many training examples: the test its design makes valid (`Comparison`);
        `only`: on the units a declaration named (`declaration.units`), e.g. the first one's."""
        sa, sb = (self.side(m, sparsity, task, size, only) for m in (a, b))
        if sa is None or sb is None:
            return None
        labels = self.comparison_labels(a, b, sparsity)
        return Comparison(sa, sb, sparsity, task, size, labels=labels, floor=self.full_at_floor(task, size))

    def full_at_floor(self, task: str, size: int | str | None = MAIN) -> bool:
        """The full model's runs on `task` (at training-set size `size`) are within one std of the
        task's constant predictor (`SweepResults.at_floor`). Never on the average: a task at its floor
        adds about the same constant to both methods' averages, so it dilutes a difference of them
        rather than making one (the winning-ticket criterion, which it would make every mask pass,
        takes the average at the floor when any task is)."""
        runs = self._runs("full", 0.0, task, size) if task != AVG else []
        return bool(runs) and self.at_floor(task, Cell([s.value for s in runs], [s.id for s in runs]))

    def comparison_labels(self, a: str, b: str, sparsity: float) -> list[str]:
        """ "unequal sparsity (x% vs y% of all targets)" where the two methods' masks prune different
        shares of the model's default targets (Chen's IMP keeps the word embeddings dense)."""
        if "full" in (a, b):
            return []
        x, y = (self.target_share(m, sparsity) for m in (a, b))
        if x is None or y is None:
            return [] if x is None and y is None else ["unequal sparsity (targets differ)"]
        return [] if abs(x - y) < 0.005 else [f"unequal sparsity ({x:.1%} vs {y:.1%} of all targets)"]

    def pairs(self) -> list[tuple[str, str]]:
        """The pairs of methods the papers compare: every pruned method against OMP, a method variant
        (`base/name`) against its base, and each method against those its registry entry names
        (`Method.against`: TAMT against IMP and its variants, winning super tickets against random
        and losing ones); `imp/tamt`, `tamt-kd/random-init` are variants of a method."""
        pruned = [m for m in self.methods if m != "full" and "@" not in m]
        pairs = [(m, "omp") for m in pruned if m != "omp" and "omp" in pruned]
        pairs += [(m, o) for m in pruned for o in pruned if base_method(o) in against(m)]
        # a variant against its own method (TAMT from a random mask vs from OMP's, Liu et al. §4.2.4)
        pairs += [(m, base_method(m)) for m in pruned if base_method(m) != m and base_method(m) in pruned]
        return list(dict.fromkeys(pairs))  # `omp/x` is both a pruned method and OMP's variant

    def comparisons(self) -> list[Comparison]:
        """Every pair of `pairs()` at every sparsity both were run at, per task and on the average,
        and on each data curve's sizes; Holm-adjusted as one family with the report's other tests
        (`family`)."""
        return self.family()[0]

    def other_tests(self) -> list[Any]:
        """The report's tests besides the comparisons of scores, in the same Holm family: none here
        (`claims.Claims` adds those of TAMT's claims on pre-training loss). Each has `p` and `p_holm`."""
        return []

    def score_tasks(self, task: str) -> list[str]:
        """The tasks a score on `task` averages: every task (AVG), a named endpoint's (the spec's
        `endpoint:`), or the task itself."""
        if task == AVG:
            return list(self.tasks)
        named = {e["name"]: list(e["tasks"]) for e in self.spec.get("endpoints") or []}
        return named.get(task, [task])

    def declared_claims(self) -> list[dict[str, Any]]:
        """The claims the study's spec declares (`sweep.declared`), as its JSON holds them."""
        return list(self.spec.get("claims") or [])

    def family(self) -> tuple[list[Comparison], list[Any]]:
        """The report's one Holm family: (the comparisons, `other_tests()`), every `p_holm` set over
        all of them (Holm: no dependence assumed between them). A study that declared its claims has
        those as its family (`declared.declared_tests`): these are then exploratory, with no `p_holm`."""
        comps, others = self._comparisons(), self.other_tests()
        tests = [*comps, *others]
        if claims := self.declared_claims():
            for c in tests:
                c.exploratory = True
            for c in comps:
                self._mark_declared(c, claims)
            return comps, others
        for c, adjusted in zip(tests, holm([c.p for c in tests]), strict=True):
            c.p_holm = adjusted
        return comps, others

    def _mark_declared(self, c: Comparison, claims: list[dict[str, Any]]) -> None:
        """Mark `c` as the declared comparison it is (its methods either way round, its sparsity and
        the tasks it averages), its MDE then at Holm's strictest level over the declared family."""
        for claim in claims:
            same_tasks = set(self.score_tasks(c.task)) == set(self.score_tasks(claim["endpoint"]))
            methods = {c.a.method, c.b.method} == {claim.get("a"), claim.get("b")}
            compare = claim["kind"] == "compare" and c.train_size == MAIN
            if compare and methods and same_tasks and c.sparsity == claim["sparsity"]:
                c.exploratory, c.declared, c.alpha = False, claim["a"], 0.05 / len(claims)

    def _comparisons(self) -> list[Comparison]:
        pairs, out = self.pairs(), []
        for a, b in pairs:
            for s in sorted(set(self.sparsities(a)) & set(self.sparsities(b))):
                for task in [*self.tasks, *([AVG] if len(self.tasks) > 1 else [])]:
                    c = self.paired(a, b, s, task)
                    if c is not None:
                        out.append(c)
        return out + self._curve_comparisons(pairs)

    def _curve_comparisons(self, pairs: list[tuple[str, str]]) -> list[Comparison]:
        """The same pairs on each data curve's sizes (TAMT Fig. 9), per task (the curves' sizes differ
        between tasks, so no average)."""
        out = []
        for task in self.tasks:
            for size in self.curve_sizes(task):
                for a, b in pairs:
                    for s in sorted(set(self.sparsities(a)) & set(self.sparsities(b))):
                        c = self.paired(a, b, s, task, size)
                        if c is not None:
                            out.append(c)
        return out
