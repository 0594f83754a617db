"""One-shot magnitude pruning (OMP), `ticketlab prune omp`: keep the weights of largest |W| (TAMT §3.2,
Chen et al.); the function is `methods.magnitude.omp_mask`."""

from typing import Any

from ..registry import Method, register_method


def omp(model: Any, sparsity: float, **kw: Any) -> Any:
    """`methods.magnitude.omp_mask` (imported when it runs: it imports torch)."""
    from ..magnitude import omp_mask

    return omp_mask(model, sparsity, **kw)


register_method(
    Method(
        "omp",
        None,
        omp,
        "one-shot magnitude pruning: keep the largest |W| (deterministic: one mask)",
        verb="prune",
        seeded=False,
        color="C1",
        order=1,
    )
)
