"""A winning structured ticket (Liang et al. 2021 §5.4), `st-winning`: at a level (the fraction of heads
and of FFN units pruned), the units of *lowest* importance on a task pruned. Deterministic given the
fine-tuned model its importance scores come from (one mask per seed's full model, no search draw).
Made by `ticketlab super` (`studies.supertickets`), which fine-tunes the full model first: it needs a
task, so it is no sweep's method. Registered for what the report reads: its colour, order,
determinism and the tickets it is tested against."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...core.errors import ConfigError
from ..registry import Method, register_method

# Why a sweep cannot make the tickets of `ticketlab super` (`Method.not_swept`: a spec naming one is
# refused with it before any run).
MADE_BY_SUPER = "needs a task's importance scores from a fine-tuned model: `ticketlab super` makes it"


def made_by_super(name: str) -> Callable[..., Path]:
    """A unit method's `run` for the tickets only `ticketlab super` makes, for a caller that reaches
    it past the spec's check: it fails with the same line instead of making something it is not."""

    def run(model: str, level: float, seed: int, settings: dict[str, Any], out: Path) -> Path:
        raise ConfigError(f"{name}: {MADE_BY_SUPER}")

    return run


register_method(
    Method(
        "st-winning",
        None,
        made_by_super("st-winning"),
        "winning structured ticket: the least important heads and FFN units pruned (ticketlab super)",
        verb=None,
        pattern="units",
        seeded=False,
        color="navy",  # Liang et al. Fig. 4's blue, not the full model's (C0)
        order=5,
        against=("st-random", "st-losing"),
        not_swept=MADE_BY_SUPER,
    )
)
