"""Task-agnostic mask training (TAMT, Liu et al. 2022 §3.4): learn the mask on a pre-training objective.

Every target weight W gets a real-valued score S. The forward pass uses W ⊙ M with the binary mask
M = 1[S ≥ φ] (Eq. 3); the backward pass sends the gradient straight through the binarisation to the
scores (Eq. 4): ∂L/∂S = ∂L/∂(W⊙M) ⊙ W. The weights are frozen. Scores start from OMP (Eq. 5: α·φ
where OMP keeps a weight, 0 elsewhere; φ = 0.01, α = 2) or from a random mask with the same values
(§4.2.4). After every optimizer step the threshold φ is re-derived from the ranking of the scores so
that the sparsity is *exactly* the target, per matrix (default) or over all targets.

Ranking is by the *signed* score: the kept weights are the n_keep highest scores. §3.4.2 says "rank
according to their absolute values", but Eq. 3 keeps M = 1[S ≥ φ], and ranking |S| would keep
weights whose scores the gradient drove far below zero, the opposite of what the objective asks;
TAMT's code binarises the signed score (`inputs > threshold`).

The mask is not stored: M = 1[S ≥ t] is read off the scores wherever it is used, with one threshold
t per matrix (or one for all, global ranking) kept so that exactly n_keep scores are >= t. Ties at
the cut (e.g. rows of the word embeddings that never got a gradient still sit at α·φ or 0) are
broken by position, the lower one kept, and a score that loses a tie is lowered to the next value
below t, so that no t can be wrong about it; it then stays behind its tie-mates, and the mask does
not churn among weights the objective never saw. (Scores that the optimizer moved onto exactly the
same value are ranked by position too, whichever of them was kept before.)

The selection is exact and avoids sorting all scores every step (`Thresholder`): it starts from the
previous threshold, counts the scores above it, and ranks only the few scores near it that must
enter or leave. From scratch (first step, after a resume), the k-th largest score is bracketed from
a strided sample, checked by counting, and found by `kthvalue` inside the bracket.

Two differences from TAMT's code, by choice (issue 24): (1) its masker also masks the pooler;
transformers' *ForMaskedLM models have none, the MLM and KD losses never reach it (its scores would
keep their OMP start), and ticketlab's targets leave it dense (to mask it in a model that has one,
add `masking.targets.POOLER` to `targets`). (2) Its trainer keeps the mask of the best dev loss seen during
the search (`results_at_best_score`); ticketlab keeps the final mask, the one at the step budget,
so that a search's cost is its budget and no dev set picks the mask (masks along the way are kept
with `save_at`, each with its dev loss in the log when `eval_every` is set).

Scores are float32 by default. `TamtConfig.score_dtype = "bfloat16"` halves them, their gradients
and their Adam moments (the optimizer rounds bf16 parameters stochastically, `optim.AdamW`), so
that mask training holds less than dense training: a flag, since it changes the search's arithmetic.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import Tensor, nn
from torch.autograd import Variable
from torch.nn.utils import parametrize

from ..errors import ConfigError, TicketlabError
from ..masking import Mask, MaskParametrization, attach
from ..masking.apply import resolve_modules
from ..masking.pattern import NM, check_divisible, group_order, groups, parse_pattern, pattern_sparsity
from ..masking.targets import Targets
from ..objectives import Objective, head_parameters
from ..pretrain_eval import HEAD_FILE
from ..training import TrainConfig
from ..validation import Fraction, PositiveFloat, Range, check_config, option
from .magnitude import omp_mask
from .random_pruning import random_mask
from .ranking import Ranking, check_sparsity
from .search import SearchObjective, SearchResult, SearchSpec, run_search

Init = Literal["omp", "random"]
ScoreDtype = Literal["float32", "bfloat16"]
SCORE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the masked layers


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

    def count_at_least(self, x: Tensor, threshold: float) -> Tensor:
        """#{x >= threshold} over the flat `x`, as a 0-d tensor on its device (not read here)."""
        if x.device.type != "cpu":
            return torch.count_nonzero(x >= threshold)
        c = min(x.numel(), self.CHUNK) or 1
        m = self._get("chunk", c, torch.float32, x.device)
        counts = []
        for i in range(0, x.numel(), c):  # exact: a float32 sum of at most 2^18 ones
            k = min(c, x.numel() - i)
            counts.append(torch.ge(x[i : i + k], threshold, out=m[:k]).sum())
        return torch.stack(counts).long().sum() if counts else torch.tensor(0)


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
    def forward(ctx, weight: Tensor, scores: Tensor, threshold: Tensor, owner: ScoreMask) -> Tensor:
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
        owner: ScoreMask,
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
        owner: ScoreMask,
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


