"""The shared training loop: learning, exact resume, best-score bookkeeping, accumulation, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertForSequenceClassification

from conftest import make_model, tiny_bert_config
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.masks import apply_mask
from ticketlab.methods import omp_mask
from ticketlab.train.config import TrainConfig
from ticketlab.train.determinism import batch_indices, example_seed
from ticketlab.train.loop import train

# A learnable toy task: label 1 iff token 7 occurs in the sequence.
GEN = torch.Generator().manual_seed(0)
DATA = [torch.randint(8, 60, (10,), generator=GEN) for _ in range(64)]
for i in range(0, 64, 2):
    DATA[i][int(torch.randint(0, 10, (1,), generator=GEN))] = 7
LABELS = [int((x == 7).any()) for x in DATA]
DATASET = list(zip(DATA, LABELS, strict=True))


def collate(examples, seeds):
    return {
        "input_ids": torch.stack([x for x, _ in examples]),
        "labels": torch.tensor([y for _, y in examples]),
    }


def loss_fn(model, batch):
    return model(**batch).loss


def accuracy(model) -> dict[str, float]:
    device = next(model.parameters()).device  # train moves the model to a GPU if there is one
    with torch.no_grad():
        logits = model(input_ids=torch.stack(DATA).to(device)).logits.cpu()
    return {"accuracy": float((logits.argmax(-1) == torch.tensor(LABELS)).float().mean())}


def fresh(sparsity: float | None = 0.5):
    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2), seed=0)
    if sparsity is not None:
        apply_mask(model, omp_mask(model, sparsity))
    return model


def config(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(max_steps=12, batch_size=8, lr=3e-3, progress=False, save_every=5), **kw})


def test_loss_decreases_and_history_is_logged(tmp_path):
    model = fresh()
    before = accuracy(model)["accuracy"]
    result = train(
        model,
        model.parameters(),
        DATASET,
        collate,
        loss_fn,
        config(max_steps=40, eval_every=10),
        out_dir=tmp_path,
        eval_fn=accuracy,
    )
    assert [h["step"] for h in result.history] == [10, 20, 30, 40]
    assert result.final["accuracy"] > max(before, 0.75)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r]
    assert losses[-1] < losses[0]
    assert (tmp_path / "train_result.json").is_file()


def test_a_finished_run_is_returned_with_its_trained_weights(tmp_path):
    """Called again on a finished run (its caller killed before it wrote what follows training), the
    loop returns the saved result and puts the trained weights and extra state back into the model
    it is given; without its last checkpoint it says so, rather than leave the loaded weights."""
    trained = fresh()
    train(trained, trained.parameters(), DATASET, collate, loss_fn, config(), out_dir=tmp_path)
    extra = {}
    model = fresh()
    result = train(
        model,
        model.parameters(),
        DATASET,
        collate,
        loss_fn,
        config(),
        out_dir=tmp_path,
        extra_state=(dict, extra.update),
    )
    assert result.steps == 12 and extra == {}
    want, got = trained.state_dict(), model.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    (tmp_path / "checkpoint.pt").unlink()
    with pytest.raises(
        TicketlabError, match="training finished but its last checkpoint, the trained weights, is gone"
    ):
        train(fresh(), fresh().parameters(), DATASET, collate, loss_fn, config(), out_dir=tmp_path)


def test_a_process_other_than_the_main_writes_nothing(tmp_path, monkeypatch):
    """Under several processes only the main one makes and writes `out`: another making it first
    made the main's claim refuse its own output ("exists and is not a ticketlab search")."""
    from accelerate import Accelerator

    from ticketlab.train.processes import make_accelerator

    acc = make_accelerator("no")
    monkeypatch.setattr(Accelerator, "is_main_process", property(lambda self: False))
    model = fresh()
    train(
        model,
        model.parameters(),
        DATASET,
        collate,
        loss_fn,
        config(),
        out_dir=tmp_path / "out",
        accelerator=acc,
    )
    assert not (tmp_path / "out").exists()


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    straight = fresh()
    train(straight, straight.parameters(), DATASET, collate, loss_fn, config(), out_dir=tmp_path / "a")

    class Interrupt(Exception):
        pass

    def stop_at_7(state):
        if state.step == 7:
            raise Interrupt

    model = fresh()
    with pytest.raises(Interrupt):
        train(
            model,
            model.parameters(),
            DATASET,
            collate,
            loss_fn,
            config(),
            out_dir=tmp_path / "b",
            after_step=stop_at_7,
        )
    resumed = fresh()  # a new process would start from the base model again
    result = train(resumed, resumed.parameters(), DATASET, collate, loss_fn, config(), out_dir=tmp_path / "b")
    assert result.resumed_from == 5 and result.steps == 12
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # the log's losses too: the line at step 10 averages steps 1-10, not the five after the resume
    lines = [
        [{k: v for k, v in r.items() if k in ("step", "loss", "lr")} for r in map(json.loads, log.open())]
        for log in (tmp_path / "a" / "log.jsonl", tmp_path / "b" / "log.jsonl")
    ]
    assert lines[0] == lines[1] and [r["step"] for r in lines[0] if "loss" in r] == [10, 12]


