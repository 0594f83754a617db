"""The report's section on TAMT's claims on pre-training loss (`claims.py`): for each claim a sentence on
what is tested against what, its table and one verdict line; empty when the sweep has no data for any."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .claims import EQUAL_STEPS, PREDICTS, SEARCH_COST, Correlation, LossTest
from .sections import pct, table
from .tables import SweepResults


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
    comps, tests = res.family()
    final = [t for t in tests if t.part == EQUAL_STEPS]
    corr = [t for t in tests if t.part == PREDICTS]
    along = [t for t in tests if t.part == SEARCH_COST]
    if not tests:
        return []
    exploratory = any(t.exploratory for t in tests)
    if exploratory:
        family = (
            "). Exploratory here: this study declared its claims (section 'Declared claims'), its one "
            "Holm family; these tests are estimates, with no corrected p and no verdict. "
        )
    else:
        family = (
            "), each test in the report's one Holm family with those comparisons "
            f"({sum(t.p is not None for t in [*comps, *tests])} tests in all). "
        )
    out = [
        "## TAMT's claims on pre-training loss",
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