class ScoreMask(MaskParametrization):
    """W -> W ⊙ M with trainable scores S and M = 1[S ≥ t] (straight-through); t is a buffer.

    The mask is not stored: it is read off the scores wherever it is used, which is as fast as
    reading a stored one on a CPU (`Scratch.masked`). W ⊙ M is made where it is used and dropped, in
    the forward and again in the backward (`_MaskedLinear`, `_MaskedEmbedding`), so mask training
    holds what dense training holds plus the scores (4 bytes per target weight; 2 with bf16 scores).
    A `Thresholder` keeps t where exactly the wanted number of scores is >= t.
    """

    def __init__(
        self,
        scores: Tensor,
        threshold: float,
        dtype: torch.dtype = torch.float32,
        nm: NM | None = None,
        *,
        storage: Tensor | None = None,
    ):
        super().__init__()
        if dtype not in SCORE_DTYPES.values():
            raise ConfigError(f"scores must be float32 or bfloat16, got {dtype}")
        if storage is None:  # a tensor of its own
            self.scores = nn.Parameter(scores.detach().to(dtype).clone())
        else:  # a view of a model's flat buffer (`FlatScores`): a leaf parameter sharing its memory
            self.scores = nn.Parameter(torch.empty(0, dtype=dtype, device=storage.device))
            # `.data =` keeps the parameter's own version counter (a view would share the buffer's,
            # and stepping one matrix inside the backward would invalidate every other one's)
            self.scores.data = storage.view(scores.shape).copy_(scores.detach())
        self.flat: FlatScores | None = None  # set by `FlatScores`
        self.index = 0  # its segment there
        # in the scores' dtype, as a comparison with them rounds it; on their device, so that no
        # use reads it back to the host (a stall on a GPU). An N:M pattern has one per group.
        shape = () if nm is None else (*scores.shape[:-1], scores.shape[-1] // nm.m)
        self.register_buffer("threshold", torch.full(shape, threshold, dtype=dtype, device=scores.device))
        self.scratch = Scratch()  # `attach_scores` gives all masks of a model one

    def forward(self, weight: Tensor) -> Tensor:
        if not self.enabled:
            return weight
        self.gather()
        return _StraightThrough.apply(weight, self.scores, self.threshold, self)

    def gather(self) -> None:
        """Before a forward: the scores back into the model's flat buffer if a move took them out."""
        if self.flat is not None:
            self.flat.ensure(self.index)

    def grad_slot(self) -> Tensor | None:
        """Where the backward may write ∂L/∂S: its segment of the model's flat gradient (`FlatScores`),
        or None (then a tensor of its own, as autograd's accumulation needs when S has a gradient)."""
        return None if self.flat is None else self.flat.slot(self.index)

    def settle_grad(self, grad: Tensor) -> Tensor | None:
        """What the backward returns as ∂L/∂S, given the gradient it made (`FlatScores.settle`)."""
        return grad if self.flat is None else self.flat.settle(self.index, grad)

    @property
    def mask(self) -> Tensor:
        """M = 1[S ≥ t] (a new bool tensor)."""
        return at_least(self.scores.detach(), self.threshold)

    def current_mask(self) -> Tensor:
        return self.mask


class FlatScores:
    """All score tensors of a model in one flat buffer, each ScoreMask's `scores` a view of its own
    segment: a leaf parameter sharing the buffer's memory, so that state dicts, checkpoints and the
    optimizer's parameter groups still hold one tensor per matrix, while whatever runs over all
    scores can run once instead of once per matrix (73 at BERT-base), which on a GPU is a kernel
    launch per matrix and operation:

    * the gradients: the fused backward writes ∂L/∂S into its segment of one flat gradient, and
      autograd keeps that view as the parameter's `.grad` (it adopts a fresh gradient as it is), so
      the gradients are adjacent in memory as the scores are, and `optim.AdamW` steps all of them
      as one tensor (the same operations per score, in the same order: the same bits);
    * the re-threshold: global ranking counts and ranks the one flat tensor; local ranking counts
      all matrices in a few launches on a GPU (`_segment_counts`).

    The flat gradient is made at the first score gradient of a backward, and this object holds it
    only until that backward ends: then the parameters' `.grad` views do, and `zero_grad` frees it
    as it freed the separate gradients (on a CPU its pages are touched, hence resident, only as the
    backward writes them). A segment is offered only to a parameter without a gradient: with one
    (gradient accumulation) autograd adds the new gradient into it, and a segment aliasing it would
    be added to itself. A matrix used twice in one backward (BERT's word embeddings, tied to the MLM
    decoder) gets the segment at its first use, and its second use adds into that segment (the
    sum autograd would make: the same bits) and returns no gradient. Moving the model (`model.to`)
    gives every parameter a tensor of its own; the next forward gathers them into a new buffer
    (`ensure`). `grads=False` leaves gradients separate (the optimizer stepped inside the backward
    frees each one at once: a flat gradient would hold them all)."""

    def __init__(self, masks: Sequence[ScoreMask], data: Tensor, *, grads: bool = True):
        self.masks, self.data, self.grads = list(masks), data, grads
        self.offsets = [0, *itertools.accumulate(p.scores.numel() for p in self.masks)]
        self._grad: Tensor | None = None  # this backward's flat gradient, [total]
        self._given: set[int] = set()  # the matrices given their segment of it
        self._task = -1  # the backward they belong to (one that raised never reached `_end_backward`)
        self._rows: tuple[int, Tensor] | None = None  # `_segment_counts`' rows: (width, matrix of each)
        for i, p in enumerate(self.masks):
            p.flat, p.index = self, i

    def segment(self, i: int, flat: Tensor) -> Tensor:
        """Matrix i's part of a flat tensor laid out as the buffer, in the matrix's shape (a view)."""
        return flat[self.offsets[i] : self.offsets[i + 1]].view(self.masks[i].scores.shape)

    def bound(self, i: int) -> bool:
        """Whether matrix i's scores are still its segment of the buffer."""
        s, d = self.masks[i].scores, self.data
        return (
            s.device == d.device
            and s.dtype == d.dtype
            and s.data_ptr() == d.data_ptr() + self.offsets[i] * d.element_size()
        )

    @torch.no_grad()
    def ensure(self, i: int | None = None) -> bool:
        """Make the scores (matrix i's, or all) segments of one buffer again where they left it (a
        move of the model copies each parameter); False when they cannot be one (several devices
        or dtypes: they are then used where they are)."""
        if all(self.bound(j) for j in (range(len(self.masks)) if i is None else [i])):
            return True
        scores = [p.scores for p in self.masks]
        if len({(s.device, s.dtype) for s in scores}) > 1:
            return False
        self.data, self._grad, self._rows = torch.cat([s.detach().reshape(-1) for s in scores]), None, None
        for j, s in enumerate(scores):
            s.data = self.segment(j, self.data)
        return True

    def slot(self, i: int) -> Tensor | None:
        """Matrix i's segment of this backward's flat gradient (made by the first call of a backward),
        or None when its gradient must be a tensor of its own (see the class)."""
        s = self.masks[i].scores
        task = torch._C._current_graph_task_id()
        if self._grad is not None and task != self._task:  # left over by a backward that raised
            self._grad, self._given = None, set()
        if not self.grads or s.grad is not None or i in self._given or not self.bound(i):
            return None
        if self._grad is None:
            self._grad, self._task = torch.empty_like(self.data), task
            Variable._execution_engine.queue_callback(self._end_backward)
        self._given.add(i)
        return self.segment(i, self._grad)  # a fresh view, which autograd adopts as `.grad`

    @torch.no_grad()
    def settle(self, i: int, grad: Tensor) -> Tensor | None:
        """What matrix i's backward returns, given the gradient it made: that gradient, unless the
        matrix's segment went to an earlier use in this backward; then `grad` is added into the
        segment (as autograd would add the two) and nothing is returned for this use."""
        if i not in self._given or self._grad is None or torch._C._current_graph_task_id() != self._task:
            return grad
        slot = self.segment(i, self._grad)
        if grad.data_ptr() == slot.data_ptr() or self.masks[i].scores.grad is not None:
            return grad
        slot.add_(grad)
        return None

    @torch.no_grad()
    def _end_backward(self) -> None:
        """Put the gradients that autograd kept elsewhere (a copy it made; gradients accumulated
        over micro-batches before) into their segments, so that all of them form one flat tensor,
        and let go of the flat gradient: the `.grad` views hold it now."""
        flat, self._grad, self._given = self._grad, None, set()
        if flat is None:
            return
        for i, p in enumerate(self.masks):
            g = p.scores.grad
            if g is not None and g.data_ptr() != flat.data_ptr() + self.offsets[i] * flat.element_size():
                p.scores.grad = self.segment(i, flat).copy_(g)

    def rows(self) -> tuple[int, Tensor] | None:
        """The buffer as rows of `width` scores, width dividing every matrix (BERT-base: 768), and
        the matrix of each row ([rows], on the buffer's device); None when the widest such row is
        too narrow to be worth it."""
        if self._rows is None:
            sizes = [b - a for a, b in itertools.pairwise(self.offsets)]
            width = math.gcd(*sizes)
            which = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes) // width)
            self._rows = (width, which.to(self.data.device))
        return self._rows if self._rows[0] >= _MIN_ROW else None


