"""One step of the exact re-threshold in tensors of fixed sizes (`thresholds.Thresholder`): after an
optimizer step, the threshold t of a group of scores moves so that exactly n_keep of them are >= t,
with no shape that depends on the scores. The same operations run on a CPU and a GPU, eagerly or in a
compiled step (`torch.compile(fullgraph=True)`), whose operations a CUDA graph can hold.

A step (`step`):

1. counts the scores >= t, one pass over them. Where that is n_keep the kept set is exact as it is
   and nothing more is done: the common case early in a search and whenever t lies in a gap.
2. Otherwise (`_settle`) it takes the band [t - D, t + D): the positions of its scores, at most K
   of them per tensor (`capacity`, `torch.nonzero_static`), their values, and on the side of t
   where the cut moved (above t when too many are kept, below when too few): the |kept - n_keep|
   scores nearest t change sides, and the new cut lies between the last of them and the next one
   (two `torch.kthvalue` of a fixed rank); t moves to the middle of that gap.
3. Where those two tie, the tie's losers (the higher positions, as `thresholds._cut` breaks ties)
   are lowered one step below t, by one write of the K band positions.
4. D is set for the next time from the density of scores the band held: each side holding about
   K/SIDE scores, or twice the scores that changed sides.

On a CPU, eagerly, the count, the band's comparisons and its positions go through numpy, whose
comparisons into bytes are vectorised (`Scratch.count_at_least`, `Scratch.within`, `_positions`).

Whether step 2 runs is the one decision that depends on the scores: a compiled step makes it with
`torch.cond` (a conditional node in a CUDA graph), an eager CPU step reads the count (a CPU has no
queue to drain), and an eager GPU step runs step 2 for every group (it changes nothing where
nothing moved), reading nothing. The step returns a flag: false where the band could not show the
cut (it held more than K scores, or the cut lay beyond it), in which case it changed nothing and the
caller settles that group from scratch (`Thresholder.repair`), a rare event that widens D for the
next time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .masked_layers import Scratch

SIDE = 2  # the band [t, t + D) or [t - D, t) holds about K/SIDE scores, or twice those that move
READS_COUNT = {"cpu"}  # devices whose eager step reads the count (free on a CPU; tests empty it)
_TRUE = torch.ones((), dtype=torch.bool)  # the flag of a CPU group that nothing moved (never written)
_MIN_CAP = 2048  # band positions per tensor, at least (a tensor that small is all band)
_CAP_FRACTION = 128  # and one per this many scores of a larger tensor


def capacity(n: int) -> int:
    """The number of band positions K of a flat tensor of n scores (all of them when n is small)."""
    return min(n, max(_MIN_CAP, n // _CAP_FRACTION))


class Band:
    """A group's band: K per flat tensor (`caps`) and its half-width D (0-d float32, infinite where
    every score is in the band)."""

    def __init__(self, xs: Sequence[Tensor]):
        self.caps = [capacity(x.numel()) for x in xs]
        self.whole = all(k == x.numel() for k, x in zip(self.caps, xs, strict=True))
        self.width = torch.tensor(math.inf if self.whole else 0.0, device=xs[0].device)


def edges(t: Tensor, width: Tensor) -> tuple[Tensor, Tensor]:
    """[t - width, t + width) in t's dtype, at least one value of the dtype either side of t."""
    lo = (t.float() - width).to(t.dtype)
    hi = (t.float() + width).to(t.dtype)
    return torch.minimum(lo, adjacent(t, down=True)), torch.maximum(hi, adjacent(t, down=False))


_BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def adjacent(x: Tensor, *, down: bool) -> Tensor:
    """The next value of x's dtype below (`down`) or above each of x (finite x), from its bits: as
    `torch.nextafter`, but exact in a compiled graph too (which may compute a bf16 nextafter in
    float32, where the step is 2^16 times smaller and rounds away)."""
    bits = x.view(_BITS[x.dtype])
    away = (x > 0) != down  # the magnitude grows: one more in its bits (sign and magnitude)
    b = torch.where(away, bits + 1, bits - 1).view(x.dtype)
    smallest = torch.full_like(x, -1.0 if down else 1.0) * torch.finfo(x.dtype).smallest_normal
    return torch.where(x == 0, smallest, b)


