"""One step of the exact re-threshold in tensors of fixed sizes (`thresholds.Thresholder`): after an
optimizer step, the threshold t of a group of scores moves so that exactly n_keep of them are >= t,
with no shape that depends on the scores and nothing read back to the host. The same operations run
on a CPU and a GPU, eagerly or inside a compiled step (`torch.compile(fullgraph=True)`), whose
operations a CUDA graph can hold.

Adam moves every score by about ±lr a step, so the new cut lies near the old one. A group keeps K
*candidates* (K fixed per tensor, `capacity`): the positions of the scores that lay within ±W of t
when they were last collected (`collect`, W = SPAN·D). A step (`step`):

1. counts, in one pass over the scores, a = #{S >= t + D} and b = #{t - D <= S < t + D}: the band,
   whose width D is set so that it holds about K/FILL scores;
2. reads the candidates' K scores and checks that the band's b scores are all among them (the
   candidates in the band number b);
3. sorts the band's values (K, the other candidates at -inf): the new cut is at rank n_keep - a,
   between the lowest kept and the highest pruned score, and t moves to the middle of that gap;
4. where those two tie, lowers the tie's losers (the higher positions, as `thresholds._cut` does) one
   step below t, in one write of the K candidates;
5. sets D for the next step from the density of scores the band held.

When the band's scores are not all candidates (the cut moved by about W - D since they were
collected) or the cut lies outside the band, the step changes nothing and says so in its flag: the
caller collects the candidates afresh, steps again, and only when that fails as well (more scores
tied at the cut than K, or a jump of the cut beyond the band) selects from scratch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .masked_layers import Scratch

FILL = 8  # the band holds about K / FILL scores: the cut can move K / (2 FILL) ranks a step in it
SPAN = 3.0  # candidates are collected within ±SPAN·D of t: the band can drift (SPAN - 1)·D before
_MIN_CAP = 2048  # candidates per tensor, at least (a tensor that small is all candidates)
_CAP_FRACTION = 128  # and one per this many scores of a larger tensor


def capacity(n: int) -> int:
    """The number of candidates K of a flat tensor of n scores (all of them when n is small)."""
    return min(n, max(_MIN_CAP, n // _CAP_FRACTION))


class Band:
    """A group's candidates (positions per flat tensor, -1 where unused, ascending) and the band's
    half-width D (0-d float32; infinite where every score is a candidate: the band is all of them)."""

    def __init__(self, xs: Sequence[Tensor]):
        device = xs[0].device
        self.caps = [capacity(x.numel()) for x in xs]
        self.whole = all(k == x.numel() for k, x in zip(self.caps, xs, strict=True))
        self.cands = [
            torch.arange(k, device=device) if k == x.numel() else torch.full((k,), -1, device=device)
            for k, x in zip(self.caps, xs, strict=True)
        ]
        self.width = torch.tensor(math.inf if self.whole else 0.0, device=device)

    def collect(self, xs: Sequence[Tensor], t: Tensor) -> None:
        """Take as candidates the scores within SPAN·D above t and those within SPAN·D below it
        (K/2 each, the first ones where more), in position order."""
        if self.whole:
            return
        lo, hi = edges(t, self.width * SPAN)
        for i, x in enumerate(xs):
            k, n = self.caps[i], x.numel()
            if k < n:
                sides = [(x >= t) & (x < hi), (x >= lo) & (x < t)]
                found = [
                    torch.nonzero_static(m, size=s, fill_value=n).squeeze(1)
                    for m, s in zip(sides, (k // 2, k - k // 2), strict=True)
                ]
                pos = torch.sort(torch.cat(found)).values  # unused slots (n) last
                self.cands[i] = torch.where(pos < n, pos, -1)


def edges(t: Tensor, width: Tensor) -> tuple[Tensor, Tensor]:
    """[t - width, t + width) in t's dtype, at least one value of the dtype either side of t."""
    lo = (t.float() - width).to(t.dtype)
    hi = (t.float() + width).to(t.dtype)
    lo = torch.minimum(lo, torch.nextafter(t, torch.full_like(t, -math.inf)))
    hi = torch.maximum(hi, torch.nextafter(t, torch.full_like(t, math.inf)))
    return lo, hi


def _counts(xs: Sequence[Tensor], cuts: Tensor, scratch: Scratch) -> Tensor:
    """#{S >= c} over all of `xs` for each c of `cuts`: [k] int64 on their device."""
    return sum(scratch.counts_at_least(x, cuts) for x in xs)