_MIN_ROW = 64  # scores per row of `_segment_counts`: its per-row thresholds cost 4/64 B per score


def attach_scores(
    model: nn.Module,
    init: Mask,
    *,
    threshold: float = 0.01,
    alpha: float = 2.0,
    fused: bool = True,
    dtype: torch.dtype = torch.float32,
    pattern: str | None = None,
    flat: bool = False,
    flat_grads: bool = True,
) -> dict[str, ScoreMask]:
    """Freeze the model and put a ScoreMask on every weight of `init`: S = α·φ where kept, 0
    elsewhere, and t = φ (Eq. 3 and 5); with an N:M `pattern`, one t per group of M.

    `fused` routes masked linear and embedding modules (tied ones included) through the fused
    functions; False leaves every module on the generic `module.weight` path (same values and
    gradients, more memory: kept for tests and other module types). `dtype` is the scores' own.
    `flat` keeps all scores in one buffer (`FlatScores`; with `flat_grads`, their gradients too):
    the same masks, scores and thresholds, bit for bit, as one tensor per matrix (the default). It
    is off by default until a GPU measures it (issue 25): on a loaded CPU its step was not faster."""
    if threshold <= 0 or alpha < 1:
        raise ConfigError(f"need threshold > 0 and alpha >= 1 (TAMT Eq. 5), got {threshold}, {alpha}")
    for p in model.parameters():
        p.requires_grad_(False)
    modules = resolve_modules(model, list(init))
    if (nm := parse_pattern(pattern)) is not None:
        check_divisible(init.shapes, nm)
    devices = {m.weight.device for m in modules.values()}
    data, offset = None, 0  # [all target weights], one segment per matrix in `init`'s order
    if flat and len(devices) == 1 and modules:
        data = torch.empty(sum(m.weight.numel() for m in modules.values()), dtype=dtype, device=devices.pop())
    params = {}
    for key, m in modules.items():
        keep = init[key].to(m.weight.device)
        scores = torch.where(keep, alpha * threshold, 0.0).to(device=m.weight.device, dtype=torch.float32)
        storage = None if data is None else data[offset : offset + scores.numel()]
        params[key] = ScoreMask(scores, threshold, dtype, nm, storage=storage)
        offset += scores.numel()
    if data is not None:
        FlatScores(list(params.values()), data, grads=flat_grads)
    attach(model, params)
    scratch = Scratch()  # one set of buffers for all
    for p in params.values():
        p.scratch = scratch
    if fused:
        owned = {id(p) for p in params.values()}
        for module in model.modules():
            if (
                parametrize.is_parametrized(module, "weight")
                and id(module.parametrizations.weight[0]) in owned
            ):
                _fuse(module)
    return params


