"""SparseGPT as a registered one-shot method, `ticketlab prune sparsegpt --corpus ...` (light: `--help`
reads it without torch; the method is `prune.sparsegpt_mask`, imported when it first runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Method, register_method
from .config import SparseGptConfig

if TYPE_CHECKING:
    from torch import nn

    from ..calibration import OneShotResult


def sparsegpt_mask(model: nn.Module, sparsity: float | None, **options: Any) -> OneShotResult:
    """SparseGPT's mask and reconstructed weights of `model` (`prune.sparsegpt_mask`, the same
    arguments), imported when it first runs."""
    from .prune import sparsegpt_mask as run  # lazy: `--help` reads this module; pruning needs torch

    return run(model, sparsity, **options)


register_method(
    Method(
        "sparsegpt",
        SparseGptConfig,  # --blocksize, --damp
        sparsegpt_mask,
        "SparseGPT (Frantar & Alistarh 2023): the layer-wise OBS mask from the inverse Hessian of "
        "--calibration sequences of --corpus; the mask over θ0 is a ticket, the reconstructed weights "
        "beside it a sparse model, not a ticket (export --reconstructed)",
        verb="prune",
        calibrated=True,
        beside_mask="its reconstructed weights, a sparse model and not a ticket",
        color="darkviolet",  # outside matplotlib's cycle (see `wanda`)
        order=9,  # after the papers' methods and Wanda
    )
)
