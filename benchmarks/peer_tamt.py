"""TAMT as its reference implementation does it, written here from the paper's description, for the
side-by-side row of `bench_mask_training.py` (not part of ticketlab: only the benchmark imports it).

What differs from ticketlab's mask training (`ticketlab.methods.tamt`):
* the binariser clones the scores and writes 0/1 into the clone by boolean indexing, every forward,
  and autograd keeps the float mask and W for the product W ⊙ M (a plain parametrization);
* the threshold is re-derived by a full `kthvalue` over each matrix's scores, every step (`every=1`)
  or every 1000 steps as the reference does, letting the sparsity drift in between;
* the MLM head runs over every position (logits [B, T, V]) and the loss ignores the unmasked ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ticketlab.lm.mlm_head import head_parameters
from ticketlab.lm.objectives import IGNORE_INDEX, pretraining_sums
from ticketlab.masks import MaskParametrization, attach
from ticketlab.methods.omp.prune import omp_mask


class _Binarizer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: Tensor, threshold: Tensor) -> Tensor:
        out = scores.clone()
        out[scores <= threshold] = 0
        out[scores > threshold] = 1
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


class PeerMask(MaskParametrization):
    """W -> W ⊙ binarise(S) (straight-through), the threshold a buffer set by `rethreshold`."""

    def __init__(self, scores: Tensor, threshold: float):
        super().__init__()
        self.scores = nn.Parameter(scores.clone())
        self.register_buffer("threshold", torch.tensor(threshold))

    def forward(self, weight: Tensor) -> Tensor:
        return weight * _Binarizer.apply(self.scores, self.threshold) if self.enabled else weight

    def current_mask(self) -> Tensor:
        return self.scores > self.threshold


def prepare_peer(model: nn.Module, sparsity: float, *, mlm: bool, phi: float = 0.01, alpha: float = 2.0):
    """Freeze `model`, attach OMP-initialised scores (Eq. 5); returns (masks, param groups)."""
    for p in model.parameters():
        p.requires_grad_(False)
    init = omp_mask(model, sparsity)
    masks = {k: PeerMask(torch.where(m, alpha * phi, 0.0), phi) for k, m in init.items()}
    attach(model, masks)
    groups = [{"params": [p.scores for p in masks.values()]}]
    if mlm:
        head = list(head_parameters(model).values())
        for p in head:
            p.requires_grad_(True)
        groups.append({"params": head})
    return masks, groups


@torch.no_grad()
def rethreshold(masks: dict[str, PeerMask], sparsity: float) -> None:
    """The threshold of each matrix from a full kthvalue over its scores (the pruned count is exact
    only without ties at the threshold)."""
    for p in masks.values():
        flat = p.scores.reshape(-1)
        p.threshold.fill_(flat.kthvalue(max(1, round(sparsity * flat.numel()))).values)


def peer_loss(objective: str):
    """MLM over every position (the head's [B, T, V] logits), KD as ticketlab computes it."""

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]):
        loss = torch.zeros(())
        if "mlm" in objective:
            kw = {k: batch[k] for k in ("input_ids", "attention_mask")}
            logits = model(**kw).logits  # [B, T, V]
            loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX)
        if "kd" in objective:
            s = pretraining_sums(model, batch, mlm=False, kd=True)
            loss = loss + s.kd_sum / s.kd_count
        return loss, {}

    return loss_fn
