"""The GLUE metrics that need scikit-learn or scipy (F1, Matthews, Pearson, Spearman), every GLUE
metric by name, a constant predictor's score, and the smallest effect a paired t-test detects
(scipy). `tasks.metrics` holds the names, accuracy and SQuAD's scores, torch- and scipy-free.

Every score is on the 0-100 scale the papers print (`tasks.metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.stats import nct, norm, pearsonr, spearmanr, t
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


# --------------------------------------------------------------------------- comparing methods


def min_detectable_effect(std: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest true mean difference a two-sided paired t-test of `n` pairs finds at level
    `alpha` with probability `power`, if the differences spread with standard deviation `std`
    (the noncentral t: no normal approximation, which is far off at n = 3). None below two pairs:
    no test. "Within noise" then has a size: effects under this one were not looked for."""
    if n < 2:
        return None
    return detectable_effect(std / math.sqrt(n), n - 1, alpha=alpha, power=power)


def detectable_effect(se: float, df: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """`min_detectable_effect` of a t-test whose mean has standard error `se` on `df` degrees of
    freedom (a crossed masks x seeds design's Satterthwaite df, say)."""
    if se == 0:
        return 0.0
    crit = float(t.ppf(1 - alpha / 2, df))

    def short(d: float) -> float:  # power at effect d (in units of se), minus the goal
        # the far tail (a significant result of the wrong sign) is tiny, and NaN in scipy at times
        wrong_sign = float(np.nan_to_num(nct.cdf(-crit, df, d)))
        return float(nct.sf(crit, df, d)) + wrong_sign - power

    hi = 1.0
    while short(hi) < 0:  # widen until the power is reached
        hi *= 2
    return float(brentq(short, 0.0, hi)) * se


def welch(parts: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """(standard error, Satterthwaite's degrees of freedom) of a difference of independent means,
    given each one's (variance, degrees of freedom); numbers or numpy arrays of them (a simulation)."""
    total = sum(v for v, _ in parts)
    denom = sum(v * v / d for v, d in parts)
    fallback = float(sum(np.max(d) for _, d in parts))  # no spread at all: the degrees of freedom
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, total * total / np.where(denom > 0, denom, 1), fallback)
    return np.sqrt(total), df


def t_test(diff: Any, se: Any, df: Any) -> Any:
    """Two-sided p of the t statistic diff / se on df degrees of freedom (se 0: 0, or 1 if diff is 0
    too); numbers or numpy arrays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * t.sf(np.abs(diff / np.where(se == 0, 1, se)), df)
    return np.where(se == 0, np.where(diff == 0, 1.0, 0.0), p)


# The variance of Fisher's z of Spearman's rho is about 1.06 / (n - 3) (Fieller et al. 1957).
FIELLER = 1.06


def detectable_rho(n: int, *, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest |Spearman's rho| over `n` independent units found with `power` at two-sided
    `alpha`, by Fisher's z with Fieller's variance; None below 4 units (no variance)."""
    if n <= 3:
        return None
    z = float(norm.ppf(1 - alpha / 2) + norm.ppf(power))
    return math.tanh(z * math.sqrt(FIELLER / (n - 3)))


def smallest_spearman_p(n: int) -> float:
    """The smallest two-sided exact p Spearman's rho over `n` units can have: a perfect order, one
    of the n! equally likely orderings, or its reverse (2 / n!; 1 for fewer than 2 units)."""
    return 1.0 if n < 2 else min(1.0, 2 / math.factorial(n))
