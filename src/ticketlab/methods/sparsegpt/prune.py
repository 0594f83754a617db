"""`ticketlab prune sparsegpt`: SparseGPT's mask and reconstructed weights of every target, layer by
layer (`methods.layerwise`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...masks.reconstructed import NOT_A_TICKET, RECONSTRUCTED_NAME
from ...masks.targets import Targets
from ..calibration import Calibration, OneShotResult
from ..layerwise import prune_layerwise
from ..ranking import check_sparsity
from .config import SparseGptConfig
from .solver import Hessian, sparsegpt_solve


@torch.no_grad()
def sparsegpt_mask(
    model: nn.Module,
    sparsity: float,
    *,
    calibration: Calibration,
    ranking: str = "local",
    targets: Targets = None,
    seed: int | None = None,
    pattern: str | None = None,
    settings: SparseGptConfig | None = None,
) -> OneShotResult:
    """SparseGPT on `model`'s targets from `calibration`'s inputs (the model is not changed): the
    mask (a ticket over θ0) and the reconstructed weights of its linear targets. Each layer reads the
    outputs of the layers below it as SparseGPT left them (reconstructed), as the reference feeds
    them; the word embeddings are pruned by magnitude. `seed` drew the calibration sequences;
    `ranking` is SparseGPT's own (per block of columns), whatever is asked (the caller refuses global)."""
    del seed, ranking
    sparsity = check_sparsity(sparsity)
    settings = settings or SparseGptConfig()
    settings.check_pattern(pattern)

    def solve(key: str, weight: Tensor, hessian: Hessian) -> tuple[Tensor, Tensor]:
        kw = {"blocksize": settings.blocksize, "damp": settings.damp}
        return sparsegpt_solve(weight, hessian.matrix.to(weight.device), sparsity, pattern, **kw)

    mask, weights = prune_layerwise(
        model, targets, calibration, sparsity=sparsity, pattern=pattern, statistic=Hessian, solve=solve
    )
    info = {**calibration.info, "blocksize": settings.blocksize, "damp": settings.damp}
    info.update(embeddings="magnitude", reconstructed=f"{RECONSTRUCTED_NAME}: {NOT_A_TICKET}")
    return OneShotResult(mask, {**info, "pass": "layer by layer"}, weights)