def between(lo: Tensor, hi: Tensor) -> Tensor:
    """A threshold t with lo < t <= hi (both in the scores' dtype; t = hi when lo == hi, or when no
    value of the dtype lies strictly between): their midpoint rounded to the dtype."""
    mid = ((lo.double() + hi.double()) * 0.5).to(hi.dtype)
    return torch.where((lo < mid) & (mid <= hi), mid, hi)


def below_each(x: Tensor) -> Tensor:
    """The highest value of x's dtype below each of x, short of the subnormals (which a CPU's
    flush-to-zero mode would compare as 0)."""
    b = adjacent(x, down=True)
    tiny = torch.finfo(x.dtype).tiny
    return torch.where(b.abs() < tiny, torch.where(x > 0, 0.0, -tiny).to(x.dtype), b)


def step(xs: Sequence[Tensor], band: Band, t: Tensor, n_keep: int, scratch: Scratch) -> tuple[Tensor, Tensor]:
    """One re-threshold of the group `xs` (flat tensors, ranked together) whose threshold is t (0-d,
    their dtype): lowers the losers of a tie at the new cut in place, sets the band's next width, and
    returns (ok, new t). Where not ok nothing changed: t is returned as it was (an eager CPU step
    that nothing moved returns t itself, so that the caller need not copy it)."""
    if t.device.type in READS_COUNT and not torch.compiler.is_compiling():
        kept = sum(scratch.count_at_least(x, t) for x in xs)  # #{S >= t}, read: free on a CPU
        if kept == n_keep:
            return _TRUE, t
        kept = torch.tensor(kept)
    else:
        kept = sum(scratch.counts_at_least(x, t.view(1)) for x in xs)[0]
    moved = kept != n_keep

    def settle(t: Tensor, kept: Tensor, width: Tensor, *xs: Tensor):
        return _settle(xs, band, t, kept, width, n_keep, scratch)

    def unmoved(t: Tensor, kept: Tensor, width: Tensor, *xs: Tensor):
        pos = [torch.zeros(k, dtype=torch.int64, device=t.device) for k in band.caps]
        return (
            torch.ones((), dtype=torch.bool, device=t.device),
            t.clone(),
            width.clone(),
            pos,
            [x[p] for x, p in zip(xs, pos, strict=True)],
        )

    operands = (t, kept, band.width, *xs)
    if torch.compiler.is_compiling():
        ok, new_t, width, pos, vals = torch.cond(moved, settle, unmoved, operands)
    else:  # a GPU settles every group (nothing changes where nothing moved) rather than wait for a read
        ok, new_t, width, pos, vals = settle(*operands)
    for x, p, v in zip(xs, pos, vals, strict=True):
        x.index_copy_(0, p, v)  # a position written twice gets one value twice
    band.width.copy_(width)
    return ok, new_t


def _gather(xs: Sequence[Tensor], caps: Sequence[int], lo: Tensor, hi: Tensor, scratch: Scratch):
    """The band's positions in each tensor ([K_i], ascending, -1 where unused), its values and
    which are used ([K] over the group), and whether some tensor's band may hold more than K_i."""
    pos = [_positions(scratch.within(x, lo, hi), k) for x, k in zip(xs, caps, strict=True)]
    full = [p[-1] >= 0 for p, x in zip(pos, xs, strict=True) if p.numel() < x.numel()]
    over = torch.stack(full).any() if full else torch.zeros((), dtype=torch.bool, device=lo.device)
    vals = torch.cat([x.index_select(0, p.clamp(min=0)) for x, p in zip(xs, pos, strict=True)])
    return pos, vals, torch.cat([p >= 0 for p in pos]), over


def _positions(mask: Tensor, k: int) -> Tensor:
    """The first k positions of the True values of the flat bool `mask` ([k], -1 where fewer). On a
    CPU, eagerly, through numpy's `flatnonzero` (a vectorised scan; with the band's comparisons
    through numpy too, settling BERT-base's first two layers took 50 ms a step against 88); elsewhere
    in a shape that does not depend on mask."""
    if mask.device.type != "cpu" or torch.compiler.is_compiling():
        return torch.nonzero_static(mask, size=k, fill_value=-1).squeeze(1)
    found = np.flatnonzero(mask.numpy())[:k]
    pos = torch.full((k,), -1, dtype=torch.int64)
    pos[: found.size] = torch.from_numpy(found)
    return pos


