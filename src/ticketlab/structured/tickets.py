"""Structured tickets from importance scores: winning, losing and random (Liang et al. 2021 §3, §5.4).

At a level p in (0, 1), one-shot pruning removes round(p · n) of the n heads of the whole model and
round(p · m) of its m FFN units (FFN sub-layers, or neurons at the "neuron" granularity), each set
ranked over all layers together:

* winning: the units with the *lowest* importance are pruned (the paper's tickets);
* losing:  the units with the *highest* importance are pruned;
* random:  units drawn uniformly without replacement, seeded.

Counts are exact whatever the ties: selection is by a stable sort on (score, unit index), so equal
scores are pruned in index order (lower layers and heads first for winning tickets).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import ConfigError
from ..masking.units import UnitMask
from ..structure import Structure
from .importance import Importance
from .levels import KINDS, LEVELS, Kind, check_kind, check_level, levels_arg  # noqa: F401 (also here)


def n_pruned(level: float, n: int) -> int:
    """How many of `n` units a level prunes: round(level · n), as unstructured sparsities count."""
    return round(check_level(level) * n)


def keep_units(scores: Tensor, level: float, kind: Kind, seed: int | None = None) -> Tensor:
    """A bool tensor shaped like `scores` (True = kept) that prunes exactly round(level · numel) units."""
    check_kind(kind)
    flat = scores.detach().reshape(-1).double().cpu()
    k = n_pruned(level, flat.numel())
    if kind == "random":
        if seed is None:
            raise ConfigError("random tickets need a seed")
        order = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))
    else:
        # stable: equal scores keep their index order, so the count and the choice are deterministic
        order = torch.sort(flat if kind == "winning" else -flat, stable=True).indices
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[order[:k]] = False
    return keep.reshape(scores.shape)


def select(importance: Importance, level: float, kind: Kind, seed: int | None = None) -> UnitMask:
    """One ticket: the same fraction `level` of the heads and of each kind of FFN unit pruned.

    Random tickets draw heads, FFN sub-layers and neurons with generators derived from `seed`, so
    the heads drawn do not depend on the FFN granularity.
    """
    kept = {
        name: keep_units(scores, level, kind, None if seed is None else seed + 1_000_003 * i)
        for i, (name, scores) in enumerate(importance.tensors().items())
    }
    return UnitMask(**kept)


def random_ticket(structure: Structure, level: float, seed: int, granularity: str = "layer") -> UnitMask:
    """A random ticket of a model's units; it needs no importance scores (no task either)."""
    shapes = UnitMask.ones(structure, granularity).shapes
    scores = {n: torch.zeros(shape) for n, shape in shapes.items()}
    zeros = Importance(scores["head"], scores["head"], ffn=scores.get("ffn"), neuron=scores.get("neuron"))
    return select(zeros, level, "random", seed)


def check_levels_fit(levels: Sequence[float], counts: dict[str, int]) -> None:
    """Every level must prune at least one and keep at least one unit of each kind (`counts`: e.g.
    {"attention heads": 144, "FFN sub-layers": 12}): otherwise a ticket labelled 1% is the full model,
    or one labelled 99% has no head left, and its label is not what was pruned. Two levels may not
    prune as many units of every kind (0.4, 0.5 and 0.6 of 4 heads and 2 FFN sub-layers all prune 2
    and 1): they would be one ticket under two labels, a duplicate level in disguise."""
    if not counts:
        return
    fewest = min(counts.values())
    lo, hi = math.ceil(1000 / fewest) / 1000, math.floor(1000 * (1 - 1 / fewest)) / 1000
    for level in levels:
        for what, n in counts.items():
            k = n_pruned(level, n)
            if not 0 < k < n:
                raise ConfigError(
                    f"level {level:g} prunes {k} of the model's {n} {what}: each level must prune at least "
                    f"one and keep at least one of every kind (levels in "
                    f"[{lo:g}, {hi:g}] do for this model)"
                )
    seen: dict[tuple[int, ...], float] = {}
    for level in levels:
        ks = tuple(n_pruned(level, n) for n in counts.values())
        if ks in seen:
            pruned = ", ".join(f"{k} of {n} {what}" for k, (what, n) in zip(ks, counts.items(), strict=True))
            raise ConfigError(
                f"levels {seen[ks]:g} and {level:g} prune the same units of this model ({pruned}): "
                "they would be one ticket under two labels; give levels further apart"
            )
        seen[ks] = level
