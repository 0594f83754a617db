"""Numbers that are not numbers: non-finite weights and losses stop in one line, what ticketlab
writes is valid JSON, no mean over zero items, results keyed by what their inputs hold, and
super-ticket levels that prune what their label says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertForSequenceClassification

from conftest import error_line, make_model, run, tiny_bert_config
from ticketlab.core.errors import TicketlabError
from ticketlab.train.config import TrainConfig
from ticketlab.train.loop import train


def strict_json(line: str):
    """json.loads that refuses the bare NaN / Infinity tokens Python's encoder writes by default."""
    return json.loads(line, parse_constant=lambda token: pytest.fail(f"not JSON: {token} in {line}"))


def poisoned_copy(src: Path, dst: Path, value: float) -> Path:
    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    name = next(n for n in weights if n.endswith("attention.self.query.weight"))
    weights[name][0, :3] = value
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_non_finite_weights_and_losses_stop_in_one_line(tiny_bert_dir, tmp_path, capsys):
    """A checkpoint holding nan or inf is refused where models load (prune would rank nan as
    kept); a loss that turns non-finite stops training before the step, naming the step; every line
    of log.jsonl is JSON (a non-finite logged number is null)."""
    for value in (float("nan"), float("-inf")):
        bad = poisoned_copy(tiny_bert_dir, tmp_path / f"bad-{value}", value)
        line = error_line(capsys, "prune", "omp", "--model", bad, "--sparsity", 0.5, "--out", tmp_path / "m")
        assert str(bad) in line and "not finite" in line and "attention.self.query.weight" in line
        assert not (tmp_path / "m").exists()

    # A mask's trained MLM head (TAMT-MLM's mlm_head.safetensors) is weights too.
    from ticketlab.lm.evaluation import HEAD_FILE, head_parameters
    from ticketlab.models.load import load_model

    mask = tmp_path / "mask"
    assert run(capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", 0.5, "--out", mask)[0] == 0
    head = {k: v.detach().clone() for k, v in head_parameters(load_model(tiny_bert_dir)).items()}
    name = next(k for k, v in head.items() if v.dim() == 1)
    head[name][0] = float("nan")
    save_file(head, mask / HEAD_FILE)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog . a man walks to the river .\n" * 20)
    trained = ["--mlm-head", "trained"]  # read only when asked for (the original head is TAMT's)
    line = error_line(
        capsys,
        "evaluate-pretrain",
        "--mask",
        mask,
        *trained,
        "--corpus",
        corpus,
        "--no-kd",
        "--max-length",
        32,
    )
    assert f"{mask / HEAD_FILE}: {name} is not finite (1 nan/inf values)" in line

    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2))
    data = [(torch.randint(5, 40, (8,)), i % 2) for i in range(32)]

    def collate(examples, seeds):
        return {
            "input_ids": torch.stack([x for x, _ in examples]),
            "labels": torch.tensor([y for _, y in examples]),
        }

    calls = []

    def loss_fn(net, batch):  # diverges on its fourth batch (step 4); logs an inf ratio throughout
        calls.append(1)
        loss = net(**batch).loss
        return (loss * float("nan") if len(calls) == 4 else loss), {"ratio": float("inf")}

    config = TrainConfig(
        max_steps=10, batch_size=8, progress=False, log_every=1, save_every=2, desc="finetune"
    )
    with pytest.raises(TicketlabError, match=r"finetune: the training loss is nan at step 4 .*lower --lr"):
        train(model, model.parameters(), data, collate, loss_fn, config, out_dir=tmp_path / "run")
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the nan step was not taken
    records = [strict_json(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and all(r["ratio"] is None for r in records)
    assert not (tmp_path / "run" / "train_result.json").exists()  # no "best" score of a nan run


def test_non_finite_labels_are_refused_where_they_are_read(tiny_bert_dir, tmp_path, capsys):
    """Non-finite numbers in the data: a regression label 'nan' (Python's float() reads it) diverged the
    loss and blamed the lr; an 'inf' dev label made every correlation nan, reported as the best
    score. Each is one line naming the file and line; a metric never scores non-finite values."""
    from ticketlab.core.errors import DataError
    from ticketlab.tasks.scores import GLUE_METRICS

    task = tmp_path / "reg"
    task.mkdir()
    (task / "task.json").write_text(
        json.dumps({"id": "reg", "kind": "regression", "label": "score", "metrics": ["pearson", "spearman"]})
    )
    rows = [f"the {w} sees the dog .\t{i % 5}.5" for i, w in enumerate(["cat", "man", "bird"] * 6)]
    argv = ["finetune", "--model", tiny_bert_dir, "--task", task / "task.json", "--max-length", 16]
    for split, value in (("train", "nan"), ("dev", "inf"), ("dev", "-Infinity")):
        for name in ("train", "dev"):
            bad = [*rows[:3], f"the cat is good .\t{value}", *rows[3:]] if name == split else rows
            (task / f"{name}.tsv").write_text("sentence\tscore\n" + "\n".join(bad) + "\n")
        out = tmp_path / f"run-{split}-{value}"
        line = error_line(capsys, *argv, "--max-steps", 2, "--no-progress", "--out", out)
        assert f"{task / split}.tsv, line 5: label '{value}' is not a finite number" in line
        assert not list(out.rglob("result.json"))
    for metric in GLUE_METRICS.values():
        finite = np.array([0.0, 1.0, 1.0, 0.0])
        with pytest.raises(DataError, match="of the labels are not finite"):
            metric(finite, np.array([0.0, 1.0, np.inf, 0.0]))
        with pytest.raises(DataError, match="of the predictions are not finite"):
            metric(np.array([0.0, np.nan, 1.0, 0.0]), finite)


def test_no_mean_over_zero_items(tiny_bert_dir, tmp_path, capsys):
    """An MLM evaluation over zero predicted tokens is refused in one line naming the corpus
    (it reported loss 0.0, perplexity 1.0), in evaluate-pretrain and before a search's first step with
    that dev text; GLUE and SQuAD scores over zero examples are refused, not nan or 0."""
    unknown = tmp_path / "unknown.txt"  # words outside the vocabulary: every token is [UNK], a special one
    unknown.write_text("zorp quux blarg fnord\n" * 40)
    line = error_line(
        capsys,
        "evaluate-pretrain",
        "--model",
        tiny_bert_dir,
        "--corpus",
        unknown,
        "--no-kd",
        "--max-length",
        32,
    )
    assert str(unknown) in line and "zero tokens" in line
    good = tmp_path / "good.txt"
    good.write_text("the cat sees the dog . a man walks to the river .\n" * 40)
    out = tmp_path / "search"
    search = ["search", "tamt", "--model", tiny_bert_dir, "--corpus", good, "--dev", unknown]
    line = error_line(capsys, *search, "--sparsity", 0.5, "--steps", 2, "--max-length", 32, "--out", out)
    assert str(unknown) in line and "zero tokens" in line
    assert not list(out.rglob("log.jsonl")) and not list(out.rglob("checkpoint.pt"))  # no step was taken

    from ticketlab.core.errors import DataError
    from ticketlab.tasks.metrics import squad_metrics
    from ticketlab.tasks.scores import GLUE_METRICS

    empty = np.array([], dtype=np.int64)
    for metric in GLUE_METRICS.values():
        with pytest.raises(DataError, match="no examples to score"):
            metric(empty, empty)
    with pytest.raises(DataError, match="no questions to score"):
        squad_metrics({}, {})


def test_a_run_is_keyed_by_the_content_of_its_inputs(tiny_bert_dir, tmp_path, monkeypatch):
    """A fine-tuning records the content of what it read beside its fingerprint; new weights
    at the same model path, or edited task data, are refused in one line instead of reusing a finished
    result or resuming a checkpoint of the old inputs."""
    import importlib

    from transformers import BertForMaskedLM

    from ticketlab.verbs.finetune import FinetuneConfig, finetune

    ft = importlib.import_module("ticketlab.verbs.finetune")
    model_dir = Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))
    data = tmp_path / "glue" / "SST-2"
    data.mkdir(parents=True)
    rows = [f"the {w} is {'good' if i % 2 else 'bad'} .\t{i % 2}" for i, w in enumerate(["cat", "dog"] * 12)]
    for split in ("train", "dev"):
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    config = FinetuneConfig(
        model=str(model_dir),
        task="sst2",
        data_dir=str(data.parent),
        batch_size=8,
        max_length=16,
        max_steps=4,
        eval_every=2,
        save_every=1,
        progress=False,
    )
    first = finetune(config, tmp_path / "done")
    assert finetune(config, tmp_path / "done").to_dict() == first.to_dict()  # same inputs: reused
    make_model(BertForMaskedLM, tiny_bert_config(), seed=1).save_pretrained(model_dir)  # other weights
    with pytest.raises(TicketlabError, match=f"the model at {model_dir} changed since this run started"):
        finetune(config, tmp_path / "done")

    real_train = ft.train

    def interrupted(*args, **kw):
        def stop(state):
            if state.step == 2:
                raise KeyboardInterrupt

        return real_train(*args, **kw, after_step=stop)

    monkeypatch.setattr(ft, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        finetune(config, tmp_path / "half")
    assert (tmp_path / "half" / "checkpoint.pt").is_file()
    monkeypatch.setattr(ft, "train", real_train)
    (data / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[::-1]) + "\n")  # edited in place
    with pytest.raises(TicketlabError, match="the task data at .* changed since this run started"):
        finetune(config, tmp_path / "half")


