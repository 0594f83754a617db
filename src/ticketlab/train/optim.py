"""AdamW that steps bfloat16 parameters in float32 and rounds them back stochastically, and large
float32 parameters on a CPU a chunk at a time.

TAMT with `score_dtype="bfloat16"` keeps the scores, their gradients and their Adam moments in
bf16 (6 bytes per target weight instead of 12). Rounding an update to the nearest bf16 loses it
whenever it is below half a unit in the last place: a score at α·φ = 0.02 has an ulp of 1.2e-4, so
an Adam step of lr = 2e-5 (TAMT-KD's default) would never move a kept score at all. Rounding
stochastically, up with probability equal to the remainder's share of an ulp, makes every update
count in expectation (Gupta et al. 2015; Zamirai et al. 2020, "Revisiting BFloat16 Training").

float32 parameters take `torch.optim.AdamW`'s own step, bit for bit. On a CPU, a float32 parameter
of more than `CHUNK` entries takes its operations a chunk at a time: torch's step makes a temporary
as large as the parameter (the square root of the second moment), 94 MB for BERT-base's word
embeddings, at the moment when every gradient is held: the peak of a training step. bf16 parameters
are updated in chunks too: the float32 copies of parameter, gradient and moments never exceed
`CHUNK` entries, which a CPU keeps in cache; a GPU pays ~20 kernel launches per chunk instead, so
its chunks are 16 times larger. The moments are rounded stochastically too: with β2 = 0.999 the
second moment changes by 0.1% a step, below half a bf16 ulp (0.2-0.4%), so round-to-nearest would
freeze it. The state has torch's AdamW layout (`step`, `exp_avg`, `exp_avg_sq`), so checkpoints look the same.

Float32 parameters that lie end to end in one memory, in their group's order, and whose gradients do
too (TAMT's scores, `methods.tamt.scores.FlatScores`: a view per matrix of one buffer) are stepped as one
tensor (a "run"): their moments are made views of one buffer as well, and the step runs once over
all of them: on a CPU a chunk at a time, as above; elsewhere torch's own step (foreach or fused, as
the group says) over the one tensor. The operations per entry are those of the separate steps, in
the same order: the same bits, with one kernel launch per operation instead of one per parameter.
The state stays one entry per parameter (checkpoints of either layout load into either). bfloat16
runs are not joined: the stochastic rounding draws its noise per parameter and chunk, so a joined
step would round other entries up.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.adam import adam
from torch.optim.optimizer import _get_scalar_dtype

CHUNK = 1 << 20
GPU_CHUNK = 1 << 24  # 256 MB of float32 temporaries at most
NOISE_WIDTH = 1 << 16


def round_stochastic_(out: Tensor, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """out (bfloat16) <- x (float32), rounded up or down at random, E[out] = x.

    A bf16 value is the top 16 bits of a float32: adding uniform noise to the low 16 bits and
    truncating them carries into the kept bits with probability (low bits) / 2^16. The bits are
    those of the magnitude (sign-magnitude format), so this works alike for negative values.
    One call draws noise for `NOISE_WIDTH` positions and reuses it for every row of that width:
    each value still gets a fresh uniform draw at every call (unbiased), and values a multiple of
    `NOISE_WIDTH` apart round together within a call. Drawing one per value costs 7 ms per million
    on a CPU core, more than the Adam step itself."""
    xs, outs = x.reshape(-1).view(torch.int32), out.view(-1)
    n = xs.numel()
    if n == 0:
        return out
    width = min(n, NOISE_WIDTH)
    noise = torch.randint(0, 1 << 16, (width,), dtype=torch.int32, device=x.device, generator=generator)
    full = n - n % width
    parts = [(xs[:full].view(-1, width), outs[:full].view(-1, width), noise)]
    if full < n:
        parts.append((xs[full:], outs[full:], noise[: n - full]))
    for bits, dst, nz in parts:
        rounded = bits.add(nz).bitwise_and_(-65536)  # -65536 = 0xFFFF0000: clear the low 16 bits
        dst.copy_(rounded.view(torch.float32))  # exact: the value is a bf16 value already
    return out


class AdamW(torch.optim.AdamW):
    """`torch.optim.AdamW`, plus stochastic rounding for bfloat16 parameters and chunked steps for
    large float32 parameters on a CPU (see the module)."""

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        held = []  # parameters stepped here and hidden from torch's step
        for group in self.param_groups:
            for run in _runs(group):
                if self._step_run(run, group):
                    held += [(p, p.grad) for p in run]
                    for p in run:
                        p.grad = None
            for p in group["params"]:
                if p.grad is not None and _chunked(p, group):
                    self._step_chunked(p, group)
                    held.append((p, p.grad))
                    p.grad = None
        try:
            super().step()
        finally:
            for p, grad in held:
                p.grad = grad
        return loss

    def _step_run(self, run: list[Tensor], group: dict) -> bool:
        """Step the parameters of `run` (see `_runs`) as one tensor; False when their states differ
        (e.g. one of them had no gradient at an earlier step): then each takes its own step."""
        moments = self._run_moments(run, group)
        if moments is None:
            return False
        steps = [self.state[p]["step"] for p in run]
        p, g = _joined(run), _joined([q.grad for q in run])
        m, v = moments
        if _on_cpu(p):  # chunked, as the large parameters are (no temporary as large as p)
            torch._foreach_add_(steps, 1.0)
            _adam_chunks(p, g, m, v, float(steps[0]), group)
            return True
        b1, b2 = group["betas"]
        adam(  # what torch's step would run over the separate tensors, over the one
            [p],
            [g],
            [m],
            [v],
            [],
            steps[:1],
            amsgrad=False,
            has_complex=False,
            beta1=b1,
            beta2=b2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            foreach=group["foreach"],
            capturable=group["capturable"],
            differentiable=False,
            fused=group["fused"],
            grad_scale=getattr(self, "grad_scale", None),
            found_inf=getattr(self, "found_inf", None),
            decoupled_weight_decay=True,
        )
        if len(steps) > 1:
            torch._foreach_copy_(steps[1:], steps[:1] * (len(steps) - 1))
        return True

    def _run_moments(self, run: list[Tensor], group: dict) -> tuple[Tensor, Tensor] | None:
        """The moments of `run` as two flat tensors, each parameter's state a view of its part: made
        at the first step, joined into one buffer once after a checkpoint was loaded (which gives
        each its own tensor). None when the states differ (a step count, or one has none)."""
        states = [self.state[p] for p in run]
        if not any(states):  # the first step: torch's layout and initial values
            scalar = {"dtype": _get_scalar_dtype(is_fused=group["fused"]), "device": run[0].device}
            on_device = group["capturable"] or group["fused"]
            for st in states:
                st["step"] = (
                    torch.zeros((), **scalar) if on_device else torch.tensor(0.0, dtype=scalar["dtype"])
                )
            total = sum(p.numel() for p in run)
            joined = [torch.zeros(total, dtype=run[0].dtype, device=run[0].device) for _ in range(2)]
            _split_into(joined, run, states)
            return joined[0], joined[1]
        if not all(states):
            return None
        steps = torch.stack([st["step"] for st in states])  # one host read, wherever they are
        if not bool((steps == steps[0]).all()):
            return None
        moments = [[st[k] for st in states] for k in ("exp_avg", "exp_avg_sq")]
        if not all(_adjacent(a, b) for ts in moments for a, b in itertools.pairwise(ts)):
            joined = [torch.cat([t.reshape(-1) for t in ts]) for ts in moments]
            _split_into(joined, run, states)
            return joined[0], joined[1]
        return _joined(moments[0]), _joined(moments[1])

    def _step_chunked(self, p: Tensor, group: dict) -> None:
        if p.grad.is_sparse or group["amsgrad"] or group["maximize"]:
            raise NotImplementedError(f"{p.dtype} parameters: dense gradients, no amsgrad, no maximize")
        state = self.state[p]
        if not state:  # torch's layout, so that state_dict and checkpoints are the same
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        flat = [x.view(-1) for x in (p, p.grad, state["exp_avg"], state["exp_avg_sq"])]
        _adam_chunks(*flat, float(state["step"]), group)


def _adam_chunks(p: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, t: float, group: dict) -> None:
    """AdamW's step `t` over flat tensors, a chunk at a time: float32 with torch's single-tensor
    operations in its order, bfloat16 in float32 and rounded back stochastically (see the module)."""
    lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    lr = float(lr)
    step_size, bc2_sqrt = lr / (1 - b1**t), (1 - b2**t) ** 0.5
    flat = (p, grad, exp_avg, exp_avg_sq)
    chunk = CHUNK if p.device.type == "cpu" else GPU_CHUNK
    for i in range(0, p.numel(), chunk):
        p_c, g_c, m_c, v_c = (x[i : i + chunk] for x in flat)
        if p.dtype == torch.float32:  # torch's single-tensor step, its operations in its order
            if wd:
                p_c.mul_(1 - lr * wd)
            m_c.lerp_(g_c, 1 - b1)
            v_c.mul_(b2).addcmul_(g_c, g_c, value=1 - b2)
            p_c.addcdiv_(m_c, v_c.sqrt().div_(bc2_sqrt).add_(eps), value=-step_size)
            continue
        g = g_c.float()
        m = m_c.float().lerp_(g, 1 - b1)
        v = v_c.float().mul_(b2).addcmul_(g, g, value=1 - b2)
        round_stochastic_(m_c, m)
        round_stochastic_(v_c, v)
        x = p_c.float()
        if wd:
            x.mul_(1 - lr * wd)
        x.addcdiv_(m, v.sqrt_().div_(bc2_sqrt).add_(eps), value=-step_size)
        round_stochastic_(p_c, x)


def _on_cpu(t: Tensor) -> bool:
    return t.device.type == "cpu"


def _runs(group: dict) -> list[list[Tensor]]:
    """Runs of two or more consecutive float32 parameters of `group` that lie end to end in one
    memory, with their gradients end to end too (and nothing that the joined step lacks: amsgrad,
    maximize, a differentiable step, sparse gradients). None on a CPU under `fused=True`: there
    torch's fused step steps each tensor, which the joined (chunked) step would not match in bits."""
    if group["amsgrad"] or group["maximize"] or group["differentiable"]:
        return []
    fused = bool(group["fused"])
    joinable = lambda p: _joinable(p) and not (fused and _on_cpu(p))  # noqa: E731
    runs: list[list[Tensor]] = []
    run: list[Tensor] = []
    for p in group["params"]:
        if run and joinable(p) and p.device == run[-1].device and _follows(run[-1], p):
            run.append(p)
            continue
        if len(run) > 1:
            runs.append(run)
        run = [p] if joinable(p) else []
    return runs + [run] if len(run) > 1 else runs


