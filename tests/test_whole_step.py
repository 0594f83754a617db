"""The TAMT step as one compiled graph (`train/whole_step.py`): forward, loss, backward, clipping,
the optimizer's update and the re-threshold under `torch.compile(fullgraph=True)` with no graph
break (MLM, KD), and a compiled search's masks, scores and losses those of the eager loop (seeds,
float32 and bfloat16 scores). A one-layer BERT, and the graph run as dynamo traced it (backend
"eager": no AOT trace, no C++ build), so that each compilation takes seconds."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertForMaskedLM

from conftest import make_model, tiny_bert_config
from ticketlab.lm.objectives import MLMCollator, pretraining_loss
from ticketlab.masks import current_mask
from ticketlab.methods.tamt.search import Rethreshold, TamtConfig, make_thresholders, prepare_tamt
from ticketlab.train import whole_step
from ticketlab.train.config import TrainConfig
from ticketlab.train.loop import train
from ticketlab.train.optim import AdamW
from ticketlab.train.processes import LossModule


def _examples(tokenizer, n: int = 8, length: int = 12) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(5, len(tokenizer), (length,), generator=g)} for _ in range(n)]


def _tamt(objective: str, seed: int, dtype: str = "float32"):
    """A tiny BERT with TAMT's scores from a random mask of `seed` and its re-threshold."""
    model = make_model(BertForMaskedLM, tiny_bert_config(num_hidden_layers=1), seed=0).train()
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


def _search(objective: str, seed: int, dtype: str, tokenizer, out, compiled: bool, **settings):
    """Three steps of the training loop as a TAMT search takes them: (mask, scores, logged losses)."""
    model, groups, after = _tamt(objective, seed, dtype)
    config = TrainConfig(
        max_steps=3, batch_size=4, lr=3e-2, log_every=2, compile=compiled, progress=False, **settings
    )
    torch.manual_seed(seed)  # bf16 scores round stochastically: the same draws
    collate = MLMCollator(tokenizer, keep_clean=True)
    loss = pretraining_loss(objective)
    hook = after.graph_hook()
    train(
        model,
        groups,
        _examples(tokenizer),
        collate,
        loss,
        config,
        out_dir=out,
        after_step=after,
        graph_hook=hook,
    )
    scores = {k: v for k, v in model.state_dict().items() if k.endswith("scores")}
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return current_mask(model), scores, [{k: v for k, v in r.items() if "loss" in k} for r in logged]


BERTADAM = {"optimizer": "bertadam", "clip": "per-tensor", "weight_decay": 0.01, "grad_accum": 2}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("objective", "dtype", "seeds", "settings"),
    [("mlm", "float32", (0, 1), {}), ("kd", "bfloat16", (0, 2), {}), ("mlm+kd", "float32", (3,), BERTADAM)],
)
def test_compiled_steps_keep_the_eager_masks(
    objective, dtype, seeds, settings, tokenizer, tmp_path, monkeypatch
):
    """The same masks after every step as the eager loop's; the scores and the losses logged (every
    2 steps and at the end: read from the device then) to float rounding (MLM's compiled loss sums
    over all positions, the eager one over the gathered ones). AdamW with global clipping, and
    BertAdam with per-tensor clipping, weight decay and two micro-batches a step."""
    real, compiled = torch.compile, []
    monkeypatch.setattr(
        torch,
        "compile",
        lambda fn, **kw: compiled.append(fn) or real(fn, fullgraph=kw["fullgraph"], backend="eager"),
    )
    for seed in seeds:

        def run(whole: bool, seed: int = seed):
            return _search(objective, seed, dtype, tokenizer, tmp_path / f"{seed}{whole}", whole, **settings)

        eager_mask, eager_scores, eager_log = run(False)
        mask, scores, log = run(True)
        torch._dynamo.reset()
        assert [f.__func__ for f in compiled] == [whole_step.WholeStep.step]  # the loop's whole step
        compiled.clear()
        assert mask.keys() == eager_mask.keys() and len(log) == len(eager_log) == 2
        assert all(torch.equal(mask[k], eager_mask[k]) for k in mask), seed
        for k in scores:
            torch.testing.assert_close(scores[k], eager_scores[k], rtol=0, atol=1e-5)
        for row, eager_row in zip(log, eager_log, strict=True):
            assert row.keys() == eager_row.keys() and row == pytest.approx(eager_row, rel=1e-5)


def test_a_tamt_search_hands_its_rethreshold_to_the_whole_step(tiny_bert_dir, monkeypatch):
    """`search_tamt` gives the loop the re-threshold's in-graph part (`graph_hook`), which the loop
    compiles into its step under `compile` (`SearchConfig.compile`, `--compile`), and the same
    `Rethreshold` as the step's `on_step`, which repairs with the graph's flags."""
    from ticketlab.methods.search import SearchObjective
    from ticketlab.methods.tamt import search as tamt

    seen = {}
    monkeypatch.setattr(tamt, "run_search", lambda model, objective, spec, *a, **kw: seen.update(spec=spec))
    model = BertForMaskedLM.from_pretrained(tiny_bert_dir).train()
    objective = SearchObjective("mlm", [], None, pretraining_loss("mlm"))
    tamt.search_tamt(
        model, objective, TamtConfig(0.5), TrainConfig(max_steps=2, compile=True), "x", base_model="m"
    )
    spec = seen["spec"]
    assert isinstance(spec.on_step, Rethreshold) and spec.graph_hook.prepare == spec.on_step.prepare
    spec.graph_hook.prepare()
    flags = spec.graph_hook.inside()  # the fixed-shape step of every matrix: one flag each
    assert flags.dtype == torch.bool and flags.shape == (len(spec.on_step.thresholders),)