def test_a_study_is_keyed_by_the_content_of_its_inputs(tiny_bert_dir, tmp_path, capsys):
    """A super-ticket or ticket-sharing study's finished rows record
    the content of what they read; rerun onto new weights at the same model path (or edited task
    data) it is refused in one line, not answered from the old rows."""
    from transformers import BertForMaskedLM

    model_dir = Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))
    data = tmp_path / "glue" / "SST-2"
    data.mkdir(parents=True)
    rows = [f"the {w} is {'good' if i % 2 else 'bad'} .\t{i % 2}" for i, w in enumerate(["cat", "dog"] * 12)]
    for split in ("train", "dev"):
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    common = ["--model", model_dir, "--data-dir", data.parent, "--max-steps", 2, "--max-length", 16]
    studies = {
        "super": ["super", *common, "--task", "sst2", "--levels", 0.6, "--select-fraction", 0.25],
        "mtl": ["mtl", *common, "--tasks", "sst2"],
    }
    for verb, argv in studies.items():
        for _ in range(2):  # done, then answered from its store
            code, _, err = run(capsys, *argv, "--out", tmp_path / verb)
            assert code == 0, err
    make_model(BertForMaskedLM, tiny_bert_config(), seed=1).save_pretrained(model_dir)  # other weights
    # ticket sharing's shared stage checks its inputs before its rows are looked up (`rundir`)
    said = {
        "super": f"{tmp_path / 'super'}: the model at {model_dir} changed since its run",
        "mtl": f"{tmp_path / 'mtl' / 'seed-1' / 'mtl'}: the model at {model_dir} changed since this",
    }
    for verb, argv in studies.items():
        assert said[verb] in error_line(capsys, *argv, "--out", tmp_path / verb)
    make_model(BertForMaskedLM, tiny_bert_config(), seed=0).save_pretrained(model_dir)  # the old ones
    (data / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[::-1]) + "\n")
    for verb, argv in studies.items():
        assert "the task data at" in error_line(capsys, *argv, "--out", tmp_path / verb)


