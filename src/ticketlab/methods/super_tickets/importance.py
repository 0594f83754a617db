"""Importance scores of heads and FFN units (Michel et al. 2019, as used by Liang et al. 2021 §3).

    I_h = E_x |∂L(x)/∂ξ_h|        I_ffn = E_x |∂L(x)/∂ν|

where ξ_h and ν are the gates of `masks.gates` (1 = kept). The expectation is an average over
the training set in one pass at the end of fine-tuning, model in eval mode (no dropout), with the
training loss. `per` chooses where the absolute value is taken:

  example  (default) the paper's definition: |∂L(x)/∂ξ| of every example x, averaged. Computed in
           batches without a backward per example: the gates are expanded to one copy per example
           ([L, B, 1, H] instead of [L, H]), so one backward of the batch-mean loss gives every
           example's own gate gradient (B times its share of the mean). Exact: it equals a pass with
           batches of one.
  token    the reference code's: it multiplies a gate into every token's activations and sums
           |∂L(x)/∂ξ_t| over the tokens t of each example (here: gates expanded per example and
           token, [L, B, T, H]), so a unit whose effect changes sign along the sequence still counts.
           Always >= `example` (|Σ_t g_t| <= Σ_t |g_t|).
  batch    ticketlab's first version: |∂L_batch/∂ξ| of each batch's mean loss, weighted by the
           batch's size. Signs cancel inside a batch, so the scores depend on the batch size; kept
           only to reproduce results computed with it (`importance.json` files without `per`).

Each batch's gradient is its own: `torch.autograd.grad` returns fresh gradients for every batch.
(The reference code, `mt_dnn/inference.py`'s `calculate_importance`, adds `heads_mask.grad` after
every backward without zeroing it, no further |·| there: its gates take |·| per token inside the
backward, `module/modeling_bert_masked.py`, so each g_k is already a sum of absolute values and batch
k contributes g_1 + ... + g_k instead of g_k; ticketlab does not copy that.) `example`
and `token` assume `loss_fn` returns the mean of per-example losses (every task loss does).

Head scores are ℓ2-normalised per layer (Michel et al., after Molchanov et al. 2016): the scores of
one layer's heads divided by their norm. FFN scores are kept raw (one per layer, or one per neuron).

`Importance.save(dir)` / `Importance.load(dir)`: `importance.safetensors` (raw and normalised
tensors) and `importance.json` (what they were computed on, `per` included), so a run's scores are
reusable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...core.errors import MaskFileError, TicketlabError
from ...core.files.atomic import atomic_write_bytes, atomic_write_json
from ...core.files.inputs import load_safetensors, read_json
from ...core.files.tensors import safetensors_bytes
from ...core.progress import progress_bar
from ...train.config import Batch, CollateFn, LossFn
from .levels import PER, Per

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
        # each its own copy: safetensors refuses tensors that share memory (head is head_raw, say)
        blob = safetensors_bytes({k: v.detach().float().cpu().clone() for k, v in tensors.items()})
        atomic_write_bytes(out / TENSORS_FILE, blob)
        meta = {"granularity": self.granularity, "n_examples": self.n_examples, **self.meta}
        atomic_write_json(out / META_FILE, meta)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> Importance:
        """The scores `save` wrote into `path`, refused in one line naming the file where they are
        not: a meta file that is no object with a count of examples, tensors of other names or
        shapes, or scores that are not finite non-negative floats (gradient magnitudes)."""
        path = Path(path)
        meta = read_json(path / META_FILE, "importance scores")
        n = meta.pop("n_examples", 0) if isinstance(meta, dict) else None
        if type(n) is not int or n < 0:
            raise MaskFileError(f"{path / META_FILE}: not a ticketlab importance file (n_examples, a count)")
        try:
            t = load_safetensors(path / TENSORS_FILE, "importance scores")
        except Exception as e:  # missing, truncated or foreign file
            raise MaskFileError(f"{path / TENSORS_FILE}: cannot read importance scores ({e})") from None
        _check_scores(path / TENSORS_FILE, t)
        meta.pop("granularity", None)
        return cls(t["head"], t["head_raw"], t.get("ffn"), t.get("neuron"), n, meta)


def _check_scores(path: Path, t: dict[str, Tensor]) -> None:
    """The tensors `save` writes, of their kinds' shapes, holding finite floats >= 0 (magnitudes)."""
    named = {"head", "head_raw"} <= set(t) <= {*UNIT_NAMES, "head_raw"}
    if not named or t["head"].dim() != 2 or not all(_fits(k, v, t["head"].shape) for k, v in t.items()):
        raise MaskFileError(f"{path}: not a ticketlab importance file (other tensors or shapes)")
    for k, v in t.items():
        if not v.dtype.is_floating_point or not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
            raise MaskFileError(f"{path}: {k}: importance scores are finite magnitudes (floats >= 0)")


