"""One-shot magnitude pruning (OMP), `ticketlab prune omp`: keep the weights of largest |W| (TAMT §3.2,
Chen et al.); the function is `prune.omp_mask`."""

from ..registry import Method, register_method

register_method(
    Method(
        "omp",
        None,
        "ticketlab.methods.omp.prune:omp_mask",
        "one-shot magnitude pruning: keep the largest |W| (deterministic: one mask)",
        verb="prune",
        seeded=False,
        color="C1",
        order=1,
    )
)
