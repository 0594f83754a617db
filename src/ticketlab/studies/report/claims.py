"""Tests of three of TAMT's claims on pre-training loss (Liu et al. 2022), the fourth (TAMT ≥ IMP > OMP >
random downstream, Fig. 3) being `paired`'s comparisons; all of them are one Holm family
(`paired.Comparisons.family`). `Claims` is mixed into `tables.SweepResults`:

1. Lower pre-training loss at equal steps (§4.2.2, Fig. 5; `EQUAL_STEPS`): each method whose registry
   entry names methods it is tested against (`paired.against`: TAMT against IMP) against those and
   OMP, on each dev loss (`mlm_loss`, `kd_loss`) of the final masks: Δ = its mean loss − the other's.
2. Pre-training loss predicts downstream (§1 and §4.2.2, Figs. 1 and 5; `PREDICTS`): Spearman's ρ
   over the final masks with a pre-training evaluation and fine-tunings, between a mask's loss and
   its score per task and on the task average, at each sparsity and, where there are several, pooled
   over them with the full model as the paper's figures are (`Correlation`).
3. Search cost (§4.2.3, Fig. 6, there on scores, here on the loss; `SEARCH_COST`): the masks such a
   method saved along its search, at each saved step k, against the final masks of the methods it is
   tested against (TAMT@k − IMP at its budget).

A mask is the unit, as in `paired`. A pre-training evaluation is deterministic (the dev blocks are
corrupted with fixed per-block seeds, `lm.evaluation`), so a mask's loss is one exact number and a
method's variance is the spread of its masks' losses over their number; two methods are compared by
Welch's test with Satterthwaite's degrees of freedom. A deterministic method's one mask (OMP) has no
search variance either: its loss is an exact value (variance 0), and the test against it becomes a
one-sample t of the other side's masks (df = n − 1). A stochastic method with one mask gets no test
(`ONE_STOCHASTIC_MASK`). Lower loss is better: each claim is a negative Δ (or ρ), and a verdict is
"holds" only where Holm's p < 0.05 in that direction, "contradicted" only where it is < 0.05 in the
other, and otherwise "not shown at this budget" with the MDE.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from scipy import stats as sps

from ..stats import detectable_effect, detectable_rho, t_test, welch
from ..sweep.declared import WITHIN_DRAWS
from ..sweep.methods import base_method
from .cells import AVG, Cell
from .comparison import EXPLORATORY, FLOOR, ONE_STOCHASTIC_MASK, against, stochastic
from .paired import Comparisons

EQUAL_STEPS = "equal steps"
PREDICTS = "loss predicts score"
SEARCH_COST = "search cost"
LOSSES = ("mlm_loss", "kd_loss")
EXACT_UP_TO = 8  # Spearman's p by enumerating every ordering up to this many masks (8! = 40,320)


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
    enumerating every ordering of up to `EXACT_UP_TO` masks (the approximation gives p = 0 to any
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
        seeded draws of `_within_p` do not depend on the order the store lists the masks in."""
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
        losses, scores = np.asarray(self.losses, float), np.asarray(self.scores, float)
        xs = [sps.rankdata(losses[g]) for g in self.groups]
        ys = [sps.rankdata(scores[g]) for g in self.groups]
        return [x - x.mean() for x in xs], [y - y.mean() for y in ys]

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
        if not self.within:
            return float(sps.spearmanr(self.losses, self.scores).statistic)
        xs, ys = self._centred_ranks
        cov = sum(float(x @ y) for x, y in zip(xs, ys, strict=True))
        return cov / np.sqrt(sum(float(x @ x) for x in xs) * sum(float(y @ y) for y in ys))

    @cached_property
    def p(self) -> float | None:
        if self.rho is None:
            return None
        if self.within:
            return self._within_p()
        if self.n > EXACT_UP_TO:
            return float(sps.spearmanr(self.losses, self.scores).pvalue)
        x, y = sps.rankdata(self.losses), sps.rankdata(self.scores)
        orders = np.array(list(itertools.permutations(x)))  # every pairing of losses with scores
        xc, yc = orders - x.mean(), y - y.mean()
        rhos = xc @ yc / np.sqrt((xc**2).sum(1) * (yc**2).sum())
        return float(np.mean(np.abs(rhos) >= abs(self.rho) - 1e-12))

    def _within_p(self) -> float:
        """Two-sided stratified permutation p: the share of within-method orderings of the scores whose
        |Σ x·y| (ρ's numerator; its denominator does not change) reaches the observed one. Every
        ordering where there are at most `WITHIN_DRAWS`, else that many seeded draws (p = (1 + hits) /
        (1 + draws), never 0)."""
        xs, ys = self._centred_ranks
        observed = abs(sum(float(x @ y) for x, y in zip(xs, ys, strict=True))) - 1e-9
        orderings = math.prod(math.factorial(len(g)) for g in self.groups)
        if orderings <= WITHIN_DRAWS:
            total = np.zeros(1)
            for x, y in zip(xs, ys, strict=True):  # every combination: an outer sum over the groups
                sums = np.array(list(itertools.permutations(y))) @ x  # (n_g!,)
                total = (total[:, None] + sums[None, :]).ravel()
            return float(np.mean(np.abs(total) >= observed))
        rng = np.random.default_rng(0)
        total = np.zeros(WITHIN_DRAWS)
        for x, y in zip(xs, ys, strict=True):
            order = rng.permuted(np.tile(np.arange(len(y)), (WITHIN_DRAWS, 1)), axis=1)  # (draws, n_g)
            total += y[order] @ x
        return float((1 + np.sum(np.abs(total) >= observed)) / (1 + WITHIN_DRAWS))

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


