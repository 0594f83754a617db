"""MLM pre-training from scratch: learns, writes a loadable checkpoint, resumes exactly, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ticketlab import pretrain as pretrain_mod
from ticketlab.cli import main
from ticketlab.data import synthetic as syn
from ticketlab.data.corpus import BlockDataset
from ticketlab.errors import ConfigError
from ticketlab.modeling import load_model, load_tokenizer
from ticketlab.pretrain import PretrainConfig, pretrain, unigram_entropy

DATA = syn.SyntheticConfig(corpus_sentences=1500, dev_sentences=100, train_examples=10, dev_examples=10)
TINY = dict(hidden=32, layers=1, heads=2, intermediate=64, max_length=32, batch_size=16, dropout=0.1)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return syn.write_dataset(DATA, tmp_path_factory.mktemp("synth") / "data")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))


def run(synth, out, **kw):
    config = PretrainConfig(**{**TINY, "lr": 3e-3, "steps": 40, "save_every": 5, "progress": False, **kw})
    return pretrain(
        config,
        synth / "corpus" / "train.txt",
        out,
        tokenizer=synth / "tokenizer",
        dev=synth / "corpus" / "dev.txt",
    )


def test_pretraining_learns_and_writes_a_checkpoint(synth, tmp_path):
    result = run(synth, tmp_path / "model")
    losses = [h["mlm_loss"] for h in result.history]
    vocab = len(load_tokenizer(tmp_path / "model"))
    assert losses[0] < math.log(vocab) + 0.5  # an untrained model is near log |V|
    assert losses[-1] < losses[0] - 0.3  # and training lowers the dev loss
    assert 3.0 < result.unigram_entropy < math.log(vocab)
    model = load_model(tmp_path / "model", head="mlm")
    assert model.config.hidden_size == 32 and model.config.vocab_size == vocab
    assert model.config.max_position_embeddings == 32
    saved = json.loads((tmp_path / "model" / "pretrain.json").read_text())
    assert saved["result"]["dev"]["mlm_loss"] == pytest.approx(losses[-1])
    assert not (tmp_path / "model.work").exists()  # checkpoints are cleaned up
    again = run(synth, tmp_path / "model")  # finished: not trained again
    assert again.cached and again.dev == result.dev


def test_interrupted_pretraining_resumes_to_the_same_weights(synth, tmp_path, monkeypatch):
    reference = run(synth, tmp_path / "ref", steps=12)
    real_train = pretrain_mod.train

    def interrupted(*args, **kwargs):
        def stop(state):
            if state.step == 7:
                raise KeyboardInterrupt

        return real_train(*args, after_step=stop, **kwargs)

    monkeypatch.setattr(pretrain_mod, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(synth, tmp_path / "resumed", steps=12)
    assert (tmp_path / "resumed.work" / "checkpoint.pt").is_file()
    assert not (tmp_path / "resumed").exists()  # no half-written output
    monkeypatch.setattr(pretrain_mod, "train", real_train)
    resumed = run(synth, tmp_path / "resumed", steps=12)
    log = (tmp_path / "resumed" / "pretrain_log.jsonl").read_text()
    assert resumed.dev == pytest.approx(reference.dev)
    # Evaluated every step; step 6, run before the interruption and again after resuming from step 5,
    # is logged once (the resume drops the log's records after its checkpoint).
    assert log.count('"step": 5,') == 1 and log.count('"step": 6,') == 1
    a = load_model(tmp_path / "ref").state_dict()
    b = load_model(tmp_path / "resumed").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_time_budget_is_turned_into_a_fixed_step_count(synth, tmp_path):
    result = run(synth, tmp_path / "model", steps=None, time_budget=0.5)
    assert result.steps >= 1
    saved = json.loads((tmp_path / "model" / "pretrain.json").read_text())
    assert saved["config"]["time_budget"] == 0.5 and saved["result"]["steps"] == result.steps


def test_config_validation():
    with pytest.raises(ConfigError, match="exactly one"):
        PretrainConfig(steps=10, time_budget=5.0)
    with pytest.raises(ConfigError, match="exactly one"):
        PretrainConfig()
    with pytest.raises(ConfigError, match="divisible"):
        PretrainConfig(steps=1, hidden=30, heads=4)
    with pytest.raises(ConfigError, match="size"):
        PretrainConfig(steps=1, size="huge")
    with pytest.raises(ConfigError, match="positions"):
        PretrainConfig(steps=1, max_length=64, positions=32)
    assert PretrainConfig(steps=1, size="mini", layers=2).shape == (256, 2, 4, 1024)


def test_unigram_entropy_ignores_special_tokens_and_padding():
    blocks = torch.tensor([[2, 5, 5, 6, 3], [2, 6, 6, 3, 0]], dtype=torch.int32)
    lengths = torch.tensor([5, 4], dtype=torch.int32)
    p = torch.tensor([2 / 5, 3 / 5])  # tokens 5, 5, 6, 6, 6
    expected = float(-(p * p.log()).sum())
    assert unigram_entropy(BlockDataset(blocks, lengths), [0, 1, 2, 3, 4]) == pytest.approx(expected)


def test_cli_pretrain_builds_a_tokenizer(synth, tmp_path, capsys):
    corpus = str(synth / "corpus" / "train.txt")
    args = ["pretrain", "--corpus", corpus, "--build-tokenizer", "word", "--vocab-size", "200", "--steps", "3"]
    args += ["--hidden", "32", "--layers", "1", "--heads", "2", "--intermediate", "64", "--max-length", "32"]
    assert main([*args, "--out", str(tmp_path / "m")]) == 0
    assert "dev MLM loss" in capsys.readouterr().out
    tok = load_tokenizer(tmp_path / "m")
    assert len(tok) == 200 and tok.mask_token == "[MASK]"
    assert main([*args, "--out", str(tmp_path / "m")]) == 0  # already trained
    assert "already trained" in capsys.readouterr().out


def test_cli_pretrain_user_errors(tmp_path, capsys):
    rc = main(["pretrain", "--corpus", str(tmp_path / "nope.txt"), "--build-tokenizer", "--steps", "3"] + [
        "--out", str(tmp_path / "m")
    ])  # fmt: skip
    assert rc == 2 and "nope.txt" in capsys.readouterr().err
