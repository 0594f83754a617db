"""TAMT's claims on pre-training loss, the recipe `recipes/tamt/claims.py`, against hand computations
with scipy: Welch's t on per-mask losses, the one-sample t against OMP's exact loss, the direction of a
loss verdict (lower is better), Spearman's rho of loss and score (scipy's p, exact for few masks), the
search cost's smallest step, the refusal of one stochastic mask, and one Holm family with the
downstream comparisons. A report without pre-training evaluations has no such section, and a report
whose spec names no recipe has none of these tests: the library runs what the spec names."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from scipy import stats

from loss_stores import M, fill
from ticketlab.core.errors import ConfigError
from ticketlab.studies import Store, spec_from_dict
from ticketlab.studies.report import write_report
from ticketlab.studies.report.analyses import load_analysis, load_recipe
from ticketlab.studies.report.comparison import ONE_STOCHASTIC_MASK
from ticketlab.studies.report.csvs import write_csvs
from ticketlab.studies.report.loss_tests import Correlation
from ticketlab.studies.report.results import load_results
from ticketlab.studies.stats import detectable_effect, holm

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tamt" / "claims.py"
claims = load_recipe(RECIPE)  # the recipe's module, as the report loads it
tamt = load_analysis(RECIPE)
EQUAL_STEPS, PREDICTS, SEARCH_COST = claims.EQUAL_STEPS, claims.PREDICTS, claims.SEARCH_COST
TAMT = (tamt,)


def results(sweep: Path):
    """The store's results with the recipe's tests, as a report of a spec naming it reads them."""
    return load_results(sweep, analyses=TAMT)


HEADING = "## TAMT's claims on pre-training loss"


# TAMT-KD's three masks below IMP's on MLM loss, above on KD loss, near OMP's MLM loss, far below its
# KD loss; along its search: above IMP at 50 steps, below it at 100 (MLM); above on KD throughout.
TAMT_MLM, TAMT_KD = [5.00, 5.02, 4.98], [0.30, 0.31, 0.29]
IMP_MLM, IMP_KD = [5.50, 5.52, 5.47], [0.20, 0.21, 0.19]
OMP_MLM, OMP_KD = 5.01, 0.50
ALONG = {50: ([5.80, 5.85, 5.75], [0.50, 0.52, 0.48]), 100: ([5.30, 5.32, 5.28], [0.35, 0.36, 0.34])}


@pytest.fixture(scope="module")
def losses_sweep(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("claims") / "sweep"
    masks = [M("omp", None, OMP_MLM, OMP_KD)]
    masks += [M("imp", k, IMP_MLM[k], IMP_KD[k]) for k in range(3)]
    along = [{n: (mlm[k], kd[k]) for n, (mlm, kd) in ALONG.items()} for k in range(3)]
    masks += [M("tamt-kd", k, TAMT_MLM[k], TAMT_KD[k], along=along[k]) for k in range(3)]
    fill(sweep, masks)
    return sweep


def hand_tests() -> dict[tuple, tuple[float, float, float, float]]:
    """(a, b, loss, steps of a) -> (Δ, SE, df, p) by scipy: Welch against IMP, one-sample t against OMP."""
    out = {}
    for loss, tamt, imp, omp in (
        ("mlm_loss", TAMT_MLM, IMP_MLM, OMP_MLM),
        ("kd_loss", TAMT_KD, IMP_KD, OMP_KD),
    ):
        sides = {200: tamt} | {k: v[loss == "kd_loss"] for k, v in ALONG.items()}
        for k, a in sides.items():
            w = stats.ttest_ind(a, imp, equal_var=False)
            se = math.sqrt(stats.tvar(a) / 3 + stats.tvar(imp) / 3)
            out[("tamt-kd", "imp", loss, k)] = (sum(a) / 3 - sum(imp) / 3, se, w.df, w.pvalue)
        one = stats.ttest_1samp(tamt, omp)
        out[("tamt-kd", "omp", loss, 200)] = (
            sum(tamt) / 3 - omp,
            math.sqrt(stats.tvar(tamt) / 3),
            2,
            one.pvalue,
        )
    return out


def test_loss_at_equal_steps_and_along_the_search_by_hand(losses_sweep):
    """Welch on per-mask losses against IMP, a one-sample t against OMP's exact loss (df = n − 1), every
    p Holm-adjusted in one family; IMP (tested against nothing) is not tested against OMP."""
    res = results(losses_sweep)
    _, tests = res.family()
    got = {(t.a.method, t.b.method, t.loss, t.a.steps): t for t in tests}
    hand = hand_tests()
    assert set(got) == set(hand)  # 2 losses x (OMP, IMP at 200 steps, IMP at 50 and 100 steps)
    assert {t.part for t in tests} == {EQUAL_STEPS, SEARCH_COST}  # no fine-tunings: no correlation
    adjusted = dict(zip(hand, holm([h[3] for h in hand.values()]), strict=True))
    for key, (diff, se, df, p) in hand.items():
        t = got[key]
        assert (t.mean, t.se, t.df, t.p) == pytest.approx((diff, se, df, p), rel=1e-9), key
        assert t.p_holm == pytest.approx(adjusted[key], rel=1e-9)
        assert t.mde == pytest.approx(detectable_effect(se, df))
        assert t.masks == ((3, 1) if key[1] == "omp" else (3, 3))
    # OMP's loss is exact: the test's only noise is TAMT's three masks
    assert got[("tamt-kd", "omp", "kd_loss", 200)].df == 2


def test_loss_verdicts_read_lower_as_better(losses_sweep):
    """A lower loss than the other method's holds the claim, a higher one contradicts it (both under
    Holm), and a difference within noise is not shown, with the MDE."""
    tests = {(t.b.method, t.loss, t.a.steps): t for t in results(losses_sweep).family()[1]}
    assert tests[("imp", "mlm_loss", 200)].verdict == "holds (tamt-kd lower)"
    assert tests[("imp", "kd_loss", 200)].verdict == "contradicted (tamt-kd higher)"
    assert tests[("omp", "kd_loss", 200)].verdict == "holds (tamt-kd lower)"
    near = tests[("omp", "mlm_loss", 200)]  # Δ = -0.01, SE 0.0115
    assert near.p_holm > 0.05 and near.verdict == f"not shown at this budget (MDE {near.mde:.3g})"
    assert tests[("imp", "mlm_loss", 50)].verdict == "contradicted (tamt-kd higher)"
    assert tests[("imp", "mlm_loss", 100)].verdict == "holds (tamt-kd lower)"


def test_claims_section_and_csv(losses_sweep):
    """The report's section: a table per claim with n masks per side, and the verdict lines; the
    search cost names the fewest steps at which TAMT's loss is below IMP's under Holm."""
    report = write_report(losses_sweep, analyses=TAMT)
    text = report.path.read_text()
    assert HEADING in text
    section = text.split(HEADING, 1)[1]
    t = next(t for t in results(losses_sweep).family()[1] if t.b.method == "imp" and t.a.steps == 200)
    assert (
        f"| tamt-kd − imp | mlm_loss | 70% | 200 vs 200 | 3 vs 3 | {t.mean:+.4f} ± {t.se:.4f} SE |" in section
    )
    assert "| tamt-kd − omp | kd_loss | 70% | 200 vs — | 3 vs 1 |" in section
    assert (
        "**Verdict (1):** holds in 2 of 4 tests (tamt-kd − omp kd_loss at 70%; tamt-kd − imp mlm_loss"
        in section
    )
    assert "contradicted in 1 (tamt-kd − imp kd_loss at 70%); not shown at this budget in 1." in section
    assert "tamt-kd's mlm_loss below imp's (200 steps) at 70%: from 100 of its 200 steps" in section
    assert "tamt-kd's kd_loss below imp's (200 steps) at 70%: not shown" in section
    assert "Verdict (2)" not in section  # no fine-tunings: no correlation, silently
    assert "one Holm family with those comparisons (8 tests in all)" in section  # no comparison here
    rows = list(csv.DictReader((losses_sweep / "report" / "pretrain_tests.csv").open()))
    assert len(rows) == 8 and {r["part"] for r in rows} == {EQUAL_STEPS, SEARCH_COST}
    row = next(r for r in rows if r["b"] == "omp" and r["loss"] == "kd_loss")
    assert (row["masks_a"], row["masks_b"], row["df"], row["verdict"]) == (
        "3",
        "1",
        "2.0000",
        "holds (tamt-kd lower)",
    )
    assert float(row["p"]) == pytest.approx(stats.ttest_1samp(TAMT_KD, OMP_KD).pvalue, abs=5e-5)


def test_one_stochastic_mask_gets_no_loss_test(tmp_path):
    """TAMT's one mask says nothing of another search's: no p, no MDE, not in the Holm family, at
    equal steps and along its search."""
    masks = [M("omp", None, 6.0, 0.3), M("tamt-kd", 0, 5.0, 0.1, along={100: (5.5, 0.2)})]
    fill(tmp_path / "sweep", masks + [M("imp", k, 5.2 + k / 10, 0.15) for k in range(3)])
    res = results(tmp_path / "sweep")
    tests = res.family()[1]
    assert [(t.part, t.b.method) for t in tests][::2] == [
        (EQUAL_STEPS, "omp"),
        (EQUAL_STEPS, "imp"),
        (SEARCH_COST, "imp"),
    ]
    for t in tests:
        assert t.p is None and t.mde is None and t.p_holm is None and t.verdict == ONE_STOCHASTIC_MASK
    text = "\n".join(claims.claims_section(res))
    assert (
        "| tamt-kd − omp | kd_loss | 70% | 200 vs — | 1 vs 1 | -0.2000 | — | — | " + ONE_STOCHASTIC_MASK
        in text
    )
    assert "| tamt-kd − imp | mlm_loss | 70% | 100 vs 200 | 1 vs 3 | +0.2000 | — | — | " in text
    assert f"holds in 0 of 4 tests; no test in 4 ({ONE_STOCHASTIC_MASK})." in text
    assert f"**Verdict (3):** not shown in 2 curve(s) without a test ({ONE_STOCHASTIC_MASK})." in text
    assert "(0 tests in all)" in text


def ranked_masks(n_tamt: int, scores: bool = True) -> list[M]:
    """The full model, OMP and TAMT-KD's masks, losses and scores in perfect reverse order."""
    x = (lambda v: {"x": [v - 1, v, v + 1]}) if scores else (lambda v: {})
    masks = [M("full", None, 5.0, 0.0, x(81.0)), M("omp", None, 6.0, 0.3, x(71.0))]
    return masks + [M("tamt-kd", k, 5.5 + k / 10, 0.2 + k / 100, x(76.0 - k)) for k in range(n_tamt)]


