"""SparseGPT's Hessian and solver: the arithmetic of IST-DASLab/sparsegpt's `SparseGPT.add_batch` and
`fasterprune` (sparsegpt.py), without quantization."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...masks.pattern import NM, parse_pattern


class Hessian:
    """Σ_t x_t x_tᵀ over every calibration token of one matrix's inputs; `matrix` is H = 2XXᵀ/n with n
    the number of sequences, as `add_batch` counts them (the first dimension of a batch of
    sequences; a 2-D call counts once, as `add_batch` unsqueezes it: unpadded tokens [tokens, in],
    or the pooler's [batch, hidden], one per batch). The scale matters only where an input is
    always zero: its diagonal is set to 1 before the relative dampening."""

    def __init__(self, module: nn.Module) -> None:
        cols = module.weight.shape[1]
        self.sum = torch.zeros(cols, cols, dtype=torch.float32, device=module.weight.device)
        self.samples = 0

    def add(self, x: Tensor) -> None:
        flat = x.detach().reshape(-1, x.shape[-1]).float()  # [tokens, in]
        self.sum += flat.T @ flat
        self.samples += x.shape[0] if x.dim() > 2 else 1

    @property
    def matrix(self) -> Tensor:
        return 2 * self.sum / max(self.samples, 1)  # [in, in]


def inverse_factor(hessian: Tensor, damp: float) -> tuple[Tensor, Tensor]:
    """(U, dead): U the upper Cholesky factor of (H + λI)⁻¹, λ = damp · mean(diag H), after the
    inputs that are always zero ("dead", [in] bool) are given a unit diagonal."""
    h = hessian.detach().float().clone()  # [in, in]
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    h.diagonal().add_(damp * h.diagonal().mean())
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inverse, upper=True), dead


def _block_mask(w: Tensor, d: Tensor, sparsity: float) -> Tensor:
    """The pruned weights [rows, b] of one block, elementwise: the lowest w²/d² across the whole
    block, up to the one at the sorted position int(numel · sparsity) (the reference's `<=`, which
    prunes one weight more than that count). At sparsity 0 none: the reference's threshold would
    still take the lowest weight of every block."""
    if sparsity == 0:
        return torch.zeros_like(w, dtype=torch.bool)
    saliency = w.pow(2) / d.reshape(1, -1).pow(2)
    threshold = torch.sort(saliency.flatten()).values[int(saliency.numel() * sparsity)]
    return saliency <= threshold


def _solve_block(w: Tensor, u: Tensor, sparsity: float, nm: NM | None) -> tuple[Tensor, Tensor, Tensor]:
    """One block [rows, b] with its factor's diagonal block [b, b]: (the solved weights, the
    errors err_i = (w_i - q_i) / U_ii to carry to later blocks, the pruned mask). `w` is updated."""
    d = torch.diagonal(u)  # [b]
    pruned = _block_mask(w, d, sparsity) if nm is None else torch.zeros_like(w, dtype=torch.bool)
    solved, errors = torch.zeros_like(w), torch.zeros_like(w)
    for i in range(w.shape[1]):
        if nm is not None and i % nm.m == 0:  # the M - N lowest w²/d² of the group starting here
            saliency = w[:, i : i + nm.m].pow(2) / d[i : i + nm.m].reshape(1, -1).pow(2)
            lowest = torch.topk(saliency, nm.m - nm.n, dim=1, largest=False).indices
            pruned.scatter_(1, i + lowest, True)
        q = torch.where(pruned[:, i], torch.zeros_like(w[:, i]), w[:, i])
        errors[:, i] = (w[:, i] - q) / d[i]
        w[:, i:] -= errors[:, i : i + 1] @ u[i : i + 1, i:]  # the OBS update of the columns to come
        solved[:, i] = q
    return solved, errors, pruned


@torch.no_grad()
def sparsegpt_solve(
    weight: Tensor,
    hessian: Tensor,
    sparsity: float,
    pattern: str | None = None,
    *,
    blocksize: int = 128,
    damp: float = 0.01,
) -> tuple[Tensor, Tensor]:
    """(keep [out, in] bool, the reconstructed weight [out, in] float32, zeros where pruned) of
    `weight` [out, in] given the Hessian [in, in] of its inputs."""
    w = weight.detach().float().clone()
    u, dead = inverse_factor(hessian, damp)
    w[:, dead] = 0
    nm = parse_pattern(pattern)
    pruned = torch.zeros_like(w, dtype=torch.bool)
    for start in range(0, w.shape[1], blocksize):
        end = min(start + blocksize, w.shape[1])
        solved, errors, pruned[:, start:end] = _solve_block(
            w[:, start:end].clone(), u[start:end, start:end], sparsity, nm
        )
        w[:, start:end] = solved
        w[:, end:] -= errors @ u[start:end, end:]  # the block's errors, carried to the later columns
    return ~pruned, w
