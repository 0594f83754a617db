"""GLUE and SQuAD metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ticketlab.tasks.metrics import (
    GLUE_METRIC_NAMES,
    accuracy,
    exact_match_score,
    f1_tokens_score,
    normalize_answer,
    squad_metrics,
)
from ticketlab.tasks.scores import GLUE_METRICS, constant_score, f1, glue_metrics, mcc, pearson, spearman

PREDS = np.array([1, 0, 1, 1])
LABELS = np.array([1, 0, 0, 1])  # TP 2, TN 1, FP 1, FN 0


def test_accuracy_f1_mcc_by_hand():
    assert accuracy(PREDS, LABELS) == 75.0
    # precision 2/3, recall 1 -> F1 = 2 * (2/3) / (5/3) = 0.8
    assert f1(PREDS, LABELS) == pytest.approx(80.0)
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 2 / sqrt(3*2*2*1)
    assert mcc(PREDS, LABELS) == pytest.approx(100 * 2 / math.sqrt(12))
    assert mcc(np.ones(4, int), LABELS) == 0.0  # constant predictions: 0, not nan
    assert f1(np.zeros(4, int), LABELS) == 0.0


def test_constant_predictor_by_hand():
    """5 labels, 3 of them 1: the majority class scores 60% accuracy; predicting all 1s gives F1
    2·0.6/(1 + 0.6) = 75 (all 0s gives 0); MCC and correlations of a constant are 0."""
    y = [1, 0, 1, 1, 0]
    assert constant_score("accuracy", y) == pytest.approx(60.0)
    assert constant_score("f1", y) == pytest.approx(75.0)
    assert constant_score("mcc", y) == 0.0
    assert constant_score("pearson", [0.5, 2.0, 4.5]) == 0.0
    assert constant_score("accuracy", [2, 0, 2, 1]) == pytest.approx(50.0)  # three classes
    assert constant_score("exact_match", y) is None and constant_score("accuracy", []) is None


def test_correlations_by_hand():
    # deviations (-1, 0, 1) and (-4/3, -1/3, 5/3): cov 3, var 2 and 42/9
    assert pearson(np.array([1.0, 2, 3]), np.array([1.0, 2, 4])) == pytest.approx(
        100 * 3 / math.sqrt(2 * 42 / 9)
    )
    # rank differences (0, 1, -1): rho = 1 - 6 * 2 / (3 * (9 - 1)) = 0.5
    assert spearman(np.array([1.0, 2, 3]), np.array([1.0, 3, 2])) == pytest.approx(50.0)
    assert pearson(np.ones(3), np.array([1.0, 2, 3])) == 0.0


def test_glue_metrics_by_name():
    out = glue_metrics(["accuracy", "f1"], PREDS, LABELS)
    assert out == {"accuracy": 75.0, "f1": pytest.approx(80.0)}


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("The  Cat's hat!", "cats hat"),
        ("an apple, a pear and THE plum.", "apple pear and plum"),
        ("Theatre anthem", "theatre anthem"),  # articles only as whole words
        ("  1,000 (approx.)  ", "1000 approx"),
    ],
)
def test_official_answer_normalisation(raw, norm):
    assert normalize_answer(raw) == norm


def test_squad_em_and_f1_by_hand():
    assert exact_match_score("the Cat.", "cat") == 1.0
    # pred tokens (cat sat on mat), gold (cat sat): overlap 2, P 1/2, R 1 -> F1 2/3
    assert f1_tokens_score("a cat sat on the mat", "The cat sat") == pytest.approx(2 / 3)
    assert f1_tokens_score("dog", "cat") == 0.0
    answers = {"q1": ["Cat", "a cat"], "q2": ["the cat sat", "dog"], "q3": ["tree"]}
    preds = {"q1": "cat", "q2": "cat sat on mat"}  # q3 missing: counts as wrong
    out = squad_metrics(preds, answers)
    assert out["exact_match"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)


# --------------------------------------------------------------------------- comparing methods


def test_no_verdict_at_the_floor_or_from_one_run():
    import math

    from ticketlab.tasks.metrics import floor_of_average, no_verdict

    assert no_verdict(70.0, 1.0, 3, 68.3) is None
    assert no_verdict(69.0, 1.0, 3, 68.3) == "floor"  # 69 - 1 <= 68.3
    assert (
        no_verdict(90.0, 0.0, 1, 68.3) == "one run"
        and no_verdict(90.0, 2.0, 3, None, ticket_n=1) == "one run"
    )
    assert floor_of_average([False, True, False]) == math.inf and floor_of_average([False, False]) is None
    assert no_verdict(90.0, 1.0, 3, floor_of_average([True, False])) == "floor"


def test_the_registry_names_every_glue_metric_there_is():
    """`tasks.metrics` (torch- and scipy-free: the task registry checks a task's metrics against it
    when `--help` is parsed) names exactly the metrics `tasks.scores` computes, in the same order."""
    assert tuple(GLUE_METRICS) == GLUE_METRIC_NAMES