class Claims(Comparisons):
    """The tests of TAMT's pre-training claims, in the report's Holm family (`family()[1]`); reads
    `SweepResults`' fields (`pretrain_losses`, `main_masks`, `main_scores`, `mask_scores`, `tasks`)."""

    def other_tests(self) -> list[Any]:
        """The three claims' tests, in this order: equal steps, loss predicts score, search cost."""
        return [*self.loss_tests(), *self.correlations(), *self.cost_tests()]

    def _losses_by(self, final: bool) -> dict[tuple, list[dict]]:
        """The pre-training evaluations of the final masks (the full model's too), or of the masks
        saved along a search (and of smaller budgets' final masks), by (method, sparsity, steps)."""
        out: dict[tuple, list[dict]] = defaultdict(list)
        for key, p in self.pretrain_losses().items():
            if self._final(key) == final:
                out[(p["method"], p["sparsity"], None if final else p["search_steps"])].append(p)
        return out

    def _final(self, mask: tuple[str | None, int | None]) -> bool:
        """A final mask of the main grid, or the full model ((None, None))."""
        return mask == (None, None) or mask in self.main_masks

    def _loss_pairs(self, with_omp: bool) -> list[tuple[str, str]]:
        """`pairs()` of a method tested against others (TAMT): against those, and OMP `with_omp`."""
        return [
            (a, b)
            for a, b in self.pairs()
            if against(a) and (base_method(b) in against(a) or (with_omp and b == "omp"))
        ]

    @staticmethod
    def _side(rows: list[dict], loss: str) -> LossSide | None:
        rows = sorted(
            (p for p in rows if loss in p), key=lambda p: (p["mask_seed"] is not None, p["mask_seed"] or 0)
        )
        if not rows:
            return None
        method = rows[0]["method"]
        values = [float(p[loss]) for p in rows]
        masks, ids = [p["mask_seed"] for p in rows], [p["id"] for p in rows]
        return LossSide(method, rows[0]["search_steps"], masks, values, ids, stochastic(method))

    def _loss_test(
        self, a: list[dict], b: list[dict], loss: str, sparsity: float, part: str
    ) -> LossTest | None:
        sa, sb = self._side(a, loss), self._side(b, loss)
        if sa is None or sb is None:
            return None
        return LossTest(
            loss, sa, sb, sparsity, part, labels=self.comparison_labels(sa.method, sb.method, sparsity)
        )

    def loss_tests(self) -> list[LossTest]:
        """Claim 1: each method tested against others, against those and OMP, at equal steps."""
        final, out = self._losses_by(final=True), []
        for a, b in self._loss_pairs(with_omp=True):
            for s in sorted({k[1] for k in final if k[0] == a} & {k[1] for k in final if k[0] == b}):
                for loss in LOSSES:
                    out.append(
                        self._loss_test(final[(a, s, None)], final[(b, s, None)], loss, s, EQUAL_STEPS)
                    )
        return [t for t in out if t is not None]

    def cost_tests(self) -> list[LossTest]:
        """Claim 3: the masks saved along the search of a method tested against others, at each saved
        step, against the final masks of those others (not OMP: it has no search to be faster than). A
        mask saved at the search's last step is its final mask, whose test is claim 1's."""
        final, along, out = self._losses_by(final=True), self._losses_by(final=False), []

        def before_last(m: str, s: float, k: int | None) -> bool:
            return k is not None and all(k < (p["search_steps"] or 0) for p in final.get((m, s, None), []))

        for a, b in self._loss_pairs(with_omp=False):
            groups = [g for g in along if g[0] == a and (b, g[1], None) in final and before_last(*g)]
            for m, s, k in sorted(groups):
                for loss in LOSSES:
                    out.append(self._loss_test(along[(m, s, k)], final[(b, s, None)], loss, s, SEARCH_COST))
        return [t for t in out if t is not None]

    def correlations(self) -> list[Correlation]:
        """Claim 2: per task (and on the average of several), per loss, over the final masks with both a
        pre-training evaluation and fine-tunings on the main grid: at each sparsity (does the loss tell
        masks of one sparsity apart?) and, where the masks span several, pooled over all of them with
        the full model, as the paper's figures pool them (the trend with sparsity is then part of ρ)."""
        final = {k: p for k, p in self.pretrain_losses().items() if self._final(k)}
        scores = [s for s in self.main_scores() if s.mask in final and s.method == final[s.mask]["method"]]
        sparsities = sorted({final[k]["sparsity"] for k in final if k != (None, None)})
        groups: list[float | None] = [*sparsities, *([None] if len(sparsities) > 1 else [])]
        out = []
        for task in [*self.tasks, *([AVG] if len(self.tasks) > 1 else [])]:
            per_mask = self.mask_scores(scores, self.tasks if task == AVG else [task])
            for loss in LOSSES:
                for sparsity in groups:
                    keys = [
                        k
                        for k in final
                        if k in per_mask
                        and loss in final[k]
                        and (sparsity is None or (k != (None, None) and final[k]["sparsity"] == sparsity))
                    ]
                    if keys:
                        c = self._correlation(final, per_mask, keys, loss, task, sparsity)
                        c.floor = self.full_at_floor(task)
                        out.append(c)
        return out

    @staticmethod
    def _correlation(
        final: dict, per_mask: dict, keys: list, loss: str, task: str, sparsity: float | None
    ) -> Correlation:
        return Correlation(
            loss,
            task,
            [final[k]["method"] for k in keys],
            [float(final[k][loss]) for k in keys],
            [per_mask[k].mean for k in keys],
            [i for k in keys for i in (final[k]["id"], *per_mask[k].run_ids)],
            sparsity,
        )
