"""The statistics of a study's verdicts, in one place: the test chosen for the design the store holds,
Holm's correction, the smallest detectable effect (MDE), and the variance components they rest on.

Two designs of a comparison of method `a` with method `b` (masks nested in methods, fine-tuning
seeds in masks), told apart by what the runs hold (`design_of`):

- **independent units** (`WELCH`): no fine-tuning seed serves two masks (a sweep draws them per
  mask by default). A unit is a mask (its mean over its seeds) or, for a deterministic method's one
  mask, one fine-tuning seed; units are independent draws, and Welch's t on the units' means with
  Satterthwaite's degrees of freedom is valid (scipy's `ttest_ind`, `equal_var=False`).
- **crossed seeds** (`CROSSED`): the masks share their fine-tuning seeds (a spec that pins
  `seeds: finetune: [0, 1]`). A seed fixes the data order, the head's initialisation and the
  dropout, so it shifts every mask of a method together, and differently per method (a method ×
  seed interaction). The score is modelled as
  `y[m, i, j] = mu_m + mask[m, i] + seed[j] + (method x seed)[m, j] + e[m, i, j]`; the difference of
  method means on the seeds both arms share, `D`, has the variance
  `sum_m var(mask_m) / n_m + var(d_j) / J`, where `d_j` is the difference of the arms' means at seed
  `j` (it carries the interaction, 2 var(method x seed) + var(e) (1/n_a + 1/n_b)). Each part is
  estimated by its mean square (the mask variance as (MS_masks − MS_residual) / J per arm, floored
  at 0), and `D / SE` is referred to Student's t on the interaction's J − 1 degrees of freedom. With J
  shared seeds the interaction has J − 1 degrees of freedom: with 2 seeds a valid test has very
  little power, which is the design's answer, not the test's defect. Runs at seeds the arms do not
  share are left out of the crossed test (their seed effects would not cancel).

The Multi-Bootstrap of Sellam et al. (ICLR 2022) resamples masks, seeds and examples jointly; it is
not the crossed test here because with 2 seeds a bootstrap of the seeds sees 3 distinct resamples
and under-states the seed part of the variance by half (its SE is the plug-in one): it rejects a true
null far more often than α at the designs this tool accepts. `tests/test_calibration.py` measures the
size and power of both tests by simulation, with variance components fitted by REML (statsmodels'
`MixedLM`) to a real study (`recipes/minilm-mlm-v2/variance_components.py`). A run's
per-example predictions let `example_bootstrap` resample its dev examples.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.stats import nct, norm, rankdata, spearmanr, t, ttest_ind, ttest_rel
from statsmodels.stats.multitest import multipletests

ALPHA = 0.05
WELCH = "Welch on unit means"  # independent units (`design_of`)
PAIRED = "paired t over shared seeds"  # one mask per seed a side, the seeds shared (super tickets)
CROSSED = "crossed seeds: mask + method × seed, t on the shared seeds (J − 1 df)"
SHARED_SEEDS_TOO_FEW = "seeds shared between masks, fewer than 2 shared by every mask of both arms"


# --------------------------------------------------------------------------- corrections


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: no test, not counted): statsmodels'
    `multipletests(method="holm")`. Reject where the adjusted value is below α and the chance of any
    false rejection in the family is at most α, whatever the dependence between the tests."""
    kept = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if kept:
        adjusted = multipletests([float(pvalues[i]) for i in kept], method="holm")[1]  # type: ignore[arg-type]
        for i, p in zip(kept, adjusted, strict=True):
            out[i] = float(p)
    return out


# --------------------------------------------------------------------------- t tests and their MDE


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


def min_detectable_effect(std: float, n: int, *, alpha: float = ALPHA, power: float = 0.8) -> float | None:
    """The smallest true mean difference a two-sided paired t-test of `n` pairs finds at level
    `alpha` with probability `power`, if the differences spread with standard deviation `std`
    (the noncentral t: no normal approximation, which is far off at n = 3). None below two pairs."""
    if n < 2:
        return None
    return detectable_effect(std / math.sqrt(n), n - 1, alpha=alpha, power=power)


def detectable_effect(se: float, df: float, *, alpha: float = ALPHA, power: float = 0.8) -> float:
    """The smallest true effect a two-sided t-test whose estimate has standard error `se` on `df`
    degrees of freedom finds with probability `power` at level `alpha` (the noncentral t)."""
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


# The variance of Fisher's z of Spearman's rho is about 1.06 / (n - 3) (Fieller et al. 1957).
FIELLER = 1.06


def detectable_rho(n: int, *, alpha: float = ALPHA, power: float = 0.8) -> float | None:
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


