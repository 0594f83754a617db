"""The scores of TAMT (`search.py`) and the masked layers that compute with them.

Every target weight W gets a real-valued score S (`ScoreMask`). The forward pass uses W ⊙ M with
the binary mask M = 1[S ≥ t] (Eq. 3); the backward pass sends the gradient straight through the
binarisation to the scores (Eq. 4): ∂L/∂S = ∂L/∂(W⊙M) ⊙ W. The weights are frozen. Linear and
embedding modules compute through fused functions (`_MaskedLinear`, `_MaskedEmbedding`, in
`masked_layers.py`) that keep no W ⊙ M; all scores of a model may live in one buffer (`FlatScores`).
`thresholds.py` keeps t.

Scores are float32 by default. `TamtConfig.score_dtype = "bfloat16"` halves them, their gradients
and their Adam moments (the optimizer rounds bf16 parameters stochastically, `train.optim.AdamW`), so
that mask training holds less than dense training: a flag, since it changes the search's arithmetic.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.autograd import Variable
from torch.nn.utils import parametrize

from ...core.errors import ConfigError
from ...masks import Mask, MaskParametrization, attach
from ...masks.apply import resolve_modules
from ...masks.pattern import NM, check_divisible, parse_pattern
from .masked_layers import Scratch, _fuse, _StraightThrough, at_least

SCORE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


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
      the gradients are adjacent in memory as the scores are, and `train.optim.AdamW` steps all of them
      as one tensor (the same operations per score, in the same order: the same bits);
    * the re-threshold: global ranking counts and ranks the one flat tensor.

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
        self.data, self._grad = torch.cat([s.detach().reshape(-1) for s in scores]), None
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
    is off by default until a GPU measures it: on a CPU its step is slower (1.24x a
    dense step against 1.09x, bert-base shape)."""
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
