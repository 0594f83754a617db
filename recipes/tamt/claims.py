"""Three of TAMT's claims on pre-training loss (Liu et al. 2022), tested on a sweep's store, and their
section of the report: a recipe (`recipes/README.md`) that a sweep spec names

    recipes:
      - ../../recipes/tamt/claims.py        # relative to the spec file

and the report loads (`ticketlab.studies.report.analyses`). The fourth claim (TAMT ≥ IMP > OMP >
random downstream, Fig. 3) is the library's paired comparisons; all of them are one Holm family.

1. Lower pre-training loss at equal steps (§4.2.2, Fig. 5; `EQUAL_STEPS`): each method whose registry
   entry names methods it is tested against (`against`: TAMT against IMP) against those and OMP, on
   each dev loss (`mlm_loss`, `kd_loss`) of the final masks: Δ = its mean loss − the other's.
2. Pre-training loss predicts downstream (§1 and §4.2.2, Figs. 1 and 5; `PREDICTS`): Spearman's ρ
   over the final masks with a pre-training evaluation and fine-tunings, between a mask's loss and
   its score per task and on the task average, at each sparsity and, where there are several, pooled
   over them with the full model as the paper's figures are.
3. Search cost (§4.2.3, Fig. 6, there on scores, here on the loss; `SEARCH_COST`): the masks such a
   method saved along its search, at each saved step k, against the final masks of the methods it is
   tested against (TAMT@k − IMP at its budget).

A mask is the unit; the tests (Welch on per-mask losses, Spearman's ρ) are the library's
(`ticketlab.studies.report.loss_tests`). For each claim the section has a sentence on what is tested
against what, its table and one verdict line; it is empty when the sweep has no data for any.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ticketlab.studies.report.analyses import Analysis
from ticketlab.studies.report.cells import AVG
from ticketlab.studies.report.comparison import against
from ticketlab.studies.report.loss_tests import (
    EQUAL_STEPS,
    LOSSES,
    PREDICTS,
    Correlation,
    LossTest,
    correlation,
    is_final,
    loss_test,
    losses_by,
)
from ticketlab.studies.report.sections import pct, table
from ticketlab.studies.report.tables import SweepResults
from ticketlab.studies.sweep.methods import base_method

SEARCH_COST = "search cost"
NAME = "TAMT's claims on pre-training loss"


# --------------------------------------------------------------------------- the tests


def tests(res: SweepResults) -> list[Any]:
    """The three claims' tests, in this order: equal steps, loss predicts score, search cost."""
    return [*loss_tests(res), *correlations(res), *cost_tests(res)]


def _loss_pairs(res: SweepResults, with_omp: bool) -> list[tuple[str, str]]:
    """`pairs()` of a method tested against others (TAMT): against those, and OMP `with_omp`."""
    return [
        (a, b)
        for a, b in res.pairs()
        if against(a) and (base_method(b) in against(a) or (with_omp and b == "omp"))
    ]


def loss_tests(res: SweepResults) -> list[LossTest]:
    """Claim 1: each method tested against others, against those and OMP, at equal steps."""
    final, out = losses_by(res, final=True), []
    for a, b in _loss_pairs(res, with_omp=True):
        for s in sorted({k[1] for k in final if k[0] == a} & {k[1] for k in final if k[0] == b}):
            for loss in LOSSES:
                out.append(loss_test(res, final[(a, s, None)], final[(b, s, None)], loss, s, EQUAL_STEPS))
    return [t for t in out if t is not None]


def cost_tests(res: SweepResults) -> list[LossTest]:
    """Claim 3: the masks saved along the search of a method tested against others, at each saved
    step, against the final masks of those others (not OMP: it has no search to be faster than). A
    mask saved at the search's last step is its final mask, whose test is claim 1's."""
    final, along, out = losses_by(res, final=True), losses_by(res, final=False), []

    def before_last(m: str, s: float, k: int | None) -> bool:
        return k is not None and all(k < (p["search_steps"] or 0) for p in final.get((m, s, None), []))

    for a, b in _loss_pairs(res, with_omp=False):
        groups = [g for g in along if g[0] == a and (b, g[1], None) in final and before_last(*g)]
        for m, s, k in sorted(groups):
            for loss in LOSSES:
                out.append(loss_test(res, along[(m, s, k)], final[(b, s, None)], loss, s, SEARCH_COST))
    return [t for t in out if t is not None]


