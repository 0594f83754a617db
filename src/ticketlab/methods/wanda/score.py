"""Wanda's score and comparison, as locuslab/wanda's `prune_wanda` (lib/prune.py) and `WrappedGPT`
(lib/layerwrapper.py) compute them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...masks.nm import keep_top_groups
from ...masks.pattern import parse_pattern


class InputNorms:
    """The squared L2 norm of each input feature of one matrix over every calibration token:
    ‖X_j‖₂² = Σ_t x_tj². (`WrappedGPT.scaler_row` keeps it divided by the number of sequences, a
    constant per matrix that changes no comparison within a row.)"""

    def __init__(self, module: nn.Module) -> None:
        self.squares = torch.zeros(module.weight.shape[1], dtype=torch.float32, device=module.weight.device)
        self.tokens = 0

    def add(self, x: Tensor) -> None:
        flat = x.detach().reshape(-1, x.shape[-1]).float()  # [tokens, in]
        self.squares += flat.pow(2).sum(0)
        self.tokens += flat.shape[0]


def wanda_scores(weight: Tensor, squares: Tensor) -> Tensor:
    """|W_ij| · ‖X_j‖₂: [out, in] from the weight [out, in] and the inputs' squared norms [in]."""
    return weight.float().abs() * squares.sqrt().reshape(1, -1)


def keep_per_row(scores: Tensor, sparsity: float, pattern: str | None = None) -> Tensor:
    """The keep mask [out, in]: in every output row the int(in · sparsity) lowest scores pruned (a
    stable sort, as `prune_wanda`'s), or with an N:M `pattern` the N highest of every M kept."""
    if (nm := parse_pattern(pattern)) is not None:
        return keep_top_groups(scores, nm)
    pruned = torch.sort(scores, dim=-1, stable=True).indices[:, : int(scores.shape[1] * sparsity)]
    keep = torch.ones_like(scores, dtype=torch.bool)
    return keep.scatter_(1, pruned, False)
