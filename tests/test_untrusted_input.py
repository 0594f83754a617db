"""Loaders: what a model, tokenizer, mask or checkpoint file holds can make ticketlab neither unpickle,
allocate beyond what the model has, nor fail in a traceback. Every case is one line naming the file
and the problem, before anything is created. One test per kind of input."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertTokenizerFast

from conftest import VOCAB, error_line, run
from test_runner import write_sst2
from ticketlab.masks import save_unit_mask, unit_mask_config
from ticketlab.masks.units import UnitMask
from ticketlab.models.load import load_model

# --------------------------------------------------------------------------- the loaders


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _pickle_weights(model_dir: Path) -> Path:
    """The folder as an older `save_pretrained` left it: pytorch_model.bin, no safetensors."""
    state = load_file(model_dir / "model.safetensors")
    torch.save(state, model_dir / "pytorch_model.bin")
    (model_dir / "model.safetensors").unlink()
    return model_dir / "pytorch_model.bin"


def test_pickled_weights_are_refused_with_the_command_that_converts_them(tiny_bert_dir, tmp_path, capsys):
    """Directly and through a mask's recorded base model; the command in the line converts the folder."""
    model = _copy_model(tiny_bert_dir, tmp_path / "model")
    mask = tmp_path / "omp"
    assert run(capsys, "prune", "omp", "--model", model, "--sparsity", 0.5, "--out", mask)[0] == 0
    pickled = _pickle_weights(model)
    line = error_line(capsys, "prune", "omp", "--model", model, "--sparsity", 0.5, "--out", tmp_path / "m")
    assert (
        line.startswith(f"ticketlab prune: error: {pickled}: pickled weights")
        and not (tmp_path / "m").exists()
    )
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog .\n" * 20)
    line = error_line(capsys, "evaluate-pretrain", "--mask", mask, "--corpus", corpus, "--max-length", 32)
    assert f"{pickled}: pickled weights" in line  # the base model the mask records
    command = line.split("convert it once: python -c ")[1].strip('"')
    exec(command)  # noqa: S102 (the line's own command, on our own file)
    code, _, err = run(capsys, "evaluate-pretrain", "--mask", mask, "--corpus", corpus, "--max-length", 32)
    assert code == 0, err


@pytest.mark.parametrize("verb", ["prune", "search", "finetune", "evaluate-pretrain", "export", "super"])
def test_a_truncated_safetensors_file_is_one_line_from_every_verb(verb, tiny_bert_dir, tmp_path, capsys):
    model = _copy_model(tiny_bert_dir, tmp_path / "model")
    mask = tmp_path / "omp"
    assert run(capsys, "prune", "omp", "--model", model, "--sparsity", 0.5, "--out", mask)[0] == 0
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog .\n" * 20)
    write_sst2(tmp_path / "glue")
    task = ["--task", "sst2", "--data-dir", tmp_path / "glue", "--max-length", 32]
    argv = {
        "prune": ["prune", "omp", "--sparsity", 0.5],
        "search": ["search", "tamt", "--corpus", corpus, "--sparsity", 0.5, "--steps", 1, "--max-length", 32],
        "finetune": ["finetune", *task, "--max-steps", 1],
        "evaluate-pretrain": ["evaluate-pretrain", "--corpus", corpus, "--max-length", 32],
        "export": ["export", "--mask", mask],
        "super": ["super", *task, "--max-steps", 1, "--levels", 0.5, "--select-fraction", 0.5],
    }[verb]
    line = error_line(capsys, *argv, "--model", model, "--out", tmp_path / "out")
    assert f"{weights}: corrupt or truncated safetensors file" in line and not (tmp_path / "out").exists()


def test_a_ticket_allocates_no_more_than_its_model_has(tiny_bert_dir, tmp_path, capsys):
    """`units.structure` decides how large a ticket's weight form is: it must be its base model's (by
    its config.json), and without the base model here it may describe at most 2**29 weights."""
    model = load_model(tiny_bert_dir)
    units = UnitMask(head=torch.tensor([[True, False], [True, True]]), ffn=torch.tensor([True, False]))
    config = unit_mask_config(model, units, method="winning", level=0.5, base_model=str(tiny_bert_dir))
    ticket = save_unit_mask(units, config, tmp_path / "ticket")
    assert run(capsys, "info", ticket)[0] == 0
    path = ticket / "mask_config.json"
    raw = json.loads(path.read_text())
    # The same unit tensors over 4096-wide layers: 2e8 weights (0.2 GB of flags) for a 32-wide model.
    raw["units"]["structure"].update(hidden_size=4096, head_size=2048, intermediate_size=4096)
    path.write_text(json.dumps(raw))
    line = error_line(capsys, "info", ticket)
    assert f"{ticket}: its units.structure gives hidden_size 4096, but its base model has 32" in line
    # Its base model moved away: only as much as no model needs to confirm (here 3.2e9 weights).
    raw["base_model"] = str(tmp_path / "gone")
    raw["units"]["structure"].update(hidden_size=16384, head_size=8192, intermediate_size=16384)
    path.write_text(json.dumps(raw))
    line = error_line(capsys, "info", ticket)
    assert "describes 3.2e+09 weights and its base model" in line and "(at most 5.4e+08 without it)" in line
    raw["units"]["structure"].update(hidden_size=32, head_size=16, intermediate_size=64)  # the tiny one's
    path.write_text(json.dumps(raw))
    assert run(capsys, "info", ticket)[0] == 0