def _joinable(p: Tensor) -> bool:
    g = p.grad
    return (
        g is not None
        and p.dtype == torch.float32
        and not g.is_sparse
        and p.is_contiguous()
        and g.is_contiguous()
    )


def _follows(a: Tensor, b: Tensor) -> bool:
    """Whether parameter `b` and its gradient start where `a` and its gradient end."""
    return _adjacent(a, b) and _adjacent(a.grad, b.grad)


def _adjacent(a: Tensor, b: Tensor) -> bool:
    """Whether `b` starts where `a` ends, in the same memory."""
    return (
        a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
        and b.data_ptr() == a.data_ptr() + a.numel() * a.element_size()
    )


def _joined(ts: Sequence[Tensor]) -> Tensor:
    """Tensors that lie end to end (`_adjacent`) as one flat view."""
    total = sum(t.numel() for t in ts)
    return ts[0].detach().as_strided((total,), (1,), ts[0].storage_offset())


def _split_into(joined: list[Tensor], run: list[Tensor], states: list[dict]) -> None:
    """Make each parameter's `exp_avg` and `exp_avg_sq` its part of the flat `joined` pair."""
    offset = 0
    for p, st in zip(run, states, strict=True):
        st["exp_avg"], st["exp_avg_sq"] = (j[offset : offset + p.numel()].view_as(p) for j in joined)
        offset += p.numel()


