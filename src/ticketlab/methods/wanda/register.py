"""Wanda as a registered one-shot method, `ticketlab prune wanda --corpus ...` (light: `--help` reads
it without torch; the method is `prune.wanda_mask`, imported when it first runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Method, register_method

if TYPE_CHECKING:
    from torch import nn

    from ..calibration import OneShotResult


def wanda_mask(model: nn.Module, sparsity: float | None, **options: Any) -> OneShotResult:
    """Wanda's mask of `model` (`prune.wanda_mask`, the same arguments), imported when it first runs."""
    from .prune import wanda_mask as run  # lazy: `--help` reads this module; pruning needs torch

    return run(model, sparsity, **options)


register_method(
    Method(
        "wanda",
        None,
        wanda_mask,
        "Wanda (Sun et al. 2024): keep the largest |W|·‖X‖ of each output row, X the inputs of "
        "--calibration sequences of --corpus (a mask over θ0)",
        verb="prune",
        calibrated=True,
        color="teal",  # outside matplotlib's cycle, as the structured tickets' colours
        order=8,  # after the papers' methods
    )
)
