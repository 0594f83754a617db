"""`Comparisons`, mixed into `tables.SweepResults`: every pair of methods the papers compare, at every
sparsity both ran, per task, on the average and on each data curve's sizes (`comparison.Comparison`:
the test the seeds make valid), in one Holm family with the report's other tests; a declared study's
comparisons exploratory but the declared ones.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..stats import (
    holm,
)
from ..sweep.methods import base_method
from .analyses import analysis_tests
from .cells import AVG, Cell, Score
from .comparison import (
    MAIN,
    Comparison,
    Side,
    Units,
    against,
    seed_order,
    stochastic,
    within,
)


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
        masks = sorted(per_mask, key=seed_order)
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
        """The report's tests besides the comparisons of scores, in the same Holm family: those of the
        analyses the spec names (`analyses.py`; `SweepResults.analyses`). Each has `p` and `p_holm`."""
        return analysis_tests(self.analyses, self)

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
