"""IMP: the pruning schedule, exact sparsity at every round, exact rewinding (θ0 and θ_k), pruned weights
staying zero, a pluggable objective (task-specific IMP), and the CLI."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import BertForMaskedLM, BertForSequenceClassification

from conftest import WORDS, make_model, tiny_bert_config, write_tokenizer
from ticketlab.cli import main
from ticketlab.core.errors import ConfigError
from ticketlab.lm.objectives import MLMCollator, pretraining_loss
from ticketlab.masks import current_mask, load_mask, weights_hash
from ticketlab.methods.imp.search import REWOUND_DIR, ImpConfig, imp_schedule, search_imp
from ticketlab.methods.search import SearchObjective
from ticketlab.train.config import TrainConfig


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
    # LT_glue.py (task IMP): training first, each pruning after a full round: one round more to 70%
    after = imp_schedule(0.7, 70, first_pruning="after-round")
    assert after == [(10 * r, round(0.1 * r, 9)) for r in range(1, 8)]
    rounds = lambda sched: len([s for s, _ in sched if s > 0])  # noqa: E731 - prunings after training
    assert rounds(after) == 7 == rounds(imp_schedule(0.7, 60)) + 1
    with pytest.raises(ConfigError, match="at least 7 steps for 7 pruning rounds after full training"):
        imp_schedule(0.7, 6, first_pruning="after-round")
    with pytest.raises(ConfigError, match="one-shot magnitude pruning"):
        ImpConfig(0.1)
    with pytest.raises(ConfigError, match="rewind_to"):
        ImpConfig(0.5, rewind_to=1.5)


def test_a_search_killed_before_its_mask_writes_the_mask_of_its_rewind_point(corpus, tmp_path, monkeypatch):
    """Killed after training and before the mask was published: the rerun restores IMP's state (its
    level, its rewind point) with the weights and writes the mask a whole run writes."""
    import ticketlab.methods.search as search_module

    tok, data = corpus

    def search(out):
        model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
        config = ImpConfig(0.3, rewind_to=0.25)
        return search_imp(model, mlm_objective(tok, data), config, train_config(8), out, base_model="tiny")

    whole = search(tmp_path / "whole")
    real = search_module.publish_mask

    def killed(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(search_module, "publish_mask", killed)
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path / "cut")
    monkeypatch.setattr(search_module, "publish_mask", real)
    again = search(tmp_path / "cut")
    assert again.mask == whole.mask and again.train is not None
    for key in ("rewind_step", "level", "final_eval"):
        assert again.config.search.get(key) == whole.config.search.get(key), key
    assert again.config.base_model_hash == whole.config.base_model_hash


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
    with pytest.raises(ConfigError, match="after the first training round's pruning"):
        search_imp(
            make_model(BertForMaskedLM, tiny_bert_config(), seed=0),
            mlm_objective(tok, data),
            ImpConfig(0.3, rewind_to=0.9),
            train_config(8),
            tmp_path / "bad",
            base_model="tiny",
        )


def _toy_task():
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(5, 60, (10,), generator=g), "label": i % 2} for i in range(32)]

    def collate(examples, seeds):
        return {
            "input_ids": torch.stack([e["input_ids"] for e in examples]),
            "labels": torch.tensor([e["label"] for e in examples]),
        }

    def loss(m, batch):
        return m(**batch).loss

    return SearchObjective("toy", data, collate, loss, info={"task": "toy"})


def test_task_imp_is_lt_glue_by_default(tmp_path):
    """BERT-Tickets' LT_glue.py: no pruning on θ0 at step 0 (each pruning after a full round: 3
    rounds to 30%), and only `bert.*` rewound: the classifier keeps its training."""
    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2), seed=0)
    theta0 = {n: p.detach().clone() for n, p in model.bert.named_parameters()}
    head0 = model.classifier.weight.detach().clone()
    out = tmp_path / "t"
    result = search_imp(
        model, _toy_task(), ImpConfig(0.3), train_config(6), out, base_model="tiny", save_at=[1]
    )
    assert result.config.method == "imp-toy" and result.config.search["task"] == "toy"
    assert result.config.search["schedule"] == [[2, 0.1], [4, 0.2], [6, 0.3]]  # after 2, 4, 6 steps
    assert result.config.search["first_pruning"] == "after-round" and not result.config.search["rewind_head"]
    assert load_mask(out / "steps" / "step-000001")[0].sparsity == 0  # nothing pruned before round 1
    assert abs(current_mask(model).sparsity - 0.3) < 1e-3
    assert not torch.equal(model.classifier.weight.cpu(), head0)  # the head was not rewound
    dense = {
        n.replace(".parametrizations.weight.original", ".weight"): p for n, p in model.bert.named_parameters()
    }
    assert all(torch.equal(dense[k].cpu(), v.cpu()) for k, v in theta0.items())  # bert.* (pooler too) at θ0


def test_task_imp_today_is_a_named_option(tmp_path):
    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2), seed=0)
    head0 = model.classifier.weight.detach().clone()
    config = ImpConfig(0.3, rewind_head=True, first_pruning="start")
    result = search_imp(model, _toy_task(), config, train_config(4), tmp_path / "t", base_model="tiny")
    assert result.config.search["schedule"] == [[0, 0.1], [2, 0.2], [4, 0.3]]  # θ0 pruned at step 0
    assert torch.equal(model.classifier.weight.cpu(), head0)  # the classifier was rewound to C0 as well
    assert abs(current_mask(model).sparsity - 0.3) < 1e-3


def test_imp_defaults_by_objective_and_the_schedule_horizon(tmp_path):
    from ticketlab.train.schedule import make_scheduler
    from ticketlab.verbs.search import SearchConfig

    on_task = SearchConfig("m", ImpConfig(0.3), steps=6, out=tmp_path / "a", task="sst2")
    on_mlm = SearchConfig("m", ImpConfig(0.3), steps=6, out=tmp_path / "b", corpus=["c.txt"])
    assert on_task.method.first_pruning == "after-round" and on_mlm.method.first_pruning == "start"
    assert (
        on_task.settings(1e-3)["first_pruning"] == "after-round"
        and on_task.settings(1)["rewind_head"] is False
    )
    assert on_mlm.settings(1e-3)["first_pruning"] == "start"
    with pytest.raises(ConfigError, match="at least 3 steps for 3 pruning rounds after full"):
        SearchConfig("m", ImpConfig(0.3), steps=2, out=tmp_path / "c", task="sst2")
    # each round decays towards 0 at `schedule_steps` (the references' t_total), not at --steps
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, TrainConfig(max_steps=10, lr=1.0, schedule_steps=40))
    for _ in range(10):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.75)  # 1 - 10/40, where --steps alone gives 0
    assert on_mlm.settings(1)["steps"] == 6 and on_mlm.settings(1)["schedule_steps"] == 6
    with_horizon = SearchConfig(
        "m", ImpConfig(0.3), steps=6, schedule_steps=40, out=tmp_path / "d", corpus=["c"]
    )
    assert with_horizon.settings(1)["schedule_steps"] == 40


def test_global_omp_leaves_word_embeddings_dense_as_chen(tiny_bert_dir, tmp_path):
    from ticketlab.verbs.prune import PruneConfig, prune

    chen = prune(PruneConfig(str(tiny_bert_dir), "omp", 0.5, tmp_path / "g", ranking="global"))
    assert not any("word_embeddings" in k for k in chen.mask) and len(chen.mask) == 12  # 6 x 2 layers
    assert chen.mask.sparsity == pytest.approx(0.5, abs=1e-3) and "word_embeddings" not in chen.config.targets
    tamt = prune(PruneConfig(str(tiny_bert_dir), "omp", 0.5, tmp_path / "l"))
    assert "embeddings.word_embeddings.weight" in tamt.mask  # local (TAMT's OMP): embeddings ranked too
    explicit = prune(
        PruneConfig(
            str(tiny_bert_dir), "omp", 0.5, tmp_path / "e", ranking="global", targets=tamt.config.targets
        )
    )
    assert "embeddings.word_embeddings.weight" in explicit.mask  # ticketlab's earlier global OMP, by name


def test_global_omp_ranks_the_pooler_with_the_layers_as_bert_tickets_oneshot(tmp_path):
    """BERT-Tickets' oneshot.py `pruning_model` ranks the pooler with the layers' six matrices
    (torch's `global_unstructured`, the reference's own call, run here on the same modules); the
    default `--pooler` does so where the checkpoint has one, `--no-pooler` leaves it dense."""
    import torch.nn.utils.prune as torch_prune
    from transformers import BertForPreTraining, BertModel

    from ticketlab.verbs.prune import PruneConfig, prune

    model_dir = tmp_path / "model"
    make_model(BertForPreTraining, tiny_bert_config(), seed=0).save_pretrained(model_dir)
    write_tokenizer(model_dir)
    ours = prune(PruneConfig(str(model_dir), "omp", 0.5, tmp_path / "g", ranking="global"))
    assert "pooler.dense.weight" in ours.mask and "embeddings.word_embeddings.weight" not in ours.mask
    ref = BertModel.from_pretrained(model_dir)
    layers = [(m, "weight") for layer in ref.encoder.layer for m in (
        layer.attention.self.query, layer.attention.self.key, layer.attention.self.value,
        layer.attention.output.dense, layer.intermediate.dense, layer.output.dense,
    )]  # fmt: skip
    torch_prune.global_unstructured(
        [*layers, (ref.pooler.dense, "weight")], torch_prune.L1Unstructured, amount=0.5
    )
    expected = {
        f"{n}.weight": m.weight_mask.bool() for n, m in ref.named_modules() if hasattr(m, "weight_mask")
    }
    assert set(expected) == set(ours.mask)
    assert all(torch.equal(ours.mask[k], expected[k]) for k in expected)
    dense = prune(PruneConfig(str(model_dir), "omp", 0.5, tmp_path / "n", ranking="global", pooler=False))
    assert "pooler.dense.weight" not in dense.mask


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
    # a checkpoint saved without a pooler (from BertForMaskedLM): the task model's is random, no target
    assert config.search["variant"] == "chen" and not config.search["pooler"]
    assert "embeddings.word_embeddings.weight" not in mask
    # TAMT's IMP: every matrix at the target (`--pooler`, a script's spelling of the default, is taken)
    out = tmp_path / "imp-toy-tamt"
    assert main([*targs, "--steps", "4", "--variant", "tamt", "--pooler", "--out", str(out)]) == 0
    mask, config = load_mask(out)
    assert config.search["variant"] == "tamt" and config.ranking == "local"
    assert "embeddings.word_embeddings.weight" in mask and "pooler.dense.weight" not in mask
    assert all(abs(float((~mask[k]).float().mean()) - 0.3) < 0.01 for k in mask)
    bad = [*targs, "--steps", "4", "--variant", "tamt", "--ranking", "global", "--out", str(tmp_path / "b")]
    assert main(bad) == 2
    assert (
        "variant 'tamt' ranks per matrix (local); ranking 'global' contradicts it" in capsys.readouterr().err
    )
    assert not (tmp_path / "b").exists()
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


# --------------------------------------------------------------------------- the papers' variants

ENCODER_KEYS = {
    f"encoder.layer.{i}.{m}.weight"
    for i in range(2)
    for m in (
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    )
}


def _variant_search(corpus, tmp_path, **kw):
    tok, data = corpus
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    emb0 = model.bert.embeddings.word_embeddings.weight.detach().clone()
    result = search_imp(
        model, mlm_objective(tok, data), ImpConfig(0.4, **kw), train_config(6), tmp_path / "v", base_model="t"
    )
    return model, emb0, result


def test_chen_variant_ranks_globally_over_the_encoder_without_embeddings(corpus, tmp_path):
    model, emb0, result = _variant_search(corpus, tmp_path, variant="chen")
    mask = result.mask
    assert set(mask) == ENCODER_KEYS  # the word embeddings are not a target: 0% pruned
    emb = model.bert.embeddings.word_embeddings
    assert not hasattr(emb, "parametrizations") and torch.equal(emb.weight.cpu(), emb0.cpu())
    n = mask.numel
    assert mask.kept == n - round(0.4 * n)  # the encoder exactly at the target overall
    per = mask.per_matrix()
    assert max(per.values()) - min(per.values()) > 0.02  # one global ranking, not per matrix
    assert result.config.ranking == "global" and result.config.search["variant"] == "chen"
    assert result.config.search["fresh_optimizer"] is True


def test_tamt_variant_prunes_every_matrix_to_the_target(corpus, tmp_path):
    _, _, result = _variant_search(corpus, tmp_path, variant="tamt")
    mask = result.mask
    assert set(mask) == ENCODER_KEYS | {"embeddings.word_embeddings.weight"}
    for key in mask:
        m = mask[key]
        assert int(m.sum()) == m.numel() - round(0.4 * m.numel()), key
    assert result.config.ranking == "local" and result.config.search["variant"] == "tamt"


def test_variant_ranking_conflict_and_pooler_are_said():
    with pytest.raises(ConfigError, match="variant 'tamt' ranks per matrix"):
        ImpConfig(0.5, variant="tamt", ranking="global")
    with pytest.raises(ConfigError, match="variant must be one of .chen., .tamt., got .lth."):
        ImpConfig(0.5, variant="lth")  # type: ignore[arg-type]
    from ticketlab.methods.imp.search import variant_targets

    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2), seed=0)
    from ticketlab.masks import find_targets

    keys = set(find_targets(model, variant_targets(model, ImpConfig(0.5, pooler=True))))
    assert keys == ENCODER_KEYS | {"pooler.dense.weight"}


def test_optimizer_and_schedule_are_fresh_after_every_pruning(corpus, tmp_path, monkeypatch):
    """Both reference codes rebuild AdamW and the linear schedule after each pruning."""
    from ticketlab.methods.imp import search as imp_module

    seen: dict[int, tuple[int, float, float]] = {}
    original = imp_module._Imp.on_step

    def spy(self, state, sd, save_rewound):
        original(self, state, sd, save_rewound)
        inner = getattr(state.optimizer, "optimizer", state.optimizer)
        steps = [float(s["step"]) for s in inner.state.values()]
        seen[state.step] = (len(steps), max(steps, default=0.0), inner.param_groups[0]["lr"])

    monkeypatch.setattr(imp_module._Imp, "on_step", spy)
    tok, data = corpus
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=0)
    # 0.4 in 6 steps: prunings at steps 0, 2, 4, 6
    search_imp(
        model, mlm_objective(tok, data), ImpConfig(0.4), train_config(6), tmp_path / "c", base_model="t"
    )
    lr = 1e-3
    for step in (2, 4):  # right after a pruning: no moments, the schedule at its first step
        assert seen[step][0] == 0 and seen[step][2] == pytest.approx(lr)
    # the step after a pruning is the new optimizer's first, at the schedule's second value
    assert seen[3][1] == 1.0 and seen[3][2] == pytest.approx(lr * 5 / 6)
    assert seen[1][1] == 1.0 and seen[1][2] == pytest.approx(lr * 5 / 6)  # the first round as before


def _pretrained_with_pooler(tmp_path):
    """A saved tiny BERT whose checkpoint holds the pooler and the MLM head (as bert-base-uncased's),
    its tokenizer and a small corpus."""
    from transformers import BertForPreTraining

    model_dir = tmp_path / "model"
    make_model(BertForPreTraining, tiny_bert_config(), seed=0).save_pretrained(model_dir)
    write_tokenizer(model_dir)
    rng = random.Random(2)
    lines = (" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(150))
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")
    return model_dir


def test_imp_on_mlm_prunes_the_checkpoints_pooler_as_both_references(tmp_path):
    """TAMT's LT_pretrain.py prunes `bert.pooler.dense` by its own magnitudes (`l1_unstructured`, per
    matrix) and BERT-Tickets' ranks it with the layers (`global_unstructured`). No MLM loss reaches the
    pooler, so its weights stay at θ0 and its mask is torch's L1 pruning of θ0's pooler: round(0.3·n) of
    its smallest |w| pruned. `--no-pooler` leaves it dense."""
    from torch.nn.utils import prune as torch_prune
    from transformers import BertModel

    model_dir = _pretrained_with_pooler(tmp_path)
    common = [
        "search",
        "imp",
        "--model",
        str(model_dir),
        "--corpus",
        str(tmp_path / "c.txt"),
        "--no-progress",
    ]
    common += [
        "--max-length",
        "32",
        "--batch-size",
        "8",
        "--cache-dir",
        str(tmp_path / "cc"),
        "--sparsity",
        "0.3",
    ]
    common += ["--steps", "4", "--lr", "1e-2"]
    pooler0 = BertModel.from_pretrained(model_dir).pooler.dense  # θ0's pooler, as the checkpoint holds it
    n = pooler0.weight.numel()
    torch_prune.l1_unstructured(pooler0, "weight", amount=0.3)  # the reference's call (TAMT's variant)
    assert main([*common, "--variant", "tamt", "--out", str(tmp_path / "tamt")]) == 0
    mask, config = load_mask(tmp_path / "tamt")
    assert torch.equal(mask["pooler.dense.weight"], pooler0.weight_mask.bool())
    assert int((~mask["pooler.dense.weight"]).sum()) == round(0.3 * n)
    assert (
        config.search["pooler"]
        and config.search["decoder"] == "dense"
        and config.search["kd_input"] == "clean"
    )
    # Chen et al.'s: the pooler in the one global ranking, the encoder and pooler at 30% together
    assert main([*common, "--out", str(tmp_path / "chen")]) == 0
    mask = load_mask(tmp_path / "chen")[0]
    assert set(mask) == ENCODER_KEYS | {"pooler.dense.weight"} and mask.kept == mask.numel - round(
        0.3 * mask.numel
    )
    assert main([*common, "--no-pooler", "--out", str(tmp_path / "dense")]) == 0
    assert set(load_mask(tmp_path / "dense")[0]) == ENCODER_KEYS
    # rewound to θ_k: the checkpoint written for the mask holds the pooler it prunes
    assert main([*common, "--rewind-to", "0.3", "--out", str(tmp_path / "k")]) == 0
    rewound = BertModel.from_pretrained(tmp_path / "k" / REWOUND_DIR).pooler.dense.weight
    assert torch.equal(rewound, pooler0.weight_orig.detach())


@pytest.mark.shared
@pytest.mark.parametrize("study", ["imp-variants", "minilm-mlm", "minilm-mlm-v2"])
def test_committed_imp_searches_name_the_behaviour_they_ran(bert_mini, study, tmp_path):
    """The committed IMP searches ran with the tied decoder masked and the KD dev loss on corrupted
    input; their specs name both (`decoder: masked, kd_input: corrupted`), which keeps every stored
    IMP search in the plan. Without the names, IMP runs under the reference's behaviour: new ids."""
    import sqlite3
    from pathlib import Path

    import yaml

    from ticketlab.studies import expand, load_spec
    from ticketlab.studies.sweep.spec import spec_from_dict

    root = Path(__file__).resolve().parents[1] / "docs" / "results" / study
    if not (root / "spec.yaml").is_file():
        pytest.skip(f"{root} is absent")
    with sqlite3.connect(root / "results.sqlite") as db:
        rows = db.execute("SELECT id, config FROM runs WHERE kind = 'search' AND status = 'done'")
        stored = {i: json.loads(c)["method"] for i, c in rows}
    runs = [
        r
        for r in expand(load_spec(root / "spec.yaml"))
        if r.kind == "search" and r.config["method"].startswith("imp")
    ]
    planned = {r.id for r in runs}
    stored = {i for i, method in stored.items() if method in {r.config["method"] for r in runs}}
    assert stored and stored <= planned
    data = yaml.safe_load((root / "spec.yaml").read_text())
    for entry in data["methods"]:
        for name, settings in entry.items() if isinstance(entry, dict) else ():
            if name.startswith("imp"):
                del settings["decoder"], settings["kd_input"]
    now = [
        r
        for r in expand(spec_from_dict(data, base_dir=root))
        if r.kind == "search" and r.config["method"].startswith("imp")
    ]
    assert now and not {r.id for r in now} & planned
    assert all(r.config["defaults"] == {"decoder": "dense", "kd_input": "clean"} for r in now)