def correlations(res: SweepResults) -> list[Correlation]:
    """Claim 2: per task (and on the average of several), per loss, over the final masks with both a
    pre-training evaluation and fine-tunings on the main grid: at each sparsity (does the loss tell
    masks of one sparsity apart?) and, where the masks span several, pooled over all of them with
    the full model, as the paper's figures pool them (the trend with sparsity is then part of ρ)."""
    final = {k: p for k, p in res.pretrain_losses().items() if is_final(res, k)}
    scores = [s for s in res.main_scores() if s.mask in final and s.method == final[s.mask]["method"]]
    sparsities = sorted({final[k]["sparsity"] for k in final if k != (None, None)})
    groups: list[float | None] = [*sparsities, *([None] if len(sparsities) > 1 else [])]
    out = []
    for task in [*res.tasks, *([AVG] if len(res.tasks) > 1 else [])]:
        per_mask = res.mask_scores(scores, res.tasks if task == AVG else [task])
        for loss in LOSSES:
            for sparsity in groups:
                keys = [k for k in final if _in_group(final, per_mask, k, loss, sparsity)]
                if keys:
                    c = correlation(final, per_mask, keys, loss, task, sparsity)
                    c.floor = res.full_at_floor(task)
                    out.append(c)
    return out


def _in_group(final: dict, per_mask: dict, k: tuple, loss: str, sparsity: float | None) -> bool:
    """Mask `k` has a score and `loss`, at `sparsity` (None: any, the full model included)."""
    at = sparsity is None or (k != (None, None) and final[k]["sparsity"] == sparsity)
    return k in per_mask and loss in final[k] and at


# --------------------------------------------------------------------------- the section


def _holm(p: float | None) -> str:
    return "—" if p is None else f"{p:.3f}"


def _what(t: LossTest) -> str:
    return f"{t.a.method} − {t.b.method} {t.loss} at {pct(t.sparsity)}"


def _steps(t: LossTest) -> str:
    return " vs ".join("—" if s.steps is None else str(s.steps) for s in (t.a, t.b))


def _loss_row(t: LossTest) -> list[str]:
    """Comparison, loss, sparsity, steps and masks of each side, Δ ± SE, p (Holm), MDE, verdict."""
    return [
        f"{t.a.method} − {t.b.method}",
        t.loss,
        pct(t.sparsity),
        _steps(t),
        f"{t.masks[0]} vs {t.masks[1]}",
        f"{t.mean:+.4f}" + ("" if t.se is None else f" ± {t.se:.4f} SE"),
        _holm(t.p_holm),
        "—" if t.mde is None else f"{t.mde:.4f}",
        "; ".join([t.verdict, *t.labels]),
    ]


LOSS_HEADER = ["comparison", "loss", "sparsity", "steps", "n (masks)", "Δ ± SE", "p (Holm)", "MDE", "verdict"]


def _summary(tests: list[Any], what) -> str:
    """How many tests hold (named), are contradicted (named), are not shown, or are no test (why)."""
    holds = [what(t) for t in tests if t.verdict.startswith("holds")]
    against = [what(t) for t in tests if t.verdict.startswith("contradicted")]
    unshown = sum(t.verdict.startswith("not shown") for t in tests)
    why: dict[str, int] = defaultdict(int)
    for t in tests:
        if t.why_not is not None:
            why[t.why_not] += 1
    parts = [f"holds in {len(holds)} of {len(tests)} tests" + (f" ({'; '.join(holds)})" if holds else "")]
    if against:
        parts.append(f"contradicted in {len(against)} ({'; '.join(against)})")
    if unshown:
        parts.append(f"not shown at this budget in {unshown}")
    parts += [f"no test in {n} ({w})" for w, n in sorted(why.items())]
    return "; ".join(parts) + "."


def _verdict_line(n: str, tests: list[Any], what) -> list[str]:
    """The claim's verdict line and a blank, or nothing where its tests are exploratory (the study
    declared its claims: those are its verdicts)."""
    if tests and tests[0].exploratory:
        return []
    return [f"**Verdict ({n}):** " + _summary(tests, what), ""]


def _equal_steps_part(tests: list[LossTest]) -> list[str]:
    intro = (
        "**1. TAMT lowers the pre-training loss below OMP's and IMP's at equal steps (§4.2.2, Fig. 5).** "
        "Each method tested against others (its registry entry's: TAMT against IMP), against those and OMP, "
        "on each dev loss of the final masks: Δ = its mean loss − the other's; lower is better, so the "
        "claim is Δ < 0. Δ ± its SE and the test are Welch's on per-mask losses (Satterthwaite's df). "
        "An evaluation is deterministic (fixed corruption seeds), so OMP's one mask is an exact value "
        "and the test against it is a one-sample t on the other method's masks (df = n − 1)."
    )
    verdict = _verdict_line("1", tests, _what)
    return [intro, "", table(LOSS_HEADER, [_loss_row(t) for t in tests]), "", *verdict]


def _where(t: Correlation) -> str:
    at = "pooled over sparsities" if t.sparsity is None else f"at {pct(t.sparsity)}"
    return f"{t.loss} on {t.task} {at}"


