"""The GLUE metrics that need scikit-learn or scipy (F1, Matthews, Pearson, Spearman), every GLUE
metric by name and a constant predictor's score. `tasks.metrics` holds the names, accuracy and
SQuAD's scores, torch- and scipy-free; the tests that compare methods are `studies.stats`.

Every score is on the 0-100 scale the papers print (`tasks.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from .metrics import accuracy, scored


@scored
def f1(preds: np.ndarray, labels: np.ndarray) -> float:
    """Binary F1 of the positive class (label 1), as GLUE reports it for MRPC and QQP."""
    return float(f1_score(labels, preds, pos_label=1, average="binary", zero_division=0.0) * 100)


@scored
def mcc(preds: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation (CoLA); 0 when the predictions are constant."""
    return float(matthews_corrcoef(labels, preds) * 100)


def _correlation(fn: Callable, preds: np.ndarray, labels: np.ndarray) -> float:
    preds, labels = np.asarray(preds, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if preds.std() == 0 or labels.std() == 0:
        return 0.0  # undefined for a constant predictor; scipy would warn and return nan
    return float(fn(preds, labels)[0] * 100)


@scored
def pearson(preds: np.ndarray, labels: np.ndarray) -> float:
    return _correlation(pearsonr, preds, labels)


@scored
def spearman(preds: np.ndarray, labels: np.ndarray) -> float:
    return _correlation(spearmanr, preds, labels)


# name -> fn(predictions, labels). Classification tasks pass argmax ids, regression raw scores.
GLUE_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "mcc": mcc,
    "pearson": pearson,
    "spearman": spearman,
}


def glue_metrics(names: Sequence[str], preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {name: GLUE_METRICS[name](preds, labels) for name in names}


def constant_score(metric: str, labels: Sequence[int] | Sequence[float]) -> float | None:
    """The best score of a predictor that gives every example one and the same label: the majority
    class's share for accuracy, 0 for MCC and the correlations. A fine-tuning at this score learnt
    nothing from the text. None for metrics without one (SQuAD) or no labels."""
    if metric not in GLUE_METRICS or len(labels) == 0:
        return None
    if metric in ("pearson", "spearman"):
        return 0.0
    y = np.asarray(labels)
    return max(GLUE_METRICS[metric](np.full_like(y, c), y) for c in np.unique(y))