def _chunked(p: Tensor, group: dict) -> bool:
    """Whether `AdamW` steps `p` itself, a chunk at a time (else torch's step does). A float32
    parameter that needs what the chunked step lacks (amsgrad, maximize, a sparse gradient) keeps
    torch's step; a bf16 one has no other."""
    if p.dtype == torch.bfloat16:
        return True
    plain = not (group["amsgrad"] or group["maximize"] or p.grad.is_sparse)
    return plain and p.device.type == "cpu" and p.dtype == torch.float32 and p.numel() > CHUNK


class _ReferenceAdam(torch.optim.Optimizer):
    """The step both reference optimisers share: a first moment without bias correction over a second
    statistic (`_scale`), decoupled weight decay on the weight before the update, and the group's
    current lr (the loop's schedule), p ← p - lr·(m / scale + wd·p). float32 parameters only: a bf16
    update would round most steps away (`AdamW` rounds them stochastically)."""

    second = "exp_avg_sq"  # the state key of the second statistic

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def _scale(self, second: Tensor, grad: Tensor, b2: float, eps: float) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            (b1, b2), eps, wd, lr = group["betas"], group["eps"], group["weight_decay"], float(group["lr"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.dtype != torch.float32:
                    raise TypeError(f"{type(self).__name__} steps float32 parameters, got {p.dtype}")
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state[self.second] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m = state["exp_avg"].mul_(b1).add_(p.grad, alpha=1 - b1)
                update = m / self._scale(state[self.second], p.grad, b2, eps)
                if wd:
                    update.add_(p, alpha=wd)
                p.add_(update, alpha=-lr)
                state["step"] += 1
        return loss


class BertAdam(_ReferenceAdam):
    """Adam as BERT's and TinyBERT's `BertAdam` steps it (TAMT's `train_kd.py`, its
    `transformer/optimization.py`): no bias correction, so the early updates are larger than Adam's
    (under a constant gradient m / √v is 3.2 times Adam's step at step 1, 6.5 times at step 10, 1.3
    times at step 1,000), decoupled weight decay, ε outside the root:

        m ← β1·m + (1-β1)·g,   v ← β2·v + (1-β2)·g²,   p ← p - lr·(m / (√v + ε) + wd·p)

    BertAdam's `warmup_linear` is the loop's linear schedule (`train.schedule.make_scheduler`); its
    per-tensor gradient clipping is the loop's (`TrainConfig.clip="per-tensor"`), done before the step
    as BertAdam does inside it."""

    def _scale(self, second: Tensor, grad: Tensor, b2: float, eps: float) -> Tensor:
        return second.mul_(b2).addcmul_(grad, grad, value=1 - b2).sqrt().add_(eps)


class MtdnnAdamax(_ReferenceAdam):
    """Adamax as MT-DNN steps it (`module/bert_optim.py`'s `Adamax`, which Liang et al.'s
    `train_rewind.py` fine-tunes super tickets with): no bias correction, ε inside the norm and again
    under the quotient, decoupled weight decay:

        m ← β1·m + (1-β1)·g,   u ← max(β2·u, |g| + ε),   p ← p - lr·(m / (u + ε) + wd·p)"""

    second = "exp_inf"

    def _scale(self, second: Tensor, grad: Tensor, b2: float, eps: float) -> Tensor:
        return torch.maximum(second.mul_(b2), grad.abs().add_(eps), out=second).add(eps)
