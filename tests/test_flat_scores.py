"""TAMT's flat score buffer (`FlatScores`): all scores of a model in one tensor, their
gradients in one, AdamW stepping them as one, gives the masks, scores and thresholds of one tensor
per matrix, bit for bit, through training, gradient accumulation and a resume across the layouts."""

from __future__ import annotations

import pytest
import torch
from transformers import BertForMaskedLM

from conftest import make_model, tiny_bert_config, write_tokenizer
from ticketlab.lm.objectives import MLMCollator, pretraining_loss
from ticketlab.masks import current_mask
from ticketlab.methods.tamt import band
from ticketlab.methods.tamt import search as tamt
from ticketlab.methods.tamt.search import TamtConfig, make_thresholders, prepare_tamt, rethreshold
from ticketlab.train import optim
from ticketlab.train.config import TrainConfig
from ticketlab.train.loop import RESULT, train
from ticketlab.train.optim import AdamW, _runs

STEPS = 6


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tok"))


def _batch(tok, seed: int, n: int = 4, length: int = 24) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ex = [{"input_ids": torch.randint(5, len(tok), (length,), generator=g)} for _ in range(n)]
    return MLMCollator(tok, mlm_probability=0.3, keep_clean=True)(ex, [seed * 10 + i for i in range(n)])


def _state(masks, thresholders) -> dict[str, torch.Tensor]:
    """Every score, threshold and mask bit of the model, and the thresholders' own thresholds."""
    out = {}
    for k, p in masks.items():
        out[f"{k}/scores"] = p.scores.detach().clone()
        out[f"{k}/threshold"] = p.threshold.clone()
        out[f"{k}/mask"] = p.mask
    for i, t in enumerate(thresholders):
        if isinstance(t, tamt.Thresholder):
            out[f"thresholder{i}"] = torch.tensor(t.threshold, dtype=torch.float64)
    return out


def _search(
    tok, flat: bool, *, objective="mlm", ranking="local", score_dtype="float32", pattern=None, fused=None
):
    """STEPS steps of TAMT on a tiny random BERT as `train.loop.train` takes them (clipping included);
    the state after every step, and whether each step's score gradients formed one flat tensor that
    the optimizer stepped as one."""
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    sparsity = None if pattern else 0.5
    config = TamtConfig(
        sparsity, objective=objective, ranking=ranking, score_dtype=score_dtype, pattern=pattern
    )
    masks, groups = prepare_tamt(model, config, flat=flat)
    thresholders = make_thresholders(masks, config.sparsity, config.ranking, config.pattern)
    # Adam moves a score by about lr per step: masks change every step
    opt = AdamW(groups, lr=1e-2, fused=fused)
    loss_fn = pretraining_loss(objective)
    params = [p for g in groups for p in g["params"]]
    states, joined = [], []
    model.train()
    for step in range(STEPS):
        torch.manual_seed(step)  # dropout
        loss_fn(model, _batch(tok, step))[0].backward()
        torch.nn.utils.clip_grad_norm_(params, 0.05)  # small: every step is clipped
        joined.append([len(r) for r in _runs(opt.param_groups[0])])
        opt.step()
        opt.zero_grad(set_to_none=True)
        rethreshold(thresholders)
        states.append(_state(masks, thresholders))
    return states, joined


def _assert_equal(a: list[dict], b: list[dict]) -> None:
    for step, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), f"step {step + 1}: {k}"


@pytest.mark.parametrize(
    "kw",
    [
        {"ranking": "local"},
        {"ranking": "global"},
        {"ranking": "local", "score_dtype": "bfloat16"},
        {"ranking": "global", "score_dtype": "bfloat16"},
        {"ranking": "local", "objective": "kd"},
        {"ranking": "global", "objective": "mlm+kd"},
        {"ranking": "local", "pattern": "2:4"},
    ],
    ids=lambda kw: "-".join(kw.values()),
)
def test_flat_scores_train_the_masks_of_one_tensor_per_matrix(tok, kw):
    ref, ref_joined = _search(tok, False, **kw)
    flat, flat_joined = _search(tok, True, **kw)
    _assert_equal(ref, flat)
    n = sum(k.endswith("/scores") for k in ref[0])  # matrices
    assert all(j == [] for j in ref_joined)  # one tensor per matrix: nothing to join
    # float32: every step's gradients are one flat tensor, stepped as one (bf16 rounds per tensor)
    expected = [] if kw.get("score_dtype") == "bfloat16" else [n]
    assert all(j == expected for j in flat_joined), flat_joined
    assert any(not torch.equal(ref[0][k], ref[-1][k]) for k in ref[0] if k.endswith("/mask"))  # it moved


