"""The exact thresholds of TAMT's masks (`tamt.py`): after every optimizer step, exactly n_keep
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

The selection is exact and avoids sorting all scores every step (`Thresholder`): it starts from the
previous threshold, counts the scores above it, and ranks only the few scores near it that must
enter or leave. From scratch (first step, after a resume), the k-th largest score is bracketed from
a strided sample, checked by counting, and found by `kthvalue` inside the bracket.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..core.errors import ConfigError, TicketlabError
from ..masks.nm import group_order, groups
from ..masks.pattern import NM, parse_pattern
from .masked_layers import row_blocks
from .ranking import Count, Ranking, check_sparsity, pruned_count
from .scores import ScoreMask

# --------------------------------------------------------------------------- exact selection

_SMALL = 1 << 18  # below this many scores a plain kthvalue over all of them is as fast
DIVERGED = "mask scores are not finite: the search diverged (try a lower --lr)"
_SAMPLE = 1 << 16


def _kth_largest(xs: list[Tensor], k: int) -> tuple[float, float | None]:
    """The exact k-th largest value over all of `xs` (flat, 1 <= k <= total), and the density of
    values around it (values per unit, None when unknown): a bracket from a strided sample,
    checked by counting, then `kthvalue` over the values inside the bracket only."""
    n = sum(x.numel() for x in xs)
    q = n - k + 1  # its rank from the bottom, 1-based
    if n <= _SMALL:
        return float(torch.cat(xs).kthvalue(q).values), None
    stride = max(1, n // _SAMPLE)
    sample = torch.cat([x[::stride] for x in xs])
    m = sample.numel()
    pos = (q - 0.5) / n * m
    margin = 4.0 * math.sqrt(m) + 16.0
    while True:
        lo_i, hi_i = math.floor(pos - margin), math.ceil(pos + margin)
        if lo_i < 1 and hi_i > m:
            return float(torch.cat(xs).kthvalue(q).values), None
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
            width = hi - lo
            density = band.numel() / width if 0 < width < math.inf else None
            return float(band.kthvalue(q - below).values), density
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
    return float(_below_each(torch.tensor(t, dtype=dtype)))


def _below_each(x: Tensor) -> Tensor:
    """`_below` of every value of `x`, in its dtype."""
    b = torch.nextafter(x, torch.full_like(x, -math.inf))
    tiny = torch.finfo(x.dtype).tiny
    return torch.where(b.abs() < tiny, torch.where(x > 0, 0.0, -tiny).to(x.dtype), b)


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
    value, _ = _kth_largest(xs, n_keep)
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

    The first call selects from scratch (`_cut`). Later calls start from the previous threshold:
    one pass counts c = #{S >= t}; if c != n_keep, only the scores just above t (c > n_keep) or just
    below it (c < n_keep) are ranked, and |c - n_keep| of them are dropped or added. The result is
    the set a fresh selection gives (same tie rule); the cost is a pass over the scores instead of a
    selection over all of them. After an adjustment t moves to the middle of the gap between kept
    and pruned scores: kept scores sit in a tight cluster above it (Adam moves every score by about
    ±lr per step), so with t at the cluster's edge half of them would dip below t at every step and
    have to be re-ranked back in. Where kept and pruned scores tie at the cut, the pruned ones are
    lowered one step below it: no t could part them otherwise.
    """

    def __init__(self, params: Sequence[ScoreMask], n_keep: int):
        self.params = list(params)
        self.n_keep = n_keep
        self.total = sum(p.scores.numel() for p in self.params)
        if not 1 <= n_keep <= self.total:
            raise ConfigError(f"cannot keep {n_keep} of {self.total} weights")
        self.threshold: float | None = None
        self.density: float | None = None  # scores per unit of score around the threshold

    def __call__(self) -> None:
        rethreshold([self])

    def _scores(self) -> list[Tensor]:
        """The group's scores as flat tensors: the model's one buffer when the group is all of it
        (global ranking: one count, one ranking, instead of one per matrix), else one per matrix.
        Both give the same selection: every step concatenates the matrices in this order."""
        flat = self.params[0].flat
        if flat is not None and len(self.params) > 1 and flat.masks == self.params and flat.ensure():
            return [flat.data]
        return [p.scores.detach().reshape(-1) for p in self.params]

    def _publish(self, t: float) -> None:
        self.threshold = t
        for p in self.params:
            p.threshold.fill_(t)

    def _select(self) -> None:
        self._publish(_cut(self._scores(), self.n_keep))

    def _count(self) -> Tensor:
        """#{S >= t} over the group, on the scores' device (not read here: `rethreshold` reads all
        counts at once)."""
        scratch = self.params[0].scratch
        return sum(scratch.count_at_least(x, self.threshold) for x in self._scores())


