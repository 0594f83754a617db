"""IMP: the pruning schedule, exact sparsity at every round, exact rewinding (θ0 and θ_k), pruned weights
staying zero, a pluggable objective (task-specific IMP), and the CLI."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import BertForMaskedLM, BertForSequenceClassification

from conftest import WORDS, make_model, tiny_bert_config, write_tokenizer
from ticketlab.cli import main
from ticketlab.errors import ConfigError
from ticketlab.masking import current_mask, load_mask, weights_hash
from ticketlab.objectives import MLMCollator, pretraining_loss
from ticketlab.pruning.imp import REWOUND_DIR, ImpConfig, imp_schedule, search_imp
from ticketlab.pruning.search import SearchObjective
from ticketlab.training import TrainConfig


def test_schedule_follows_chen_et_al():
    assert imp_schedule(0.7, 60) == [
        (0, 0.1),
        (10, 0.2),
        (20, 0.3),
        (30, 0.4),
        (40, 0.5),
        (50, 0.6),
        (60, 0.7),
    ]
    assert imp_schedule(0.25, 10) == [(0, 0.1), (5, 0.2), (10, 0.25)]  # the last round stops at the target
    assert imp_schedule(0.5, 8, prune_rate=0.25) == [(0, 0.25), (8, 0.5)]
    with pytest.raises(ConfigError, match="at least 6 steps"):
        imp_schedule(0.7, 5)
    with pytest.raises(ConfigError, match="one-shot global magnitude pruning"):
        ImpConfig(0.1)
    with pytest.raises(ConfigError, match="rewind_to"):
        ImpConfig(0.5, rewind_to=1.5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from ticketlab.data.corpus import load_lm_corpus

    root = tmp_path_factory.mktemp("imp")
    tok = write_tokenizer(root / "tok")
    rng = random.Random(1)
    (root / "c.txt").write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(200)))
    return tok, load_lm_corpus([root / "c.txt"], tok, max_length=32, use_cache=False, progress=False)


def mlm_objective(tok, corpus):
    return SearchObjective("mlm", corpus.train, MLMCollator(tok), pretraining_loss("mlm"))


def train_config(steps):
    return TrainConfig(max_steps=steps, batch_size=8, lr=1e-3, progress=False, save_every=None)


def test_imp_hits_every_scheduled_sparsity_and_rewinds_to_theta0(corpus, tmp_path):
    tok, data = corpus
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    theta0 = {n: p.detach().clone() for n, p in model.bert.named_parameters()}
    head0 = model.cls.predictions.transform.dense.weight.detach().clone()
    out = tmp_path / "imp"
    result = search_imp(
        model,
        mlm_objective(tok, data),
        ImpConfig(0.4),
        train_config(12),
        out,
        base_model="tiny",
        save_at=[3, 4, 7, 8, 11],
    )
    n = result.mask.numel
    expected = {3: 0.1, 4: 0.2, 7: 0.2, 8: 0.3, 11: 0.3}
    masks = {s: load_mask(out / "steps" / f"step-{s:06d}") for s in expected}
    for s, level in expected.items():
        mask, config = masks[s]
        assert mask.kept == n - round(level * n), s  # global count is exact
        assert config.sparsity == level and config.base_model_hash == result.config.base_model_hash
    assert result.mask.kept == n - round(0.4 * n) and result.config.sparsity == 0.4
    # pruned weights stay pruned: each mask is inside the previous one
    order = [masks[3][0], masks[4][0], masks[8][0], result.mask]
    for a, b in zip(order, order[1:], strict=False):
        assert (a & b) == b
    # global ranking: matrices end up with different sparsities
    per = result.mask.per_matrix()
    assert max(per.values()) - min(per.values()) > 0.05
    # the last pruning rewound the encoder to θ0 exactly; the MLM head kept its training
    dense = {
        n.replace(".parametrizations.weight.original", ".weight"): p for n, p in model.bert.named_parameters()
    }
    assert all(torch.equal(dense[k].cpu(), v.cpu()) for k, v in theta0.items())  # (train may use a GPU)
    assert not torch.equal(model.cls.predictions.transform.dense.weight.cpu(), head0.cpu())
    # the mask applies to θ0: its hash is the base model's
    fresh = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    assert result.config.base_model_hash == weights_hash(fresh, list(result.mask))
    # pruned weights are zero in the masked model
    w = model.bert.encoder.layer[0].intermediate.dense.weight
    assert (w[~result.mask["encoder.layer.0.intermediate.dense.weight"]] == 0).all()


def test_rewind_to_k_saves_theta_k_and_points_the_mask_at_it(corpus, tmp_path):
    tok, data = corpus
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    out = tmp_path / "imp-k"
    result = search_imp(
        model,
        mlm_objective(tok, data),
        ImpConfig(0.3, rewind_to=0.25),
        train_config(8),
        out,
        base_model="tiny",
    )
    assert result.config.search["rewind_step"] == 2
    rewound = BertForMaskedLM.from_pretrained(out / REWOUND_DIR)
    assert result.config.base_model == str((out / REWOUND_DIR).resolve())
    assert result.config.base_model_hash == weights_hash(rewound, list(result.mask))
    fresh = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    assert result.config.base_model_hash != weights_hash(fresh, list(result.mask))  # θ_k != θ0
    # the final rewind left the encoder at θ_k exactly
    for name, p in rewound.bert.named_parameters():
        key = name.replace(".weight", ".parametrizations.weight.original")
        mine = dict(model.bert.named_parameters()).get(key, dict(model.bert.named_parameters()).get(name))
        assert torch.equal(mine.cpu(), p), name
    with pytest.raises(ConfigError, match="after the second pruning"):
        search_imp(
            make_model(BertForMaskedLM, tiny_bert_config(), seed=0),
            mlm_objective(tok, data),
            ImpConfig(0.3, rewind_to=0.9),
            train_config(8),
            tmp_path / "bad",
            base_model="tiny",
        )


def test_task_objective_is_pluggable_and_rewinds_the_head(tmp_path):
    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2), seed=0)
    head0 = model.classifier.weight.detach().clone()
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(5, 60, (10,), generator=g), "label": i % 2} for i in range(32)]

    def collate(examples, seeds):
        return {
            "input_ids": torch.stack([e["input_ids"] for e in examples]),
            "labels": torch.tensor([e["label"] for e in examples]),
        }

    def loss(m, batch):
        return m(**batch).loss

    objective = SearchObjective("toy", data, collate, loss, info={"task": "toy"})
    result = search_imp(
        model, objective, ImpConfig(0.3, rewind_head=True), train_config(4), tmp_path / "t", base_model="tiny"
    )
    assert result.config.method == "imp-toy" and result.config.search["task"] == "toy"
    assert torch.equal(model.classifier.weight.cpu(), head0)  # the classifier was rewound to C0 as well
    assert abs(current_mask(model).sparsity - 0.3) < 1e-3


def test_cli_imp_and_task_imp(tmp_path, capsys):
    model_dir = tmp_path / "model"
    make_model(BertForMaskedLM, tiny_bert_config(), seed=0).save_pretrained(model_dir)
    write_tokenizer(model_dir)
    rng = random.Random(2)
    (tmp_path / "c.txt").write_text(
        "\n".join(" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(150))
    )
    common = [
        "--model",
        str(model_dir),
        "--batch-size",
        "8",
        "--no-progress",
        "--cache-dir",
        str(tmp_path / "cc"),
    ]
    args = ["search", "imp", *common, "--corpus", str(tmp_path / "c.txt"), "--max-length", "32"]
    assert main([*args, "--sparsity", "0.3", "--steps", "4", "--out", str(tmp_path / "imp")]) == 0
    mask, config = load_mask(tmp_path / "imp")
    assert (
        config.method == "imp"
        and config.ranking == "global"
        and mask.sparsity == pytest.approx(0.3, abs=1e-4)
    )
    # task-specific IMP on a custom task (task.json + TSV files in its folder)
    task = tmp_path / "toy"
    task.mkdir()
    (task / "task.json").write_text(
        '{"id": "toy", "text_a": "sentence", "label": "label", "labels": ["0", "1"]}'
    )
    rows = [f"{' '.join(rng.choice(WORDS) for _ in range(6))}\t{i % 2}" for i in range(40)]
    for split in ("train", "dev"):
        (task / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    targs = ["search", "imp", *common, "--task", "toy", "--data-dir", str(task), "--sparsity", "0.3"]
    assert main([*targs, "--steps", "4", "--out", str(tmp_path / "imp-toy")]) == 0
    mask, config = load_mask(tmp_path / "imp-toy")
    assert config.method == "imp-toy" and "accuracy" in config.search["final_eval"]
    assert (
        main([*args, "--task", "toy", "--sparsity", "0.3", "--steps", "4", "--out", str(tmp_path / "z")]) == 2
    )
    assert "not both" in capsys.readouterr().err


def test_resume_restores_the_rewind_point_and_level(corpus, tmp_path):
    tok, data = corpus
    config = TrainConfig(max_steps=8, batch_size=8, lr=1e-3, progress=False, save_every=2)

    def run(out, objective):
        model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
        return model, search_imp(
            model, objective, ImpConfig(0.3, rewind_to=0.25), config, out, base_model="t"
        )

    whole_model, whole = run(tmp_path / "whole", mlm_objective(tok, data))
    calls = []
    base = mlm_objective(tok, data)

    def flaky(model, batch):
        calls.append(1)
        if len(calls) == 6:  # during step 6: the last checkpoint is step 4, after θ_k (step 2)
            raise KeyboardInterrupt
        return base.loss_fn(model, batch)

    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run(out, SearchObjective("mlm", data.train, base.collate_fn, flaky))
    _, resumed = run(out, mlm_objective(tok, data))
    assert resumed.train.resumed_from == 4
    assert resumed.mask == whole.mask and resumed.config.base_model_hash == whole.config.base_model_hash
    assert resumed.config.sparsity == 0.3
