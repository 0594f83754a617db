"""Beyond the outputs core/files/ guards (test_files.py): lengths that fit the model, results keyed by
the content of their inputs, mask files that resolve from anywhere, every field read from a file
validated, checks before any work and in the dry run. One test each."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from conftest import error_line, run
from sweep_fakes import make_spec, spec_dict
from ticketlab.core.errors import ConfigError, MaskFileError
from ticketlab.masks import load_mask
from ticketlab.studies import expand
from ticketlab.tasks.registry import TaskSpec
from ticketlab.train.config import TrainConfig
from ticketlab.verbs.finetune import FinetuneConfig


@pytest.fixture()
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sees the dog . a man walks to the river .\n" * 30)
    return path


def test_lengths_fit_the_model(tiny_bert_dir, corpus, capsys, monkeypatch):
    """The default length is min(paper default, positions) with one notice; an explicit value
    beyond the positions is refused in one line before any work (tiny_bert has 64 positions)."""
    from ticketlab.models import source

    monkeypatch.setattr(source, "_NOTED", set())  # the notice is once per process: earlier tests gave it
    code, out, err = run(capsys, "evaluate-pretrain", "--model", tiny_bert_dir, "--corpus", corpus, "--no-kd")
    assert code == 0, err
    assert err.count("has 64 positions: max_length is 64 (default 512)") == 1
    assert "blocks of <= 64 tokens" in out
    line = error_line(
        capsys, "evaluate-pretrain", "--model", tiny_bert_dir, "--corpus", corpus, "--max-length", 100
    )
    assert "max_length 100 exceeds the model's 64 positions" in line and "tokenize" not in line
    search = ["search", "tamt", "--model", tiny_bert_dir, "--corpus", corpus, "--sparsity", "0.5"]
    line = error_line(capsys, *search, "--steps", 1, "--max-length", 100, "--out", corpus.parent / "s")
    assert "max_length 100 exceeds the model's 64 positions" in line


def test_resumes_and_sweeps_are_keyed_by_input_content(tiny_bert_dir, corpus, tmp_path, capsys):
    """A search directory refuses a resume on another corpus, naming it; a sweep's runs get new
    ids when the model's weights change in place."""
    search = ["search", "tamt", "--model", tiny_bert_dir, "--corpus", corpus, "--sparsity", "0.5"]
    search += ["--steps", 2, "--max-length", 16, "--no-eval", "--no-progress", "--out", tmp_path / "s"]
    assert run(capsys, *search)[0] == 0
    assert "finished before" in run(capsys, *search)[1]
    corpus.write_text(corpus.read_text() + "one more line about a bird .\n")
    line = error_line(capsys, *search)
    assert "the corpus changed since this search started" in line

    model = tmp_path / "model"
    model.mkdir()
    for f in tiny_bert_dir.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    before = {r.id for r in expand(make_spec(tmp_path, model))}
    weights = load_file(model / "model.safetensors")
    weights = {k: v + 1 if k.endswith("query.weight") else v for k, v in weights.items()}
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    after = {r.id for r in expand(make_spec(tmp_path, model))}
    assert not before & after  # every run read the model: none is reported as done


