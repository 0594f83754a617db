"""A random structured ticket (Liang et al. 2021 §5.4), a sweep method (`st-random`): the sparsity is the
fraction of heads and of FFN units pruned, drawn at random (seeded) in the counts of the winning ticket
of that level; the function is `methods.tickets.save_random_ticket`. Winning and losing tickets need a
task's importance scores: they are `ticketlab super`'s."""

from ..registry import Method, register_method

register_method(
    Method(
        "st-random",
        None,
        "ticketlab.methods.tickets:save_random_ticket",
        "random structured ticket: the sparsity of heads and of FFN units pruned",
        verb=None,
        pattern="units",
        sweep_settings=frozenset({"granularity", "units", "random_draw"}),
        color="goldenrod",  # Liang et al. Fig. 4's orange, not OMP's (C1)
        order=6,  # between the winning and the losing tickets (`st_winning`, `st_losing`)
    )
)