def t_interval(estimate: float, se: float, df: float, *, level: float = 0.95) -> tuple[float, float]:
    """The two-sided Student's t interval of `estimate` at `level`."""
    half = float(t.ppf(0.5 + level / 2, df)) * se
    return estimate - half, estimate + half


# --------------------------------------------------------------------------- rank correlations

EXACT_UP_TO = 8  # Spearman's p by enumerating every ordering up to this many units (8! = 40,320)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(Spearman's rho, its two-sided p) over paired units: p exact by enumerating every ordering of
    up to `EXACT_UP_TO` units, else scipy's `spearmanr` (its t approximation gives p = 0 to any
    perfect order, even of 3 units)."""
    rho = float(spearmanr(x, y).statistic)
    if len(x) > EXACT_UP_TO:
        return rho, float(spearmanr(x, y).pvalue)
    rx, ry = rankdata(x), rankdata(y)
    orders = np.array(list(itertools.permutations(rx)))  # (n!, n): every pairing of x with y
    xc, yc = orders - rx.mean(), ry - ry.mean()
    rhos = xc @ yc / np.sqrt((xc**2).sum(1) * (yc**2).sum())
    return rho, float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


def centred_ranks(values: Sequence[float], groups: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per group (indices into `values`), the group's average ranks minus their mean."""
    v = np.asarray(values, float)
    ranks = [rankdata(v[g]) for g in groups]
    return [r - r.mean() for r in ranks]


def pooled_rho(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> float:
    """The pooled correlation of per-group centred ranks (`centred_ranks`): the groups' Spearman rhos
    weighted by their rank variance (units nested in groups, each ranked among its own)."""
    cov = sum(float(x @ y) for x, y in zip(xs, ys, strict=True))
    return cov / float(np.sqrt(sum(float(x @ x) for x in xs) * sum(float(y @ y) for y in ys)))


def stratified_permutation_p(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], draws: int) -> float:
    """Two-sided p of `pooled_rho` by permuting `ys` within each group (under the null a group's units
    are exchangeable): the share of orderings whose |sum x.y| (rho's numerator; its denominator does
    not change) reaches the observed one. Every ordering where there are at most `draws`, else that
    many seeded draws (p = (1 + hits) / (1 + draws), never 0)."""
    observed = abs(sum(float(x @ y) for x, y in zip(xs, ys, strict=True))) - 1e-9
    if math.prod(math.factorial(len(y)) for y in ys) <= draws:
        total = np.zeros(1)
        for x, y in zip(xs, ys, strict=True):  # every combination: an outer sum over the groups
            sums = np.array(list(itertools.permutations(y))) @ x  # (n_g!,)
            total = (total[:, None] + sums[None, :]).ravel()
        return float(np.mean(np.abs(total) >= observed))
    rng = np.random.default_rng(0)
    total = np.zeros(draws)
    for x, y in zip(xs, ys, strict=True):
        order = rng.permuted(np.tile(np.arange(len(y)), (draws, 1)), axis=1)  # (draws, n_g)
        total += y[order] @ x
    return float((1 + np.sum(np.abs(total) >= observed)) / (1 + draws))


# --------------------------------------------------------------------------- the design's test


def design_of(seeds_a: Sequence[Sequence[int]], seeds_b: Sequence[Sequence[int]]) -> tuple[str, list[int]]:
    """(the test, the shared seeds) of a comparison whose masks were fine-tuned with these seeds (one
    list per mask of each arm): `WELCH` where no seed serves two masks; `PAIRED` where each mask has
    one seed of its own within its arm and the arms share 2 or more of them (a super ticket and the
    random ticket drawn from the same seed's model); `CROSSED` on the seeds every mask of both arms
    has where the masks share them (2 or more); else `SHARED_SEEDS_TOO_FEW` (no test)."""
    every = [s for unit in [*seeds_a, *seeds_b] for s in unit]
    if len(every) == len(set(every)):
        return WELCH, []
    one = all(len(u) == 1 for u in [*seeds_a, *seeds_b])
    arms = [[u[0] for u in side] for side in (seeds_a, seeds_b)] if one else []
    if one and all(len(set(x)) == len(x) for x in arms) and len(shared := set(arms[0]) & set(arms[1])) >= 2:
        return PAIRED, sorted(shared)
    common = set.intersection(*(set(u) for u in [*seeds_a, *seeds_b]))
    return (CROSSED, sorted(common)) if len(common) >= 2 else (SHARED_SEEDS_TOO_FEW, [])