@pytest.mark.parametrize("verb", ["search", "finetune", "evaluate-pretrain", "pretrain --init"])
def test_a_tokenizer_past_the_models_embeddings_is_refused_before_any_work(
    verb, tiny_bert_dir, tmp_path, capsys
):
    """A model folder whose tokenizer has 500 more words than its embeddings: the first such word
    stopped each verb midway (an index out of range) with its work folder left behind."""
    model = _copy_model(tiny_bert_dir, tmp_path / "model")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).unlink()
    (model / "vocab.txt").write_text("\n".join([*VOCAB, *(f"w{i}" for i in range(500))]) + "\n")
    BertTokenizerFast(vocab=str(model / "vocab.txt"), do_lower_case=True).save_pretrained(model)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat w7 sees the dog w499 .\n" * 40)
    write_sst2(tmp_path / "glue")
    task = ["--task", "sst2", "--data-dir", tmp_path / "glue", "--max-length", 32]
    out = tmp_path / "out"
    argv = {
        "search": ["search", "tamt", "--corpus", corpus, "--sparsity", 0.5, "--steps", 1, "--max-length", 32],
        "finetune": ["finetune", *task, "--max-steps", 1],
        "evaluate-pretrain": ["evaluate-pretrain", "--corpus", corpus, "--max-length", 32],
        "pretrain --init": [
            "pretrain",
            "--corpus",
            corpus,
            "--dev",
            corpus,
            "--steps",
            1,
            "--max-length",
            32,
        ],
    }[verb]
    model_flag = ["--init", model] if verb.startswith("pretrain") else ["--model", model]
    line = error_line(capsys, *argv, *model_flag, "--out", out)
    assert (
        f"{model}: the tokenizer gives ids up to {len(VOCAB) + 499}, past the {len(VOCAB)} embeddings" in line
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "glue", "model"]  # no out, no work


def test_a_vocabulary_listing_a_word_twice_sizes_the_embeddings_by_its_largest_id(tmp_path, capsys):
    """`vocab.txt` with a word twice: 108 words, ids up to 108. `pretrain --tokenizer` made 108
    embeddings and stopped at the last word's id; the embeddings hold every id the tokenizer gives."""
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "vocab.txt").write_text("\n".join([*VOCAB, "cat", "zebra"]) + "\n")
    BertTokenizerFast(vocab=str(tok / "vocab.txt"), do_lower_case=True).save_pretrained(tok)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the zebra sees the cat .\n" * 60)
    shape = ["--hidden", 16, "--heads", 2, "--layers", 1, "--intermediate", 32, "--max-length", 16]
    argv = ["pretrain", "--tokenizer", tok, "--corpus", corpus, "--dev", corpus, "--steps", 1, *shape]
    code, _, err = run(capsys, *argv, "--batch-size", 4, "--out", tmp_path / "p")
    assert code == 0, err
    assert json.loads((tmp_path / "p" / "config.json").read_text())["vocab_size"] == len(VOCAB) + 2