def test_super_levels_prune_what_their_label_says(tiny_bert_dir, tmp_path, capsys):
    """Against the model's real unit counts (tiny BERT: 4 heads, 2 FFN sub-layers), a level
    that prunes no unit or every unit of a kind is refused before any work, so are duplicate levels,
    and a selection split leaving too few dev examples on either side (the minimum and why)."""
    from ticketlab.core.errors import ConfigError
    from ticketlab.studies.supertickets import SuperConfig, run_super
    from ticketlab.verbs.finetune import FinetuneConfig

    data = tmp_path / "glue" / "SST-2"
    data.mkdir(parents=True)
    rows = [f"the {w} is {'good' if i % 2 else 'bad'} .\t{i % 2}" for i, w in enumerate(["cat", "dog"] * 10)]
    for split in ("train", "dev"):
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    ft = FinetuneConfig(
        model=str(tiny_bert_dir),
        task="sst2",
        data_dir=str(data.parent),
        max_steps=2,
        batch_size=8,
        max_length=16,
        progress=False,
    )
    for level, what, units in (
        (0.01, "prunes 0 of the model's 4 attention heads", "liang"),
        (0.5, "prunes 0 of the model's 2 FFN sub-layers", "liang"),  # int(10 · 0.5 · 2 / 12) = 0
        (0.8, "prunes 2 of the model's 2 FFN sub-layers", "round"),  # Liang's counts never prune all
    ):
        out = tmp_path / f"super-{level}"
        with pytest.raises(ConfigError, match=what):
            run_super(SuperConfig(ft, levels=[0.6, level], units=units), out)
        assert not out.exists()  # refused before any work
    with pytest.raises(ConfigError, match="levels must be distinct: 0.5 given twice"):
        SuperConfig(ft, levels=[0.5, 0.5])
    with pytest.raises(ConfigError, match=r"levels 0.6 and 0.7 prune the same units of this model \(2 of 4"):
        run_super(SuperConfig(ft, levels=[0.6, 0.7]), tmp_path / "same")  # one ticket, two labels
    assert not (tmp_path / "same").exists()
    line = error_line(
        capsys,
        "super",
        "--model",
        tiny_bert_dir,
        "--task",
        "sst2",
        "--data-dir",
        data.parent,
        "--levels",
        0.6,
        "--select-fraction",
        0.99,
        "--max-steps",
        2,
        "--max-length",
        16,
        "--out",
        tmp_path / "s",
    )
    assert "leaves 20 to select on and 0 to report: each side needs at least 4" in line