@contextlib.contextmanager
def _without_spread_quiet() -> Iterator[None]:
    """numpy's division warnings and scipy's "precision loss" on sides without spread (SE 0, or at
    rounding level): the tests take p from `t_test` where SE is 0, and the report names such a
    comparison itself ("no spread", `report.comparison`), so neither is a user's concern."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def paired_test(a: np.ndarray, b: np.ndarray) -> tuple[Any, Any, Any, Any]:
    """The paired t over shared seeds: `a` and `b` (..., J), one unit per seed, in the same seed order
    (scipy's `ttest_rel`); returns (difference, SE, df, two-sided p)."""
    d = a - b
    j = d.shape[-1]
    se, diff = np.sqrt(d.var(-1, ddof=1) / j), d.mean(-1)
    df = np.full_like(se, float(j - 1))
    with _without_spread_quiet():
        p = ttest_rel(a, b, axis=-1).pvalue
    return diff, se, df, np.where(se == 0, t_test(diff, se, df), p)


def unit_test(a: np.ndarray, b: np.ndarray) -> tuple[Any, Any, Any, Any]:
    """Welch on unit means: `a` (..., n_a) and `b` (..., n_b) units (2 or more a side); returns
    (difference, SE, Satterthwaite df, two-sided p), arrays over the leading axes."""
    va, vb = a.var(-1, ddof=1) / a.shape[-1], b.var(-1, ddof=1) / b.shape[-1]
    se, df = welch([(va, a.shape[-1] - 1), (vb, b.shape[-1] - 1)])
    diff = a.mean(-1) - b.mean(-1)
    with _without_spread_quiet():
        p = ttest_ind(a, b, axis=-1, equal_var=False).pvalue
    return diff, se, df, np.where(se == 0, t_test(diff, se, df), p)


def _mask_part(y: np.ndarray, stochastic: bool) -> list[tuple[Any, int]]:
    """The parts (coefficient x mean square, df) of an arm's mask variance over its number of masks,
    y (..., n, J): (MS_masks − MS_residual) / (J n), floored at 0 (both dropped where it is)."""
    n, j = y.shape[-2:]
    if not stochastic or n < 2:
        return []  # a deterministic mask has no search variance
    rows, cols, grand = y.mean(-1), y.mean(-2), y.mean((-1, -2))
    ms_rows = j * rows.var(-1, ddof=1)
    resid = y - rows[..., :, None] - cols[..., None, :] + grand[..., None, None]
    ms_resid = (resid**2).sum((-1, -2)) / ((n - 1) * (j - 1))
    keep = ms_rows > ms_resid
    return [
        (np.where(keep, ms_rows, 0.0) / (j * n), n - 1),
        (np.where(keep, -ms_resid, 0.0) / (j * n), (n - 1) * (j - 1)),
    ]


def crossed_test(
    a: np.ndarray, b: np.ndarray, stochastic: tuple[bool, bool] = (True, True)
) -> tuple[Any, Any, Any, Any]:
    """The crossed-seeds test (module docstring): `a` (..., n_a, J) and `b` (..., n_b, J), each mask's
    scores at the J shared seeds in the same order; returns (difference, SE, df, two-sided p).

    The degrees of freedom are the method x seed interaction's, J − 1 (the containment rule), not
    Satterthwaite's: those came out at 1.1-1.4 at 2 seeds and rejected a simulated true null 1.5x
    as often as α (tests/test_calibration.py); J − 1 keeps the size at or below α and the power at
    the MDE it prints at 80%."""
    j = a.shape[-1]
    d = a.mean(-2) - b.mean(-2)  # (..., J) the arms' difference at each seed
    parts = [*_mask_part(a, stochastic[0]), *_mask_part(b, stochastic[1]), (d.var(-1, ddof=1) / j, j - 1)]
    var = np.maximum(sum(v for v, _ in parts), 0.0)
    se, diff = np.sqrt(var), d.mean(-1)
    df = np.full_like(se, float(j - 1))
    return diff, se, df, t_test(diff, se, df)


# --------------------------------------------------------------------------- examples


def example_bootstrap(
    metric: Callable[[np.ndarray, np.ndarray], float],
    preds: np.ndarray,
    labels: np.ndarray,
    draws: int,
    *,
    seed: int = 0,
    identity: bool = True,
) -> np.ndarray:
    """A run's score over `draws` resamples of its dev examples (with replacement, seeded), the first
    the identity resample where `identity` (the run's own score, exactly). Two runs on the same
    examples are paired by giving both the same `seed`."""
    n = len(labels)
    idx = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    if identity:
        idx[0] = np.arange(n)
    return np.array([metric(preds[i], labels[i]) for i in idx])
