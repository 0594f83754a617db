"""`studies.stats`: Holm's correction, the MDE, the design a comparison's seeds make and its test, and
the bootstrap over a run's dev examples. Their size and power by simulation: `test_calibration.py`."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from ticketlab.studies.stats import (
    CROSSED,
    EXACT_UP_TO,
    SHARED_SEEDS_TOO_FEW,
    WELCH,
    centred_ranks,
    crossed_test,
    design_of,
    example_bootstrap,
    holm,
    min_detectable_effect,
    paired_test,
    pooled_rho,
    spearman,
    stratified_permutation_p,
    t_interval,
    unit_test,
)
from ticketlab.tasks.scores import GLUE_METRICS, mcc, pearson


def test_holm_against_hand_computed_values():
    # sorted: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1); then the running maximum
    assert holm([0.01, 0.04, 0.03, None, 0.005]) == pytest.approx([0.03, 0.06, 0.06, None, 0.02], abs=0)
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1 (2 x 0.5; max(1, 0.6))
    assert holm([0.2]) == [0.2] and holm([]) == [] and holm([None]) == [None]


def test_min_detectable_effect_has_80_percent_power():
    assert min_detectable_effect(1.0, 1) is None and min_detectable_effect(0.0, 3) == 0.0
    d3 = min_detectable_effect(1.0, 3)
    assert d3 == pytest.approx(3.2640, abs=1e-3) and min_detectable_effect(2.0, 3) == pytest.approx(2 * d3)
    assert min_detectable_effect(1.0, 10) == pytest.approx(0.9960, abs=1e-3)  # Cohen's tables: d ~ 1.0
    rng = np.random.default_rng(0)  # simulated paired t-tests at that effect reject 80% of the time
    for n, d in ((3, d3), (10, min_detectable_effect(1.0, 10))):
        x = rng.normal(d, 1.0, (40_000, n))
        assert (stats.ttest_1samp(x, 0.0, axis=1).pvalue < 0.05).mean() == pytest.approx(0.8, abs=0.01)


def test_the_design_is_read_from_the_seeds_each_mask_was_fine_tuned_with():
    assert design_of([[11, 12], [13, 14]], [[15], [16]]) == (WELCH, [])  # no seed serves two masks
    assert design_of([[0, 1], [0, 1]], [[0, 1, 2, 3]]) == (CROSSED, [0, 1])  # OMP's own seeds beyond
    assert design_of([[0, 1], [0, 2]], [[0, 1]])[0] == SHARED_SEEDS_TOO_FEW  # one seed common to all


def test_the_crossed_test_sees_the_method_by_seed_interaction_that_welch_leaves_out():
    # two masks a side, two shared seeds; each arm moves with the seed in the opposite direction
    a = np.array([[10.0, 12.0], [10.2, 12.1]])  # (mask, seed)
    b = np.array([[9.0, 8.0], [9.1, 8.2]])
    diff, se, df, p = crossed_test(a, b)
    assert diff == pytest.approx(a.mean() - b.mean()) and df == 1
    d = a.mean(0) - b.mean(0)  # per-seed differences 1.05, 3.95: the interaction's spread
    assert se >= np.sqrt(d.var(ddof=1) / 2) - 1e-12
    assert p > unit_test(a.mean(1), b.mean(1))[3]  # Welch on mask means: far smaller p
    assert p == pytest.approx(2 * stats.t.sf(diff / se, 1))


def test_welch_on_unit_means_is_scipys():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 9), rng.normal(0.5, 2, 6)
    diff, se, df, p = unit_test(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert (
        p == pytest.approx(ref.pvalue)
        and df == pytest.approx(ref.df)
        and diff / se == pytest.approx(ref.statistic)
    )


def test_sides_without_spread_warn_of_nothing():
    """Two sides each repeating one score (a constant predictor's): scipy's "precision loss" and
    numpy's division warnings stay inside the tests, whose SE-0 p the report replaces by "no spread"."""
    a, b = np.full(4, 0.7), np.full(3, 0.1 * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unit_test(a, b)
        paired_test(a[:3], b)


@pytest.mark.parametrize("metric", [mcc, pearson])
def test_the_bootstrap_over_examples_gives_the_runs_score_at_the_identity_resample(metric):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300) if metric is mcc else rng.normal(0, 1, 300)
    preds = (
        np.where(rng.random(300) < 0.8, labels, 1 - labels)
        if metric is mcc
        else labels + rng.normal(0, 1, 300)
    )
    draws = example_bootstrap(metric, preds, labels, 50, seed=3)
    assert draws[0] == metric(preds, labels)  # exactly
    assert draws[1:].std() > 0 and np.array_equal(draws, example_bootstrap(metric, preds, labels, 50, seed=3))


def test_two_runs_on_the_same_examples_are_paired_by_the_bootstrap_seed():
    """Resampling two arms' predictions with one seed draws the same examples for both: the identity
    resample gives the difference of their scores, and the paired draws vary less than unpaired."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 400)
    a = np.where(rng.random(400) < 0.85, labels, 1 - labels)
    b = np.where(rng.random(400) < 0.1, 1 - a, a)  # b mostly agrees with a, example by example
    acc = GLUE_METRICS["accuracy"]
    paired = example_bootstrap(acc, a, labels, 400, seed=5) - example_bootstrap(acc, b, labels, 400, seed=5)
    unpaired = example_bootstrap(acc, a, labels, 400, seed=5) - example_bootstrap(acc, b, labels, 400, seed=6)
    assert paired[0] == acc(a, labels) - acc(b, labels)
    assert paired[1:].std() < 0.6 * unpaired[1:].std()


def test_spearman_p_is_exact_for_few_units_and_scipys_beyond():
    """A perfect reverse order of 4 units: rho = -1 and p = 2 / 4! over every ordering (scipy's t
    approximation says about 0); over more than `EXACT_UP_TO` units, scipy's own p."""
    rho, p = spearman([1.0, 2.0, 3.0, 4.0], [9.0, 7.0, 5.0, 1.0])
    assert rho == pytest.approx(-1.0) and p == pytest.approx(2 / 24)
    x = [float(i) for i in range(EXACT_UP_TO + 2)]
    y = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0, 5.5, 3.5]
    assert spearman(x, y) == pytest.approx((stats.spearmanr(x, y).statistic, stats.spearmanr(x, y).pvalue))


def test_stratified_permutation_p_orders_within_groups_only():
    """Two groups of two units, each in the same order: the pooled rho is 1 and, of the 2 x 2 orderings
    within groups, two reach |sum x.y| = 1 (both groups agreeing, either way): p = 2 / 4."""
    groups = [np.array([0, 1]), np.array([2, 3])]
    xs = centred_ranks([1.0, 2.0, 10.0, 20.0], groups)
    ys = centred_ranks([5.0, 6.0, 0.5, 0.7], groups)
    assert pooled_rho(xs, ys) == pytest.approx(1.0)
    assert stratified_permutation_p(xs, ys, draws=100) == pytest.approx(0.5)


def test_t_interval_is_students():
    half = stats.t.ppf(0.975, 4) * 0.5
    assert t_interval(1.0, 0.5, 4) == pytest.approx((1.0 - half, 1.0 + half))