def test_mask_files_resolve_from_anywhere(tiny_bert_dir, corpus, tmp_path, capsys, monkeypatch):
    """A mask records its base model so it resolves from any directory, and says clearly
    when the recorded model is not there."""
    model = tmp_path / "models" / "tiny"
    model.parent.mkdir()
    model.symlink_to(tiny_bert_dir)
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "prune", "omp", "--model", "models/tiny", "--sparsity", "0.5", "--out", "m")[0] == 0
    assert load_mask("m")[1].base_model == str(model.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    evaluate = ["evaluate-pretrain", "--corpus", corpus, "--max-length", 16, "--no-kd"]
    code, out, err = run(capsys, *evaluate, "--mask", tmp_path / "m")
    assert code == 0, err
    config = json.loads((tmp_path / "m" / "mask_config.json").read_text())
    config["base_model"] = str(tmp_path / "gone")
    (tmp_path / "m" / "mask_config.json").write_text(json.dumps(config))
    line = error_line(capsys, *evaluate, "--mask", tmp_path / "m")
    assert f"its base model {tmp_path / 'gone'} is not found here; pass the model (--model)" in line


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("targets", 123, "targets must be a string or a list of strings, got 123"),
        ("method", 5, "method must be a string, got 5"),
        ("base_model", "", "base_model must be a non-empty string"),
        ("seed", "x", "seed must be an integer or null, got 'x'"),
        ("search", [], "search must be an object"),
    ],
)
def test_every_field_read_from_a_file_is_validated(tiny_bert_dir, tmp_path, capsys, field, value, message):
    """Mask config fields, the masks' shapes metadata and task.json fields, each in one line."""
    mask = tmp_path / "m"
    assert run(capsys, "prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5", "--out", mask)[0] == 0
    config = json.loads((mask / "mask_config.json").read_text())
    (mask / "mask_config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(MaskFileError, match=f"mask_config.json: invalid mask config: {message}"):
        load_mask(mask)
    assert message in error_line(capsys, "info", mask)

    (mask / "mask_config.json").write_text(json.dumps(config))
    tensors = load_file(mask / "masks.safetensors")
    shapes = {k: list(v.shape) for k, v in tensors.items()}
    name = next(iter(shapes))
    meta = {"format": "ticketlab-mask", "shapes": json.dumps({**shapes, name: 7})}
    save_file(tensors, str(mask / "masks.safetensors"), metadata=meta)
    with pytest.raises(MaskFileError, match=f"shape of '{name}' must be a list of positive sizes, got 7"):
        load_mask(mask)
    save_file(
        {**tensors, "extra.weight": torch.zeros(0, dtype=torch.uint8)},
        str(mask / "masks.safetensors"),
        metadata={**meta, "shapes": json.dumps({**shapes, "extra.weight": [0, 32]})},
    )
    with pytest.raises(MaskFileError, match="shape of 'extra.weight' must be a list of positive sizes"):
        load_mask(mask)  # a weight of no elements: no sparsity to summarise (a division by zero)
    save_file({}, str(mask / "masks.safetensors"), metadata={**meta, "shapes": "{}"})
    assert "must map one or more weight names to shapes" in error_line(capsys, "info", mask)

    task = tmp_path / "task.json"
    task.write_text(json.dumps({"id": "t", "labels": 5}))
    with pytest.raises(ConfigError, match="labels must be a list of strings or null, got 5"):
        TaskSpec.from_dict(json.loads(task.read_text()), source=str(task))


def test_checks_come_before_the_work(tiny_bert_dir, tmp_path, capsys):
    """What a run would refuse is refused first, in one line: a nan learning rate, a
    sweep spec's wrongly typed setting or non-BERT model (in the dry run), a binary corpus."""
    with pytest.raises(ConfigError, match="lr must be a number or null, got nan"):
        FinetuneConfig(model="m", task="sst2", lr=math.nan)
    with pytest.raises(ConfigError, match="lr must be a number"):
        TrainConfig(max_steps=1, lr=math.inf)
    with pytest.raises(SystemExit):  # a float option is parsed as a finite number (test_configs)
        run(capsys, "finetune", "--model", tiny_bert_dir, "--task", "sst2", "--lr", "nan", "--out", tmp_path)
    assert "argument --lr: expected a finite number, got 'nan'" in capsys.readouterr().err

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(tmp_path, tiny_bert_dir, finetune={"batch_size": "four"})))
    line = error_line(capsys, "sweep", spec, "--out", tmp_path / "sw", "--dry-run")
    assert "finetune.batch_size: must be an integer or null, got 'four'" in line
    assert line.count("ticketlab") == 1
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 64}))
    spec.write_text(yaml.safe_dump(spec_dict(tmp_path, gpt)))
    line = error_line(capsys, "sweep", spec, "--out", tmp_path / "sw", "--dry-run")
    assert "a gpt2 model; ticketlab supports encoder models" in line

    text = tmp_path / "corpus.txt"
    text.write_text("the cat sees the dog .\n" * 20)
    imp = ["search", "imp", "--model", tiny_bert_dir, "--corpus", text, "--sparsity", "0.5", "--steps", 1]
    code, _, err = run(capsys, *imp, "--out", tmp_path / "imp")
    assert code == 2 and "IMP needs at least 4 steps for 5 pruning rounds" in err and "tokenize" not in err

    binary = tmp_path / "corpus.bin"
    binary.write_bytes(os.urandom(2048) + b"\x00" * 64)
    line = error_line(
        capsys, "pretrain", "--corpus", binary, "--build-tokenizer", "--steps", 1, "--out", tmp_path / "p"
    )
    assert "looks like a binary file, not text" in line


@pytest.mark.parametrize("verb", [["prune", "omp", "--sparsity", "0.5"], ["finetune", "--task", "sst2"]])
def test_a_config_json_field_of_the_wrong_type_is_one_line(tiny_bert_dir, tmp_path, capsys, verb):
    """transformers validates config fields strictly (huggingface_hub's StrictDataclassError, no
    ValueError): the user sees the field and why, not a traceback."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "num_attention_heads": "x"}))
    line = error_line(capsys, verb[0], *verb[1:], "--model", model, "--out", tmp_path / "out")
    assert f"{model}: cannot load config: Validation error for field 'num_attention_heads'" in line
    assert "expected int" in line