STATIC_ON_CPU = False  # a CPU finds band positions faster by `nonzero`; tests set it


def _stacked(xs: list[Tensor]) -> Tensor:
    """The tensors `xs` stacked on the first one's device, to be read from it in one host read."""
    return torch.stack([x.to(xs[0].device) for x in xs])


def _positions(masks: list[Tensor]) -> list[Tensor]:
    """The positions of the True values of each flat mask. On a GPU all their counts come in one
    host read, and each mask's positions are then taken at a known size (`nonzero_static`: no read
    of its own, where a plain `nonzero` reads its count). A CPU's reads cost nothing: `nonzero`,
    one pass fewer."""
    if masks[0].device.type == "cpu" and not STATIC_ON_CPU:
        return [torch.nonzero(m).squeeze(1) for m in masks]
    sizes = _stacked([m.sum() for m in masks]).tolist()  # one host read for all
    return [torch.nonzero_static(m, size=c).squeeze(1) for m, c in zip(masks, sizes, strict=True)]


def _adjust(work: Sequence[tuple[Thresholder, int]]) -> None:
    """Settle every thresholder of `work` (with its surplus: kept - n_keep, not 0) at exactly n_keep.

    For each: the scores in [t, t + δ) (surplus > 0: kept, to drop) or in [t - δ, t) (surplus < 0:
    pruned, to add), δ from the density of scores around t and widened until the band holds enough;
    the band ranked (`_rank`), |surplus| of it flipped, and t moved between the last flipped and
    the first left. All thresholders are settled together so that a GPU is read once per widening
    of the bands (usually once) and once for the scores at the new cuts, not twice per matrix (about
    100 reads a BERT-base step, each waiting for the GPU's queue to drain). Each thresholder gets
    the selection it would get alone. The bands' boolean masks are held together for that, up to a
    byte per score of the moved matrices, after the backward has freed its activations."""
    xs = [t._scores() for t, _ in work]
    bands = _bands(work, xs)
    cands, orders, cuts = [], [], []
    for (_, surplus), x, (idx, lo) in zip(work, xs, bands, strict=True):
        n, cand = abs(surplus), _Candidates(x, idx)
        order = _rank(cand.vals, largest=surplus < 0)  # the ones to flip first
        if n < order.numel():  # the last flipped and the first left, at the new cut
            cut = cand.vals[order[n - 1 : n + 1]]
            cut = cut if surplus < 0 else cut.flip(0)  # (lowest kept, highest pruned)
        else:  # the whole band joined (surplus < 0): the highest pruned score lies below it
            below = torch.stack([v.masked_fill(v >= lo, -math.inf).max() for v in x]).max()
            cut = torch.stack([cand.vals[order[n - 1]], below])
        cands.append(cand)
        orders.append(order)
        cuts.append(cut if cut.dtype == torch.float64 else cut.float())  # float32 holds bf16 exactly
    cuts = _stacked(cuts).tolist()  # one host read for all
    for (t, surplus), cand, order, (lowest_kept, highest_pruned) in zip(
        work, cands, orders, cuts, strict=True
    ):
        if not math.isfinite(lowest_kept):
            raise TicketlabError(DIVERGED)
        dtype = t.params[0].scores.dtype
        if highest_pruned == lowest_kept:  # a tie at the cut (only band scores can be at it)
            n = abs(surplus)
            pruned = order[:n] if surplus > 0 else order[n:]
            cand.lower(pruned[cand.vals[pruned] == lowest_kept], _below(lowest_kept, dtype))
        t._publish(_between(highest_pruned, lowest_kept, dtype))


def _bands(
    work: Sequence[tuple[Thresholder, int]], xs: list[list[Tensor]]
) -> list[tuple[list[Tensor], float]]:
    """For each thresholder of `_adjust`: the positions of its band's scores in each of its flat
    tensors, enough of them to settle its surplus and find the new threshold, and the band's lower
    edge. One host read per widening of all the bands still short (usually one in all)."""
    wanted = [abs(s) + (1 if s > 0 else 0) for _, s in work]
    delta = [
        2.0 * w / t.density if t.density else max(abs(t.threshold), 1e-3) * 1e-3
        for (t, _), w in zip(work, wanted, strict=True)
    ]
    out: list = [None] * len(work)
    short = list(range(len(work)))
    for _ in range(64):
        edges, masks = {}, {}
        for i in short:
            t, surplus = work[i]
            lo, hi = (
                (t.threshold, t.threshold + delta[i])
                if surplus > 0
                else (t.threshold - delta[i], t.threshold)
            )
            edges[i], masks[i] = lo, [(x >= lo) & (x < hi) for x in xs[i]]
        found = iter(_positions([m for i in short for m in masks[i]]))
        still = []
        for i in short:
            idx = [next(found) for _ in masks[i]]
            size = sum(j.numel() for j in idx)
            if size >= wanted[i]:
                work[i][0].density = size / delta[i]
                out[i] = (idx, edges[i])
            else:
                delta[i] *= 4.0
                still.append(i)
        if not still:
            return out
        short = still
    raise TicketlabError(DIVERGED)