def _kth_nearest(near: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
    """The f-th and (f+1)-th largest of `near` ([K]; f a 0-d count, 1 <= f < K for a use): the
    first by one selection of a fixed rank (K - f copies of +inf put before it, f of -inf after),
    the second the same value where more than f are at least it (a tie), else the largest below."""
    k = near.numel()
    pad = torch.where(torch.arange(k, device=near.device) < k - f, math.inf, -math.inf).to(near.dtype)
    last = torch.kthvalue(torch.cat([near, pad]), k + 1).values  # the K-th largest: near's f-th
    below = torch.where(near < last, near, -math.inf).max()
    return last, torch.where((near >= last).sum() > f, last, below)


def _settle(
    xs: Sequence[Tensor], band: Band, t: Tensor, kept: Tensor, width: Tensor, n_keep: int, scratch: Scratch
):
    """Step 2-4 of the module's docstring, as a function of its operands (it writes nothing: a
    `torch.cond` branch may not): (ok, new t, new width, band positions per tensor, their values)."""
    total = sum(x.numel() for x in xs)
    drop = kept > n_keep  # too many kept: the cut is in [t, t + D), else (too few) in [t - D, t)
    lo, hi = edges(t, width)
    lo, hi = torch.where(drop, t, lo), torch.where(drop, hi, t)
    pos, vals, used, over = _gather(xs, band.caps, lo, hi, scratch)
    inside = used.sum()
    above = torch.where(drop, kept - inside, kept)  # the scores above the band
    flips = (kept - n_keep).abs()  # the scores nearest t that change sides
    near = torch.where(used, torch.where(drop, -vals, vals), -math.inf)  # nearest to t first
    last, after = _kth_nearest(near, flips)  # the last to change sides, and the next, which stays
    none_below = ~drop & (flips == inside) & (kept + inside == total)  # no score below the band
    after = torch.where(none_below, -math.inf, after)
    lowest_kept = torch.where(drop, -after, last)
    highest_pruned = torch.where(drop, -last, after)
    fits = (flips < inside) | none_below
    moved = flips > 0
    ok = ~moved | (~over & fits & torch.isfinite(lowest_kept))
    tie = moved & ok & (highest_pruned == lowest_kept)
    new_vals = _lower_losers(vals, used, n_keep - above, lowest_kept, tie)
    density = inside.float() / (hi.float() - lo.float())  # scores per unit of score beside t
    target = (2.0 * flips.float()).clamp(min=sum(band.caps) / SIDE)  # scores the band should hold
    fitted = (target / density.clamp(min=1e-30)).clamp(width / 2, width * 4)  # narrowing slowly
    new_width = torch.where(ok, fitted, torch.where(over, width / 4, width * 4))
    new_width = torch.where(torch.isfinite(width), new_width, width)  # the whole group: stays whole
    new_t = torch.where(moved & ok, between(highest_pruned, lowest_kept), t)
    writes = [_writes(p, v) for p, v in zip(pos, new_vals.split(band.caps), strict=True)]
    return ok, new_t, new_width, [w[0] for w in writes], [w[1] for w in writes]


def _lower_losers(vals: Tensor, side: Tensor, r: Tensor, cut: Tensor, tie: Tensor) -> Tensor:
    """The band's values ([K], in position order) with, where `tie`, the side's scores equal to
    `cut` beyond the first r - #{side > cut} of them (r: the kept rank of `cut` in the side) lowered
    one step below it."""
    equal = side & (vals == cut)
    keep = r - (side & (vals > cut)).sum()  # how many of the tied scores stay
    lose = tie & equal & (equal.cumsum(0) > keep)
    return torch.where(lose, below_each(cut), vals)


def _writes(pos: Tensor, vals: Tensor) -> tuple[Tensor, Tensor]:
    """One tensor's band write: unused slots write the first slot's value to its position again
    (every slot of a fixed-size write must go somewhere, and a repeat of the same value is harmless)."""
    first = pos[0].clamp(min=0)
    return torch.where(pos >= 0, pos, first), torch.where(pos >= 0, vals, vals[0])