# --------------------------------------------------------------------------- exact selection

_SMALL = 1 << 18  # below this many scores a plain kthvalue over all of them is as fast
DIVERGED = "mask scores are not finite: the search diverged (try a lower --lr)"
_SAMPLE = 1 << 16


def _kth_largest(xs: list[Tensor], k: int) -> tuple[float, float | None]:
    """The exact k-th largest value over all of `xs` (flat, 1 <= k <= total), and the density of
    values around it (values per unit, None when unknown): a bracket from a strided sample,
    checked by counting, then `kthvalue` over the values inside the bracket only."""
    n = sum(x.numel() for x in xs)
    q = n - k + 1  # its rank from the bottom, 1-based
    if n <= _SMALL:
        return float(torch.cat(xs).kthvalue(q).values), None
    stride = max(1, n // _SAMPLE)
    sample = torch.cat([x[::stride] for x in xs])
    m = sample.numel()
    pos = (q - 0.5) / n * m
    margin = 4.0 * math.sqrt(m) + 16.0
    while True:
        lo_i, hi_i = math.floor(pos - margin), math.ceil(pos + margin)
        if lo_i < 1 and hi_i > m:
            return float(torch.cat(xs).kthvalue(q).values), None
        lo = float(sample.kthvalue(lo_i).values) if lo_i >= 1 else -math.inf
        hi = float(sample.kthvalue(hi_i).values) if hi_i <= m else math.inf
        below, bands = 0, []
        for x in xs:
            inside = x >= lo
            below += x.numel() - int(torch.count_nonzero(inside))
            inside &= x <= hi
            bands.append(x[inside])
        band = torch.cat(bands)
        if below < q <= below + band.numel():
            width = hi - lo
            density = band.numel() / width if 0 < width < math.inf else None
            return float(band.kthvalue(q - below).values), density
        margin *= 8  # the sample misjudged the quantile: widen the bracket


def _rank(vals: Tensor, *, largest: bool) -> Tensor:
    """All indices of `vals` (candidates in position order), best first: the largest values first
    (`largest`), or the smallest. Ties follow one rule everywhere: the lower position is the better
    one, so a cut keeps the lower positions. A stable sort, no host synchronisation."""
    if largest:
        return torch.argsort(vals, descending=True, stable=True)
    pos = torch.arange(vals.numel() - 1, -1, -1, device=vals.device)  # higher positions first
    return pos[torch.argsort(vals[pos], stable=True)]


def _below(t: float, dtype: torch.dtype) -> float:
    """The highest value of `dtype` below t, short of the subnormals (which a CPU's flush-to-zero
    mode would compare as 0)."""
    return float(_below_each(torch.tensor(t, dtype=dtype)))


def _below_each(x: Tensor) -> Tensor:
    """`_below` of every value of `x`, in its dtype."""
    b = torch.nextafter(x, torch.full_like(x, -math.inf))
    tiny = torch.finfo(x.dtype).tiny
    return torch.where(b.abs() < tiny, torch.where(x > 0, 0.0, -tiny).to(x.dtype), b)


class _Candidates:
    """Candidate weights gathered from a group of flat score tensors, in position order."""

    def __init__(self, xs: list[Tensor], idx: list[Tensor]):
        self.xs, self.idx = xs, idx
        self.vals = torch.cat([x[i] for x, i in zip(xs, idx, strict=True)])

    def lower(self, chosen: Tensor, value: float) -> None:
        """Set the scores of the chosen candidates to `value`."""
        flags = torch.zeros(self.vals.numel(), dtype=torch.bool, device=self.vals.device)
        flags[chosen] = True
        for x, i, f in zip(self.xs, self.idx, flags.split([i.numel() for i in self.idx]), strict=True):
            x.index_fill_(0, i[f], value)


def _cut(xs: list[Tensor], n_keep: int) -> float:
    """The threshold t at which exactly `n_keep` values of the flat tensors `xs` are >= t, from
    scratch: the n_keep-th largest value, and the values tied with it beyond the n_keep highest
    (the higher positions) lowered one step below it, in place."""
    total = sum(x.numel() for x in xs)
    if not 1 <= n_keep <= total:
        raise ValueError(f"cannot keep {n_keep} of {total} values")
    value, _ = _kth_largest(xs, n_keep)
    if not math.isfinite(value):
        raise TicketlabError(DIVERGED)
    excess = int(sum(torch.count_nonzero(x >= value) for x in xs)) - n_keep
    if excess > 0:  # ties at `value`
        ties = _Candidates(xs, [torch.nonzero(x == value).squeeze(1) for x in xs])
        ties.lower(_rank(ties.vals, largest=False)[:excess], _below(value, xs[0].dtype))
    return value


class Thresholder:
    """Keeps a group of ScoreMasks at exactly `n_keep` scores >= their threshold t after every
    optimizer step: M = 1[S ≥ t] keeps the n_keep highest scores.

    The first call selects from scratch (`_cut`). Later calls start from the previous threshold:
    one pass counts c = #{S >= t}; if c != n_keep, only the scores just above t (c > n_keep) or just
    below it (c < n_keep) are ranked, and |c - n_keep| of them are dropped or added. The result is
    the set a fresh selection gives (same tie rule); the cost is a pass over the scores instead of a
    selection over all of them. After an adjustment t moves to the middle of the gap between kept
    and pruned scores: kept scores sit in a tight cluster above it (Adam moves every score by about
    ±lr per step), so with t at the cluster's edge half of them would dip below t at every step and
    have to be re-ranked back in. Where kept and pruned scores tie at the cut, the pruned ones are
    lowered one step below it: no t could part them otherwise.
    """

    def __init__(self, params: Sequence[ScoreMask], n_keep: int):
        self.params = list(params)
        self.n_keep = n_keep
        self.total = sum(p.scores.numel() for p in self.params)
        if not 1 <= n_keep <= self.total:
            raise ConfigError(f"cannot keep {n_keep} of {self.total} weights")
        self.threshold: float | None = None
        self.density: float | None = None  # scores per unit of score around the threshold

    def __call__(self) -> None:
        rethreshold([self])

    def _scores(self) -> list[Tensor]:
        """The group's scores as flat tensors: the model's one buffer when the group is all of it
        (global ranking: one count, one ranking, instead of one per matrix), else one per matrix.
        Both give the same selection: every step concatenates the matrices in this order."""
        flat = self.params[0].flat
        if flat is not None and len(self.params) > 1 and flat.masks == self.params and flat.ensure():
            return [flat.data]
        return [p.scores.detach().reshape(-1) for p in self.params]

    def _publish(self, t: float) -> None:
        self.threshold = t
        for p in self.params:
            p.threshold.fill_(t)

    def _select(self) -> None:
        self._publish(_cut(self._scores(), self.n_keep))

    def _count(self) -> Tensor:
        """#{S >= t} over the group, on the scores' device (not read here: `rethreshold` reads all
        counts at once)."""
        scratch = self.params[0].scratch
        return sum(scratch.count_at_least(x, self.threshold) for x in self._scores())

    def _settle(self, kept: int) -> None:
        """Move t so that n_keep scores are >= it, given that `kept` are now."""
        if kept != self.n_keep:
            self._adjust(kept - self.n_keep)

    def _band(self, xs: list[Tensor], surplus: int) -> tuple[list[Tensor], float]:
        """Positions of the scores in [t, t + δ) (surplus > 0: kept, to drop) or in [t - δ, t)
        (surplus < 0: pruned, to add), enough of them to settle the surplus and find the new
        threshold; and the band's lower edge."""
        t, wanted = self.threshold, abs(surplus) + (1 if surplus > 0 else 0)
        delta = 2.0 * wanted / self.density if self.density else max(abs(t), 1e-3) * 1e-3
        for _ in range(64):
            lo, hi = (t, t + delta) if surplus > 0 else (t - delta, t)
            idx = [torch.nonzero((x >= lo) & (x < hi)).squeeze(1) for x in xs]  # a host read each
            count = sum(i.numel() for i in idx)
            if count >= wanted:
                self.density = count / delta
                return idx, lo
            delta *= 4.0
        raise TicketlabError(DIVERGED)

    def _adjust(self, surplus: int) -> None:
        xs, n, dtype = self._scores(), abs(surplus), self.params[0].scores.dtype
        idx, lo = self._band(xs, surplus)
        cand = _Candidates(xs, idx)
        order = _rank(cand.vals, largest=surplus < 0)  # the ones to flip first
        if n < order.numel():  # the last flipped and the first left, at the new cut (one host read)
            a, b = cand.vals[order[n - 1 : n + 1]].tolist()
            lowest_kept, highest_pruned = (a, b) if surplus < 0 else (b, a)
        else:  # the whole band joined (surplus < 0): the highest pruned score lies below it
            lowest_kept = float(cand.vals[order[n - 1]])
            highest_pruned = max(float(x.masked_fill(x >= lo, -math.inf).max()) for x in xs)
        if not math.isfinite(lowest_kept):
            raise TicketlabError(DIVERGED)
        if highest_pruned == lowest_kept:  # a tie at the cut (only band scores can be at it)
            pruned = order[:n] if surplus > 0 else order[n:]
            cand.lower(pruned[cand.vals[pruned] == lowest_kept], _below(lowest_kept, dtype))
        self._publish(_between(highest_pruned, lowest_kept, dtype))


def _between(lo: float, hi: float, dtype: torch.dtype = torch.float32) -> float:
    """A threshold t with lo < t <= hi (t = hi when lo == hi: a tie, whose pruned side `_adjust`
    has lowered below hi): the midpoint of the gap between the highest pruned and the lowest kept
    score, so that the next step's small score changes cross it rarely and the cheap path (count the
    scores >= t, nothing to rank) is the common one. The midpoint is rounded to the scores' `dtype`,
    as a comparison with them would round it; t = hi when no value of that dtype lies strictly
    between lo and hi."""
    mid = float(torch.tensor((lo + hi) / 2, dtype=dtype))
    return mid if lo < mid <= hi else hi


class GroupThresholder:
    """Keeps one ScoreMask at exactly N scores >= t in every group of M (an N:M pattern), with one
    threshold per group: the N-th highest score of the group. Selected afresh after every step
    (a sort of M scores per group, in blocks of rows); ties keep the lower position, and a score
    that loses a tie is lowered one step below the cut, as `_cut` does."""

    def __init__(self, param: ScoreMask, nm: NM):
        self.param, self.nm = param, nm

    def __call__(self) -> None:
        rethreshold([self])

    def select(self) -> None:
        scores, t = self.param.scores.detach(), self.param.threshold
        for r in row_blocks(scores):
            x = groups(scores[r], self.nm)  # a view: lowered ties land in the scores
            order = group_order(x)
            cut = x.gather(1, order[:, self.nm.n - 1 : self.nm.n])  # [groups, 1]
            losers = order[:, self.nm.n :]
            lost = x.gather(1, losers)
            x.scatter_(1, losers, torch.where(lost == cut, _below_each(cut).expand_as(lost), lost))
            t[r] = cut.view(t[r].shape)
        if not bool(torch.isfinite(t).all()):
            raise TicketlabError(DIVERGED)


def make_thresholders(
    params: Mapping[str, ScoreMask],
    sparsity: float,
    ranking: Ranking = "local",
    pattern: str | None = None,
) -> list[Thresholder | GroupThresholder]:
    """One Thresholder per matrix (local ranking) or one for all of them (global); with an N:M
    `pattern`, one GroupThresholder per matrix."""
    check_sparsity(sparsity)
    if (nm := parse_pattern(pattern)) is not None:
        return [GroupThresholder(p, nm) for p in params.values()]
    if ranking == "local":
        return [
            Thresholder([p], p.scores.numel() - round(sparsity * p.scores.numel())) for p in params.values()
        ]
    if ranking == "global":
        total = sum(p.scores.numel() for p in params.values())
        return [Thresholder(list(params.values()), total - round(sparsity * total))]
    raise ConfigError(f"ranking must be 'local' or 'global', got {ranking!r}")


@torch.no_grad()
def rethreshold(thresholders: Sequence[Thresholder | GroupThresholder]) -> None:
    """Re-derive every threshold from its scores (exact sparsity); call after every optimizer step.

    The counts of all groups are read from the device at once: on a GPU each read is a host
    synchronisation, which stalls the CPU until the GPU's queue is empty (BERT-base: 1 read per
    step instead of 73; an adjustment adds a few per matrix it ranks)."""
    todo = []
    for t in thresholders:
        if isinstance(t, GroupThresholder):  # N:M: every group's cut, afresh
            t.select()
        elif t.threshold is None:
            t._select()
        else:
            todo.append(t)
    if todo:
        counts = _segment_counts(todo)
        if counts is None:
            counts = [t._count() for t in todo]
            counts = torch.stack([c.to(counts[0].device) for c in counts])
        for t, k in zip(todo, counts.tolist(), strict=True):
            t._settle(k)


SEGMENTED_ON_CPU = False  # a CPU counts faster per matrix (`Scratch.count_at_least`); tests set it


def _segment_counts(todo: Sequence[Thresholder]) -> Tensor | None:
    """#{S >= t} of every matrix of `todo` (local ranking: one matrix each, all of one `FlatScores`),
    in a few passes over the flat buffer instead of two launches per matrix: the buffer as rows,
    each compared with its matrix's threshold, the rows' counts summed per matrix. None where it
    does not apply (then each thresholder counts its own)."""
    flat = todo[0].params[0].flat
    if flat is None or any(len(t.params) != 1 or t.params[0].flat is not flat for t in todo):
        return None
    if (flat.data.device.type == "cpu" and not SEGMENTED_ON_CPU) or not flat.ensure():
        return None
    layout = flat.rows()
    if layout is None:
        return None
    width, which = layout
    data = flat.data.view(-1, width)  # [rows, width]
    cut = torch.full((len(flat.masks),), math.inf, dtype=data.dtype)  # exact: t is a value of the dtype
    cut[[t.params[0].index for t in todo]] = torch.tensor([t.threshold for t in todo], dtype=data.dtype)
    cut = cut.to(data.device, non_blocking=True)[which]  # [rows]
    per_row = torch.empty(data.shape[0], dtype=torch.int64, device=data.device)
    step = max(1, (16 << 20) // width)  # rows per pass: a bool temporary of at most 16 MB
    for i in range(0, data.shape[0], step):
        torch.sum(data[i : i + step] >= cut[i : i + step, None], dim=1, out=per_row[i : i + step])
    counts = torch.zeros(len(flat.masks), dtype=torch.int64, device=data.device)
    counts.index_add_(0, which, per_row)
    return counts[[t.params[0].index for t in todo]]


# --------------------------------------------------------------------------- setup


@dataclass
class TamtConfig:
    """Settings of one TAMT search (defaults: TAMT §4.1.3 and Table 1)."""

    sparsity: Fraction | None  # None with a pattern: the one it implies
    objective: Objective = option("mlm", "training objective")
    init: Init = option("omp", "initial mask")
    ranking: Ranking = option("local", "rank per matrix (local) or over all targets (global)")
    threshold: PositiveFloat = option(0.01, "φ of Eq. 3/5")
    alpha: Annotated[float, Range(ge=1)] = option(2.0, "α of Eq. 5: initial score α·φ, above the cut")
    train_head: bool = option(  # TAMT-MLM trains the MLM head's transform and bias too (§3.4.3)
        True, "TAMT-MLM: keep the MLM head frozen", flag="--freeze-head"
    )
    head_lr: PositiveFloat | None = option(
        None, "TAMT-MLM: learning rate of the MLM head (default: --lr, as in TAMT)"
    )
    seed: int = 0  # for random init
    targets: Targets = None
    score_dtype: ScoreDtype = option(
        "float32",
        "bfloat16: scores, their gradients and Adam moments in bf16 with stochastic rounding "
        "(6 bytes less per target weight: less memory than dense training)",
    )
    pattern: str | None = None  # "N:M": exactly N of every M kept after every step (per-group cuts)

    def __post_init__(self) -> None:
        check_config(self)  # types and ranges (a nan threshold is refused here, not as a diverged search)
        self.sparsity = pattern_sparsity(self.sparsity, self.pattern, self.ranking)
        self.pattern = self.pattern and str(parse_pattern(self.pattern))  # " 2:4" is recorded as "2:4"

    @property
    def trains_head(self) -> bool:
        return self.train_head and "mlm" in self.objective

    @property
    def default_lr(self) -> float:
        return 2e-5 if self.objective == "kd" else 5e-5  # Table 1


def initial_mask(model: nn.Module, config: TamtConfig) -> Mask:
    """The mask TAMT starts from: OMP, or random at the same sparsity (with the same ranking)."""
    kw = {"ranking": config.ranking, "targets": config.targets, "pattern": config.pattern}
    if config.init == "omp":
        return omp_mask(model, config.sparsity, **kw)
    return random_mask(model, config.sparsity, seed=config.seed, **kw)


def prepare_tamt(
    model: nn.Module, config: TamtConfig, *, flat: bool = False, flat_grads: bool = True
) -> tuple[dict[str, ScoreMask], list[dict]]:
    """Freeze `model`, attach trainable masks initialised per `config`, and return (masks, param groups).

    The parameter groups are the scores and, for the MLM objectives with `train_head`, the MLM
    head's own parameters (transform, LayerNorm, output bias; the decoder weight is the masked
    word-embedding matrix and stays frozen). `flat`, `flat_grads`: see `attach_scores` (give the
    optimizer stepped inside the backward no flat gradient).
    """
    masks = attach_scores(
        model,
        initial_mask(model, config),
        threshold=config.threshold,
        alpha=config.alpha,
        dtype=SCORE_DTYPES[config.score_dtype],
        pattern=config.pattern,
        flat=flat,
        flat_grads=flat_grads,
    )
    groups = [{"params": [p.scores for p in masks.values()], "name": "scores"}]
    if config.trains_head:
        head = list(head_parameters(model).values())
        for p in head:
            p.requires_grad_(True)
        group = {"params": head, "name": "mlm_head"}
        if config.head_lr is not None:
            group["lr"] = config.head_lr
        groups.append(group)
    return masks, groups


def head_state(model: nn.Module) -> dict[str, Tensor]:
    """The MLM head's own parameters (a delta over the base model), for `mlm_head.safetensors`."""
    return {k: v.detach().cpu().clone() for k, v in head_parameters(model).items()}


# --------------------------------------------------------------------------- the search


def frozen_mask_warning(config: TamtConfig, train_config: TrainConfig) -> str | None:
    """Why a search would end with its initial mask, or None. AdamW moves a score by about lr per
    step (half that on average under linear decay), and Eq. 5 starts kept scores α·φ above pruned
    ones: a kept and a pruned score can swap only once their travel together covers that gap. The
    paper's lr (5e-5) crosses it after 200-400 of its 11K-22K steps; a short search at that lr is OMP."""
    steps = train_config.max_steps
    travel = train_config.lr * steps * (0.5 if train_config.schedule == "linear" else 1.0)
    gap = config.alpha * config.threshold
    if 2 * travel >= gap:
        return None
    return (
        f"TAMT: at lr {train_config.lr:g} over {steps} steps a score moves about {travel:.2g} in all, "
        f"so no kept score (start {gap:g}) and pruned score (start 0) can swap: the result will be the "
        f"initial {config.init} mask. Raise --lr (or --steps); the paper searched 11K-22K steps at 5e-5."
    )


def search_tamt(
    model: nn.Module,
    objective: SearchObjective,
    config: TamtConfig,
    train_config: TrainConfig,
    out: str | os.PathLike,
    *,
    base_model: str,
    save_at: Sequence[int] = (),
    settings: dict[str, Any] | None = None,
    accelerator: Accelerator | None = None,
    keep_checkpoint: bool = False,
) -> SearchResult:
    """Train masks on `model` (a pre-trained model; with its MLM head for the MLM objectives).

    `objective.loss_fn` is normally `pretraining_loss(config.objective)`. The mask (and, for
    TAMT-MLM, the trained head as `mlm_head.safetensors`) is written to `out` at the end and to
    `out/steps/step-N` at each step of `save_at`. See `search.run_search` for resuming.
    """
    if message := frozen_mask_warning(config, train_config):
        log.warning(message)
    # The flat score buffer is opt-in (`flat=True` to `prepare_tamt`, until a GPU measures it), so
    # this applies only where it is on: an optimizer stepped inside the backward frees each gradient
    # at once, and a flat gradient would hold them all.
    masks, groups = prepare_tamt(model, config, flat_grads=not train_config.optimizer_in_backward)
    thresholders = make_thresholders(masks, config.sparsity, config.ranking, config.pattern)
    spec = SearchSpec(
        method=f"tamt-{config.objective}",
        sparsity=config.sparsity,
        ranking=config.ranking,
        targets=config.targets,
        seed=config.seed if config.init == "random" else None,
        pattern=config.pattern,
        base_model=base_model,
        params=groups,
        on_step=lambda state: rethreshold(thresholders),
        describe=lambda: {
            "objective": config.objective,
            "init": config.init,
            "threshold": config.threshold,
            "alpha": config.alpha,
            "train_head": config.trains_head,
            "head_lr": config.head_lr if config.trains_head else None,
            "mlm_head": HEAD_FILE if config.trains_head else None,
            **({"score_dtype": config.score_dtype} if config.score_dtype != "float32" else {}),
        },
        settings=settings or {},
        extra_files=lambda: {HEAD_FILE: head_state(model)} if config.trains_head else None,
    )
    return run_search(
        model,
        objective,
        spec,
        train_config,
        out,
        save_at=save_at,
        accelerator=accelerator,
        keep_checkpoint=keep_checkpoint,
    )
