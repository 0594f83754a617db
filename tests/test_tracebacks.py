"""No traceback for a bad input: every verb answers one (a compacted model, a decoder or
encoder-decoder, a mask config that lies about its units, a corrupt pretrain.json, a SQuAD stride
that does not fit the model, a typo'd model path) in one line, before any work. One test per kind of
input."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

from conftest import error_line, make_model, run, tiny_bert_config, write_tokenizer
from ticketlab.core.errors import ConfigError
from ticketlab.masks import save_unit_mask, unit_mask_config
from ticketlab.masks.units import UnitMask
from ticketlab.models.load import load_model


def _sst2(root):
    from test_finetune import sentiment_rows

    (root / "SST-2").mkdir(parents=True)
    for split, n, seed in (("train", 16, 0), ("dev", 16, 1)):
        rows = "\n".join(sentiment_rows(n, seed))
        (root / "SST-2" / f"{split}.tsv").write_text(f"sentence\tlabel\n{rows}\n")
    return root


def test_verbs_on_a_compacted_model_work_or_refuse_before_any_work(tiny_bert_dir, tmp_path, capsys):
    """A compacted model (a layer without an FFN): weight-mask verbs work on it (its empty matrices are
    no targets); verbs that need every head and FFN unit refuse in one line naming the original."""
    model = load_model(tiny_bert_dir)
    units = UnitMask(head=torch.tensor([[True, False], [True, True]]), ffn=torch.tensor([True, False]))
    config = unit_mask_config(model, units, method="winning", level=0.5, base_model=str(tiny_bert_dir))
    ticket = save_unit_mask(units, config, tmp_path / "ticket")
    small = tmp_path / "small"
    assert run(capsys, "compact", "--model", tiny_bert_dir, "--mask", ticket, "--out", small)[0] == 0

    assert load_model(small, head="base").config.model_type == "bert"  # the encoder alone loads too
    code, _, err = run(capsys, "prune", "omp", "--model", small, "--sparsity", 0.5, "--out", tmp_path / "m")
    assert code == 0, err
    code, out, err = run(capsys, "info", tmp_path / "m")
    assert code == 0 and "intermediate" not in out.split("layer.1.")[-1], err  # no 0x32 matrix
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog . a man walks to the river .\n" * 30)
    search = ["search", "tamt", "--model", small, "--corpus", corpus, "--sparsity", 0.5, "--steps", 1]
    code, _, err = run(capsys, *search, "--no-eval", "--no-progress", "--out", tmp_path / "s")
    assert code == 0, err

    data = _sst2(tmp_path / "glue")
    refused = {
        "super": ["super", "--model", small, "--task", "sst2", "--data-dir", data, "--max-steps", 1],
        "mtl": ["mtl", "--model", small, "--tasks", "sst2", "--data-dir", data, "--max-steps", 1],
        "compact": ["compact", "--model", small, "--mask", ticket],
        "export": ["export", "--model", small, "--mask", tmp_path / "m"],
    }
    for verb, argv in refused.items():
        out = tmp_path / f"out-{verb}"
        line = error_line(capsys, *argv, "--out", out)
        assert f"{small} is a compacted model" in line and f"uncompacted model ({tiny_bert_dir})" in line
        assert not out.exists(), verb  # refused before any work


def test_decoders_and_encoder_decoders_are_refused_at_the_loader(tmp_path, capsys):
    """GPT-2 and T5 directories: one line saying which models are supported, before any work, from
    the loader every verb uses (finetune, search, prune ...)."""
    gpt2 = tmp_path / "gpt2"
    tiny = dict(n_embd=32, n_layer=1, n_head=2, vocab_size=70, n_positions=64, bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(GPT2Config(**tiny)).save_pretrained(gpt2)
    t5 = tmp_path / "t5"
    T5ForConditionalGeneration(
        T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=70)
    ).save_pretrained(t5)
    data = _sst2(tmp_path / "glue")
    for path, kind in ((gpt2, "gpt2"), (t5, "t5")):
        write_tokenizer(path)
        verbs = {
            "finetune": ["finetune", "--model", path, "--task", "sst2", "--data-dir", data, "--max-steps", 1],
            "prune": ["prune", "omp", "--model", path, "--sparsity", 0.5, "--targets", "h.0.mlp.c_fc"],
        }
        for verb, argv in verbs.items():
            out = tmp_path / f"{kind}-{verb}"
            line = error_line(capsys, *argv, "--out", out)
            assert f"a {kind} model; ticketlab supports encoder models" in line, line
            assert not (out / "results.json").exists() and not (out / "mask_config.json").exists()


def test_a_typo_in_a_local_model_path_says_no_such_directory(tmp_path, capsys, monkeypatch):
    """`models/bret` beside `models/bert`: no such directory (and the near name), not the hub's
    network message; a hub-looking id whose first part is no local directory still goes to the hub."""
    monkeypatch.chdir(tmp_path)
    make_model(__import__("transformers").BertForMaskedLM, tiny_bert_config()).save_pretrained("models/bert")
    write_tokenizer(tmp_path / "models" / "bert")
    line = error_line(capsys, "prune", "omp", "--model", "models/bret", "--sparsity", 0.5, "--out", "m")
    assert "models/bret: model directory not found (no such directory; did you mean models/bert?)" in line
    assert "hub" not in line and "huggingface" not in line
    # the hub unreachable (the suite's `_no_hub`): its cache alone is read, at once
    line = error_line(capsys, "prune", "omp", "--model", "some-org/bret", "--sparsity", 0.5, "--out", "m")
    assert "the hub cannot be reached and its cache does not hold it: pass a local directory" in line
    # A bare name may be a hub id (bert-base-uncased), so the hub is asked; its refusal names the
    # local directory the typo was most likely meant for.
    line = error_line(capsys, "prune", "omp", "--model", "modles", "--sparsity", 0.5, "--out", "m")
    assert "modles: cannot load config" in line and "did you mean models?" in line


def test_squad_windows_fit_the_model(tiny_bert_dir, tokenizer, tmp_path, capsys):
    """The default doc_stride (128) follows the length fitted to a model of 64 positions (the run
    records the stride used); a stride that leaves the context no room is one line, not a Rust panic."""
    from test_squad import QUESTIONS, squad_json, write_squad
    from ticketlab.tasks.squad import eval_features, read_squad

    write_squad(tmp_path / "data")
    argv = ["finetune", "--model", tiny_bert_dir, "--task", "squad", "--data-dir", tmp_path / "data"]
    code, _, err = run(capsys, *argv, "--max-steps", 1, "--no-progress", "--out", tmp_path / "run")
    assert code == 0, err
    assert "doc_stride is 21 (default 128)" in err
    recorded = json.loads((tmp_path / "run" / "seed-1" / "config.json").read_text())["fingerprint"]
    assert recorded["config"]["doc_stride"] == 21
    line = error_line(capsys, *argv, "--max-length", 64, "--max-steps", 1, "--out", tmp_path / "run2")
    assert "doc_stride 128 must be smaller than max_length 64" in line

    long = [("q9", "who " + "very " * 20 + "runs to the river ?", "Big Dog"), *QUESTIONS]
    ex = read_squad(write_squad(tmp_path / "long", squad_json(long)) / "dev-v1.1.json")
    with pytest.raises(ConfigError, match=r"doc_stride 8 does not fit max_length 32: question 'q9' takes 26"):
        eval_features(ex, tokenizer, max_length=32, doc_stride=8)


def test_a_corrupt_pretrain_json_is_one_line_naming_it(tmp_path, capsys):
    """A pre-training output whose pretrain.json lies (no result, a field of another type, missing dev
    scores, not an object, no identity to check this command's against): one line naming the file,
    never a KeyError/TypeError traceback."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees the dog .\n" * 20)
    good = {"out_dir": "m", "steps": 3, "train_time_s": 1.0, "params": 10, "unigram_entropy": 2.0}
    good["max_steps"] = 3
    good["dev"] = {"mlm_loss": 1.0, "mlm_acc": 0.5}
    out = tmp_path / "m"
    out.mkdir()
    argv = ["pretrain", "--corpus", corpus, "--build-tokenizer", "--steps", 3, "--out", out]
    wrong = [{}, [], {"result": {**good, "steps": "three"}}, {"result": {**good, "dev": {}}}]
    for content in [*wrong, {"result": good}]:
        (out / "pretrain.json").write_text(json.dumps(content))
        assert f"{out / 'pretrain.json'}: " in error_line(capsys, *argv)