def test_a_model_from_scratch_has_a_stated_ceiling_checked_before_any_work(tmp_path, capsys):
    """`pretrain --build-tokenizer --vocab-size 1e12` aborted on a 72 TB allocation and left `o.work/`;
    `--hidden 4096 --layers 100000` was an allocation traceback. Each size has a ceiling and so has
    the whole (`MAX_SCRATCH_PARAMETERS`): one line, nothing made."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog .\n" * 40)
    base = ["pretrain", "--build-tokenizer", "--corpus", corpus, "--dev", corpus, "--steps", 1]
    for flags, said in (
        (["--vocab-size", 10**12], "vocab_size must be in (5, 1048576], got 1000000000000"),
        (["--hidden", 4096, "--heads", 32, "--layers", 100_000], "layers must be in [1, 1024], got 100000"),
        (["--hidden", 4096, "--heads", 32, "--layers", 1000], "a model of 7.1e+10 parameters"),
    ):
        line = error_line(capsys, *base, *flags, "--out", tmp_path / "o")
        assert said in line
        assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]  # no o/, no o.work/


# --------------------------------------------------------------------------- checkpoints


def _search_stopped_after_its_checkpoint(model, tmp_path, capsys) -> tuple[list, Path]:
    """A 2-step search's command and its checkpoint, as if killed after the checkpoint and before
    the mask was written: the same command resumes from it."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog . a man walks to the river .\n" * 30)
    out = tmp_path / "s"
    search = ["search", "tamt", "--model", model, "--corpus", corpus, "--sparsity", 0.5, "--steps", 2]
    search += ["--max-length", 16, "--no-eval", "--no-progress", "--keep-checkpoint", "--out", out]
    assert run(capsys, *search)[0] == 0
    for name in ("mask_config.json", "masks.safetensors", "mlm_head.safetensors", "run/train_result.json"):
        (out / name).unlink()
    return search, out / "run" / "checkpoint.pt"


def test_a_checkpoint_with_an_invalid_rng_state_is_one_line_naming_it(tiny_bert_dir, tmp_path, capsys):
    """A search stopped after its last checkpoint resumes from it; a Python RNG state that is no
    state (a list too short, of the wrong types) is one line naming the checkpoint file."""
    search, ckpt = _search_stopped_after_its_checkpoint(tiny_bert_dir, tmp_path, capsys)
    for state in [(3, (1, 2), None), (3, (), None), "not a state"]:
        saved = torch.load(ckpt, weights_only=True)
        saved["rng"]["python"] = repr(state)
        torch.save(saved, ckpt)
        line = error_line(capsys, *search)
        assert f"{ckpt}: corrupt checkpoint (" in line and "delete it to restart from scratch" in line


def test_a_tampered_checkpoint_step_or_generator_state_is_refused_before_resuming(
    tiny_bert_dir, tmp_path, capsys
):
    """A step past the run's end made a resumed search publish a mask 'of 200 steps' trained for 12;
    a generator state of the wrong type or size (a 2 MB string parsed as Python) ran out of memory.
    Each is one line naming the checkpoint, and the search resumes once it is put back."""
    search, ckpt = _search_stopped_after_its_checkpoint(tiny_bert_dir, tmp_path, capsys)
    out = ckpt.parents[1]
    good = torch.load(ckpt, weights_only=True)
    tampered = {
        "step past the end": lambda c: c.update(step=10**12),
        "negative step": lambda c: c.update(step=-7),
        "step as text": lambda c: c.update(step="2"),
        "python state of 2 MB": lambda c: c["rng"].update(python="(" * 2_000_000),
        "torch state of other size": lambda c: c["rng"].update(torch=torch.zeros(7, dtype=torch.uint8)),
        "numpy state of other size": lambda c: c["rng"]["numpy"].__setitem__(
            1, torch.zeros(3, dtype=torch.int64)
        ),
    }
    for what, tamper in tampered.items():
        saved = torch.load(ckpt, weights_only=True)
        tamper(saved)
        torch.save(saved, ckpt)
        line = error_line(capsys, *search)
        assert f"{ckpt}: corrupt checkpoint (" in line and "delete it to restart" in line, (what, line)
        assert not (out / "masks.safetensors").exists()
    torch.save(good, ckpt)
    assert run(capsys, *search)[0] == 0
    assert json.loads((out / "run" / "train_result.json").read_text())["steps"] == 2


def _words(words: list[int], position: int = 624) -> str:
    return f"({3}, ({', '.join(map(str, words))}, {position}), None)"