def test_spearman_exact_for_few_masks_and_one_holm_family(tmp_path):
    """The four masks at 70% (the full model is no mask of that sparsity) in perfect reverse order:
    ρ = -1, whose p is 2 / 4! over every ordering (scipy's t approximation says 0); one sparsity, so
    no pooled ρ; its tests and the downstream comparison are one Holm family."""
    fill(tmp_path / "sweep", ranked_masks(3))
    res = results(tmp_path / "sweep")
    comps, tests = res.family()
    corr = [t for t in tests if t.part == PREDICTS]
    assert [(t.loss, t.task, t.sparsity, t.n) for t in corr] == [
        ("mlm_loss", "x", 0.7, 4),
        ("kd_loss", "x", 0.7, 4),
    ]
    for t in corr:
        assert "full" not in t.methods
        assert t.rho == pytest.approx(-1.0) and t.p == pytest.approx(2 / 24)
        assert stats.spearmanr(t.losses, t.scores).pvalue < 1e-6  # what the approximation would say
        assert t.mde == pytest.approx(
            math.tanh((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * (1.06 / 1) ** 0.5)
        )
    # the family: the comparison tamt-kd − omp, the two loss tests against OMP and the two ρ
    (c,) = comps
    family = [c, *tests]
    assert len(tests) == 4 and all(t.p is not None for t in family)
    assert [t.p_holm for t in family] == pytest.approx(holm([t.p for t in family]))
    assert c.p_holm != pytest.approx(c.p)  # alone in the old family it was its own p
    write_csvs(res, tmp_path)
    (row,) = csv.DictReader((tmp_path / "paired.csv").open())
    assert row["p_holm"] == f"{c.p_holm:.4f}"
    rows = list(csv.DictReader((tmp_path / "pretrain_tests.csv").open()))
    assert [r["p_holm"] for r in rows] == [f"{t.p_holm:.4f}" for t in tests]


def test_spearman_by_hand_per_task_and_on_the_average(tmp_path):
    """Ten final masks at 70% (and the full model, not of that sparsity): each one's score is its mean
    over fine-tuning seeds ('avg': over both tasks), and ρ and p are scipy's over them; masks saved
    along a search are not in it."""
    masks, k = [], 0
    for method, n in (("full", 1), ("omp", 1), ("random", 3), ("imp", 3), ("tamt-kd", 3)):
        for seed in [None] if n == 1 else range(n):
            k += 1
            x, y = [60 + (7 * k) % 11, 61 + (5 * k) % 13], [40 + (3 * k) % 7, 42 + k % 5]
            along = {100: (9.0, 0.9)} if method == "tamt-kd" else {}
            masks.append(
                M(method, seed, 5 + (k * 4) % 9 / 10, 0.1 + (k * 7) % 10 / 50, {"x": x, "y": y}, along)
            )
    fill(tmp_path / "sweep", masks)
    corr = {(t.loss, t.task): t for t in results(tmp_path / "sweep").family()[1] if t.part == PREDICTS}
    assert set(corr) == {(loss, task) for loss in ("mlm_loss", "kd_loss") for task in ("x", "y", "avg")}
    masks = [m for m in masks if m.method != "full"]
    for (loss, task), t in corr.items():
        values = [m.mlm if loss == "mlm_loss" else m.kd for m in masks]
        per_task = {k: [sum(m.scores[k]) / 2 for m in masks] for k in ("x", "y")}
        score = (
            per_task[task]
            if task != "avg"
            else [(a + b) / 2 for a, b in zip(*per_task.values(), strict=True)]
        )
        hand = stats.spearmanr(values, score)
        assert t.n == 10 and t.sparsity == 0.7 and sorted(t.losses) == pytest.approx(sorted(values))
        assert sorted(t.scores) == pytest.approx(sorted(score))
        assert (t.rho, t.p) == pytest.approx((hand.statistic, hand.pvalue), rel=1e-9)


def test_a_report_has_the_section_only_with_pretraining_evaluations(tmp_path):
    """The same runs without pre-training evaluations: no section, no pretrain_tests.csv, the family
    note as before; with them, the section and the CSV."""
    fill(tmp_path / "plain", ranked_masks(3), evals=False)
    text = write_report(tmp_path / "plain", analyses=TAMT).path.read_text()
    assert HEADING not in text and not (tmp_path / "plain/report/pretrain_tests.csv").exists()
    assert "Holm family: the 1 tests of this report (the comparisons below); p (Holm)" in text
    fill(tmp_path / "evals", ranked_masks(3))
    text = write_report(tmp_path / "evals", analyses=TAMT).path.read_text()
    assert HEADING in text and (tmp_path / "evals/report/pretrain_tests.csv").is_file()
    # ρ = -1 of the 4 masks at 70%: p = 1/12 (2 of 4! orderings), twice that after Holm over 5
    assert "| mlm_loss | x | 70% | 4 | -1.00 | 0.167 | 0.99 | not shown at this budget (MDE 0.99) |" in text
    assert "**Verdict (2):** holds in 0 of 2 tests; not shown at this budget in 2." in text
    assert "Holm family: the 5 tests of this report (the comparisons below and those of TAMT's claims" in text


def test_spearman_at_each_sparsity_and_pooled_with_the_full_model(tmp_path):
    """Masks at 50% and 90%: a ρ over each sparsity's masks (does the loss tell masks of one sparsity
    apart?) and one pooled over both with the full model (the paper's figures), each scipy's/exact."""
    masks = [M("full", None, 4.0, 0.0, {"x": [90.0, 90.0]})]
    for sparsity, base in ((0.5, 5.0), (0.9, 7.0)):
        masks += [M("omp", None, base, 0.3, {"x": [80.0 - base, 80.0 - base]}, sparsity=sparsity)]
        masks += [
            M(
                "tamt-kd",
                k,
                base + k / 10,
                0.2 + k / 100,
                {"x": [70.0 - base + k, 72.0 - base - k]},
                sparsity=sparsity,
            )
            for k in range(3)
        ]
    fill(tmp_path / "sweep", masks)
    corr = [t for t in results(tmp_path / "sweep").family()[1] if t.part == PREDICTS]
    by = {(t.loss, t.sparsity): t for t in corr}
    assert set(by) == {(loss, s) for loss in ("mlm_loss", "kd_loss") for s in (0.5, 0.9, None)}
    for loss in ("mlm_loss", "kd_loss"):
        for s in (0.5, 0.9, None):
            kept = [m for m in masks if s is None or (m.method != "full" and m.sparsity == s)]
            values = [m.mlm if loss == "mlm_loss" else m.kd for m in kept]
            scores = [sum(m.scores["x"]) / 2 for m in kept]
            t = by[(loss, s)]
            assert t.n == len(kept) == (9 if s is None else 4)
            assert t.rho == pytest.approx(stats.spearmanr(values, scores).statistic)
    write_csvs(results(tmp_path / "sweep"), tmp_path)
    rows = [r for r in csv.DictReader((tmp_path / "pretrain_tests.csv").open()) if r["part"] == PREDICTS]
    assert [r["sparsity"] for r in rows] == ["0.5", "0.9", "all"] * 2


def test_no_correlation_from_constant_scores_or_two_masks():
    """Every mask at the same score (a task at its constant predictor), or two masks: no ρ, no p, no MDE."""
    flat = Correlation("mlm_loss", "x", ["omp"] * 4, [1.0, 2.0, 3.0, 4.0], [50.0] * 4, [])
    two = Correlation("mlm_loss", "x", ["omp"] * 2, [1.0, 2.0], [50.0, 40.0], [])
    for t, why in ((flat, "constant loss or score"), (two, "fewer than 3 masks")):
        assert (t.rho, t.p, t.mde, t.verdict) == (None, None, None, why)


def test_a_mask_saved_at_the_last_step_is_the_final_masks_test(tmp_path):
    """A search saving its last step too (save_at [100, 200] of 200 steps): one test at 200 steps, the
    equal-steps one, not a second one on the same data in the family."""
    along = [{100: (5.3, 0.3), 200: (TAMT_MLM[k], TAMT_KD[k])} for k in range(3)]
    masks = [M("tamt-kd", k, TAMT_MLM[k], TAMT_KD[k], along=along[k]) for k in range(3)]
    fill(tmp_path / "sweep", masks + [M("imp", k, IMP_MLM[k], IMP_KD[k]) for k in range(3)])
    tests = results(tmp_path / "sweep").family()[1]
    assert sorted((t.part, t.a.steps) for t in tests if t.loss == "mlm_loss") == [
        (EQUAL_STEPS, 200),
        (SEARCH_COST, 100),
    ]


def test_the_spec_names_the_recipe_the_report_runs(tmp_path):
    """A store whose spec names the recipe (`recipes:`, as a sweep records it) gets its tests and its
    section from `ticketlab report` with no more said; one that names none gets neither, and the
    comparisons' Holm family is then theirs alone."""
    fill(tmp_path / "named", ranked_masks(3))
    with Store(tmp_path / "named") as st:
        st.set_meta("spec", {"recipes": [str(RECIPE)]})
    res = load_results(tmp_path / "named")
    assert res.analyses == TAMT and len(res.family()[1]) == 4
    assert HEADING in write_report(tmp_path / "named").path.read_text()
    fill(tmp_path / "none", ranked_masks(3))
    res = load_results(tmp_path / "none")
    (c,), others = res.family()
    assert res.analyses == () and others == [] and c.p_holm == pytest.approx(c.p)
    text = write_report(tmp_path / "none").path.read_text()
    assert HEADING not in text and not (tmp_path / "none/report/pretrain_tests.csv").exists()
    assert "Holm family: the 1 tests of this report (the comparisons below); p (Holm)" in text


def test_a_spec_naming_a_missing_recipe_is_refused(tmp_path):
    """`recipes:` paths are relative to the spec and must exist (one line naming the key and the
    file); a file that is not a recipe is refused by the report, naming it."""
    spec = {"model": str(tmp_path), "tasks": {}, "methods": ["omp"], "sparsities": [0.5]}
    with pytest.raises(ConfigError, match=r"s\.yaml: recipes: nowhere\.py: not found"):
        spec_from_dict(spec | {"recipes": ["nowhere.py"]}, source="s.yaml", base_dir=tmp_path)
    (tmp_path / "plain.py").write_text("X = 1\n")
    loaded = spec_from_dict(spec | {"recipes": ["plain.py"]}, source="s.yaml", base_dir=tmp_path)
    assert loaded.recipes == (str(tmp_path / "plain.py"),)
    with pytest.raises(ConfigError, match=r"plain\.py: defines no ANALYSIS"):
        load_analysis(tmp_path / "plain.py")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ConfigError, match=r"notes\.txt: a report recipe must be a Python file"):
        load_analysis(tmp_path / "notes.txt")
