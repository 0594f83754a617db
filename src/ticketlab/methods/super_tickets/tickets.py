"""Structured tickets from importance scores: winning, losing and random (Liang et al. 2021 §3, §5.4).

At a level p in (0, 1), one-shot pruning removes a count of the model's heads and of its FFN units
(FFN sub-layers, or neurons at the "neuron" granularity), each set ranked over all layers together:

* winning: the units with the *lowest* importance are pruned (the paper's tickets);
* losing:  the units with the *highest* importance are pruned;
* random:  units drawn uniformly without replacement, seeded.

How many (`units`):

* "liang" (default), the reference code's counts (cliang1453/super-structured-lottery-tickets,
  `masking.py::determine_masking_sequence` / `what_to_mask` and its `rewind_*_winning.sh` scripts):
  int(p · n) of the n heads, at most n − L so that *every layer keeps at least one head* (in each
  layer, the head that would be pruned last in the ranking is never pruned, as `what_to_mask`'s
  `min_number_attention_heads=1` protects it); FFN sub-layers: the scripts prune k of BERT-base's 12 at
  level k/10 (`mask_k_ffn`), which ticketlab keeps as a proportion for other depths, int(10p · L / 12)
  (an extrapolation: the reference has only 12-layer masks); FFN neurons (not in the paper): int(p · n).
  For BERT-base 12x12 at 0.1 ... 0.8: 14/1, 28/2, 43/3, 57/4, 72/5, 86/6, 100/7, 115/8 heads/FFN.
* "round": round(p · n) of every kind, as unstructured sparsities count,
  with no per-layer guard (at 30-80% it prunes 4/5/6/7/8/10 of BERT-base's FFN sub-layers where the
  reference prunes 3-8).

Random tickets (`draw`): by default ticketlab draws a uniform random order of the units (seeded) and
applies the same counts and the same one-head-per-layer guard to it, so a random ticket prunes exactly
what the winning ticket of its level prunes, in number (the paper's random tickets "of the same
size"). The reference code (`data_utils/mask_utils.py`, `gen_random_head` / `gen_random_ffn`, called by
`train_rewind.py --random_rewind`) draws the winning ticket's count *with replacement* and no guard:
repeats collapse, so it prunes fewer units (`draw="replacement"` does the same).

Counts are exact whatever the ties: selection is by a stable sort on (score, unit index), so equal
scores are pruned in index order (lower layers and heads first for winning tickets).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ...core.checks import check_one_of
from ...core.errors import ConfigError
from ...masks.unit_io import save_unit_mask, unit_mask_config
from ...masks.units import UnitMask
from ...models.load import shared_base_model
from ...models.structure import Structure, structure_of
from .importance import Importance
from .levels import DRAWS, UNITS, Draw, Kind, RandomTicketConfig, Units, check_kind, check_level

UNIT_KINDS = ("head", "ffn", "neuron")  # as in `UnitMask`


def n_pruned(level: float, n: int) -> int:
    """How many of `n` units a level prunes under `units="round"`: round(level · n)."""
    return round(check_level(level) * n)


def _floor(x: float) -> int:
    """int(x) of a product of a level and a count, robust to float error (144 · 0.3 = 43.1999...,
    10 · 0.7 = 7.000...01): levels have at most six decimals, so 1e-9 never crosses an integer."""
    return math.floor(x + 1e-9)


def unit_count(level: float, unit: str, shape: Sequence[int], units: Units = "liang") -> int:
    """How many units of kind `unit` ("head" [L, H], "ffn" [L], "neuron" [L, I]) a level prunes."""
    check_one_of("units", units, UNITS)
    check_one_of("unit", unit, UNIT_KINDS)
    n = math.prod(shape)
    if units == "round":
        return n_pruned(level, n)
    level = check_level(level)
    if unit == "head":  # [L, H]; a flat tensor of heads is one layer
        return min(_floor(level * n), n - (shape[0] if len(shape) == 2 else 1))  # every layer keeps one
    if unit == "ffn":
        return _floor(10 * level * shape[0] / 12)  # k of 12 at level k/10, as a proportion
    return _floor(level * n)


def _guard_layers(order: Tensor, per_layer: int) -> Tensor:
    """`order` (flat unit indices in pruning order) without each layer's last unit in it: pruning
    any prefix of the result leaves every layer at least one unit (the reference's guard)."""
    seen: set[int] = set()
    protected = []
    for i in reversed(order.tolist()):
        if i // per_layer not in seen:
            seen.add(i // per_layer)
            protected.append(i)
    keep = torch.ones(order.numel(), dtype=torch.bool)
    keep[torch.isin(order, torch.tensor(protected, dtype=order.dtype))] = False
    return order[keep]


def keep_units(
    scores: Tensor,
    level: float,
    kind: Kind,
    seed: int | None = None,
    *,
    unit: str = "head",
    units: Units = "liang",
    draw: Draw = "exact",
) -> Tensor:
    """A bool tensor shaped like `scores` (True = kept) that prunes exactly `unit_count` units (a random
    ticket with `draw="replacement"`: that many draws with replacement, repeats collapsing)."""
    check_kind(kind)
    check_one_of("draw", draw, DRAWS)
    flat = scores.detach().reshape(-1).double().cpu()
    k = unit_count(level, unit, tuple(scores.shape), units)
    if kind == "random":
        if seed is None:
            raise ConfigError("random tickets need a seed")
        gen = torch.Generator().manual_seed(seed)
        if draw == "replacement":  # the reference's np.random.choice(n, k): no guard either
            keep = torch.ones(flat.numel(), dtype=torch.bool)
            keep[torch.randint(flat.numel(), (k,), generator=gen)] = False
            return keep.reshape(scores.shape)
        order = torch.randperm(flat.numel(), generator=gen)
    else:
        # stable: equal scores keep their index order, so the count and the choice are deterministic
        order = torch.sort(flat if kind == "winning" else -flat, stable=True).indices
    if units == "liang" and unit == "head" and scores.dim() == 2:
        order = _guard_layers(order, scores.shape[1])
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[order[:k]] = False
    return keep.reshape(scores.shape)


def select(
    importance: Importance,
    level: float,
    kind: Kind,
    seed: int | None = None,
    units: Units = "liang",
    draw: Draw = "exact",
) -> UnitMask:
    """One ticket at `level`: `unit_count` heads and FFN units of each kind pruned (`units`; a random
    ticket's `draw`, see `keep_units`).

    Random tickets draw heads, FFN sub-layers and neurons with generators derived from `seed`, so
    the heads drawn do not depend on the FFN granularity.
    """
    kept = {
        name: keep_units(
            scores,
            level,
            kind,
            None if seed is None else seed + 1_000_003 * i,
            unit=name,
            units=units,
            draw=draw,
        )
        for i, (name, scores) in enumerate(importance.tensors().items())
    }
    return UnitMask(**kept)


def random_ticket(
    structure: Structure,
    level: float,
    seed: int,
    granularity: str = "layer",
    units: Units = "liang",
    draw: Draw = "exact",
) -> UnitMask:
    """A random ticket of a model's units; it needs no importance scores (no task either)."""
    shapes = UnitMask.ones(structure, granularity).shapes
    scores = {n: torch.zeros(shape) for n, shape in shapes.items()}
    zeros = Importance(scores["head"], scores["head"], ffn=scores.get("ffn"), neuron=scores.get("neuron"))
    return select(zeros, level, "random", seed, units, draw)


# What a model has of each kind of unit a level prunes: {"attention heads": ("head", (L, H)), ...}
Shapes = dict[str, tuple[str, tuple[int, ...]]]


def _counts(level: float, shapes: Shapes, units: Units) -> tuple[int, ...]:
    return tuple(unit_count(level, unit, shape, units) for unit, shape in shapes.values())


def _misfit(level: float, shapes: Shapes, units: Units) -> str | None:
    """Why `level` does not fit the model ("prunes 0 of the model's 2 FFN sub-layers": none, or all,
    of some kind), or None."""
    for (what, (_, shape)), k in zip(shapes.items(), _counts(level, shapes, units), strict=True):
        n = math.prod(shape)
        if not 0 < k < n:
            return f"prunes {k} of the model's {n} {what}"
    return None


def _fitting_range(shapes: Shapes, units: Units) -> str:
    """The levels (to 0.001) that prune at least one and keep one of every kind: an interval, as
    every count grows with the level."""
    fit = [g / 1000 for g in range(1, 1000) if _misfit(g / 1000, shapes, units) is None]
    return f"levels in [{fit[0]:g}, {fit[-1]:g}] do for this model" if fit else "no level does for this model"


def check_levels_fit(levels: Sequence[float], shapes: Shapes, units: Units = "liang") -> None:
    """Every level must prune at least one and keep at least one unit of each kind (`shapes`):
    otherwise a ticket labelled 1% is the full model, or one labelled 99% has no head left, and its
    label is not what was pruned. Two levels may not prune as many units of every kind (0.4, 0.5 and
    0.6 of 4 heads and 2 FFN sub-layers all prune 2 and 1 under "round"): they would be one ticket
    under two labels, a duplicate level in disguise."""
    if not shapes:
        return
    for level in levels:
        if (why := _misfit(level, shapes, units)) is not None:
            raise ConfigError(
                f"level {level:g} {why}: each level must prune at least one and keep at least one of "
                f"every kind ({_fitting_range(shapes, units)})"
            )
    seen: dict[tuple[int, ...], float] = {}
    for level in levels:
        ks = _counts(level, shapes, units)
        if ks in seen:
            pruned = ", ".join(
                f"{k} of {math.prod(shape)} {what}"
                for k, (what, (_, shape)) in zip(ks, shapes.items(), strict=True)
            )
            raise ConfigError(
                f"levels {seen[ks]:g} and {level:g} prune the same units of this model ({pruned}): "
                "they would be one ticket under two labels; give levels further apart"
            )
        seen[ks] = level


def fit_levels(levels: Sequence[float], shapes: Shapes, units: Units = "liang") -> tuple[list[float], str]:
    """The default `levels` this model can take (a verb's defaults run on every model it accepts):
    those that prune none or all of some kind are dropped, and of levels that prune the same units
    the first is kept. Returns (levels, a one-line note saying what was dropped and why, or "")."""
    if not shapes:
        return list(levels), ""
    kept: list[float] = []
    why: dict[str, list[float]] = {}  # reason -> the levels dropped for it
    seen: dict[tuple[int, ...], float] = {}
    for level in levels:
        ks = _counts(level, shapes, units)
        reason = _misfit(level, shapes, units) or (f"prunes what {seen[ks]:g} prunes" if ks in seen else None)
        if reason is None:
            seen[ks] = level
            kept.append(level)
        else:
            why.setdefault(reason, []).append(level)
    reasons = "; ".join(f"{', '.join(f'{v:g}' for v in vs)}: each {r}" for r, vs in why.items())
    if not kept:
        raise ConfigError(f"no default level fits this model ({reasons}); {_fitting_range(shapes, units)}")
    running = ", ".join(f"{v:g}" for v in kept)
    note = f"default levels dropped for this model ({reasons}); running {running}"
    return kept, note if why else ""


def save_random_ticket(model: str, level: float, seed: int, settings: RandomTicketConfig, out: Path) -> Path:
    """A random structured ticket of `model` written to `out` (the sweep method `st-random`)."""
    units, draw = settings.units, settings.random_draw
    base = shared_base_model(model)
    ticket = random_ticket(structure_of(base), level, seed, settings.granularity, units, draw)
    found = {"units": units, **({"random_draw": draw} if draw != "exact" else {})}
    cfg = unit_mask_config(
        base, ticket, method="st-random", level=level, base_model=model, seed=seed, search=found
    )
    return save_unit_mask(ticket, cfg, out)