def _predicts_part(tests: list[Correlation]) -> list[str]:
    intro = (
        "**2. Pre-training loss predicts the downstream score (Figs. 1 and 5).** Spearman's ρ over the "
        "final masks with a pre-training evaluation and fine-tunings, between a mask's dev loss and its "
        "score (its mean over fine-tuning seeds; 'avg': over tasks): at each sparsity (every method's "
        "masks at it: does the loss tell masks of one sparsity apart?) and, where there are several, "
        "pooled over all of them with the full model, as the paper's figures pool them (sparsity then "
        "drives both, so a pooled ρ says little beyond it). Lower loss should go with a higher score: the "
        "claim is ρ < 0. p is scipy's (`spearmanr`), exact over every ordering of up to 8 masks; the MDE "
        "is the smallest ρ of either sign found with 80% power at α = 0.05 (Fisher's z, variance "
        "1.06 / (n − 3)). 'floor': the full model is within one std of the task's constant predictor, "
        "so its masks' scores rank noise (no test)."
    )
    rows = [
        [
            t.loss,
            t.task,
            "all (pooled)" if t.sparsity is None else pct(t.sparsity),
            str(t.n),
            "—" if t.rho is None else f"{t.rho:+.2f}",
            _holm(t.p_holm),
            "—" if t.mde is None else f"{t.mde:.2f}",
            t.verdict,
        ]
        for t in tests
    ]
    header = ["loss", "task", "sparsity", "n (masks)", "ρ", "p (Holm)", "MDE (ρ)", "verdict"]
    verdict = _verdict_line("2", tests, _where)
    return [intro, "", table(header, rows), "", *verdict]


def _cost_part(along: list[LossTest], final: list[LossTest]) -> list[str]:
    """The masks saved along a search against the other method's final masks, with the equal-steps test
    as the curve's last point; per curve the fewest steps at which the loss is below (Holm)."""
    curves: dict[tuple, list[LossTest]] = defaultdict(list)
    for t in along:
        curves[(t.a.method, t.b.method, t.sparsity, t.loss)].append(t)
    for t in final:
        key = (t.a.method, t.b.method, t.sparsity, t.loss)
        if key in curves:
            curves[key].append(t)
    intro = (
        "**3. TAMT reaches IMP's pre-training loss in fewer steps (§4.2.3, Fig. 6, there on scores).** "
        "The masks a method tested against others saved along its search, at each saved step, against "
        "the final masks of those others (TAMT at k steps − IMP at its whole budget), by the same test as "
        "(1); the last row of each curve is (1)'s test at equal steps (in the Holm family once). The "
        "claim: Δ < 0 at fewer steps than the other method took."
    )
    rows, found, untested = [], [], defaultdict(int)
    for (a, b, s, loss), tests in curves.items():
        rows += [_loss_row(t) for t in tests]
        if all(t.p is None for t in tests):
            untested[tests[0].why_not] += 1
            continue
        first = next((t for t in tests if t.holds), None)
        reached = "not shown" if first is None else f"from {first.a.steps} of its {tests[-1].a.steps} steps"
        found.append(f"{a}'s {loss} below {b}'s ({tests[0].b.steps} steps) at {pct(s)}: {reached}")
    found += [f"not shown in {n} curve(s) without a test ({why})" for why, n in sorted(untested.items())]
    verdict = [] if along and along[0].exploratory else ["**Verdict (3):** " + "; ".join(found) + ".", ""]
    return [intro, "", table(LOSS_HEADER, rows), "", *verdict]


READING = (
    "'holds': p (Holm) < 0.05 in the claimed direction; 'contradicted': p (Holm) < 0.05 in the other; "
    "otherwise 'not shown at this budget', with the MDE (80% power at α = 0.05, uncorrected). "
)


def claims_section(res: SweepResults) -> list[str]:
    """The section (heading included), or [] where the sweep has no data for any of the claims."""
    comps, others = res.family()
    mine = [t for t in others if isinstance(t, (LossTest, Correlation))]
    final = [t for t in mine if t.part == EQUAL_STEPS]
    corr = [t for t in mine if t.part == PREDICTS]
    along = [t for t in mine if t.part == SEARCH_COST]
    if not mine:
        return []
    exploratory = any(t.exploratory for t in mine)
    if exploratory:
        family = (
            "). Exploratory here: this study declared its claims (section 'Declared claims'), its one "
            "Holm family; these tests are estimates, with no corrected p and no verdict. "
        )
    else:
        family = (
            "), each test in the report's one Holm family with those comparisons "
            f"({sum(t.p is not None for t in [*comps, *others])} tests in all). "
        )
    out = [
        f"## {NAME}",
        "",
        "Three claims of Liu et al. (2022) tested (the fourth, TAMT ≥ IMP > OMP > random downstream, is "
        + ("untested: this study fine-tunes nothing" if res.masks_alone else "the paired comparisons above")
        + family
        + "Masks are the unit. "
        + ("" if exploratory else READING)
        + "Uncorrected p, degrees of freedom and run ids: `pretrain_tests.csv`.",
        "",
    ]
    out += _equal_steps_part(final) if final else []
    out += _predicts_part(corr) if corr else []
    return out + (_cost_part(along, final) if along else [])


ANALYSIS = Analysis(NAME, tests, claims_section)