def _fits(name: str, scores: Tensor, heads: torch.Size) -> bool:
    """Heads [L, H] (normalised and raw), FFN sub-layers [L], FFN neurons [L, I]."""
    if name in ("head", "head_raw"):
        return scores.shape == heads
    return scores.dim() == (1 if name == "ffn" else 2) and scores.shape[0] == heads[0]


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


def _expanded(leaves: list[Tensor], batch_size: int, tokens: int) -> list[Tensor]:
    """Each gate [L, ...] as one copy per example and token, [L, B, T, ...] (FFN: [L, B, T, 1]), a
    leaf whose gradient holds every example's (token's) own ∂L/∂ξ; the hooks broadcast it."""
    out = []
    for t in leaves:
        rest = tuple(t.shape[1:]) or (1,)
        view = t.detach().reshape(t.shape[0], 1, 1, *rest)
        out.append(view.expand(t.shape[0], batch_size, tokens, *rest).clone().requires_grad_(True))
    return out


def _tokens(batch: Batch, per: str) -> int:
    if per != "token":
        return 1
    ids = batch.get("input_ids")
    if not isinstance(ids, Tensor) or ids.dim() != 2:
        raise TicketlabError("per-token importance needs batches with input_ids [batch, tokens]")
    return int(ids.shape[1])


def _batch_scores(grads: Sequence[Tensor | None], leaves: list[Tensor], n: int, per: str) -> list[Tensor]:
    """This batch's Σ_x of |∂L(x)/∂ξ| (per example or token; `batch`: n·|∂L_batch/∂ξ|), per gate."""
    out = []
    for t, g in zip(leaves, grads, strict=True):
        if g is None:  # a gate the loss does not reach
            out.append(torch.zeros(t.shape, dtype=torch.float64, device=t.device))
        elif per == "batch":
            out.append(g.detach().abs().double() * n)
        else:  # n · ∂L_batch/∂ξ_x = ∂L(x)/∂ξ_x, for a batch-mean loss
            g = (g.detach().double() * n).abs().sum(dim=(1, 2))  # over examples and tokens
            out.append(g.reshape(t.shape))
    return out


def compute_importance(
    model: nn.Module,
    gates: Any,
    dataset: Sequence[Any],
    collate_fn: CollateFn,
    loss_fn: LossFn,
    *,
    batch_size: int = 32,
    per: Per = "example",
    normalize: bool = True,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> Importance:
    """E|∂L/∂gate| for every head and FFN unit over `dataset`, in one pass (see the module docstring:
    `per` is "example", "token" or "batch").

    `gates`: a `masks.Gates` (or any object with leaf tensors `head` [L, H] and `ffn` [L] and/or
    `neuron` [L, I] that the model's forward multiplies in, reading them at every forward and
    broadcasting a [B, T, ...] gate over its activations). Gate values are left as they are
    (normally all ones: the full fine-tuned model); the model's weights are not changed.
    """
    if per not in PER:
        raise TicketlabError(f"importance per must be one of {', '.join(PER)}, got {per!r}")
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
            wrt = leaves if per == "batch" else _expanded(leaves, len(idx), _tokens(batch, per))
            for name, t in zip(names, wrt, strict=True):
                setattr(gates, name, t)  # the hooks read the gates at every forward
            out = loss_fn(model, batch)
            loss = out[0] if isinstance(out, tuple) else out
            # Fresh gradients of this batch only: nothing is accumulated in `.grad`.
            grads = torch.autograd.grad(loss, wrt, allow_unused=True)
            for total, part in zip(totals, _batch_scores(grads, leaves, len(idx), per), strict=True):
                total += part
    finally:
        for name, t, flag in zip(names, leaves, flags, strict=True):
            setattr(gates, name, t)
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
        meta={**(meta or {}), "per": per},
    )
