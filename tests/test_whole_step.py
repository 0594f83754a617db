"""The TAMT step as one compiled graph (`train/whole_step.py`): forward, loss, backward, clipping,
the optimizer's update and the re-threshold under `torch.compile(fullgraph=True)` with no graph
break (MLM, KD), and a compiled search's masks, scores and losses those of the eager loop (seeds,
float32 and bfloat16 scores). The graphs run as AOT autograd traced them (`aot_eager`: the graph a
compiler gets, without a C++ build)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertForMaskedLM

from ticketlab.lm.objectives import MLMCollator, pretraining_loss
from ticketlab.masks import current_mask
from ticketlab.methods.tamt import Rethreshold, TamtConfig, make_thresholders, prepare_tamt
from ticketlab.train import whole_step
from ticketlab.train.config import TrainConfig
from ticketlab.train.loop import train
from ticketlab.train.optim import AdamW
from ticketlab.train.processes import LossModule

from conftest import make_model, tiny_bert_config


def _examples(tokenizer, n: int = 8, length: int = 12) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(5, len(tokenizer), (length,), generator=g)} for _ in range(n)]


def _tamt(objective: str, seed: int, dtype: str = "float32"):
    """A tiny BERT with TAMT's scores from a random mask of `seed` and its re-threshold."""
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0).train()
    config = TamtConfig(0.7, objective=objective, init="random", seed=seed, score_dtype=dtype)
    masks, groups = prepare_tamt(model, config)
    return model, groups, Rethreshold(make_thresholders(masks, 0.7, count=config.count))


@pytest.mark.parametrize("objective", ["mlm", "kd"])
def test_the_whole_step_is_one_graph(objective, tokenizer):
    model, groups, after = _tamt(objective, seed=0)
    config = TrainConfig(max_steps=2, progress=False)
    loss = LossModule(model, pretraining_loss(objective))
    step = whole_step.WholeStep(loss, AdamW(groups, lr=1e-2), config, after.graph_hook(), torch.device("cpu"))
    whole_step.init_state(step.optimizer)
    after.prepare()
    batch = MLMCollator(tokenizer, keep_clean=True)(_examples(tokenizer, 4), list(range(4)))
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        explained = torch._dynamo.explain(step.step)([batch])
    torch._dynamo.reset()
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


def _search(objective: str, seed: int, dtype: str, tokenizer, compiled: bool):
    """Three steps of the training loop as a TAMT search takes them: (masks, scores, logged losses)."""
    model, groups, after = _tamt(objective, seed, dtype)
    config = TrainConfig(max_steps=3, batch_size=4, lr=3e-2, log_every=1, compile=compiled, progress=False)
    torch.manual_seed(seed)  # bf16 scores round stochastically: the same draws
    examples = _examples(tokenizer)
    collate = MLMCollator(tokenizer, keep_clean=True)
    hook = after.graph_hook()
    train(model, groups, examples, collate, pretraining_loss(objective), config, after_step=after, graph_hook=hook)
    scores = {k: v for k, v in model.state_dict().items() if k.endswith("scores")}
    return current_mask(model), scores


@pytest.mark.parametrize(("objective", "dtype"), [("mlm", "float32"), ("kd", "bfloat16")])
def test_compiled_steps_keep_the_eager_masks(objective, dtype, tokenizer, monkeypatch):
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, fullgraph=True, backend="aot_eager"))
    for seed in (0, 1):
        eager_mask, eager_scores = _search(objective, seed, dtype, tokenizer, compiled=False)
        mask, scores = _search(objective, seed, dtype, tokenizer, compiled=True)
        assert mask.keys() == eager_mask.keys()
        assert all(torch.equal(mask[k], eager_mask[k]) for k in mask), seed
        assert all(torch.equal(scores[k], eager_scores[k]) for k in scores), seed
        torch._dynamo.reset()