def test_every_field_of_a_checkpoint_is_checked_before_resuming(tiny_bert_dir, tmp_path, capsys):
    """The optimizer's and the schedule's state were believed: a schedule step past the run gave
    another mask than an uninterrupted run's, a second moment below zero or a learning rate past the
    run's diverged later without naming the file, a Python RNG state of 625 numbers out of range
    was a traceback. Each field is one line naming the checkpoint and the field, exit 2; the
    checkpoint is kept, and once put back the search resumes."""
    search, ckpt = _search_stopped_after_its_checkpoint(tiny_bert_dir, tmp_path, capsys)
    good = torch.load(ckpt, weights_only=True)
    state = good["optimizer"]["state"]
    first = min(state)

    def moment(name, fill):
        return lambda c: c["optimizer"]["state"][first].__setitem__(
            name, fill(c["optimizer"]["state"][first][name])
        )

    tampered = {
        "scheduler.last_epoch": lambda c: c["scheduler"].update(last_epoch=3),
        "scheduler._last_lr": lambda c: c["scheduler"].update(
            _last_lr=[float("nan")] * len(c["scheduler"]["_last_lr"])
        ),
        "optimizer.param_groups[0].lr": lambda c: c["optimizer"]["param_groups"][0].update(lr=1.0),
        f"optimizer.state[{first}].exp_avg": moment("exp_avg", lambda t: t.flatten()[:-1]),
        f"optimizer.state[{first}].exp_avg_sq": moment("exp_avg_sq", lambda t: t - 1e-3),
        f"optimizer.state[{first}].step": moment("step", lambda t: t + 0.5),
        "result.steps": lambda c: c["result"].update(steps=-1),
        "window": lambda c: c.update(window={"values": {"loss": ["x"]}, "tokens": 0, "time": 0.0}),
        "rng.python": lambda c: c["rng"].update(python=_words([2**32] * 624)),
        "rng.python position": lambda c: c["rng"].update(python=_words([1] * 624, position=700)),
        "rng.numpy": lambda c: c["rng"]["numpy"].__setitem__(1, torch.full((624,), -1, dtype=torch.int64)),
    }
    for field, tamper in tampered.items():
        saved = copy.deepcopy(good)
        tamper(saved)
        torch.save(saved, ckpt)
        line = error_line(capsys, *search)
        assert f"{ckpt}: corrupt checkpoint ({field.split()[0]}" in line and "delete it to restart" in line, (
            field,
            line,
        )
        assert ckpt.is_file() and not (ckpt.parents[1] / "masks.safetensors").exists()
    torch.save(good, ckpt)
    assert run(capsys, *search)[0] == 0


@pytest.mark.parametrize("verb", ["finetune", "mtl"])
def test_a_config_larger_than_its_weights_is_refused_by_every_verb(verb, tiny_bert_dir, tmp_path, capsys):
    """A config.json that gives more than its weights hold (100000 positions over 64 saved) was
    trained on, its new rows random, or allocated past the machine (a vocabulary of 4e8). Every verb
    checks the config against the weights' headers (a meta-device build) before any work."""
    model = _copy_model(tiny_bert_dir, tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 100_000}))
    write_sst2(tmp_path / "glue")
    (tmp_path / "glue" / "CoLA").mkdir()
    for split in ("train", "dev"):
        (tmp_path / "glue" / "CoLA" / f"{split}.tsv").write_text("x\t0\t\tthe cat .\nx\t1\t\tthe dog .\n" * 8)
    out = tmp_path / "out"
    argv = {
        "finetune": ["finetune", "--task", "sst2"],
        "mtl": ["mtl", "--tasks", "sst2", "cola"],
    }[verb]
    line = error_line(
        capsys,
        *argv,
        "--model",
        model,
        "--data-dir",
        tmp_path / "glue",
        "--max-length",
        32,
        "--max-steps",
        1,
        "--out",
        out,
    )
    assert (
        f"{model / 'config.json'}: gives embeddings.position_embeddings.weight the shape (100000, 32)" in line
    )
    assert "but the weights hold (64, 32)" in line and not out.exists()


@pytest.mark.parametrize(
    "flags, said",
    [
        (
            ["--time-batch-size", 10**7],
            "time_batch_size x time_length: 1280000000 tokens, more than the 1048576",
        ),
        (["--time-batch-size", 4096, "--time-length", 512], "2097152 tokens, more than the 1048576"),
        (["--device", "mps"], "device: 'mps' holds no data to compute on here; give cpu or cuda"),
        (["--device", "cpu:x"], "device: not a torch device, got 'cpu:x'"),
    ],
    ids=["batch", "batch-and-length", "mps", "not-a-device"],
)
def test_a_timed_batch_or_device_compact_cannot_use_is_refused_first(
    flags, said, tiny_bert_dir, tmp_path, capsys
):
    """`compact --time` allocated the timed batch whole (a traceback past the memory) and took any
    device name torch parses (one holding no data failed late in a traceback). One line, before
    anything is read or made."""
    (tmp_path / "ticket").mkdir()  # empty: the config's refusal comes before the ticket is read
    argv = ["compact", "--model", tiny_bert_dir, "--mask", tmp_path / "ticket", "--time", *flags]
    line = error_line(capsys, *argv, "--out", tmp_path / "c")
    assert said in line and not (tmp_path / "c").exists()
