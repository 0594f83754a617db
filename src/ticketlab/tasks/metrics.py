"""Downstream metrics: their names, accuracy, SQuAD v1.1 exact match and F1, and the verdicts of
comparing methods. Torch-free, without scikit-learn and scipy: the task registry (`--help`) reads it;
the GLUE scores that need them are `tasks.scores`.

Every score is on the 0-100 scale the papers print (accuracy 91.3, Matthews 0.54 -> 54.0), so
best / final / mean ± std read the same everywhere. The SQuAD functions follow the official v1.1
evaluation script: answers are normalised (lower case, punctuation and the articles a / an / the
removed, white space collapsed) and each prediction takes the max over the gold answers.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..core.errors import ConfigError, DataError

# --------------------------------------------------------------------------- GLUE


def scored(fn: Callable[..., float]) -> Callable[..., float]:
    """Refuse a score over zero examples (numpy's mean of nothing is nan, and a fallback of 0 or
    100 would be a number that was never measured) and over non-finite labels or predictions (a
    correlation with one inf label is nan, which no best score may be)."""

    @functools.wraps(fn)
    def score(preds: np.ndarray, labels: np.ndarray) -> float:
        if len(labels) == 0:
            raise DataError(f"{fn.__name__}: no examples to score (the evaluation set is empty)")
        for what, values in (("labels", labels), ("predictions", preds)):
            values = np.asarray(values)
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise DataError(
                    f"{fn.__name__}: {(~np.isfinite(values)).sum()} of the {what} are not finite "
                    f"(e.g. {values[~np.isfinite(values)][0]}); no score is a number over them"
                )
        return fn(preds, labels)

    return score


@scored
def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    # one division of integers: 524 of 1,000 right is 52.4 exactly, where 100 * mean() would be
    # 52.400000000000006 (the binary rounding of 0.524, scaled)
    right = np.asarray(preds) == np.asarray(labels)
    return 100.0 * int(np.count_nonzero(right)) / right.size


# classification tasks score argmax ids, regression raw scores (`tasks.scores.GLUE_METRICS`: the functions)
GLUE_METRIC_NAMES = ("accuracy", "f1", "mcc", "pearson", "spearman")
SQUAD_METRICS = ("exact_match", "f1")
# What each kind of task can be scored by (a class id is not a number to correlate, a real-valued
# score never equals its label exactly), and what it is scored by when its spec names no metric.
KIND_METRICS = {
    "classification": ("accuracy", "f1", "mcc"),
    "regression": ("pearson", "spearman"),
    "squad": SQUAD_METRICS,
}
DEFAULT_METRICS = {
    "classification": ("accuracy",),
    "regression": ("pearson", "spearman"),
    "squad": SQUAD_METRICS,
}
METRIC_NAMES = frozenset(GLUE_METRIC_NAMES) | frozenset(SQUAD_METRICS)


# --------------------------------------------------------------------------- comparing methods


def no_verdict(
    full_mean: float, full_std: float, full_n: int, floor: float | None, ticket_n: int | None = None
) -> str | None:
    """Why a winning-ticket verdict (ticket mean >= full mean - one std of the full model) would say
    nothing here, or None when it may be given:
      - the full model within one std of a constant predictor's score (`floor`): it learnt (almost)
        nothing from the text, and every mask "wins";
      - one run of the full model or of the ticket: no std, so noise decides the verdict.
    For an average over tasks, pass the tasks' floors through `floor_of_average` first."""
    if floor is not None and full_mean - full_std <= floor:
        return "floor"
    if full_n < 2 or (ticket_n is not None and ticket_n < 2):
        return "one run"
    return None


def floor_of_average(task_at_floor: Sequence[bool]) -> float | None:
    """An average over tasks has no verdict when any task in it is at its floor (it would be won by
    tasks where nothing was learnt): +inf then, else None (no floor)."""
    return math.inf if any(task_at_floor) else None


# --------------------------------------------------------------------------- SQuAD v1.1

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """The official SQuAD v1.1 normalisation: lower, drop punctuation and articles, fix white space."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match_score(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1_tokens_score(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: Mapping[str, str], answers: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """EM and F1 (0-100) over the questions in `answers` (id -> gold texts); a missing prediction is wrong."""
    if not answers:
        raise DataError("exact_match: no questions to score (the evaluation set is empty)")
    em = f1_sum = 0.0
    for qid, golds in answers.items():
        pred = predictions.get(qid, "")
        em += max(exact_match_score(pred, g) for g in golds)
        f1_sum += max(f1_tokens_score(pred, g) for g in golds)
    n = len(answers)
    return {"exact_match": 100 * em / n, "f1": 100 * f1_sum / n}


# --------------------------------------------------------------------------- selection splits

MIN_SPLIT = 4  # examples on each side of a selection split: fewer score in steps of > 25 points


def check_split(n: int, fraction: float) -> int:
    """The size of the selection part of a dev set of `n` examples, or one line: each part needs
    MIN_SPLIT examples (what a study checks before its folder is made, and every split again)."""
    k = round(fraction * n)
    if min(k, n - k) < MIN_SPLIT:
        raise ConfigError(
            f"select_fraction {fraction:g} of a dev set of {n} examples leaves {k} to select on and "
            f"{n - k} to report: each side needs at least {MIN_SPLIT} (fewer score in steps of more than "
            f"{100 // MIN_SPLIT} points, so picks and reports would be chance)"
        )
    return k
