"""The masked layers TAMT's scores compute with (`scores.ScoreMask`): W ⊙ M with M = 1[S ≥ t] in the
forward pass, the gradient straight through the binarisation to the scores in the backward (Eq. 4:
∂L/∂S = ∂L/∂(W⊙M) ⊙ W). Linear and embedding modules compute through fused functions
(`_MaskedLinear`, `_MaskedEmbedding`) that keep no W ⊙ M; their buffers are a `Scratch`."""

from __future__ import annotations

import types
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ScoreOwner(Protocol):
    """What the masked layers ask of the `ScoreMask` whose scores they use: where ∂L/∂S goes."""

    def grad_slot(self) -> Tensor | None: ...

    def settle_grad(self, grad: Tensor) -> Tensor | None: ...


class Scratch:
    """Buffers per device, grown to the largest use, for what a step needs one at a time and never
    keeps: W ⊙ M for one matmul (in the forward and again in the backward), and on a CPU a chunk of
    comparisons S ≥ t. Reuse spares a large allocation (and its page faults) per layer and pass. A
    matrix of more than BLOCK weights (the tied MLM decoder: BERT-base's 23M word embeddings) is
    multiplied in blocks of rows (`row_blocks`), so the buffer holds W ⊙ M for at most BLOCK weights."""

    # On CPU, comparisons and products between two float tensors are vectorised; with a bool or
    # uint8 operand or result they run 3-4x slower (S >= t into bools: 88 us per 256K scores; into
    # floats: 19 us). So M is made as 0./1. floats, a CHUNK at a time, which stays in cache.
    CHUNK = 1 << 18
    # A count's chunk (`count_at_least`): its comparisons, 1 MB of bytes, stay in a core's L2 cache
    # (as floats, in L3: still faster than 4x the calls); a float32 sum of at most 2^24 ones is exact.
    COUNT_CHUNK = 1 << 20
    BLOCK = 1 << 22  # 16 MB of fp32 W ⊙ M, not 94 MB, at BERT-base

    def __init__(self) -> None:
        self._bufs: dict[tuple[torch.device, str], Tensor] = {}

    def _get(self, kind: str, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """n elements of `dtype` in the buffer `kind` of `device` (valid until its next use)."""
        nbytes = n * dtype.itemsize
        buf = self._bufs.get((device, kind))
        if buf is None or buf.numel() < nbytes:
            buf = self._bufs[device, kind] = torch.empty(
                -(-nbytes // 8) * 8, dtype=torch.uint8, device=device
            )
        return buf[:nbytes].view(dtype)

    def masked(self, weight: Tensor, scores: Tensor, threshold: Tensor) -> Tensor:
        """W ⊙ 1[S ≥ t] in the buffer: valid until the next call."""
        if torch.compiler.is_compiling():  # the compiler fuses the product into its use: no buffer
            return weight * at_least(scores, threshold)
        n = weight.numel()
        out = self._get("product", n, weight.dtype, weight.device)
        # elementwise kernels on a GPU take mixed types at full speed; per-group cuts (N:M) broadcast
        if weight.device.type != "cpu" or threshold.ndim:
            return torch.mul(weight, at_least(scores, threshold), out=out.view(weight.shape))
        w, s, c = weight.reshape(-1), scores.reshape(-1), min(n, self.CHUNK) or 1
        m = self._get("chunk", c, weight.dtype, weight.device)
        for i in range(0, n, c):
            k = min(c, n - i)
            torch.ge(s[i : i + k], threshold, out=m[:k])
            torch.mul(w[i : i + k], m[:k], out=out[i : i + k])
        return out.view(weight.shape)

    def counts_at_least(self, x: Tensor, cuts: Tensor) -> Tensor:
        """#{x >= c} over the flat `x` for each c of `cuts` ([k], x's dtype): [k] int64 on x's
        device, not read here. On a CPU a chunk at a time into floats (see CHUNK), compiled or not
        elsewhere one comparison that a compiler fuses with its sum."""
        if x.device.type != "cpu" or torch.compiler.is_compiling():
            return (x.unsqueeze(0) >= cuts.unsqueeze(1)).sum(1)
        k, c = cuts.numel(), min(x.numel(), self.COUNT_CHUNK) or 1
        m = self._get("chunk", k * c, torch.float32, x.device).view(k, c)
        parts = self._get("parts", k * -(-x.numel() // c), torch.float32, x.device).view(-1, k)
        for j, i in enumerate(range(0, x.numel(), c)):
            n = min(c, x.numel() - i)
            torch.ge(x[i : i + n].unsqueeze(0), cuts.unsqueeze(1), out=m[:, :n])
            torch.sum(m[:, :n], dim=1, out=parts[j])
        return parts.long().sum(0)

    def count_at_least(self, x: Tensor, cut: Tensor) -> int:
        """#{x >= cut} over the flat CPU tensor `x` (`cut` 0-d, x's dtype), read: `counts_at_least`
        for one cut, as an eager CPU re-threshold takes it for every matrix and step. float32 through
        numpy, whose comparison into bytes is vectorised and whose count of them is a popcount (85M
        scores in 26-28 ms on one core, against 31-36 for torch's into floats and their sum); bf16,
        which numpy lacks, through torch's (`counts_at_least`)."""
        if x.dtype != torch.float32:
            return int(self.counts_at_least(x, cut.view(1))[0])
        a, t = x.detach().numpy(), cut.numpy()  # a 0-d float32 view: compared as float32
        c = min(a.size, self.COUNT_CHUNK) or 1
        m = self._get("bytes", c, torch.bool, x.device).numpy()
        kept = 0
        for i in range(0, a.size, c):  # a chunk's bytes stay in cache
            part = m[: min(c, a.size - i)]
            np.greater_equal(a[i : i + c], t, out=part)
            kept += int(np.count_nonzero(part))
        return kept

    def within(self, x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        """1[lo <= x < hi] over the flat `x` (bool [n]). On a CPU, eagerly, a chunk at a time into a
        buffer kept from call to call (valid until the next): no fresh pages for three temporaries;
        float32 through numpy, whose comparisons into bytes are vectorised (torch's into bools are
        not: 3-4x slower)."""
        if x.device.type != "cpu" or torch.compiler.is_compiling():
            return (x >= lo) & (x < hi)
        n, c = x.numel(), min(x.numel(), self.COUNT_CHUNK) or 1
        out = self._get("within", n, torch.bool, x.device)
        below = self._get("below", c, torch.bool, x.device)
        if x.dtype == torch.float32:
            a, o, b = x.detach().numpy(), out.numpy(), below.numpy()
            lo_, hi_ = lo.numpy(), hi.numpy()  # 0-d float32 views: compared as float32
            for i in range(0, n, c):
                part, inside, high = a[i : i + c], o[i : i + c], b[: min(c, n - i)]
                np.greater_equal(part, lo_, out=inside)
                np.less(part, hi_, out=high)
                np.logical_and(inside, high, out=inside)
            return out
        for i in range(0, n, c):
            k = min(c, n - i)
            torch.ge(x[i : i + k], lo, out=out[i : i + k])
            torch.lt(x[i : i + k], hi, out=below[:k])
            out[i : i + k].logical_and_(below[:k])
        return out


def at_least(scores: Tensor, threshold: Tensor) -> Tensor:
    """M = 1[S ≥ t]: one threshold (0-d), or one per group of consecutive scores along the last
    dimension (N:M: t has that dimension divided by M)."""
    if threshold.ndim == 0:
        return scores >= threshold
    return (scores.unflatten(-1, (threshold.shape[-1], -1)) >= threshold.unsqueeze(-1)).flatten(-2)


def _rows(threshold: Tensor, r: slice) -> Tensor:
    """The thresholds of rows `r` of a matrix (all of them share a 0-d one)."""
    return threshold[r] if threshold.ndim else threshold


def row_blocks(weight: Tensor) -> list[slice]:
    """Slices of rows of `weight` ([out, in]) with at most Scratch.BLOCK weights each (one if it fits)."""
    rows = max(1, Scratch.BLOCK // max(1, weight[0].numel()))
    return [slice(i, i + rows) for i in range(0, weight.shape[0], rows)]


class _StraightThrough(torch.autograd.Function):
    """(W, S, t) -> W ⊙ 1[S ≥ t]; backward: ∂L/∂S = ∂L/∂(W⊙M) ⊙ W (Eq. 4), nothing for the frozen W.
    The generic path, taken by `module.weight` (modules without a fused forward, export)."""

    @staticmethod
    def forward(ctx, weight: Tensor, scores: Tensor, threshold: Tensor, owner: ScoreOwner) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.score_dtype, ctx.owner = scores.dtype, owner
        return weight * at_least(scores, threshold)  # a fresh tensor: the caller keeps it

    @staticmethod
    def backward(ctx, grad: Tensor):
        (weight,) = ctx.saved_tensors
        slot = ctx.owner.grad_slot()
        grad_s = (grad * weight).to(ctx.score_dtype) if slot is None else slot.copy_(grad * weight)
        return None, ctx.owner.settle_grad(grad_s), None, None


class _MaskedLinear(torch.autograd.Function):
    """y = x (W ⊙ M)ᵀ + b over a frozen W, M = 1[S ≥ t], with ∂L/∂S = ∂L/∂(W⊙M) ⊙ W.

    It saves x, W and S (references, no copies) and makes W ⊙ M (into the model's `Scratch`) again
    in the backward, so nothing per weight outlives the layer: a plain linear saves its weight too,
    and W ⊙ M would be a copy. A large matrix goes through in blocks of rows (`row_blocks`), each
    block's W ⊙ M made, used and overwritten by the next.
    ∂L/∂(W⊙M) is the same matmul as a dense layer's weight gradient, turned into ∂L/∂S in place.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        weight: Tensor,
        scores: Tensor,
        threshold: Tensor,
        bias: Tensor | None,
        scratch: Scratch,
        owner: ScoreOwner,
    ):
        ctx.save_for_backward(x, weight, scores, threshold)
        ctx.scratch, ctx.owner = scratch, owner
        blocks = row_blocks(weight)
        if len(blocks) == 1:
            return F.linear(x, scratch.masked(weight, scores, threshold), bias)  # [..., out]
        y = None  # [..., out], filled block by block (in the dtype autocast gives the first)
        for r in blocks:
            wm = scratch.masked(weight[r], scores[r], _rows(threshold, r))
            part = F.linear(x, wm, None if bias is None else bias[r])
            if y is None:
                y = part.new_empty(*part.shape[:-1], weight.shape[0])
            y[..., r] = part
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad [..., out]
        x, weight, scores, threshold = ctx.saved_tensors
        grad_x = grad_s = grad_b = None
        flat = grad.reshape(-1, grad.shape[-1])  # [n, out]
        if ctx.needs_input_grad[2]:
            xs = x.reshape(-1, x.shape[-1]).to(grad.dtype)  # [n, in]
            grad_s = ctx.owner.grad_slot()  # [out, in], in the flat gradient where there is one
            if grad_s is None:
                grad_s = torch.empty(weight.shape, dtype=scores.dtype, device=weight.device)
        blocks = row_blocks(weight)
        for r in blocks:
            g = flat[:, r]  # [n, rows]
            if ctx.needs_input_grad[0]:  # 2-D: a strided [B, T, out] grad would send matmul to bmm
                wm = ctx.scratch.masked(weight[r], scores[r], _rows(threshold, r))
                part = g @ wm.to(grad.dtype)  # [n, in]
                if grad_x is None:  # several blocks are summed in fp32
                    grad_x = part.float() if len(blocks) > 1 else part
                else:
                    grad_x.add_(part)
            if grad_s is not None:  # ∂L/∂(W⊙M) for these rows, then ⊙ W (in fp32, then stored)
                if grad.dtype == grad_s.dtype == torch.float32:
                    torch.mm(g.T, xs, out=grad_s[r]).mul_(weight[r])
                else:
                    torch.mul(g.T @ xs, weight[r], out=grad_s[r])
        if grad_x is not None:
            grad_x = grad_x.to(grad.dtype).view(*grad.shape[:-1], x.shape[-1])  # no rows: -1 is ambiguous
        if ctx.needs_input_grad[4]:
            grad_b = flat.sum(0)
        if grad_s is not None:
            grad_s = ctx.owner.settle_grad(grad_s)
        return grad_x, None, grad_s, None, grad_b, None, None


class _MaskedEmbedding(torch.autograd.Function):
    """Rows of W ⊙ M for token ids, gathered as W[ids] ⊙ 1[S[ids] ≥ t] (never the whole product),
    with ∂L/∂S = ∂L/∂(W⊙M) ⊙ W; the padding row gets no gradient, as in `nn.Embedding`."""

    @staticmethod
    def forward(
        ctx,
        ids: Tensor,
        weight: Tensor,
        scores: Tensor,
        threshold: Tensor,
        padding_idx: int | None,
        owner: ScoreOwner,
    ):
        ctx.save_for_backward(ids, weight)
        ctx.padding_idx, ctx.score_dtype, ctx.owner = padding_idx, scores.dtype, owner
        t = F.embedding(ids, threshold) if threshold.ndim else threshold  # per-group cuts: their rows
        return F.embedding(ids, weight) * at_least(F.embedding(ids, scores), t)  # [..., H]

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad [..., H]
        ids, weight = ctx.saved_tensors
        grad_s = None
        if ctx.needs_input_grad[2]:
            slot = ctx.owner.grad_slot()  # float32 scores: summed in place, in the flat gradient
            if slot is not None and slot.dtype == torch.float32:
                grad_wm = slot.zero_()  # [V, H]
            else:
                grad_wm = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            grad_wm.index_add_(0, ids.reshape(-1), grad.reshape(-1, grad.shape[-1]).to(torch.float32))
            if ctx.padding_idx is not None:
                grad_wm[ctx.padding_idx] = 0
            grad_s = grad_wm.mul_(weight)
            if grad_s.dtype != ctx.score_dtype:
                grad_s = grad_s.to(ctx.score_dtype) if slot is None else slot.copy_(grad_s)
            grad_s = ctx.owner.settle_grad(grad_s)
        return None, None, grad_s, None, None, None


def _linear_forward(module: nn.Linear, x: Tensor) -> Tensor:
    p, weight = module.parametrizations.weight[0], module.parametrizations.weight.original
    if not p.enabled:
        return F.linear(x, weight, module.bias)
    p.gather()
    return _MaskedLinear.apply(x, weight, p.scores, p.threshold, module.bias, p.scratch, p)


def _embedding_forward(module: nn.Embedding, ids: Tensor) -> Tensor:
    p, weight = module.parametrizations.weight[0], module.parametrizations.weight.original
    if not p.enabled:
        return F.embedding(ids, weight, module.padding_idx)
    p.gather()
    return _MaskedEmbedding.apply(ids, weight, p.scores, p.threshold, module.padding_idx, p)


def _fuse(module: nn.Module) -> None:
    """Route a masked linear or embedding through its fused function. The module keeps its type;
    the override is an instance attribute that `remove_mask` takes off with the mask."""
    if isinstance(module, nn.Linear):
        module.forward = types.MethodType(_linear_forward, module)
    elif isinstance(module, nn.Embedding) and module.max_norm is None and not module.scale_grad_by_freq:
        module.forward = types.MethodType(_embedding_forward, module)
    # anything else computes through `module.weight`, i.e. `_StraightThrough`
