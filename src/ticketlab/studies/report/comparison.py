"""A comparison of two methods in a sweep's results (`Comparison`, the report's `paired.Comparisons`
make them), and a plain paired t-test (`Paired`) for designs whose pairs mean something
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
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ...methods.registry import methods as registered_methods
from ..stats import (
    CROSSED,
    PAIRED,
    WELCH,
    crossed_test,
    design_of,
    detectable_effect,
    paired_test,
    t_interval,
    t_test,
    unit_test,
)
from ..sweep.methods import base_method, sweep_methods
from ..sweep.plan import mask_seeds
from .cells import Cell, Score

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
        return t_interval(self.mean, self.se, self.df)

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


def seed_order(seed: int | None) -> tuple[bool, int]:
    return (seed is not None, seed or 0)
