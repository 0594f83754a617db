"""`ticketlab prune wanda`: Wanda's mask of every target, layer by layer (`methods.layerwise`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...masks.targets import Targets
from ..calibration import Calibration, OneShotResult
from ..layerwise import prune_layerwise
from ..ranking import check_sparsity
from .score import InputNorms, keep_per_row, wanda_scores


@torch.no_grad()
def wanda_mask(
    model: nn.Module,
    sparsity: float,
    *,
    calibration: Calibration,
    ranking: str = "local",
    targets: Targets = None,
    seed: int | None = None,
    pattern: str | None = None,
) -> OneShotResult:
    """Wanda's mask over `model`'s targets from `calibration`'s inputs (the model is not changed).
    Each layer reads the outputs of the layers below it with their Wanda masks applied, as
    `prune_wanda` feeds them; the word embeddings are pruned by magnitude. `seed` drew the
    calibration sequences; `ranking` is per output row whatever is asked (the caller refuses global)."""
    del seed, ranking
    sparsity = check_sparsity(sparsity)

    def solve(key: str, weight: Tensor, norms: InputNorms) -> tuple[Tensor, Tensor]:
        keep = keep_per_row(wanda_scores(weight, norms.squares.to(weight.device)), sparsity, pattern)
        return keep, weight * keep

    mask, _ = prune_layerwise(
        model, targets, calibration, sparsity=sparsity, pattern=pattern, statistic=InputNorms, solve=solve
    )
    info = {**calibration.info, "comparison": "per output row" if pattern is None else f"{pattern} groups"}
    return OneShotResult(mask, {**info, "embeddings": "magnitude", "pass": "layer by layer"})
