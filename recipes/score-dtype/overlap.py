"""How alike are the fp32-score and bf16-score masks: Jaccard of kept sets, and of the changes from OMP.

PYTHONPATH=src python recipes/score-dtype/overlap.py OMP_MASK FP32_MASK BF16_MASK
"""

import sys

import torch

from ticketlab.masks import load_mask


def flat(mask: dict) -> torch.Tensor:
    return torch.cat([mask[k].reshape(-1) for k in sorted(mask)])


def jac(u: torch.Tensor, v: torch.Tensor) -> float:
    return float((u & v).sum() / (u | v).sum())


omp, a, b = (load_mask(p)[0] for p in sys.argv[1:4])
o, x, y = flat(omp), flat(a), flat(b)
cx, cy = x != o, y != o
print(f"kept: J(fp32, bf16) {jac(x, y):.4f}  J(fp32, omp) {jac(x, o):.4f}  J(bf16, omp) {jac(y, o):.4f}")
print(
    f"changed from OMP: fp32 {int(cx.sum())}, bf16 {int(cy.sum())}, both {int((cx & cy).sum())}, "
    f"J {jac(cx, cy):.3f}"
)