def _read(xs: Sequence[Tensor], cands: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """The candidates' scores ([K] in all, in the group's order) and which candidates are used."""
    used = torch.cat([c >= 0 for c in cands])
    vals = torch.cat([x[c.clamp(min=0)] for x, c in zip(xs, cands, strict=True)])
    return vals, used


def between(lo: Tensor, hi: Tensor) -> Tensor:
    """A threshold t with lo < t <= hi (both in the scores' dtype; t = hi when lo == hi, or when no
    value of the dtype lies strictly between): their midpoint rounded to the dtype, as `_between`."""
    mid = ((lo.double() + hi.double()) * 0.5).to(hi.dtype)
    return torch.where((lo < mid) & (mid <= hi), mid, hi)


def below_each(x: Tensor) -> Tensor:
    """The highest value of x's dtype below each of x, short of the subnormals (which a CPU's
    flush-to-zero mode would compare as 0)."""
    b = torch.nextafter(x, torch.full_like(x, -math.inf))
    tiny = torch.finfo(x.dtype).tiny
    return torch.where(b.abs() < tiny, torch.where(x > 0, 0.0, -tiny).to(x.dtype), b)


def step(xs: Sequence[Tensor], band: Band, t: Tensor, n_keep: int, scratch: Scratch) -> tuple[Tensor, Tensor]:
    """One re-threshold of the group `xs` (flat tensors, ranked together) whose threshold is t (0-d,
    their dtype): lowers the losers of a tie at the new cut in place, sets the band's next width, and
    returns (ok, new t). Where not ok nothing changed: t is returned as it was."""
    total = sum(x.numel() for x in xs)
    lo, hi = edges(t, band.width)
    n_lo, kept, n_hi = _counts(xs, torch.stack([lo, t, hi]), scratch)  # #{S >= lo}, #{S >= t}, #{S >= hi}
    drop = kept > n_keep  # too many kept: the cut is in [t, hi), else (too few) in [lo, t)
    above = torch.where(drop, n_hi, kept)  # the scores above the side of the band searched
    inside = torch.where(drop, kept - n_hi, n_lo - kept)  # and in it
    vals, used = _read(xs, band.cands)  # [K]
    in_band = used & torch.where(drop, (vals >= t) & (vals < hi), (vals >= lo) & (vals < t))
    covered = in_band.sum() == inside  # every score of that side is a candidate
    ranked = torch.sort(torch.where(in_band, vals, -math.inf), descending=True).values  # [K]
    r = n_keep - above  # the rank of the lowest kept score inside the side, from 1
    k = ranked.numel()
    lowest_kept = ranked[(r - 1).clamp(0, k - 1)]
    highest_pruned = torch.where(r < inside, ranked[r.clamp(0, k - 1)], -math.inf)
    fits = (r >= 1) & (r <= inside) & ((r < inside) | (above + inside == total))
    moved = kept != n_keep  # else the kept set is exact as it is, and t stays
    ok = ~moved | (covered & fits & torch.isfinite(lowest_kept))
    _lower_losers(xs, band, vals, in_band, r, lowest_kept, moved & ok & (highest_pruned == lowest_kept))
    density = (n_lo - n_hi).float() / (hi.float() - lo.float())  # scores per unit of score near t
    width = (sum(band.caps) / FILL) / (2.0 * density.clamp(min=1e-30))
    width = torch.minimum(torch.maximum(width, band.width / 4), band.width * 4)
    band.width.copy_(torch.where(ok & torch.isfinite(band.width), width, band.width))
    return ok, torch.where(moved & ok, between(highest_pruned, lowest_kept), t)


def _lower_losers(
    xs: Sequence[Tensor], band: Band, vals: Tensor, in_band: Tensor, r: Tensor, cut: Tensor, tie: Tensor
) -> None:
    """Where `tie`: the band's scores equal to `cut` beyond the first r - #{band > cut} of them (the
    candidates are in position order) lowered one step below it; the other candidates written back
    as they are (a write of fixed size)."""
    equal = in_band & (vals == cut)
    keep = r - (in_band & (vals > cut)).sum()  # how many of the tied scores stay
    lose = tie & equal & (equal.cumsum(0) > keep)
    new = torch.where(lose, below_each(cut), vals)  # [K]
    for x, c, v in zip(xs, band.cands, new.split(band.caps), strict=True):
        first = c[0].clamp(min=0)  # unused slots write the first slot's value to its position again
        pos = torch.where(c >= 0, c, first)
        x.index_put_((pos,), torch.where(c >= 0, v, v[0]))
