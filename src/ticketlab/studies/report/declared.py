"""The study's declared claims (`sweep.declared`), tested as its one Holm family: each claim's test
(`DeclaredTest`: on a task or a named endpoint the test its seeds make valid, `studies.stats`; Welch
on a dev loss; Spearman over its declared units), named per claim, Holm-adjusted over the declared
claims alone on unrounded p, its verdict in the claimed direction, and its MDE at the corrected α;
and whether the declaration is the one the store recorded before the runs (`declaration_status`),
or was amended after some of them.

Holm's first step compares the smallest p with α / m, so the MDE printed beside each claim is at
α / m (m: the number of declared claims), 80% power: a claim "not shown" with an MDE above the
difference it expected says the design could not see it.

A verdict is read once, at the planned n: while a run of the plan that a claim reads is not done
(pending, running, failed, or not swept yet), the claim's row shows its test as it stands and the
verdict "interim". Reading a verdict each time runs come in tests the claim many times over, and
stopping at the first "holds" inflates the error rate Holm's correction promises (optional stopping).
A finished claim in a family with unfinished ones gets its verdict only where those cannot change
it: Holm's level for one claim depends on the others' p, and it is a closed test of Bonferroni tests,
so a claim's adjusted p only grows as another's p grows. With every unfinished claim's p at 0 and at
1 it is bounded; "holds" needs the bound at 1 below α, "not shown" the bound at 0 at or above it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..stats import CROSSED, detectable_effect, detectable_rho, holm
from ..sweep.declaration import declared_units, same_declaration, units
from ..sweep.declared import ALPHA, LOSSES, Claim, claim_from_dict
from .cells import AVG, method_label
from .comparison import Comparison
from .loss_tests import Correlation, LossTest, correlation, loss_test, losses_by
from .sections import pct, table
from .tables import SweepResults

NO_DATA = "no runs yet"


@dataclass
class DeclaredTest:
    """One declared claim and its test (None: no runs of it yet)."""

    claim: Claim
    test: Comparison | LossTest | Correlation | None
    family: int  # the number of declared claims (m)
    p_holm: float | None = None
    unfinished: int = 0  # runs of the plan it reads that are not done: no verdict yet (module docstring)
    # p_holm whatever the other claims' unfinished runs give: with their p at 0 and at 1 (None: every
    # other claim is finished, p_holm is final)
    p_holm_range: tuple[float, float] | None = None
    others_unfinished: int = 0  # other claims of the family with runs not done
    first: DeclaredTest | None = None  # its test at the units first declared, where they changed

    @property
    def why_not(self) -> str | None:
        return NO_DATA if self.test is None else self.test.why_not

    @property
    def estimate(self) -> float | None:
        if self.test is None:
            return None
        return self.test.rho if isinstance(self.test, Correlation) else self.test.mean

    @property
    def p(self) -> float | None:
        return None if self.test is None else self.test.p

    @property
    def test_name(self) -> str:
        """The test the claim was decided by ("" where there is none)."""
        x = self.test
        if x is None or x.why_not is not None:
            return ""
        if isinstance(x, Comparison):
            return x.test
        if isinstance(x, LossTest):
            return "Welch on per-mask losses"
        within = "permutations within methods" if x.within else "exact or t approximation"
        return f"Spearman's rho ({within})"

    @property
    def alpha(self) -> float:
        """Holm's strictest level: α over the family's size."""
        return ALPHA / self.family

    @property
    def mde(self) -> float | None:
        """The smallest true effect (Δ, or |ρ|) found with 80% power at α / m."""
        t = self.test
        if t is None or t.why_not is not None:
            return None
        if isinstance(t, Correlation):
            return detectable_rho(t.effective_n, alpha=self.alpha)
        return None if t.se is None else detectable_effect(t.se, t.df, alpha=self.alpha)

    @property
    def verdict(self) -> str:
        if self.why_not is not None:
            return f"no test ({self.why_not})"
        if self.unfinished:
            return f"interim ({self.unfinished} of its planned runs not done)"
        low, high = self.p_holm_range or (self.p_holm, self.p_holm)
        if high is not None and high < ALPHA:
            return "holds" if (self.estimate or 0) * self.claim.sign > 0 else "contradicted"
        if low is not None and low < ALPHA:  # passes or not by the p of claims still running
            n = self.others_unfinished
            return f"interim (its Holm level waits for the runs of {n} other claim{'s' if n > 1 else ''})"
        mde = "—" if self.mde is None else f"{self.mde:.3g}"
        return f"not shown (MDE {mde} at α = {self.alpha:.3g})"


def declared_tests(res: SweepResults) -> list[DeclaredTest]:
    """The spec's declared claims, each with its test, Holm-adjusted over them alone (unrounded p),
    and where the units changed after the first declaration, each at the units first declared."""
    claims = [claim_from_dict(c) for c in res.declared_claims()]
    tests = [DeclaredTest(c, _test(res, c), len(claims), unfinished=_unfinished(res, c)) for c in claims]
    for t, first in zip(tests, first_tests(res, claims) or [None] * len(tests), strict=True):
        t.first = first
    return holm_family(tests)


def _unfinished(res: SweepResults, c: Claim) -> int:
    """The runs of the plan that claim `c` reads and that are not done: the searches, pre-training
    evaluations and fine-tunings (of the main grid, on the endpoint's tasks) of its methods at its
    sparsity (every method's, for a correlation), and every run of the plan not in the store yet
    (nothing says which claims those feed)."""
    methods = None if c.kind == "correlate" else {c.a, c.b}
    loss_only = c.kind == "compare" and c.endpoint in LOSSES
    tasks = set(res.score_tasks(c.endpoint))
    if c.endpoint == AVG:  # every task of the plan, not only those with results yet
        tasks |= set(res.spec.get("tasks") or {})

    def reads(config: dict[str, Any], kind: str) -> bool:
        method = method_label(config)
        if methods is None:  # a correlation: the masks at its sparsity, every method's (not the full model)
            if config.get("sparsity") != c.sparsity or method == "full":
                return False
        elif method not in methods or config.get("sparsity") != (0.0 if method == "full" else c.sparsity):
            return False
        if kind != "finetune":
            return kind == "search" or loss_only or c.kind == "correlate"
        mask = config.get("mask") or {}
        main_size = res.main_size.get(config.get("task_label"), config.get("train_size"))
        return (
            not loss_only
            and config.get("task_label") in tasks
            and mask.get("step") is None  # a mask saved along a search is not the claim's
            and config.get("train_size") == main_size
        )

    pending = [r for r in res.records.values() if r.status != "done" and reads(r.config, r.kind)]
    return len(pending) + res.not_swept


def holm_family(tests: list[DeclaredTest]) -> list[DeclaredTest]:
    """Set each test's `p_holm`: Holm over the declared family, on p as computed (never rounded:
    0.012499 × 4 < 0.05, 0.0125 × 4 is not). A claim without a test stands in it at p = 1 (its own
    p_holm None): the others are never corrected over fewer claims than declared."""
    ps = [1.0 if t.p is None else t.p for t in tests]
    for t, adjusted in zip(tests, holm(ps), strict=True):
        t.p_holm, t.p_holm_range, t.others_unfinished = None if t.p is None else adjusted, None, 0
    running = {i for i, t in enumerate(tests) if t.unfinished}
    if running:  # a finished claim's bounds: the running claims' p at 0 and at 1 (module docstring)
        low, high = (holm([x if i in running else p for i, p in enumerate(ps)]) for x in (0.0, 1.0))
        for i, t in enumerate(tests):
            if i not in running and t.p is not None:
                t.p_holm_range, t.others_unfinished = (low[i], high[i]), len(running)  # type: ignore[assignment]
    return tests


def _test(res: SweepResults, c: Claim) -> Comparison | LossTest | Correlation | None:
    if c.kind == "correlate":
        return _correlation(res, c)
    if c.endpoint in LOSSES:
        final = losses_by(res, final=True)
        a, b = (final.get((m, 0.0 if m == "full" else c.sparsity, None)) for m in (c.a, c.b))
        return None if not a or not b else loss_test(res, a, b, c.endpoint, c.sparsity, "declared")
    return res.paired(c.a, c.b, c.sparsity, c.endpoint)


def _correlation(res: SweepResults, c: Claim) -> Correlation | None:
    """Spearman's ρ of `c.loss` and the score on `c.endpoint` over the final masks at `c.sparsity`:
    per mask, within methods (masks ranked and permuted within their method), or over the methods'
    means of their masks' losses and scores (`c.unit`)."""
    final = {k: p for k, p in res.pretrain_losses().items() if k in res.main_masks}
    per_mask = res.mask_scores(res.main_scores(), res.score_tasks(c.endpoint))
    keys = [k for k in final if k in per_mask and c.loss in final[k] and final[k]["sparsity"] == c.sparsity]
    if not keys:
        return None
    if c.unit in ("masks", "within-methods"):
        test = correlation(final, per_mask, keys, c.loss, c.endpoint, c.sparsity)
        test.within = c.unit == "within-methods"
        return test
    methods = list(dict.fromkeys(final[k]["method"] for k in keys))
    groups = {m: [k for k in keys if final[k]["method"] == m] for m in methods}
    return Correlation(
        c.loss,
        c.endpoint,
        methods,
        [sum(float(final[k][c.loss]) for k in g) / len(g) for g in groups.values()],
        [sum(per_mask[k].mean for k in g) / len(g) for g in groups.values()],
        [i for k in keys for i in (final[k]["id"], *per_mask[k].run_ids)],
        c.sparsity,
    )


CLAIMS_ALONE = (
    "; the record holds the claims alone: their methods' units and their endpoints' definitions were "
    "not declared"
)


def declaration_status(res: SweepResults) -> str:
    """Whether the report's declaration (claims, endpoints, units: `sweep.declaration`) is the one the
    store recorded before its runs (`_history`), and the other studies whose records the store holds."""
    others = ", ".join(res.other_studies)
    return _history(res) + (f"; the store also records the declarations of {others}" if others else "")


def _history(res: SweepResults) -> str:
    """'declared before any run'; 'declared once, after N runs' (a study that reuses runs done before
    its claims, N of its plan's); or 'amended' with the number of runs done at each change (a
    declaration the store never recorded: amended now, at the runs done now)."""
    history = res.declarations
    if len(history) == 1 and same_declaration(history[0], res.spec):
        scope = "" if declared_units(history[0]) is not None else CLAIMS_ALONE
        n = history[0]["runs_done"]
        # a study that reuses another's runs declares once, after them: said, never called amended
        when = "declared before any run" if n == 0 else f"declared once, after {n} runs of its plan were done"
        return f"{when} (the store's record of it matches{scope})"
    if not history:
        return f"amended: the store records no declaration; {res.runs_done} runs were done before it"
    changes = [f"{h['runs_done']} runs done" for h in history]
    current = same_declaration(history[-1], res.spec)
    done = "" if current else f", and again now (not recorded in the store) with {res.runs_done} runs done"
    first = "declared before any run" if history[0]["runs_done"] == 0 else f"first declared with {changes[0]}"
    later = ", ".join(f"changed with {c}" for c in changes[1:])
    return f"amended: {first}" + (f", {later}" if later else "") + done


def first_units(res: SweepResults) -> dict[str, dict[str, Any]] | None:
    """The units the first recorded declaration named, where they differ from the spec's now (None:
    the same, or a record of claims alone)."""
    if not res.declarations:
        return None
    first = declared_units(res.declarations[0])
    return None if first is None or first == units(res.spec) else first


def first_tests(res: SweepResults, claims: list[Claim]) -> list[DeclaredTest] | None:
    """Each claim's test on the units first declared, Holm over them (None: the units never changed)."""
    only = first_units(res)
    if only is None:
        return None
    tests = []
    for c in claims:
        test = _test(res, c) if c.kind == "correlate" or c.endpoint in LOSSES else None
        if c.kind == "compare" and c.endpoint not in LOSSES:
            test = res.paired(c.a, c.b, c.sparsity, c.endpoint, only=only)
        tests.append(DeclaredTest(c, test, len(claims)))
    return holm_family(tests)


def _first_cell(t: DeclaredTest | None) -> str:
    """The claim at the units first declared: its units, estimate, p, p (Holm) and verdict."""
    if t is None:
        return ""
    p = "—" if t.p is None else f"{t.p:.3g}"
    return f"{_units(t)}: {_value(t)}, p {p}, p (Holm) {holm_cell(t)}: {t.verdict}"


def _value(t: DeclaredTest) -> str:
    if t.estimate is None:
        return "—"
    if isinstance(t.test, Correlation):
        return f"ρ = {t.estimate:+.2f}"
    se = "" if t.test.se is None else f" ± {t.test.se:.3g} SE"
    return f"{t.estimate:+.3g}{se}"


def _units(t: DeclaredTest) -> str:
    x = t.test
    if x is None:
        return "—"
    if isinstance(x, Correlation):
        if t.claim.unit == "within-methods":
            return f"{x.n} masks within {len(x.groups)} methods"
        return f"{x.n} {'masks' if t.claim.unit == 'masks' else 'method means'}"
    if isinstance(x, LossTest):
        return f"{x.masks[0]} vs {x.masks[1]} masks"
    if x.test == CROSSED:
        shared = len(x.design[1])
        sides = " vs ".join(f"{len(s.means)} mask{'s' if len(s.means) > 1 else ''}" for s in (x.a, x.b))
        return f"{sides}, at {shared} shared fine-tuning seeds"
    return " vs ".join(
        f"{len(s.means)} masks" if len(s.means) > 1 else f"1 mask × {len(s.within)} seeds" for s in (x.a, x.b)
    )


def declared_section(res: SweepResults) -> list[str]:
    """The section (heading included), or [] where the spec declares no claims."""
    tests = declared_tests(res)
    if not tests and any(json.loads(h["text"]) for h in res.declarations):  # claims withdrawn
        return ["## Declared claims", "", f"None now: {declaration_status(res)}.", ""]
    if not tests:
        return []
    m = len(tests)
    intro = (
        f"The {m} claim{'s' if m > 1 else ''} this study declared in its spec, its one Holm family "
        f"({declaration_status(res)}). Holm's adjustment is over these {m} tests alone, on their "
        f"unrounded p; every other test of this report is exploratory (an estimate with its SE and "
        f"95% CI, no verdict). 'holds': p (Holm) < {ALPHA} in the declared direction; 'contradicted': "
        f"< {ALPHA} in the other; otherwise 'not shown', with the MDE at Holm's strictest level "
        f"α = {ALPHA} / {m} (80% power): the smallest true effect this design would have found. "
        "A difference's test is the one its fine-tuning seeds make valid, named in the table: Welch's "
        "on unit means where no seed serves two masks, the crossed-seeds test (mask and method × seed "
        "variance, on the seeds both sides share) where the masks share them; a loss's is Welch's on "
        "per-mask losses; a correlation is Spearman's ρ over the declared units (within methods: "
        "each method's masks ranked among themselves, p from permuting scores within methods)."
    )
    if any(t.unfinished for t in tests):
        intro += (
            " **Interim**: runs of the plan that a claim reads are not done yet, so its row is its "
            "test as it stands and its verdict waits for them: a verdict is read once, at the planned "
            "n (read each time runs come in, a claim is tested many times over and the corrected α no "
            "longer holds). Its p (Holm) is as it stands too. A claim whose runs are done gets its "
            "verdict where the others' runs cannot change it: Holm's level for it depends on their p, "
            "so it holds if it holds with their p at 1, is not shown if not shown with their p at 0, "
            "and waits otherwise."
        )
    header = ["claim", "units", "test", "estimate", "p", "p (Holm)", f"MDE at α = {ALPHA / m:.3g}", "verdict"]
    changed = any(t.first is not None for t in tests)
    header += ["at the units first declared"] if changed else []
    rows = [
        [
            t.claim.text,
            _units(t),
            t.test_name or "—",
            _value(t),
            "—" if t.p is None else f"{t.p:.3g}",
            holm_cell(t),
            "—" if t.mde is None else f"{t.mde:.3g}",
            t.verdict,
            *([_first_cell(t.first)] if changed else []),
        ]
        for t in tests
    ]
    return ["## Declared claims", "", intro, "", table(header, rows), "", *_endpoints(res)]


def holm_cell(t: DeclaredTest) -> str:
    """p (Holm) as it stands, and where the running claims can still move it, its bounds."""
    if t.p_holm is None:
        return "—"
    if t.p_holm_range is None:
        return f"{t.p_holm:.3g}"
    low, high = t.p_holm_range
    return f"{t.p_holm:.3g} ({low:.3g}-{high:.3g} whatever the running claims give)"


def _endpoints(res: SweepResults) -> list[str]:
    """Each named endpoint's tasks, and each method's mean on it at each sparsity (masks the unit)."""
    out = []
    for e in res.spec.get("endpoints") or []:
        cells = []
        for m in res.methods:
            for s in [0.0] if m == "full" else res.sparsities(m):
                side = res.side(m, s, e["name"])
                if side is not None:
                    at = "" if m == "full" else f" at {pct(s)}"
                    n = len(side.means)
                    cells.append(f"{m}{at} {side.mean:.2f} ({n} mask{'s' if n > 1 else ''})")
        tasks = ", ".join(e["tasks"])
        out += [
            f"Endpoint '{e['name']}': the mean over {tasks} of each mask's per-task means. "
            + ("; ".join(cells) or "No mask has runs on every one of its tasks yet")
            + ".",
            "",
        ]
    return out


def declared_rows(res: SweepResults) -> list[dict[str, Any]]:
    """declared.csv: one row per declared claim, p and Holm's p unrounded."""

    def num(x: float | None) -> str:
        return "" if x is None else repr(float(x))

    rows = []
    for t in declared_tests(res):
        se = None if t.test is None or isinstance(t.test, Correlation) else t.test.se
        rows.append(
            {"claim": t.claim.text, "units": _units(t), "test": t.test_name}
            | {"estimate": num(t.estimate), "se": num(se)}
            | {"p": num(t.p), "p_holm": num(t.p_holm), "alpha": num(t.alpha), "mde": num(t.mde)}
            | {"verdict": t.verdict, "first_declared": _first_cell(t.first)}
            | {"run_ids": "" if t.test is None else " ".join(t.test.run_ids)}
        )
    return rows
