"""The structured tickets of Liang et al. 2021 §5.4, three methods: at a level (the fraction of heads
and of FFN units pruned), the units of *lowest* importance on a task pruned (`st-winning`), of
*highest* (`st-losing`), or drawn at random (seeded) in the counts of the winning ticket of that level
(`st-random`, a sweep method: `tickets.save_random_ticket`, imported when it first runs). The winning
and losing tickets are deterministic given the fine-tuned model their importance scores come from
(one mask per seed's full model, no search draw); they are made by `ticketlab super`
(`studies.supertickets`), which fine-tunes the full model first: they need a task, so they are no
sweep's methods. Registered for what the report reads: their colours, order, determinism and the
tickets they are tested against."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...core.errors import ConfigError
from ..registry import Method, register_method
from .levels import RandomTicketConfig

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


def save_random_ticket(model: str, level: float, seed: int, settings: RandomTicketConfig, out: Path) -> Path:
    """A random structured ticket's mask directory (`tickets.save_random_ticket`), imported when it
    first runs."""
    from .tickets import save_random_ticket as run  # lazy: `--help` reads this module; tickets need torch

    return run(model, level, seed, settings, out)


register_method(
    Method(
        "st-random",
        RandomTicketConfig,
        save_random_ticket,
        "random structured ticket: the sparsity of heads and of FFN units pruned",
        verb=None,
        pattern="units",
        color="goldenrod",  # Liang et al. Fig. 4's orange, not OMP's (C1)
        order=6,  # between the winning and the losing tickets
    )
)

register_method(
    Method(
        "st-losing",
        None,
        made_by_super("st-losing"),
        "losing structured ticket: the most important heads and FFN units pruned (ticketlab super)",
        verb=None,
        pattern="units",
        seeded=False,
        color="darkgreen",  # Liang et al. Fig. 4's green, not random pruning's (C2)
        order=7,
        not_swept=MADE_BY_SUPER,
    )
)