def test_fused_adamw_on_the_cpu_steps_the_flat_layout_as_the_per_matrix_one(tok):
    """With `fused=True` torch's fused CPU step steps every tensor, joined or not: a flat layout's
    run is not stepped as one by the chunked step, so both layouts give the same bits."""
    ref, _ = _search(tok, False, fused=True)
    flat, joined = _search(tok, True, fused=True)
    _assert_equal(ref, flat)
    assert all(j == [] for j in joined)


@pytest.mark.parametrize("flat", [False, True])
def test_a_few_candidates_give_what_every_score_as_candidate_gives(tok, monkeypatch, flat):
    """The band's candidates (`band.capacity`: a tiny model's matrices are all candidates) cut to a
    few per matrix: the same scores, thresholds and masks, bit for bit, every step."""
    ref, _ = _search(tok, flat)
    monkeypatch.setattr(band, "_MIN_CAP", 16)
    few, _ = _search(tok, flat)
    _assert_equal(ref, few)


def test_flat_step_through_torchs_functional_step_is_the_same(tok, monkeypatch):
    """Off the CPU a run takes torch's own step (foreach or fused, as the group says) over the one
    tensor. Forced on the CPU, where torch's step is its single-tensor one, it gives the chunked
    step's bits."""
    ref, _ = _search(tok, True)
    monkeypatch.setattr(optim, "_on_cpu", lambda t: False)
    other, joined = _search(tok, True)
    _assert_equal(ref, other)
    assert all(len(j) == 1 for j in joined)


def test_a_model_moved_after_attaching_gathers_its_scores_again(tok):
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    masks, _ = prepare_tamt(model, TamtConfig(0.5), flat=True)
    flat = next(iter(masks.values())).flat
    before = {k: p.scores.detach().clone() for k, p in masks.items()}
    model.to(torch.float64).to(torch.float32)  # each score parameter gets a tensor of its own
    assert not flat.bound(0)
    pretraining_loss("mlm")(model, _batch(tok, 0))[0].backward()
    assert all(flat.bound(i) for i in range(len(masks)))
    grads = [p.scores.grad for p in masks.values()]
    assert all(g.data_ptr() == grads[0].data_ptr() + flat.offsets[i] * 4 for i, g in enumerate(grads))
    assert all(torch.equal(before[k], p.scores) for k, p in masks.items())


def _train(tok, tmp_path, flat: bool, steps: int, grad_accum: int = 1):
    """`train.loop.train` with a checkpoint in tmp_path (resumed when there is one)."""
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    masks, groups = prepare_tamt(model, TamtConfig(0.5, objective="mlm"), flat=flat)
    thresholders = make_thresholders(masks, 0.5)
    data = [{"input_ids": _batch(tok, s, n=1)["input_ids"][0]} for s in range(16)]
    config = TrainConfig(
        max_steps=steps,
        batch_size=4,
        grad_accum=grad_accum,
        lr=1e-2,
        max_grad_norm=0.05,
        schedule="constant",  # a run of 3 steps continued to 6 is a run of 6
        progress=False,
        save_every=None,
    )
    train(
        model,
        groups,
        data,
        MLMCollator(tok, keep_clean=True),
        pretraining_loss("mlm"),
        config,
        out_dir=tmp_path,
        after_step=lambda s: rethreshold(thresholders),
    )
    (tmp_path / RESULT).unlink()  # so that a later call goes on from the checkpoint
    return current_mask(model), {k: p.scores.detach().clone() for k, p in masks.items()}


@pytest.mark.parametrize(
    "first,then", [(False, True), (True, False)], ids=["per-matrix>flat", "flat>per-matrix"]
)
def test_a_checkpoint_of_either_layout_resumes_in_the_other(tok, tmp_path, first, then):
    """The state dicts name one score tensor and one pair of moments per matrix in both layouts: a
    search checkpointed by one goes on in the other to the bits of an uninterrupted run."""
    mask_ref, scores_ref = _train(tok, tmp_path / "ref", first, 6, grad_accum=2)
    _train(tok, tmp_path / "run", first, 3, grad_accum=2)
    mask, scores = _train(tok, tmp_path / "run", then, 6, grad_accum=2)
    assert mask == mask_ref
    for k, s in scores.items():
        assert torch.equal(s, scores_ref[k]), k
