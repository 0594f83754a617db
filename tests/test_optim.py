"""AdamW with stochastic rounding for bf16 parameters: unbiased rounding onto the two neighbouring
bf16 values, float32 parameters stepped bit for bit as torch's AdamW (whole or in chunks), and bf16
steps smaller than half an ulp that still move the parameter (they vanish under round-to-nearest)."""

from __future__ import annotations

import pytest
import torch

from ticketlab.train import optim
from ticketlab.train.optim import AdamW, round_stochastic_

ULP_AT_1 = 2.0**-7  # bf16 keeps 7 mantissa bits


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_stochastic_rounding_is_unbiased_and_lands_on_the_two_neighbours(sign):
    torch.manual_seed(0)
    x = torch.full((200_000,), sign * (1.0 + 0.25 * ULP_AT_1))  # a quarter of the way up
    out = round_stochastic_(torch.empty_like(x, dtype=torch.bfloat16), x).float()
    up = out.abs() == 1.0 + ULP_AT_1
    assert torch.all(up | (out.abs() == 1.0))  # only the two neighbours, sign kept
    assert float(up.float().mean()) == pytest.approx(0.25, abs=0.005)  # P(up) = 0.25: E[out] = x
    exact = torch.tensor([0.0, 1.0, -0.0195, 3.0e38]).bfloat16().float()
    assert torch.equal(round_stochastic_(torch.empty_like(exact, dtype=torch.bfloat16), exact).float(), exact)


@pytest.mark.parametrize("chunk", [None, 37])
def test_float32_parameters_step_bit_for_bit_as_torch_adamw(chunk, monkeypatch):
    """Small ones take torch's step; large ones (on a CPU) their own chunked step, with the same result."""
    if chunk is not None:  # the 600-entry matrix in 17 chunks (the last one shorter), the vector whole
        monkeypatch.setattr(optim, "CHUNK", chunk)
    g = torch.Generator().manual_seed(0)
    ref = [torch.randn(30, 20, generator=g).requires_grad_(), torch.randn(7, generator=g).requires_grad_()]
    ours = [p.detach().clone().requires_grad_() for p in ref]
    bf16 = torch.zeros(5, dtype=torch.bfloat16, requires_grad=True)  # a bf16 neighbour must not disturb
    opt_ref = torch.optim.AdamW(ref, lr=1e-2, weight_decay=0.1)
    opt = AdamW([*ours, bf16], lr=1e-2, weight_decay=0.1)
    for _ in range(4):
        grads = [torch.randn(p.shape, generator=g) for p in ref]
        for p, q, gr in zip(ref, ours, grads, strict=True):
            p.grad, q.grad = gr.clone(), gr.clone()
        bf16.grad = torch.ones(5, dtype=torch.bfloat16)
        opt_ref.step()
        opt.step()
        assert bf16.grad is not None  # handed back after the step, for the caller's zero_grad
    for p, q in zip(ref, ours, strict=True):
        assert torch.equal(p, q)
        assert all(torch.equal(opt.state[q][k], opt_ref.state[p][k]) for k in opt_ref.state[p])
    assert opt.state[bf16].keys() == opt_ref.state[ref[0]].keys()  # torch's layout: same checkpoints
    assert opt.state[bf16]["exp_avg"].dtype == torch.bfloat16  # 2 + 2 bytes of moments, not 4 + 4


def test_large_float32_parameters_with_amsgrad_keep_torchs_step(monkeypatch):
    """What the chunked step lacks (amsgrad, maximize) falls back to torch's step, not to an error."""
    monkeypatch.setattr(optim, "CHUNK", 37)
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(30, 20, generator=g).requires_grad_()
    ours = ref.detach().clone().requires_grad_()
    opt_ref = torch.optim.AdamW([ref], lr=1e-2, amsgrad=True, maximize=True)
    opt = AdamW([ours], lr=1e-2, amsgrad=True, maximize=True)
    for _ in range(3):
        grad = torch.randn(ref.shape, generator=g)
        ref.grad, ours.grad = grad.clone(), grad.clone()
        opt_ref.step()
        opt.step()
    assert torch.equal(ref, ours)


def _adam(p: torch.Tensor, opt_cls, steps: int, lr: float) -> torch.Tensor:
    opt = opt_cls([p], lr=lr)
    for _ in range(steps):
        p.grad = torch.ones_like(p)  # constant gradient: every Adam step is exactly -lr
        opt.step()
    return p.detach().float()


def test_bf16_steps_below_half_an_ulp_move_the_parameter_in_expectation():
    """A TAMT score at α·φ = 0.02 has a bf16 ulp of 1.2e-4; TAMT-KD's default lr is 2e-5."""
    torch.manual_seed(0)
    start, lr, steps = 0.02, 2e-5, 50
    fp32 = _adam(torch.full((1,), start, requires_grad=True), torch.optim.AdamW, steps, lr)
    nearest = _adam(
        torch.full((20_000,), start, dtype=torch.bfloat16, requires_grad=True), torch.optim.AdamW, steps, lr
    )
    ours = _adam(torch.full((20_000,), start, dtype=torch.bfloat16, requires_grad=True), AdamW, steps, lr)
    assert float(fp32) == pytest.approx(start - steps * lr, abs=1e-6)  # 0.019
    assert torch.all(nearest == torch.tensor(start).bfloat16().float())  # round-to-nearest: stuck
    bf16_start = float(torch.tensor(start).bfloat16())  # 0.020020
    assert float(ours.mean()) == pytest.approx(bf16_start - steps * lr, abs=1e-6)  # unbiased on average
