"""A losing structured ticket (Liang et al. 2021 §5.4), `st-losing`: at a level, the units of *highest*
importance on a task pruned; deterministic given the fine-tuned model its importance comes from. Made
by `ticketlab super` (see `st_winning`)."""

from ..registry import Method, register_method
from .st_winning import MADE_BY_SUPER, made_by_super

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
