"""A random structured ticket (Liang et al. 2021 §5.4), a sweep method (`st-random`): the sparsity is the
fraction of heads and of FFN units pruned, drawn at random (seeded) in the counts of the winning ticket
of that level (`methods.tickets`). Winning and losing tickets need a task's importance scores: they
are `ticketlab super`'s."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ..registry import Method, register_method


@functools.lru_cache(maxsize=1)
def _base_model(name: str) -> Any:
    """The pre-trained encoder, loaded once for every ticket (its weights hash in the ticket's config)."""
    from ...models.load import load_model  # lazy start-up: transformers when it runs

    return load_model(name, head="base")


def save_random_ticket(model: str, level: float, seed: int, settings: dict[str, Any], out: Path) -> Path:
    """A random structured ticket of `model` written to `out`; `settings`: the spec's `granularity`
    (default "layer") and `units` (default "liang"; rows from before `units` were re-keyed to "round")."""
    from ...masks.unit_io import save_unit_mask, unit_mask_config  # lazy start-up: torch when it runs
    from ...models.structure import structure_of
    from ..tickets import random_ticket

    granularity = settings.get("granularity") or "layer"
    units = settings.get("units") or "liang"
    base = _base_model(model)
    ticket = random_ticket(structure_of(base), level, seed, granularity, units)
    cfg = unit_mask_config(
        base, ticket, method="st-random", level=level, base_model=model, seed=seed, search={"units": units}
    )
    return save_unit_mask(ticket, cfg, out)


register_method(
    Method(
        "st-random",
        None,
        save_random_ticket,
        "random structured ticket: the sparsity of heads and of FFN units pruned",
        verb=None,
        pattern="units",
        sweep_settings=frozenset({"granularity", "units"}),
        color="goldenrod",  # Liang et al. Fig. 4's orange, not OMP's (C1)
        order=6,  # between the winning and the losing tickets (`st_winning`, `st_losing`)
    )
)
