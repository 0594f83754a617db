"""The exact thresholds of TAMT's masks (`search.py`): after every optimizer step, exactly n_keep
scores S ≥ t, per matrix or over all targets (`Thresholder`), or N of every M (`GroupThresholder`).

Ranking is by the *signed* score: the kept weights are the n_keep highest scores. §3.4.2 says "rank
according to their absolute values", but Eq. 3 keeps M = 1[S ≥ φ], and ranking |S| would keep
weights whose scores the gradient drove far below zero, the opposite of what the objective asks;
TAMT's code binarises the signed score (`inputs > threshold`).

The mask is not stored: M = 1[S ≥ t] is read off the scores wherever it is used, with one threshold
t per matrix (or one for all, global ranking) kept so that exactly n_keep scores are >= t. Ties at
the cut (e.g. rows of the word embeddings that never got a gradient still sit at α·φ or 0) are
broken by position, the lower one kept, and a score that loses a tie is lowered to the next value
below t, so that no t can be wrong about it; it then stays behind its tie-mates, and the mask does
not churn among weights the objective never saw. (Scores that the optimizer moved onto exactly the
same value are ranked by position too, whichever of them was kept before.)

The selection is exact and avoids sorting all scores every step: from the previous threshold, one
step of fixed-size tensors (`band.step`: a pass that counts the scores above and near t, a sort of
the few candidates near it) finds the new cut, with nothing read back to the host, so that a
compiled step (and a CUDA graph) holds it whole; one read of a flag per step after it says whether
a group could not see its cut there (rare), which is then settled eagerly (`Thresholder.repair`).
From scratch (first step, after a resume, that rare case failing twice), the k-th largest score is
bracketed from a strided sample, checked by counting, and found by `kthvalue` inside the bracket.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ...core.errors import ConfigError, TicketlabError
from ...masks.nm import group_order, groups
from ...masks.pattern import NM, parse_pattern
from ...train.whole_step import GraphHook
from ..ranking import Count, Ranking, check_sparsity, pruned_count
from .band import SIDE, Band, below_each, between
from .band import step as band_step
from .masked_layers import row_blocks
from .scores import ScoreMask

# --------------------------------------------------------------------------- exact selection

_SMALL = 1 << 18  # below this many scores a plain kthvalue over all of them is as fast
DIVERGED = "mask scores are not finite: the search diverged (try a lower --lr)"
_SAMPLE = 1 << 16


def _kth_largest(xs: list[Tensor], k: int) -> float:
    """The exact k-th largest value over all of `xs` (flat, 1 <= k <= total): a bracket from a
    strided sample, checked by counting, then `kthvalue` over the values inside the bracket only."""
    n = sum(x.numel() for x in xs)
    q = n - k + 1  # its rank from the bottom, 1-based
    if n <= _SMALL:
        return float(torch.cat(xs).kthvalue(q).values)
    stride = max(1, n // _SAMPLE)
    sample = torch.cat([x[::stride] for x in xs])
    m = sample.numel()
    pos = (q - 0.5) / n * m
    margin = 4.0 * math.sqrt(m) + 16.0
    while True:
        lo_i, hi_i = math.floor(pos - margin), math.ceil(pos + margin)
        if lo_i < 1 and hi_i > m:
            return float(torch.cat(xs).kthvalue(q).values)
        lo = float(sample.kthvalue(lo_i).values) if lo_i >= 1 else -math.inf
        hi = float(sample.kthvalue(hi_i).values) if hi_i <= m else math.inf
        below, bands = 0, []
        for x in xs:
            inside = x >= lo
            below += x.numel() - int(torch.count_nonzero(inside))
            inside &= x <= hi
            bands.append(x[inside])
        band = torch.cat(bands)
        if below < q <= below + band.numel():
            return float(band.kthvalue(q - below).values)
        margin *= 8  # the sample misjudged the quantile: widen the bracket


def _rank(vals: Tensor, *, largest: bool) -> Tensor:
    """All indices of `vals` (candidates in position order), best first: the largest values first
    (`largest`), or the smallest. Ties follow one rule everywhere: the lower position is the better
    one, so a cut keeps the lower positions. A stable sort, no host synchronisation."""
    if largest:
        return torch.argsort(vals, descending=True, stable=True)
    pos = torch.arange(vals.numel() - 1, -1, -1, device=vals.device)  # higher positions first
    return pos[torch.argsort(vals[pos], stable=True)]


def _below(t: float, dtype: torch.dtype) -> float:
    """The highest value of `dtype` below t, short of the subnormals (which a CPU's flush-to-zero
    mode would compare as 0)."""
    return float(below_each(torch.tensor(t, dtype=dtype)))


class _Candidates:
    """Candidate weights gathered from a group of flat score tensors, in position order."""

    def __init__(self, xs: list[Tensor], idx: list[Tensor]):
        self.xs, self.idx = xs, idx
        self.vals = torch.cat([x[i] for x, i in zip(xs, idx, strict=True)])

    def lower(self, chosen: Tensor, value: float) -> None:
        """Set the scores of the chosen candidates to `value`."""
        flags = torch.zeros(self.vals.numel(), dtype=torch.bool, device=self.vals.device)
        flags[chosen] = True
        for x, i, f in zip(self.xs, self.idx, flags.split([i.numel() for i in self.idx]), strict=True):
            x.index_fill_(0, i[f], value)


def _cut(xs: list[Tensor], n_keep: int) -> float:
    """The threshold t at which exactly `n_keep` values of the flat tensors `xs` are >= t, from
    scratch: the n_keep-th largest value, and the values tied with it beyond the n_keep highest
    (the higher positions) lowered one step below it, in place."""
    total = sum(x.numel() for x in xs)
    if not 1 <= n_keep <= total:
        raise ValueError(f"cannot keep {n_keep} of {total} values")
    value = _kth_largest(xs, n_keep)
    if not math.isfinite(value):
        raise TicketlabError(DIVERGED)
    excess = int(sum(torch.count_nonzero(x >= value) for x in xs)) - n_keep
    if excess > 0:  # ties at `value`
        ties = _Candidates(xs, [torch.nonzero(x == value).squeeze(1) for x in xs])
        ties.lower(_rank(ties.vals, largest=False)[:excess], _below(value, xs[0].dtype))
    return value


class Thresholder:
    """Keeps a group of ScoreMasks at exactly `n_keep` scores >= their threshold t after every
    optimizer step: M = 1[S ≥ t] keeps the n_keep highest scores.

    The first call selects from scratch (`select`). Later calls take one step of fixed-size tensors
    from the previous threshold (`step`, `band.step`): the cut is found among the scores near t and
    t moves to the middle of the gap between the kept and the pruned scores there (kept scores sit
    in a tight cluster above it, and Adam moves every score by about ±lr per step: with t at the
    cluster's edge half of them would dip below it every step). Where kept and pruned scores tie at
    the cut, the pruned ones are lowered one step below it: no t could part them otherwise. A step
    that cannot see the cut says so, and `repair` selects from scratch; `fallbacks` counts those
    (rare: a benchmark reports them).
    """

    def __init__(self, params: Sequence[ScoreMask], n_keep: int):
        self.params = list(params)
        self.n_keep = n_keep
        self.total = sum(p.scores.numel() for p in self.params)
        if not 1 <= n_keep <= self.total:
            raise ConfigError(f"cannot keep {n_keep} of {self.total} weights")
        self.band: Band | None = None
        self._layout: list[tuple[int, torch.device, torch.dtype]] = []
        self.fallbacks = 0

    def __call__(self) -> None:
        rethreshold([self])

    @property
    def threshold(self) -> float | None:
        """t, read from the device (None before the first selection)."""
        return None if self.band is None else float(self.params[0].threshold)

    def _scores(self) -> list[Tensor]:
        """The group's scores as flat tensors: the model's one buffer when the group is all of it
        (global ranking: one count, one ranking, instead of one per matrix), else one per matrix.
        Both give the same selection: every step concatenates the matrices in this order. (A compiled
        step takes the buffer as `Rethreshold` left it: it gathers the scores eagerly before.)"""
        flat = self.params[0].flat
        whole = flat is not None and len(self.params) > 1 and flat.masks == self.params
        if whole and (torch.compiler.is_compiling() or flat.ensure()):
            return [flat.data]
        return [p.scores.detach().reshape(-1) for p in self.params]

    def ready(self) -> bool:
        """Whether `step` can go on from the last selection (not before the first, nor after the
        scores moved to another device or buffer)."""
        return self.band is not None and self._layout == _layout(self._scores())

    def _publish(self, t: Tensor) -> None:
        for p in self.params:
            p.threshold.copy_(t)

    def select(self) -> None:
        """From scratch: the exact selection (`_cut`), and t in the gap below it; the band's first
        width from the scores K/SIDE ranks either side."""
        xs = self._scores()
        value = _cut(xs, self.n_keep)  # ties lowered: the next value below is a pruned score's
        pruned = _kth_largest(xs, self.n_keep + 1) if self.n_keep < self.total else -math.inf
        dtype = xs[0].dtype
        t = between(torch.tensor(pruned, dtype=dtype), torch.tensor(value, dtype=dtype))
        self._publish(t)
        if self.ready():
            return
        self.band, self._layout = Band(xs), _layout(xs)
        if not self.band.whole:
            k = sum(self.band.caps) // SIDE
            hi = _kth_largest(xs, max(1, self.n_keep - k))
            lo = _kth_largest(xs, min(self.total, self.n_keep + k + 1))
            self.band.width.fill_(max(hi - float(t), float(t) - lo, 0.0))

    def step(self) -> Tensor:
        """One step of fixed-size tensors (`band.step`); returns whether it settled the group."""
        xs = self._scores()
        t = self.params[0].threshold
        ok, new_t = band_step(xs, self.band, t, self.n_keep, self.params[0].scratch)
        if new_t is not t:  # an eager CPU step hands back t itself where nothing moved
            self._publish(new_t)
        return ok

    def repair(self) -> None:
        """After a step that could not settle the group (it changed nothing, and widened or narrowed
        its band for the next time): the selection from scratch."""
        self.fallbacks += 1
        self.select()


def _layout(xs: list[Tensor]) -> list[tuple[int, torch.device, torch.dtype]]:
    return [(x.numel(), x.device, x.dtype) for x in xs]


class GroupThresholder:
    """Keeps one ScoreMask at exactly N scores >= t in every group of M (an N:M pattern), with one
    threshold per group: the N-th highest score of the group. Selected afresh after every step
    (a sort of M scores per group, in blocks of rows); ties keep the lower position, and a score
    that loses a tie is lowered one step below the cut, as `_cut` does."""

    def __init__(self, param: ScoreMask, nm: NM):
        self.param, self.nm = param, nm

    def __call__(self) -> None:
        rethreshold([self])

    def ready(self) -> bool:
        return True

    def step(self) -> Tensor:
        """Every group's cut afresh (fixed shapes, nothing read); returns whether all are finite."""
        scores, t = self.param.scores.detach(), self.param.threshold
        for r in row_blocks(scores):
            x = groups(scores[r], self.nm)  # a view: lowered ties land in the scores
            order = group_order(x)
            cut = x.gather(1, order[:, self.nm.n - 1 : self.nm.n])  # [groups, 1]
            losers = order[:, self.nm.n :]
            lost = x.gather(1, losers)
            x.scatter_(1, losers, torch.where(lost == cut, below_each(cut).expand_as(lost), lost))
            t[r] = cut.view(t[r].shape)
        return torch.isfinite(t).all()

    def repair(self) -> None:
        """A group's cut that is not finite: nothing to settle, the search diverged."""
        raise TicketlabError(DIVERGED)


def make_thresholders(
    params: Mapping[str, ScoreMask],
    sparsity: float,
    ranking: Ranking = "local",
    pattern: str | None = None,
    count: Count = "round",
) -> list[Thresholder | GroupThresholder]:
    """One Thresholder per matrix (local ranking) or one for all of them (global), each keeping what
    `count` leaves (`ranking.pruned_count`); with an N:M `pattern`, one GroupThresholder per matrix."""
    check_sparsity(sparsity)
    if (nm := parse_pattern(pattern)) is not None:
        return [GroupThresholder(p, nm) for p in params.values()]
    if ranking == "local":
        return [
            Thresholder([p], p.scores.numel() - pruned_count(sparsity, p.scores.numel(), count))
            for p in params.values()
        ]
    if ranking == "global":
        total = sum(p.scores.numel() for p in params.values())
        return [Thresholder(list(params.values()), total - pruned_count(sparsity, total, count))]
    raise ConfigError(f"ranking must be 'local' or 'global', got {ranking!r}")


@torch.no_grad()
def rethreshold(thresholders: Sequence[Thresholder | GroupThresholder]) -> None:
    """Re-derive every threshold from its scores (exact sparsity); call after every optimizer step.

    Every group takes its step of fixed-size tensors (`settle`), and one read of their flags says
    whether any could not settle (rarely: `Thresholder.repair`). A thresholder's first call, or one
    after its scores moved, selects from scratch."""
    Rethreshold(thresholders)()


class Rethreshold:
    """`rethreshold` as a callable, with `settle` compiled whole (`torch.compile(fullgraph=True)`)
    where `compile` says so: True for torch's default backend, or a backend's name. The selections
    from scratch and the repairs run eagerly, outside the compiled graph."""

    def __init__(self, thresholders: Sequence[Thresholder | GroupThresholder], compile: bool | str = False):
        self.thresholders = list(thresholders)
        self._settle = settle
        if compile is True:  # each cast to the scores' dtype rounds, as eagerly: t must be a bf16 value
            self._settle = torch.compile(settle, fullgraph=True, options={"emulate_precision_casts": True})
        elif compile:
            self._settle = torch.compile(settle, fullgraph=True, backend=compile)

    @torch.no_grad()
    def __call__(self, state: object = None) -> None:
        """After an optimizer step: `settle` (compiled or not) and `repair`; after a compiled whole
        step, `repair` only, with the flags its graph returned (`TrainState.in_graph`)."""
        flags = getattr(state, "in_graph", None)
        if flags is None:
            self.prepare()
            flags = self._settle(self.thresholders)
        repair(self.thresholders, flags)

    def prepare(self) -> None:
        """The selections from scratch that `settle` needs first (eager: their shapes vary)."""
        for t in self.thresholders:
            if not t.ready():
                t.select()

    def graph_hook(self) -> GraphHook:
        """The re-threshold inside a compiled whole step (`train.whole_step`): `prepare` before the
        graph, `settle` in it; `__call__` then repairs with its flags."""
        return GraphHook(prepare=self.prepare, inside=lambda: settle(self.thresholders))


def settle(thresholders: Sequence[Thresholder | GroupThresholder]) -> Tensor:
    """The re-threshold's part of fixed shapes, which reads nothing back to the host (a compiled
    step holds it whole): every group's step; returns their flags ([groups] bool, on the device).
    Every Thresholder must be `ready`."""
    return torch.stack([t.step() for t in thresholders])


@torch.no_grad()
def repair(thresholders: Sequence[Thresholder | GroupThresholder], ok: Tensor) -> None:
    """After `settle`: one read of its flags, and the groups it could not settle settled (rare)."""
    if bool(ok.all()):
        return
    for t, good in zip(thresholders, ok.tolist(), strict=True):
        if not good:
            t.repair()
