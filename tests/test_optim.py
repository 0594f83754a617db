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


def test_clipping_is_global_by_default_and_per_tensor_as_bertadam(tmp_path):
    """The default clips one global norm (torch's clip_grad_norm_), with AdamW's eps 1e-8 (TAMT's
    Tab. 1 names AdamW); `clip_per_tensor` clips each tensor alone to the norm, and `adam_eps` sets eps,
    as BertAdam in TAMT's train_kd.py (per-tensor, 1e-6). By hand: gradients of norm 5 and 0.5."""
    from accelerate import Accelerator

    from ticketlab.methods.tamt.config import TamtConfig
    from ticketlab.train.config import TrainConfig
    from ticketlab.train.schedule import adamw, clip_gradients
    from ticketlab.verbs.search import SearchConfig

    def clipped(clip: str) -> list[float]:
        a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
        a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.3, 0.4])
        config = TrainConfig(max_steps=1, clip=clip, max_grad_norm=1.0)
        clip_gradients(Accelerator(cpu=True), torch.optim.SGD([a, b], lr=1.0), config)
        return a.grad.tolist() + b.grad.tolist()

    whole = 1.0 / (25.25**0.5)  # one norm over both tensors
    assert clipped("global") == pytest.approx([3 * whole, 4 * whole, 0.3 * whole, 0.4 * whole])
    assert clipped("per-tensor") == pytest.approx([0.6, 0.8, 0.3, 0.4])
    search = dict(model="m", method=TamtConfig(sparsity=0.5), steps=2, out=tmp_path, corpus=["c.txt"])
    default = SearchConfig(**search).train_config(1e-3)
    assert (default.clip, default.adam_eps) == ("global", 1e-8)
    assert adamw([torch.nn.Parameter(torch.zeros(1))], default).param_groups[0]["eps"] == 1e-8
    bert_adam = SearchConfig(**search, clip_per_tensor=True, adam_eps=1e-6).train_config(1e-3)
    assert (bert_adam.clip, bert_adam.adam_eps) == ("per-tensor", 1e-6)
    assert adamw([torch.nn.Parameter(torch.zeros(1))], bert_adam).param_groups[0]["eps"] == 1e-6


def test_the_reference_optimiser_and_corpus_flags_reach_the_search_config():
    """`search tamt --clip-per-tensor --adam-eps 1e-6 --wikitext-markup keep --kd-teacher eval --count
    round` reaches the search's config; without them, TAMT's Tab. 1 AdamW and ticketlab's corpus."""
    from ticketlab.cli import build_parser
    from ticketlab.cli.search import search_config

    base = ["search", "tamt", "--model", "m", "--sparsity", "0.7", "--steps", "2", "--corpus", "c.txt"]
    default = search_config(build_parser().parse_args([*base, "--out", "o"]))
    assert (default.clip_per_tensor, default.adam_eps, default.wikitext_markup) == (False, 1e-8, "undo")
    assert (default.method.teacher_mode, default.method.count) == ("eval", "floor")  # TAMT-MLM's teacher
    flags = ["--clip-per-tensor", "--adam-eps", "1e-6", "--wikitext-markup", "keep", "--objective", "kd"]
    flags += ["--kd-teacher", "eval", "--count", "round", "--out", "o"]
    given = search_config(build_parser().parse_args([*base, *flags]))
    assert (given.clip_per_tensor, given.adam_eps, given.wikitext_markup) == (True, 1e-6, "keep")
    assert (given.method.teacher_mode, given.method.count) == ("eval", "round")
    kd = search_config(build_parser().parse_args([*base, "--objective", "kd", "--out", "o"]))
    assert kd.method.teacher_mode == "train"  # TAMT-KD's default, as train_kd.py


def test_compile_reaches_the_search_loop_and_stays_out_of_its_identity(tmp_path):
    """`search tamt --compile` sets the training loop's `compile` (the loop compiles the model and
    loss, as for `pretrain`); a compiled search resumes an eager one's directory, since compiling
    changes no setting of the search."""
    from ticketlab.cli import build_parser
    from ticketlab.cli.search import search_config

    base = ["search", "tamt", "--model", "m", "--sparsity", "0.7", "--steps", "2", "--corpus", "c.txt"]
    eager = search_config(build_parser().parse_args([*base, "--out", str(tmp_path)]))
    compiled = search_config(build_parser().parse_args([*base, "--compile", "--out", str(tmp_path)]))
    assert (eager.compile, eager.train_config(1e-3).compile) == (False, False)
    assert (compiled.compile, compiled.train_config(1e-3).compile) == (True, True)
    assert compiled.settings(1e-3) == eager.settings(1e-3)


