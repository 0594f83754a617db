"""Turning scores into an exact-sparsity mask: keep the highest-scoring weights.

Every unstructured method reduces to this: OMP ranks |W|, random pruning ranks random numbers, TAMT
ranks its learned scores, IMP ranks |W| with the already-pruned weights at -inf. `local` ranking
prunes round(s·n) weights of each matrix; `global` prunes round(s·N) over all targets together
(`count="floor"`: int(s·n), TAMT's masker's count, `pruned_count`).
Selection is by `topk` indices, not by a threshold, so ties (e.g. TAMT's two-valued initial scores)
never change the count. An N:M `pattern` ranks inside each group of M instead (`masks.pattern`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..core.errors import ConfigError
from ..masks import Mask
from ..masks.nm import keep_top_groups
from ..masks.pattern import check_divisible, parse_pattern, pattern_sparsity
from .options import Count, Ranking


def check_sparsity(sparsity: float) -> float:
    if not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise ConfigError(
            f"sparsity must be a fraction in [0, 1) (0.7 = 70% of weights zero), got {sparsity!r}"
        )
    return float(sparsity)


def pruned_count(sparsity: float, n: int, count: Count = "round") -> int:
    """How many of `n` weights `sparsity` prunes: round(s·n), as torch's pruning (Chen et al.'s code),
    or int(s·n) with `count="floor"`, as TAMT's masker (70% of 32x32: 717 or 716 weights)."""
    if count == "round":
        return round(sparsity * n)
    if count == "floor":
        return int(sparsity * n)
    raise ConfigError(f"count must be 'round' or 'floor', got {count!r}")


def _keep_top_flat(flat: Tensor, n_keep: int) -> Tensor:
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if n_keep > 0:
        keep[torch.topk(flat, n_keep, sorted=False).indices] = True
    return keep


def keep_top(
    scores: Mapping[str, Tensor],
    sparsity: float | None,
    ranking: Ranking = "local",
    pattern: str | None = None,
    count: Count = "round",
) -> Mask:
    """A mask keeping the highest scores, pruning exactly round(sparsity · n) weights (int(·) with
    `count="floor"`); with an N:M `pattern`, the N highest of every M (sparsity None or 1 - N/M)."""
    sparsity = check_sparsity(pattern_sparsity(sparsity, pattern, ranking))
    if (nm := parse_pattern(pattern)) is not None:
        check_divisible({k: tuple(s.shape) for k, s in scores.items()}, nm)
        return Mask({name: keep_top_groups(s, nm) for name, s in scores.items()})
    if ranking == "local":
        out = {}
        for name, s in scores.items():
            n_keep = s.numel() - pruned_count(sparsity, s.numel(), count)
            out[name] = _keep_top_flat(s.detach().reshape(-1), n_keep).reshape(s.shape)
        return Mask(out)
    if ranking == "global":
        flat = torch.cat([s.detach().reshape(-1).float() for s in scores.values()])
        keep = _keep_top_flat(flat, flat.numel() - pruned_count(sparsity, flat.numel(), count))
        out, start = {}, 0
        for name, s in scores.items():
            out[name] = keep[start : start + s.numel()].reshape(s.shape)
            start += s.numel()
        return Mask(out)
    raise ConfigError(f"ranking must be 'local' or 'global', got {ranking!r}")