def test_a_finished_run_is_not_repeated(tmp_path):
    model = fresh()
    first = train(model, model.parameters(), DATASET, collate, loss_fn, config(), out_dir=tmp_path)
    calls = []
    again = train(
        fresh(),
        fresh().parameters(),
        DATASET,
        collate,
        lambda m, b: calls.append(1) or loss_fn(m, b),
        config(),
        out_dir=tmp_path,
    )
    assert calls == [] and again.steps == first.steps == 12


def test_best_score_bookkeeping(tmp_path):
    scripted = iter([0.5, 0.9, 0.7, 0.6])

    def eval_fn(model):
        return {"acc": next(scripted)}

    model = fresh()
    result = train(
        model,
        model.parameters(),
        DATASET,
        collate,
        loss_fn,
        config(max_steps=8, eval_every=2, metric="acc"),
        eval_fn=eval_fn,
    )
    assert result.best == {"step": 4, "acc": 0.9} and result.final == {"step": 8, "acc": 0.6}
    scripted = iter([0.5, 0.9, 0.2, 0.6])
    result = train(
        model,
        model.parameters(),
        DATASET,
        collate,
        loss_fn,
        config(max_steps=8, eval_every=2, metric="acc", greater_is_better=False),
        eval_fn=eval_fn,
    )
    assert result.best["step"] == 6


def test_gradient_accumulation_matches_the_full_batch():
    a, b = fresh(), fresh()
    train(a, a.parameters(), DATASET, collate, loss_fn, config(max_steps=3, save_every=None))
    train(b, b.parameters(), DATASET, collate, loss_fn, config(max_steps=3, grad_accum=2, save_every=None))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x, y, atol=1e-5), name


def test_data_order_depends_only_on_seed_and_step():
    first = [batch_indices(10, 4, s, seed=3) for s in range(6)]
    assert first == [batch_indices(10, 4, s, seed=3) for s in range(6)]
    epoch0 = sorted(i for idx, e in first[:3] for i in idx if e == 0)
    assert epoch0 == list(range(10))  # every example once per epoch
    assert example_seed(1, 0, 5) == example_seed(1, 0, 5) != example_seed(1, 1, 5)


def test_bad_config_and_corrupt_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="divisible"):
        TrainConfig(max_steps=1, batch_size=10, grad_accum=3)
    with pytest.raises(ConfigError, match="max_steps"):
        TrainConfig(max_steps=0)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    model = fresh()
    with pytest.raises(TicketlabError, match="corrupt checkpoint"):
        train(model, model.parameters(), DATASET, collate, loss_fn, config(), out_dir=tmp_path)
    torch.save({"step": 3, "model": {}, "state": {}}, tmp_path / "checkpoint.pt")  # another loop's
    with pytest.raises(TicketlabError, match="not a checkpoint of this training loop .no optimizer, result"):
        train(model, model.parameters(), DATASET, collate, loss_fn, config(), out_dir=tmp_path)
    with pytest.raises(TicketlabError, match="empty"):
        train(model, model.parameters(), [], collate, loss_fn, config())


