"""Random pruning, `ticketlab prune random`: the no-inductive-bias baseline (TAMT "Rand"), seeded and
exact in sparsity; the function is `prune.random_mask`."""

from ..registry import Method, register_method

register_method(
    Method(
        "random",
        None,
        "ticketlab.methods.random.prune:random_mask",
        "random pruning at the same sparsity",
        verb="prune",
        color="C2",
        order=2,
    )
)