@pytest.mark.parametrize(
    "where, value, message",
    [
        (("units", "structure", "head_size"), -16, "head_size must be a positive integer, got -16"),
        (("units", "structure", "head_size"), 10**12, "head_size 1000000000000 exceeds hidden_size 32"),
        (("units", "structure", "hidden_size"), 10**7, "hidden_size 10000000 exceeds 32768"),
        (("units", "structure", "intermediate_size"), 10**9, "exceed 3.4e+10 weights"),
        (("units", "structure", "num_layers"), "2", "num_layers must be a positive integer, got '2'"),
        (("achieved_sparsity",), -3, "achieved_sparsity must be in [0, 1], got -3"),
        (("targets",), "((", "targets is not a valid regex"),
    ],
)
def test_every_mask_config_field_is_checked_in_one_line(
    tiny_bert_dir, tmp_path, capsys, where, value, message
):
    """A structured ticket whose config lies about its sizes (which size tensors before any check):
    `info` and `finetune` answer in one line naming the file and the field."""
    model = load_model(tiny_bert_dir)
    units = UnitMask(head=torch.tensor([[True, False], [True, True]]), ffn=torch.tensor([True, False]))
    config = unit_mask_config(model, units, method="winning", level=0.5, base_model=str(tiny_bert_dir))
    ticket = save_unit_mask(units, config, tmp_path / "ticket")
    raw = json.loads((ticket / "mask_config.json").read_text())
    node = raw
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    (ticket / "mask_config.json").write_text(json.dumps(raw))
    assert message in error_line(capsys, "info", ticket)
    data = _sst2(tmp_path / "glue")
    argv = ["finetune", "--model", tiny_bert_dir, "--mask", ticket, "--task", "sst2", "--data-dir", data]
    line = error_line(capsys, *argv, "--max-length", 32, "--max-steps", 1, "--out", tmp_path / "run")
    assert str(ticket) in line and message in line