def test_the_callers_sampler_and_optimizer():
    """`sampler(micro_step)` picks each batch (multi-task learning's order); `optimizer(params,
    config)` builds the optimizer (ticket sharing's MaskedAdamW): here SGD at lr 0, so nothing moves."""
    seen = []

    def remember(examples, seeds):
        seen.append([x for x, _ in examples])
        return collate(examples, seeds)

    model = fresh(None)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(
        model,
        model.parameters(),
        DATASET,
        remember,
        loss_fn,
        config(max_steps=3, save_every=None),
        sampler=lambda step: ([step, 60 - step], 0),
        optimizer=lambda params, c: torch.optim.SGD(params, lr=0.0),
    )
    assert [[x.tolist() for x in b] for b in seen] == [
        [DATA[s].tolist(), DATA[60 - s].tolist()] for s in range(3)
    ]
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_the_best_and_the_final_evaluation_keep_their_payload_across_a_resume(tmp_path):
    """What an eval_fn leaves in its `payload` (a task's per-example predictions) is kept for the best
    and the final records only, and goes into the checkpoint and the saved result with them: a run
    interrupted after its best step reports that step's payload when it resumes, though the step
    is not evaluated again."""
    scripted = iter([0.5, 0.9, 0.7, 0.6])  # at steps 2, 4 (the best), 6 and 8

    def eval_fn(model):
        score = next(scripted)
        eval_fn.payload = {"preds": f"at {score}"}  # JSON-ready, opaque to the loop
        return {"acc": score}

    def stop_at_5(state):
        if state.step == 5:
            raise KeyboardInterrupt

    run = config(max_steps=8, eval_every=2, save_every=4, metric="acc")
    model = fresh()
    with pytest.raises(KeyboardInterrupt):
        train(
            model,
            model.parameters(),
            DATASET,
            collate,
            loss_fn,
            run,
            out_dir=tmp_path,
            eval_fn=eval_fn,
            after_step=stop_at_5,
        )
    ckpt = tmp_path / "checkpoint.pt"
    good = ckpt.read_bytes()
    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, "result": {**state["result"], "payloads": ["not by step"]}}, ckpt)
    with pytest.raises(TicketlabError, match=r"corrupt checkpoint \(result.payloads: a list, not a mapping"):
        train(model, model.parameters(), DATASET, collate, loss_fn, run, out_dir=tmp_path, eval_fn=eval_fn)
    ckpt.write_bytes(good)
    resumed = fresh()
    result = train(
        resumed, resumed.parameters(), DATASET, collate, loss_fn, run, out_dir=tmp_path, eval_fn=eval_fn
    )
    assert result.resumed_from == 4 and [h["step"] for h in result.history] == [2, 4, 6, 8]
    assert result.best == {"step": 4, "acc": 0.9} and result.final == {"step": 8, "acc": 0.6}
    assert result.payload(result.best) == {"preds": "at 0.9"}  # from the checkpoint
    assert result.payload(result.final) == {"preds": "at 0.6"}
    assert result.payloads == {"4": {"preds": "at 0.9"}, "8": {"preds": "at 0.6"}}  # the others dropped
    assert all("preds" not in record for record in result.history)  # one copy, beside the records
    saved = train(resumed, resumed.parameters(), DATASET, collate, loss_fn, run, out_dir=tmp_path)
    assert saved.payloads == result.payloads  # the saved result, read back
    scripted = iter([0.9, 0.5])
    unscored = config(max_steps=4, eval_every=2)  # no metric, no best: the last record's alone
    again = train(resumed, resumed.parameters(), DATASET, collate, loss_fn, unscored, eval_fn=eval_fn)
    assert again.best is None and again.payloads == {"4": {"preds": "at 0.5"}}