def test_bertadam_takes_the_references_first_three_updates(tmp_path):
    """`optimizer: bertadam` is BertAdam as TAMT's train_kd.py steps it (its transformer/optimization.py),
    whole: each tensor's gradient clipped to 1 on its own, m and v without bias correction, eps 1e-6
    outside the root, decay 0.01 on the weight before the update, the lr of `warmup_linear` at step k
    (no warm-up: lr·(1 - k/t_total)). By hand over three steps, one tensor's gradient above the clip."""
    import math

    from accelerate import Accelerator

    from ticketlab.methods.tamt.config import TamtConfig
    from ticketlab.train.schedule import adamw, clip_gradients, make_scheduler
    from ticketlab.verbs.search import SearchConfig

    search = dict(model="m", method=TamtConfig(sparsity=0.5), steps=3, out=tmp_path, corpus=["c.txt"])
    config = SearchConfig(**search, optimizer="bertadam", schedule_steps=10).train_config(0.1)
    assert (config.clip, config.adam_eps, config.weight_decay) == ("per-tensor", 1e-6, 0.01)
    start = [[0.5, -1.0, 2.0], [3.0, 4.0]]
    grads = [[[0.2, -0.1, 0.05], [3.0, -4.0]], [[0.1, 0.3, -0.2], [0.6, 0.0]], [[-0.4, 0.2, 0.1], [2.0, 2.0]]]
    params = [torch.nn.Parameter(torch.tensor(p)) for p in start]
    optimizer = adamw(params, config)
    scheduler = make_scheduler(optimizer, config)
    for g in grads:
        for p, gp in zip(params, g, strict=True):
            p.grad = torch.tensor(gp)
        clip_gradients(Accelerator(cpu=True), optimizer, config)
        optimizer.step()
        scheduler.step()

    expected = [list(p) for p in start]
    m = [[0.0] * len(p) for p in start]
    v = [[0.0] * len(p) for p in start]
    for k, g in enumerate(grads):
        lr = 0.1 * (1 - k / 10)  # warmup_linear, warm-up 0: max((k/T - 1) / (0 - 1), 0)
        for i, gi in enumerate(g):
            norm = math.sqrt(sum(x * x for x in gi))
            gi = [x * min(1.0, 1.0 / (norm + 1e-6)) for x in gi]  # torch's clip_grad_norm_(p, 1.0)
            for j, x in enumerate(gi):
                m[i][j] = 0.9 * m[i][j] + 0.1 * x
                v[i][j] = 0.999 * v[i][j] + 0.001 * x * x
                update = m[i][j] / (math.sqrt(v[i][j]) + 1e-6) + 0.01 * expected[i][j]
                expected[i][j] -= lr * update
    for p, e in zip(params, expected, strict=True):
        assert p.tolist() == pytest.approx(e, rel=1e-5, abs=1e-6)
    # Adam's bias correction would have moved the first step by lr·(1 + wd·p), not 3.16 times as far
    assert abs(start[0][0] - expected[0][0]) > 0.3


def test_bertadam_is_one_option_whose_settings_are_its_own(tmp_path):
    from ticketlab.core.errors import ConfigError
    from ticketlab.methods.tamt.config import TamtConfig
    from ticketlab.verbs.search import SearchConfig

    search = dict(model="m", method=TamtConfig(sparsity=0.5), steps=3, out=tmp_path, corpus=["c.txt"])
    assert SearchConfig(**search).settings(1e-3)["optimizer"] == "adamw"
    assert SearchConfig(**search, optimizer="bertadam").settings(1e-3)["optimizer"] == "bertadam"
    with pytest.raises(ConfigError, match="adam_eps.*BertAdam's is 1e-06"):
        SearchConfig(**search, optimizer="bertadam", adam_eps=1e-7)
    with pytest.raises(ConfigError, match="score_dtype bfloat16"):
        SearchConfig(**{**search, "method": TamtConfig(0.5, score_dtype="bfloat16")}, optimizer="bertadam")
