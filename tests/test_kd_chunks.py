"""TAMT-KD's reference data (`search tamt --kd-data reference`): TAMT's document chunks, their
layout and segment ids, the one corrupted token, padding to max_length and the KD mean over every
position, each against a hand computation."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F
from transformers import BertForMaskedLM, BertTokenizerFast

from conftest import VOCAB, WORDS, make_model, tiny_bert_config, write_tokenizer
from ticketlab.cli import main
from ticketlab.core.errors import ConfigError
from ticketlab.data.corpus import resolve_sources
from ticketlab.data.kd_chunks import (
    corrupt_one,
    document_pairs,
    pair_layout,
    read_documents,
    reference_kd_chunks,
)
from ticketlab.lm.objectives import MLMCollator, pretraining_loss
from ticketlab.masks import apply_mask, load_mask
from ticketlab.methods import omp_mask
from ticketlab.methods.tamt.register import _tamt_settings
from ticketlab.methods.tamt.search import TamtConfig
from ticketlab.studies.run_ids import run_id
from ticketlab.studies.sweep.jobs import SearchJob
from ticketlab.studies.sweep.methods import sweep_methods

LINE1, LINE2, LINE3 = " ".join(WORDS[:20]), " ".join(WORDS[20:25]), " ".join(WORDS[25:31])
# Documents are runs of lines between blank lines. The heading's and the short first line's
# documents are dropped; the last one, which no blank line ends, is kept unchecked (as TAMT's loader).
TEXT = f"{LINE1}\n{LINE2}\n{LINE3}\n\n= = the city = =\n\nthe cat runs\nthe dog sees a\n\na dog sleeps"


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    write_tokenizer(path)
    (path / "vocab.txt").write_text("\n".join([*VOCAB, "="]) + "\n")  # a WikiText heading's token
    return BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True, model_max_length=64)


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text(TEXT)
    return resolve_sources([path], role="train")


class Scripted(random.Random):
    """The draws a test names, in order: random(), randint() and randrange() each take the next."""

    def __init__(self, values):
        super().__init__(0)
        self.values = list(values)

    def random(self):
        return self.values.pop(0)

    def randint(self, a, b):
        v = self.values.pop(0)
        assert a <= v <= b
        return v

    def randrange(self, a, b=None):
        lo, hi = (0, a) if b is None else (a, b)
        v = self.values.pop(0)
        assert lo <= v < hi
        return v


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_documents_pairs_and_layout_by_hand(tok, corpus):
    stream, docs = read_documents(corpus, tok, wikitext=None, progress=False)
    assert stream.tolist() == ids(tok, TEXT.replace("\n", " "))
    # lines: 20, 5, 6 tokens (doc 1), the heading (6), 3 + 4 (dropped), the last document (3)
    assert docs == [[(0, 20), (20, 25), (25, 31)], [(44, 47)]]
    # max_length 32: 29 tokens besides [CLS], [SEP], [SEP]. Document 1: full target (0.5 >= 0.1);
    # the chunk fills at its third line (31 >= 29) and splits after its second (randrange 2); A (25)
    # is longer than B (6): one token off its front (0.3 < 0.5), one off its back (0.7).
    # Document 2: a short target (0.05 < 0.1) of 2; one line: no B.
    rng = Scripted([0.5, 2, 0.3, 0.7, 0.05, 2])
    pairs = [p for doc in docs for p in document_pairs(doc, 29, rng)]
    assert pairs == [(1, 24, 25, 31), (44, 47, 47, 47)] and not rng.values
    layout = pair_layout(tok)
    cls, sep = tok.cls_token_id, tok.sep_token_id
    seq, types = layout.build(stream[1:24], stream[25:31])
    assert seq.tolist() == [cls, *stream[1:24].tolist(), sep, *stream[25:31].tolist(), sep]
    assert types.tolist() == [0] * 25 + [1] * 7
    seq, types = layout.build(stream[44:47], stream[47:47])
    assert seq.tolist() == [cls, *ids(tok, "a dog sleeps"), sep] and types.tolist() == [0] * 5


def test_one_token_corrupted_never_cls_or_sep(tok):
    seq = torch.tensor([tok.cls_token_id, 10, 11, tok.sep_token_id, 12, tok.sep_token_id])
    special = {tok.cls_token_id, tok.sep_token_id}
    # candidates are positions 1, 2, 4: the third is 4, past the middle [SEP]
    assert corrupt_one(seq, special, Scripted([2, 0.5]), tok.mask_token_id, 60) == (4, tok.mask_token_id)
    assert corrupt_one(seq, special, Scripted([0, 0.9, 0.3]), tok.mask_token_id, 60) == (1, 10)  # kept
    assert corrupt_one(seq, special, Scripted([1, 0.9, 0.7, 7]), tok.mask_token_id, 60) == (2, 7)


def test_chunks_are_padded_to_max_length_with_segment_ids(tok, corpus):
    chunks = reference_kd_chunks(corpus, tok, 32, seed=0, content_key="k", progress=False)
    again = reference_kd_chunks(corpus, tok, 32, seed=0, content_key="k", progress=False)
    assert len(chunks) == 2 and chunks.content_key == again.content_key != "k"
    for i in range(len(chunks)):
        clean, types = chunks.sequence(i)
        item = chunks[i]
        assert torch.equal(item["input_ids"], again[i]["input_ids"])  # one draw per seed
        assert torch.equal(item["token_type_ids"], types)
        changed = (item["input_ids"] != clean).nonzero().flatten().tolist()
        pos, new = chunks.corrupted[i].tolist()
        assert changed in ([], [pos]) and item["input_ids"][pos] == new
        assert int(clean[pos]) not in (tok.cls_token_id, tok.sep_token_id)
    assert chunks.num_tokens == sum(len(chunks[i]["input_ids"]) for i in range(2))
    batch = MLMCollator(tok, mlm_probability=0, pad_to_multiple_of=32)([chunks[0], chunks[1]], [0, 1])
    n0, n1 = (len(chunks[i]["input_ids"]) for i in range(2))
    assert batch["input_ids"].shape == (2, 32) and (batch["labels"] == -100).all()
    assert batch["attention_mask"].sum(1).tolist() == [n0, n1]
    assert (batch["input_ids"][1, n1:] == tok.pad_token_id).all()
    assert batch["token_type_ids"][0, :n0].tolist() == chunks[0]["token_type_ids"].tolist()
    assert batch["token_type_ids"][1].sum() == 0  # one sequence (no B), and 0 on its padding


def test_kd_mean_counts_the_padding_as_train_kd_cosine_loss(tok):
    """`train_kd.py`'s CosineLoss: (1 - cos).mean() over batch and all positions, averaged over the
    layers; here by hand from the dense teacher's and the masked student's hidden states."""
    model = make_model(BertForMaskedLM, tiny_bert_config(), seed=3)
    dense = make_model(BertForMaskedLM, tiny_bert_config(), seed=3)
    apply_mask(model, omp_mask(model, 0.5))
    model.eval()
    examples = [
        {"input_ids": torch.arange(5, 15), "token_type_ids": torch.tensor([0] * 6 + [1] * 4)},
        {"input_ids": torch.arange(20, 26), "token_type_ids": torch.zeros(6, dtype=torch.long)},
    ]
    batch = MLMCollator(tok, mlm_probability=0, pad_to_multiple_of=16)(examples, [0, 1])
    kw = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        t = dense.bert(**kw, output_hidden_states=True).hidden_states[1:]
        s = model.bert(**kw, output_hidden_states=True).hidden_states[1:]
    layers = [(1 - F.cosine_similarity(a, b, dim=-1)) for a, b in zip(s, t, strict=True)]
    by_hand = sum(x.mean() for x in layers) / len(layers)  # [2, 16] each: padding included
    real = sum(x[batch["attention_mask"].bool()].mean() for x in layers) / len(layers)
    loss, logs = pretraining_loss("kd", count_padding=True)(model, batch)
    torch.testing.assert_close(loss.detach(), by_hand)
    assert logs["kd_loss"] == pytest.approx(float(by_hand))
    torch.testing.assert_close(pretraining_loss("kd")(model, batch)[0].detach(), real)
    assert abs(float(by_hand) - float(real)) > 1e-4


def test_the_flag_reaches_the_search_and_its_identity(tmp_path, capsys):
    assert _tamt_settings(TamtConfig(0.5, objective="kd"))["kd_data"] == "blocks"  # the default's identity
    assert _tamt_settings(TamtConfig(0.5, objective="kd", kd_data="reference"))["kd_data"] == "reference"
    with pytest.raises(ConfigError, match="objective kd, not 'mlm'"):
        TamtConfig(0.5, kd_data="reference")
    with pytest.raises(ConfigError, match="leave kd_input out"):
        TamtConfig(0.5, objective="kd", kd_input="corrupted", kd_data="reference")
    model = tmp_path / "model"
    make_model(BertForMaskedLM, tiny_bert_config(), seed=0).save_pretrained(model)
    write_tokenizer(model)
    lines = [" ".join(random.Random(i).choices(WORDS[:31], k=24)) for i in range(12)]
    (tmp_path / "docs.txt").write_text("\n\n".join(lines) + "\n")
    (tmp_path / "dev.txt").write_text("\n".join(lines[:4]) + "\n")
    corpus = {"train": [str(tmp_path / "docs.txt")], "dev": [str(tmp_path / "dev.txt")]}

    def search(out, *extra):
        args = ["search", "tamt", "--model", str(model), "--corpus", str(tmp_path / "docs.txt")]
        args += ["--objective", "kd", "--kd-data", "reference", "--sparsity", "0.5", "--steps", "2"]
        args += ["--max-length", "32", "--batch-size", "4", "--no-progress", "--out", str(out)]
        return main([*args, "--cache-dir", str(tmp_path / "cache"), *extra])

    assert search(tmp_path / "kd", "--dev", str(tmp_path / "dev.txt")) == 0
    config = load_mask(tmp_path / "kd")[1]
    assert config.search["kd_data"] == "reference" and config.search["train_sequences"] == 12
    assert "train_blocks" not in config.search
    settings = json.loads((tmp_path / "kd" / "run" / "settings.json").read_text())
    assert "reference" in json.dumps(settings)
    job = SearchJob("m", "x", 0.5, 0, 10, [], {"kd_data": "reference"}, corpus, tmp_path / "m", tmp_path)
    assert sweep_methods()["tamt-kd"].configure(job).method.kd_data == "reference"  # a sweep's setting
    plain = {"kind": "search", "settings": {"objective": "kd"}}
    assert run_id(plain) != run_id({**plain, "settings": {"objective": "kd", "kd_data": "reference"}})
    assert search(tmp_path / "carved") == 2  # the dev text carved from the training text: refused
    assert "--kd-data reference draws its sequences from all of the training text" in capsys.readouterr().err


def test_the_reference_datas_horizon_is_train_kds_t_total(tmp_path, capsys):
    """train_kd.py's schedule ends at t_total = int(total_train_examples / train_batch_size) with
    total_train_examples = 2 epochs of its n pregenerated sequences (TAMT's scripts: --num_train_epochs
    2 --train_batch_size 16): int(2·n/16) at batch 16, by default with `--kd-data reference`."""
    model = tmp_path / "model"
    make_model(BertForMaskedLM, tiny_bert_config(), seed=0).save_pretrained(model)
    write_tokenizer(model)
    lines = [" ".join(random.Random(i).choices(WORDS[:31], k=24)) for i in range(64)]
    (tmp_path / "docs.txt").write_text("\n\n".join(lines) + "\n")
    (tmp_path / "dev.txt").write_text("\n".join(lines[:4]) + "\n")
    args = ["search", "tamt", "--model", str(model), "--corpus", str(tmp_path / "docs.txt"), "--no-progress"]
    args += ["--objective", "kd", "--kd-data", "reference", "--sparsity", "0.5", "--max-length", "32"]
    args += ["--dev", str(tmp_path / "dev.txt"), "--cache-dir", str(tmp_path / "cache"), "--no-eval"]
    assert main([*args, "--steps", "2", "--out", str(tmp_path / "kd")]) == 0  # --batch-size 16, the default
    search = load_mask(tmp_path / "kd")[1].search
    n = search["train_sequences"]
    # Tab. 2's rule for 2 steps at 50% would give round(2 / (11,000 / 27,920)) = 5
    assert n >= 64 and search["schedule_steps"] == int(2 * n / 16) >= 8
    settings = json.loads((tmp_path / "kd" / "run" / "settings.json").read_text())
    assert json.dumps(int(2 * n / 16)) in json.dumps(settings)  # the horizon is in the search's identity
    assert main([*args, "--steps", "2", "--schedule-steps", "9", "--out", str(tmp_path / "h")]) == 0
    assert load_mask(tmp_path / "h")[1].search["schedule_steps"] == 9  # a horizon given is kept
    capsys.readouterr()
    assert main([*args, "--steps", str(int(2 * n / 16) + 1), "--out", str(tmp_path / "long")]) == 2
    assert "train_kd.py's schedule on these data ends at step" in capsys.readouterr().err
    # a sweep's run on TAMT's KD data names this horizon among the reference defaults it ran under
    changed = sweep_methods()["tamt-kd"].changed_defaults
    assert (
        changed({"kd_data": "reference"}, False)["schedule_steps"],
        changed({}, False)["schedule_steps"],
    ) == (
        "kd-data",
        "tab2",
    )
