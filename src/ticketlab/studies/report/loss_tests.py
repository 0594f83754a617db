"""Tests on the masks' pre-training (dev) losses, the general machinery a report's claims on them use:
a declared claim on a loss endpoint or a correlation (`declared.py`) and a recipe's claims (TAMT's, in
`recipes/tamt/claims.py`). Their rows are `pretrain_tests.csv`.

- `LossTest`: method `a`'s mean dev loss minus `b`'s at one sparsity, masks as the unit.
- `Correlation`: Spearman's rho between the masks' dev loss and their downstream score.

A pre-training evaluation is deterministic (the dev blocks are corrupted with fixed per-block seeds,
`lm.evaluation`), so a mask's loss is one exact number and a method's variance is the spread of its
masks' losses over their number; two methods are compared by Welch's test with Satterthwaite's
degrees of freedom. A deterministic method's one mask (OMP) has no search variance either: its loss is
an exact value (variance 0), and the test against it becomes a one-sample t of the other side's masks
(df = n − 1). A stochastic method with one mask gets no test (`ONE_STOCHASTIC_MASK`). Lower loss is
better: each claim is a negative Δ (or ρ), and a verdict is "holds" only where Holm's p < 0.05 in that
direction, "contradicted" only where it is < 0.05 in the other, and otherwise "not shown at this
budget" with the MDE. The statistics are `studies.stats`'.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from ..stats import (
    centred_ranks,
    detectable_effect,
    detectable_rho,
    pooled_rho,
    spearman,
    stratified_permutation_p,
    t_test,
    welch,
)
from ..sweep.declared import WITHIN_DRAWS
from .cells import Cell
from .comparison import EXPLORATORY, FLOOR, ONE_STOCHASTIC_MASK, stochastic

if TYPE_CHECKING:
    from .tables import SweepResults

# The `part` a test is reported under (`pretrain_tests.csv`'s column): the loss of one method's final
# masks against another's, and the correlation of the loss with the score.
EQUAL_STEPS = "equal steps"
PREDICTS = "loss predicts score"
LOSSES = ("mlm_loss", "kd_loss")


def claim_verdict(
    why_not: str | None,
    p_holm: float | None,
    estimate: float,
    mde: str,
    lower: str,
    higher: str,
    exploratory: bool = False,
) -> str:
    """A claim of a negative `estimate`: "holds (`lower`)" where Holm's p < 0.05 and it is negative,
    "contradicted (`higher`)" where p < 0.05 and it is positive, else not shown, with the MDE; no
    verdict for an `exploratory` test (a study that declared other claims)."""
    if why_not is not None:
        return why_not
    if exploratory:
        return EXPLORATORY
    if p_holm is not None and p_holm < 0.05:
        return f"holds ({lower})" if estimate < 0 else f"contradicted ({higher})"
    return f"not shown at this budget (MDE {mde})"


@dataclass
class LossSide:
    """One method's masks in a loss test: each mask's loss (one deterministic evaluation each)."""

    method: str
    steps: int | None  # search steps of its masks (None: no search, OMP)
    masks: list[int | None]  # mask seeds
    values: list[float]  # per mask
    run_ids: list[str]
    stochastic: bool = True

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def exact(self) -> bool:
        """One deterministic mask, evaluated deterministically: an exact value, no variance."""
        return not self.stochastic and len(self.values) == 1

    def noise(self) -> tuple[float, int] | None:
        """(variance of `mean`, its degrees of freedom); None: one mask (exact, or not estimated)."""
        if len(self.values) < 2:
            return None
        return Cell(self.values, []).std ** 2 / len(self.values), len(self.values) - 1

    def why_not(self) -> str | None:
        return ONE_STOCHASTIC_MASK if self.stochastic and len(self.values) < 2 else None


@dataclass
class LossTest:
    """Method `a`'s mean dev loss `loss` minus `b`'s at one sparsity: Welch on per-mask losses, or a
    one-sample t against an exact side (see the module's docstring). The claim: Δ < 0."""

    loss: str
    a: LossSide
    b: LossSide
    sparsity: float
    part: str = EQUAL_STEPS
    p_holm: float | None = None
    labels: list[str] = field(default_factory=list)  # "unequal sparsity ..." (`comparison_labels`)
    exploratory: bool = False  # the study declared other claims (`paired.EXPLORATORY`)

    @property
    def mean(self) -> float:
        return self.a.mean - self.b.mean

    @property
    def masks(self) -> tuple[int, int]:
        return len(self.a.values), len(self.b.values)

    @property
    def run_ids(self) -> list[str]:
        return list(dict.fromkeys([*self.a.run_ids, *self.b.run_ids]))

    @property
    def why_not(self) -> str | None:
        if len({*self.a.values, *self.b.values}) == 1:
            return "identical"
        if self.a.exact and self.b.exact:
            return "both exact (no test)"
        return self.a.why_not() or self.b.why_not()

    @cached_property
    def _design(self) -> tuple[float, float] | None:
        parts = [n for n in (self.a.noise(), self.b.noise()) if n is not None]  # an exact side adds none
        if self.why_not is not None or not parts:
            return None
        se, df = welch(parts)
        return float(se), float(df)

    @property
    def se(self) -> float | None:
        return None if self._design is None else self._design[0]

    @property
    def df(self) -> float | None:
        return None if self._design is None else self._design[1]

    @property
    def p(self) -> float | None:
        return None if self._design is None else float(t_test(self.mean, *self._design))

    @property
    def mde(self) -> float | None:
        """The smallest true Δ found with 80% power at α = 0.05 (uncorrected), `detectable_effect`."""
        return None if self._design is None else detectable_effect(*self._design)

    @property
    def holds(self) -> bool:
        return self.p_holm is not None and self.p_holm < 0.05 and self.mean < 0

    @property
    def verdict(self) -> str:
        mde = "—" if self.mde is None else f"{self.mde:.3g}"
        a = self.a.method
        lower, higher = f"{a} lower", f"{a} higher"
        return claim_verdict(self.why_not, self.p_holm, self.mean, mde, lower, higher, self.exploratory)


@dataclass
class Correlation:
    """Spearman's ρ between the final masks' dev loss `loss` and their score on `task` (or AVG); the
    claim: ρ < 0 (lower loss, higher score). p: scipy's `spearmanr` (its t approximation), exact by
    enumerating every ordering of up to `stats.EXACT_UP_TO` masks (the approximation gives p = 0 to any
    perfect order, even of 3 masks).

    `within`: masks nested in methods (a declared claim's `within-methods` unit). The masks of one
    method sit in a tight cluster, so a ρ over all of them is mostly the order of the clusters; here
    each method's masks are ranked among themselves, ρ is the pooled correlation of those centred ranks
    (the methods' Spearman ρs weighted by their rank variance), and p is a stratified permutation test
    (scores permuted within each method: under the null the masks of a method, different search
    seeds, are exchangeable). A method with one mask (OMP) carries no within-method information."""

    loss: str
    task: str
    methods: list[str]  # per mask
    losses: list[float]
    scores: list[float]
    run_ids: list[str]
    sparsity: float | None = None  # the masks' one sparsity; None: every sparsity pooled, full model too
    p_holm: float | None = None
    part: str = PREDICTS
    floor: bool = False  # the full model is at the task's constant predictor: the scores rank noise
    exploratory: bool = False  # the study declared other claims (`paired.EXPLORATORY`)
    within: bool = False  # ranks and permutations within each method (see above)

    @cached_property
    def groups(self) -> list[np.ndarray]:
        """The masks' indices per method: all masks as one group, or (`within`) each method with 2 or
        more masks as its own, the methods by name and each one's masks by (loss, score), so that the
        seeded draws of the permutation test do not depend on the order the store lists the masks in."""
        if not self.within:
            return [np.arange(len(self.losses))]
        by: dict[str, list[int]] = defaultdict(list)
        for i, m in enumerate(self.methods):
            by[m].append(i)
        order = lambda i: (self.losses[i], self.scores[i])  # noqa: E731
        return [np.array(sorted(by[m], key=order)) for m in sorted(by) if len(by[m]) > 1]

    @property
    def n(self) -> int:
        return sum(len(g) for g in self.groups)

    @cached_property
    def _centred_ranks(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per group, the losses' and the scores' average ranks minus their mean."""
        return centred_ranks(self.losses, self.groups), centred_ranks(self.scores, self.groups)

    @property
    def why_not(self) -> str | None:
        if self.floor:
            return FLOOR
        if self.n < 3:
            return "fewer than 3 masks" + (" in methods with 2 or more" if self.within else "")
        xs, ys = self._centred_ranks
        if not any(x.any() for x in xs) or not any(y.any() for y in ys):
            return "constant loss or score" + (" within every method" if self.within else "")
        return None

    @cached_property
    def rho(self) -> float | None:
        if self.why_not is not None:
            return None
        return pooled_rho(*self._centred_ranks) if self.within else self._spearman[0]

    @cached_property
    def _spearman(self) -> tuple[float, float]:
        return spearman(self.losses, self.scores)

    @cached_property
    def p(self) -> float | None:
        """Spearman's p (`stats.spearman`: exact over every ordering of up to 8 masks), or `within`
        a stratified permutation test (`stats.stratified_permutation_p`, `WITHIN_DRAWS` draws)."""
        if self.rho is None:
            return None
        if self.within:
            return stratified_permutation_p(*self._centred_ranks, WITHIN_DRAWS)
        return self._spearman[1]

    @property
    def effective_n(self) -> int:
        """Units for the MDE: the masks, less one per method beyond the first where ranked within methods
        (a partial correlation's Fisher z loses a degree of freedom per method mean it removes)."""
        return self.n - (len(self.groups) - 1 if self.within else 0)

    @property
    def mde(self) -> float | None:
        """The smallest |ρ| found with 80% power at α = 0.05 (uncorrected), by Fisher's z with
        Fieller's variance 1.06 / (n − 3) (`effective_n`); None below 4 units or without a test."""
        return None if self.why_not is not None else detectable_rho(self.effective_n)

    @property
    def holds(self) -> bool:
        return self.p_holm is not None and self.p_holm < 0.05 and (self.rho or 0) < 0

    @property
    def verdict(self) -> str:
        mde = "—" if self.mde is None else f"{self.mde:.2f}"  # no '|': a markdown table's cell
        rho = self.rho or 0.0
        return claim_verdict(self.why_not, self.p_holm, rho, mde, "ρ < 0", "ρ > 0", self.exploratory)


def is_final(res: SweepResults, mask: tuple[str | None, int | None]) -> bool:
    """A final mask of the main grid, or the full model ((None, None))."""
    return mask == (None, None) or mask in res.main_masks


def losses_by(res: SweepResults, final: bool) -> dict[tuple, list[dict]]:
    """The pre-training evaluations of the final masks (the full model's too), or of the masks saved
    along a search (and of smaller budgets' final masks), by (method, sparsity, steps: None if final)."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for key, p in res.pretrain_losses().items():
        if is_final(res, key) == final:
            out[(p["method"], p["sparsity"], None if final else p["search_steps"])].append(p)
    return out


def loss_side(rows: list[dict], loss: str) -> LossSide | None:
    """One method's masks (its pre-training evaluations `rows`) on `loss`, by mask seed."""
    rows = sorted(
        (p for p in rows if loss in p), key=lambda p: (p["mask_seed"] is not None, p["mask_seed"] or 0)
    )
    if not rows:
        return None
    method = rows[0]["method"]
    values = [float(p[loss]) for p in rows]
    masks, ids = [p["mask_seed"] for p in rows], [p["id"] for p in rows]
    return LossSide(method, rows[0]["search_steps"], masks, values, ids, stochastic(method))


def loss_test(
    res: SweepResults, a: list[dict], b: list[dict], loss: str, sparsity: float, part: str
) -> LossTest | None:
    """The test of `a`'s mean `loss` against `b`'s (evaluations as `losses_by` groups them)."""
    sa, sb = loss_side(a, loss), loss_side(b, loss)
    if sa is None or sb is None:
        return None
    labels = res.comparison_labels(sa.method, sb.method, sparsity)
    return LossTest(loss, sa, sb, sparsity, part, labels=labels)


def correlation(
    final: dict, per_mask: dict, keys: list, loss: str, task: str, sparsity: float | None
) -> Correlation:
    """Spearman's ρ over the masks `keys`: their loss in `final` (`pretrain_losses`) and their score
    in `per_mask` (`mask_scores`)."""
    return Correlation(
        loss,
        task,
        [final[k]["method"] for k in keys],
        [float(final[k][loss]) for k in keys],
        [per_mask[k].mean for k in keys],
        [i for k in keys for i in (final[k]["id"], *per_mask[k].run_ids)],
        sparsity,
    )