def _between(lo: float, hi: float, dtype: torch.dtype = torch.float32) -> float:
    """A threshold t with lo < t <= hi (t = hi when lo == hi: a tie, whose pruned side `_adjust`
    has lowered below hi): the midpoint of the gap between the highest pruned and the lowest kept
    score, so that the next step's small score changes cross it rarely and the cheap path (count the
    scores >= t, nothing to rank) is the common one. The midpoint is rounded to the scores' `dtype`,
    as a comparison with them would round it; t = hi when no value of that dtype lies strictly
    between lo and hi."""
    mid = float(torch.tensor((lo + hi) / 2, dtype=dtype))
    return mid if lo < mid <= hi else hi


class GroupThresholder:
    """Keeps one ScoreMask at exactly N scores >= t in every group of M (an N:M pattern), with one
    threshold per group: the N-th highest score of the group. Selected afresh after every step
    (a sort of M scores per group, in blocks of rows); ties keep the lower position, and a score
    that loses a tie is lowered one step below the cut, as `_cut` does."""

    def __init__(self, param: ScoreMask, nm: NM):
        self.param, self.nm = param, nm

    def __call__(self) -> None:
        rethreshold([self])

    def select(self) -> None:
        scores, t = self.param.scores.detach(), self.param.threshold
        for r in row_blocks(scores):
            x = groups(scores[r], self.nm)  # a view: lowered ties land in the scores
            order = group_order(x)
            cut = x.gather(1, order[:, self.nm.n - 1 : self.nm.n])  # [groups, 1]
            losers = order[:, self.nm.n :]
            lost = x.gather(1, losers)
            x.scatter_(1, losers, torch.where(lost == cut, _below_each(cut).expand_as(lost), lost))
            t[r] = cut.view(t[r].shape)
        if not bool(torch.isfinite(t).all()):
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

    The counts of all groups are read from the device at once: on a GPU each read is a host
    synchronisation, which stalls the CPU until the GPU's queue is empty (BERT-base: 1 read per
    step instead of 73). Matrices whose counts moved are settled together (`_adjust`): one more read
    per widening of their bands, and one for their new cuts, whatever their number."""
    todo = []
    for t in thresholders:
        if isinstance(t, GroupThresholder):  # N:M: every group's cut, afresh
            t.select()
        elif t.threshold is None:
            t._select()
        else:
            todo.append(t)
    if todo:
        counts = _segment_counts(todo)
        if counts is None:
            counts = _stacked([t._count() for t in todo])
        if work := [(t, k - t.n_keep) for t, k in zip(todo, counts.tolist(), strict=True) if k != t.n_keep]:
            _adjust(work)


SEGMENTED_ON_CPU = False  # a CPU counts faster per matrix (`Scratch.count_at_least`); tests set it


def _segment_counts(todo: Sequence[Thresholder]) -> Tensor | None:
    """#{S >= t} of every matrix of `todo` (local ranking: one matrix each, all of one `FlatScores`),
    in a few passes over the flat buffer instead of two launches per matrix: the buffer as rows,
    each compared with its matrix's threshold, the rows' counts summed per matrix. None where it
    does not apply (then each thresholder counts its own)."""
    flat = todo[0].params[0].flat
    if flat is None or any(len(t.params) != 1 or t.params[0].flat is not flat for t in todo):
        return None
    if (flat.data.device.type == "cpu" and not SEGMENTED_ON_CPU) or not flat.ensure():
        return None
    layout = flat.rows()
    if layout is None:
        return None
    width, which = layout
    data = flat.data.view(-1, width)  # [rows, width]
    cut = torch.full((len(flat.masks),), math.inf, dtype=data.dtype)  # exact: t is a value of the dtype
    cut[[t.params[0].index for t in todo]] = torch.tensor([t.threshold for t in todo], dtype=data.dtype)
    cut = cut.to(data.device, non_blocking=True)[which]  # [rows]
    per_row = torch.empty(data.shape[0], dtype=torch.int64, device=data.device)
    step = max(1, (16 << 20) // width)  # rows per pass: a bool temporary of at most 16 MB
    for i in range(0, data.shape[0], step):
        torch.sum(data[i : i + step] >= cut[i : i + step, None], dim=1, out=per_row[i : i + step])
    counts = torch.zeros(len(flat.masks), dtype=torch.int64, device=data.device)
    counts.index_add_(0, which, per_row)
    return counts[[t.params[0].index for t in todo]]
