"""Random pruning, `ticketlab prune random`: the no-inductive-bias baseline (TAMT "Rand"), seeded and
exact in sparsity; the function is `methods.random_pruning.random_mask`."""

from typing import Any

from ..registry import Method, register_method


def random(model: Any, sparsity: float, **kw: Any) -> Any:
    """`methods.random_pruning.random_mask` (imported when it runs: it imports torch)."""
    from ..random_pruning import random_mask

    return random_mask(model, sparsity, **kw)


register_method(
    Method("random", None, random, "random pruning at the same sparsity", verb="prune", color="C2", order=2)
)
