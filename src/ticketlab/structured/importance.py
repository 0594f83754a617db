"""Importance scores of heads and FFN units (Michel et al. 2019, as used by Liang et al. 2021 §3).

    I_h = E_x |∂L(x)/∂ξ_h|        I_ffn = E_x |∂L(x)/∂ν|

where ξ_h and ν are the gates of `structured.gates` (1 = kept). The expectation is an average over
the training set in one pass at the end of fine-tuning, model in eval mode (no dropout), with the
training loss. Each batch's gradient is its own: `torch.autograd.grad` returns fresh gradients of
the gates for every batch. (The reference code adds `head_mask.grad.abs()` after every backward
without zeroing the gradient, so batch k contributes |g_1 + ... + g_k| instead of |g_k|.) The
per-batch |∂L_batch/∂ξ| of the batch-mean loss is weighted by the batch's size, so the result does not
depend on how the last batch is cut; with `batch_size=1` it is the per-example expectation.

Head scores are ℓ2-normalised per layer (Michel et al., after Molchanov et al. 2016): the scores of
one layer's heads divided by their norm. FFN scores are kept raw (one per layer, or one per neuron).

`Importance.save(dir)` / `Importance.load(dir)`: `importance.safetensors` (raw and normalised
tensors) and `importance.json` (what they were computed on), so a run's scores are reusable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import Tensor, nn

from ..errors import MaskFileError, TicketlabError
from ..files import atomic_write_bytes, atomic_write_json, read_json
from ..progress import progress_bar
from ..training import Batch, CollateFn, LossFn

TENSORS_FILE, META_FILE = "importance.safetensors", "importance.json"
UNIT_NAMES = ("head", "ffn", "neuron")  # as in `UnitMask` and `Gates`


@dataclass
class Importance:
    """Importance of every head and FFN unit (higher = more important), shaped like a `UnitMask`."""

    head: Tensor  # [L, H], layer-wise ℓ2-normalised
    head_raw: Tensor  # [L, H], before normalisation
    ffn: Tensor | None = None  # [L]: FFN sub-layers (granularity "layer" or "both"), raw
    neuron: Tensor | None = None  # [L, I]: FFN neurons (granularity "neuron" or "both"), raw
    n_examples: int = 0
    meta: dict[str, Any] = field(default_factory=dict)  # task, model, seed ... (provenance)

    def tensors(self) -> dict[str, Tensor]:
        """The unit scores by name ("head", "ffn", "neuron"), those present."""
        return {n: t for n in UNIT_NAMES if (t := getattr(self, n)) is not None}

    @property
    def granularity(self) -> str:
        if self.ffn is not None and self.neuron is not None:
            return "both"
        return "layer" if self.ffn is not None else "neuron" if self.neuron is not None else "none"

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Tensors first, the JSON last: a directory with its JSON holds complete scores."""
        out = Path(out_dir)
        tensors = {**self.tensors(), "head_raw": self.head_raw}
        blob = save({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()})
        atomic_write_bytes(out / TENSORS_FILE, blob)
        meta = {"granularity": self.granularity, "n_examples": self.n_examples, **self.meta}
        atomic_write_json(out / META_FILE, meta)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> Importance:
        path = Path(path)
        meta = dict(read_json(path / META_FILE, "importance scores"))
        try:
            t = load_file(path / TENSORS_FILE)
        except Exception as e:  # missing, truncated or foreign file
            raise MaskFileError(f"{path / TENSORS_FILE}: cannot read importance scores ({e})") from None
        if not {"head", "head_raw"} <= set(t) <= {*UNIT_NAMES, "head_raw"} or t["head"].dim() != 2:
            raise MaskFileError(f"{path / TENSORS_FILE}: not a ticketlab importance file")
        meta.pop("granularity", None)
        n = int(meta.pop("n_examples", 0))
        return cls(t["head"], t["head_raw"], t.get("ffn"), t.get("neuron"), n, meta)


def normalize_heads(scores: Tensor, eps: float = 1e-20) -> Tensor:
    """[L, H] scores divided by their ℓ2 norm per layer (a layer of zeros stays zero)."""
    return scores / (scores.norm(dim=-1, keepdim=True) + eps)


def gate_tensors(gates: Any) -> dict[str, Tensor]:
    """The gate tensors of a gates object by name: `head` [L, H], and `ffn` [L] and/or `neuron` [L, I]."""
    tensors = {n: t for n in UNIT_NAMES if (t := getattr(gates, n, None)) is not None}
    if "head" not in tensors:
        raise TypeError("gates must have a `head` tensor")
    return tensors


def _batches(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]


def compute_importance(
    model: nn.Module,
    gates: Any,
    dataset: Sequence[Any],
    collate_fn: CollateFn,
    loss_fn: LossFn,
    *,
    batch_size: int = 32,
    normalize: bool = True,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> Importance:
    """E|∂L/∂gate| for every head and FFN unit over `dataset`, in one pass (see the module docstring).

    `gates`: a `structured.Gates` (or any object with leaf tensors `head` [L, H] and `ffn` [L] and/or
    `neuron` [L, I] that the model's forward multiplies in). Gate values are left as they are
    (normally all ones: the full fine-tuned model); the model's weights are not changed.
    """
    if len(dataset) == 0:
        raise TicketlabError("importance scores need a non-empty training set")
    gate = gate_tensors(gates)
    names, leaves = list(gate), list(gate.values())
    was_training, flags = model.training, [t.requires_grad for t in leaves]
    model.eval()  # the expectation is over the data, not over dropout masks
    for t in leaves:
        t.requires_grad_(True)
    totals = [torch.zeros(t.shape, dtype=torch.float64, device=t.device) for t in leaves]
    try:
        for idx in progress_bar(_batches(len(dataset), batch_size), desc="importance", disable=not progress):
            batch: Batch = collate_fn([dataset[i] for i in idx], list(idx))
            batch = {k: v.to(leaves[0].device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            out = loss_fn(model, batch)
            loss = out[0] if isinstance(out, tuple) else out
            # Fresh gradients of this batch only: nothing is accumulated in `.grad`.
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            for total, g in zip(totals, grads, strict=True):
                if g is not None:
                    total += g.detach().abs().double() * len(idx)
    finally:
        for t, flag in zip(leaves, flags, strict=True):
            t.requires_grad_(flag)
        model.train(was_training)
    scores = {n: (total / len(dataset)).float().cpu() for n, total in zip(names, totals, strict=True)}
    raw = scores.pop("head")
    return Importance(
        head=normalize_heads(raw) if normalize else raw.clone(),
        head_raw=raw,
        ffn=scores.get("ffn"),
        neuron=scores.get("neuron"),
        n_examples=len(dataset),
        meta=dict(meta or {}),
    )
