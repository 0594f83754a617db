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
"""

from __future__ import annotations

import torch
from torch import Tensor

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

    def _step_chunked(self, p: Tensor, group: dict) -> None:
        if p.grad.is_sparse or group["amsgrad"] or group["maximize"]:
            raise NotImplementedError(f"{p.dtype} parameters: dense gradients, no amsgrad, no maximize")
        state = self.state[p]
        if not state:  # torch's layout, so that state_dict and checkpoints are the same
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = float(state["step"])
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        lr = float(lr)
        step_size, bc2_sqrt = lr / (1 - b1**t), (1 - b2**t) ** 0.5
        flat = [x.view(-1) for x in (p, p.grad, state["exp_avg"], state["exp_avg_sq"])]
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


def _chunked(p: Tensor, group: dict) -> bool:
    """Whether `AdamW` steps `p` itself, a chunk at a time (else torch's step does). A float32
    parameter that needs what the chunked step lacks (amsgrad, maximize, a sparse gradient) keeps
    torch's step; a bf16 one has no other."""
    if p.dtype == torch.bfloat16:
        return True
    plain = not (group["amsgrad"] or group["maximize"] or p.grad.is_sparse)
    return plain and p.device.type == "cpu" and p.dtype == torch.float32 and p.numel() > CHUNK
