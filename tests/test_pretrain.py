"""MLM pre-training from scratch: learns, writes a loadable checkpoint, resumes exactly, CLI."""

from __future__ import annotations

import json
import math

import accelerate
import pytest
import torch

from ticketlab.cli import main
from ticketlab.core.errors import ConfigError, DataError
from ticketlab.data import synthetic as syn
from ticketlab.data.corpus import BlockDataset
from ticketlab.lm import pretrain as pretrain_mod
from ticketlab.lm.pretrain import PretrainConfig, pretrain, unigram_entropy
from ticketlab.models.load import load_model, load_tokenizer

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
    args = [
        "pretrain",
        "--corpus",
        corpus,
        "--build-tokenizer",
        "word",
        "--vocab-size",
        "200",
        "--steps",
        "3",
    ]
    args += ["--hidden", "32", "--layers", "1", "--heads", "2", "--intermediate", "64", "--max-length", "32"]
    assert main([*args, "--out", str(tmp_path / "m")]) == 0
    assert "dev MLM loss" in capsys.readouterr().out
    tok = load_tokenizer(tmp_path / "m")
    assert len(tok) == 200 and tok.mask_token == "[MASK]"
    assert main([*args, "--out", str(tmp_path / "m")]) == 0  # already trained
    assert "already trained" in capsys.readouterr().out


def test_cli_pretrain_no_progress_reaches_the_config(synth, tmp_path, monkeypatch):
    """`--no-progress` (as the other training verbs have it): no progress bar in a log file."""
    import ticketlab

    seen = []
    monkeypatch.setattr(ticketlab, "pretrain", lambda config, *a, **kw: seen.append(config.progress) or 1 / 0)
    args = ["pretrain", "--corpus", str(synth / "corpus" / "train.txt"), "--build-tokenizer", "word"]
    args += ["--steps", "3", "--out", str(tmp_path / "m")]
    for flag, progress in (([], True), (["--no-progress"], False)):
        with pytest.raises(ZeroDivisionError):
            main([*args, *flag])
        assert seen.pop() is progress


def test_cli_pretrain_user_errors(tmp_path, capsys):
    rc = main(["pretrain", "--corpus", str(tmp_path / "nope.txt"), "--build-tokenizer", "--steps", "3"] + [
        "--out", str(tmp_path / "m")
    ])  # fmt: skip
    assert rc == 2 and "nope.txt" in capsys.readouterr().err


# --------------------------------------------------------------------------- tokenizer, blocks, long runs

PROSE = (
    "The unbelievable painters of the northern provinces exhibited remarkable landscapes. "
    "Railway engineers constructed extraordinary bridges across the rivers and valleys. "
    "Unremarkable afternoons turned into unforgettable evenings for the travelling musicians. "
)


def _prose(path, lines=120):
    words = PROSE.split()
    text = "\n".join(
        " ".join(words[(i * 7) % len(words) :] + words[: (i * 7) % len(words)]) for i in range(lines)
    )
    path.write_text(text + "\n")
    return path


def test_wordpiece_tokenizer_trains_on_a_folder_and_round_trips(tmp_path):
    from transformers import AutoTokenizer

    from ticketlab.data.tokenizer import train_tokenizer

    folder = tmp_path / "books"
    folder.mkdir()
    _prose(folder / "a.txt")
    _prose(folder / "b.txt", lines=60)
    (folder / "notes.md").write_text("zzzqqq " * 50)  # not a .txt: not read
    tok = train_tokenizer([folder], "wordpiece", vocab_size=120, model_max_length=64)
    tok.save_pretrained(tmp_path / "tok")
    back = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert len(back) == len(tok) <= 120 and "zzzqqq" not in back.get_vocab()
    assert [back.pad_token, back.unk_token, back.cls_token, back.sep_token, back.mask_token] == [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
    ]  # fmt: skip
    sentence = "Unbelievable engineers exhibited remarkable bridges."
    enc = back(sentence)["input_ids"]
    pieces = back.convert_ids_to_tokens(enc)
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and "[UNK]" not in pieces
    assert any(p.startswith("##") for p in pieces)  # words split into pieces, not unknown
    assert back.decode(enc, skip_special_tokens=True) == sentence.lower()  # lower-cased, round-trips
    assert back("a", "b")["token_type_ids"] == [0, 0, 0, 1, 1]


def test_packed_blocks_are_full_length(synth, tmp_path):
    from ticketlab.data.corpus import load_lm_corpus

    tok = load_tokenizer(synth / "tokenizer")
    data = load_lm_corpus(synth / "corpus" / "train.txt", tok, 32, dev=synth / "corpus" / "dev.txt")
    lengths = data.train.lengths.tolist()
    # One source: every block but its last is packed to max_length (lines run across blocks).
    assert all(n == 32 for n in lengths[:-1]) and len(lengths) > 50
    batch = pretrain_mod.MLMCollator(tok)([data.train[i] for i in range(8)], list(range(8)))
    assert batch["attention_mask"].all() and (batch["input_ids"] != tok.pad_token_id).all()


def test_masking_is_drawn_afresh_each_epoch(synth):
    from ticketlab.train.config import TrainConfig
    from ticketlab.train.loop import train

    tok = load_tokenizer(synth / "tokenizer")
    collator = pretrain_mod.MLMCollator(tok)
    block = {"input_ids": torch.randint(5, len(tok), (64,))}
    seen: list[torch.Tensor] = []

    def collate(examples, seeds):
        batch = collator(examples, seeds)
        seen.append(batch["labels"][0].clone())
        return batch

    model = torch.nn.Linear(1, 1)
    loss = lambda m, b: m.weight.sum() * 0  # noqa: E731 (the loop's data path is what is tested)
    train(
        model,
        model.parameters(),
        [block],
        collate,
        loss,
        TrainConfig(max_steps=3, batch_size=1, progress=False),
    )
    masked = [set(torch.nonzero(labels != -100).flatten().tolist()) for labels in seen]
    assert len(masked) == 3 and masked[0] and masked[0] != masked[1] != masked[2]  # epochs 0, 1, 2


def test_clipping_precision_fused_and_compile_reach_the_loop(synth, tmp_path, monkeypatch):
    seen: dict = {}
    real_train = pretrain_mod.train

    def spy(*args, **kwargs):
        seen["config"] = args[5]
        return real_train(*args, **kwargs)

    clip = accelerate.Accelerator.clip_grad_norm_  # the loop's global clipping goes through it

    def spy_clip(acc, params, max_norm, *a, **k):
        seen.setdefault("clip", []).append(max_norm)
        return clip(acc, params, max_norm, *a, **k)

    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compiled.append((type(self), kw)))
    monkeypatch.setattr(accelerate.Accelerator, "clip_grad_norm_", spy_clip)
    monkeypatch.setattr(pretrain_mod, "train", spy)
    corpus = str(synth / "corpus" / "train.txt")
    args = ["pretrain", "--corpus", corpus, "--tokenizer", str(synth / "tokenizer"), "--steps", "3"]
    args += ["--hidden", "32", "--layers", "1", "--heads", "2", "--intermediate", "64", "--max-length", "32"]
    args += ["--max-grad-norm", "0.25", "--mixed-precision", "bf16", "--fused", "--compile"]
    assert main([*args, "--out", str(tmp_path / "m")]) == 0  # bf16 autocast and fused AdamW run on a CPU
    c = seen["config"]
    assert (c.max_grad_norm, c.mixed_precision, c.fused, c.compile) == (0.25, "bf16", True, True)
    assert seen["clip"] == [0.25] * 3 and len(compiled) == 1 and compiled[0][1] == {"dynamic": True}
    saved = json.loads((tmp_path / "m" / "pretrain.json").read_text())["config"]
    assert saved["max_grad_norm"] == 0.25 and saved["mixed_precision"] == "bf16"
    assert pretrain_mod.precision(PretrainConfig(steps=1)) == ("bf16" if torch.cuda.is_available() else "no")


def test_time_limited_pieces_give_the_weights_of_one_run(synth, tmp_path):
    reference = run(synth, tmp_path / "ref", steps=6, eval_every=2)
    pieces = []
    while not (tmp_path / "pieces" / "pretrain.json").is_file():
        piece = run(synth, tmp_path / "pieces", steps=6, eval_every=2, max_minutes=1e-9)  # one step each
        pieces.append(piece)
        assert len(pieces) <= 6
        if piece.stopped:
            assert piece.steps == len(pieces) and piece.max_steps == 6
            assert not (tmp_path / "pieces").exists()  # the model is written only at the end
    assert len(pieces) == 6 and not pieces[-1].stopped
    assert pieces[-1].dev == reference.dev and pieces[-1].history == reference.history
    a = load_model(tmp_path / "ref").state_dict()
    b = load_model(tmp_path / "pieces").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit: RNG, optimizer and schedule restored
    assert pieces[-1].tokens == reference.tokens == 6 * 16 * 32  # every block full


def test_log_and_console_show_dev_accuracy_and_tokens_per_second(synth, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    result = run(synth, tmp_path / "m", steps=20, eval_every=10, progress=True)
    records = [json.loads(line) for line in (tmp_path / "m" / "pretrain_log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "tokens_per_s" in r]
    evals = [r["eval"] for r in records if "eval" in r]
    assert len(steps) == 2 and all(r["tokens_per_s"] > 0 for r in steps)
    assert [e["step"] for e in evals] == [10, 20] and all(0 <= e["mlm_acc"] <= 1 for e in evals)
    lines = [r.getMessage() for r in caplog.records if "dev:" in r.getMessage()]
    assert len(lines) == 2 and all("mlm_acc" in m and "tokens/s" in m for m in lines)
    assert result.tokens_per_s > 0 and "tokens/s" in result.summary()


def test_token_file_gives_the_blocks_of_the_text(synth, tmp_path, capsys):
    from ticketlab.data.corpus import load_lm_corpus

    corpus, dev = synth / "corpus" / "train.txt", synth / "corpus" / "dev.txt"
    args = [
        "pretrain",
        "--corpus",
        str(corpus),
        "--dev",
        str(dev),
        "--build-tokenizer",
        "--vocab-size",
        "150",
    ]
    assert main([*args, "--write-tokens", "--out", str(tmp_path / "tok")]) == 0  # no --steps needed
    tokens = tmp_path / "tok" / "corpus.tokens.safetensors"
    tok = load_tokenizer(tmp_path / "tok")  # the WordPiece tokenizer written beside the tokens
    from_text = load_lm_corpus(corpus, tok, 32, dev=dev)
    from_file = load_lm_corpus(tokens, tok, 32, dev=tmp_path / "tok" / "dev.tokens.safetensors")
    assert torch.equal(from_text.train.blocks, from_file.train.blocks)
    assert torch.equal(from_text.dev.lengths, from_file.dev.lengths)
    assert from_text.train.content_key == from_file.train.content_key
    from safetensors import safe_open

    with safe_open(str(tokens), "pt") as f:
        assert f.get_slice("ids.0").get_dtype() == "U16"  # 2 bytes a token
    with pytest.raises(DataError, match="tokenized with another tokenizer"):
        load_lm_corpus(tokens, load_tokenizer(synth / "tokenizer"), 32)
    capsys.readouterr()
    train = ["pretrain", "--corpus", str(tokens), "--dev", str(tmp_path / "tok" / "dev.tokens.safetensors")]
    train += ["--tokenizer", str(tmp_path / "tok"), "--steps", "2", "--hidden", "32", "--layers", "1"]
    assert main([*train, "--heads", "2", "--max-length", "32", "--out", str(tmp_path / "m")]) == 0
    assert "dev MLM loss" in capsys.readouterr().out


def test_cli_pretrain_new_user_errors(synth, tmp_path, capsys):
    tokens = tmp_path / "x.tokens.safetensors"
    tokens.write_bytes(b"not a token file")
    base = ["pretrain", "--steps", "2", "--out", str(tmp_path / "m")]
    assert main([*base, "--corpus", str(tokens), "--build-tokenizer"]) == 2
    assert "x.tokens.safetensors: is tokenized already" in capsys.readouterr().err
    assert main([*base, "--corpus", str(tokens), "--tokenizer", str(synth / "tokenizer")]) == 2
    assert "x.tokens.safetensors: not a readable token file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*base, "--corpus", str(tmp_path / "empty"), "--build-tokenizer"]) == 2
    assert "empty: a directory with no .txt files" in capsys.readouterr().err
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "dataset_dict.json").write_text('{"splits": ["train"]}')
    assert main([*base, "--corpus", str(tmp_path / "ds"), "--build-tokenizer"]) == 2
    assert "ds: building a tokenizer reads text files" in capsys.readouterr().err
    assert main([*base, "--corpus", "hub:org/tiny-wiki:raw", "--build-tokenizer"]) == 2  # no download
    assert "hub:org/tiny-wiki:raw: building a tokenizer reads text files" in capsys.readouterr().err
    assert (
        main(
            [*base, "--corpus", str(synth / "corpus" / "train.txt"), "--build-tokenizer", "--vocab-size", "3"]
        )
        == 2
    )
    assert "vocab_size must be in (5, 1048576], got 3" in capsys.readouterr().err
    assert not (tmp_path / "m.work").exists()  # refused before any work
    corpus = str(synth / "corpus" / "train.txt")
    for flag, value, msg in [
        ("--max-minutes", "0", "--max-minutes must be in"),
        ("--max-grad-norm", "-1", "--max-grad-norm must be"),
    ]:
        assert main([*base, "--corpus", corpus, "--build-tokenizer", flag, value]) == 2
        assert msg in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert (
        main(["pretrain", "--corpus", corpus, "--build-tokenizer", "--write-tokens", "--out", str(mine)]) == 2
    )
    assert (mine / "notes.txt").read_text() == "mine" and len(list(mine.iterdir())) == 1
    assert not (tmp_path / "m").exists()


def test_a_process_may_train_in_bf16_then_in_fp32():
    from ticketlab.train.processes import make_accelerator

    assert make_accelerator("bf16").mixed_precision == "bf16"
    assert make_accelerator("no").mixed_precision == "no"  # the demo: bf16 pre-training, then searches


def test_shared_corpus_folders_are_read_as_their_text_files():
    from conftest import SHARED
    from ticketlab.data.corpus import resolve_sources

    if not (SHARED / "data" / "wiki-2015").is_dir():
        pytest.skip("../shared/data absent")
    wiki = resolve_sources([SHARED / "data" / "wiki-2015", SHARED / "data" / "books"])
    names = [s.path.name for s in wiki]
    assert names[:4] == [f"wiki-0{i}.txt" for i in range(4)] and len(names) == 4 + 9
    assert all(s.split is None and s.stream is None for s in wiki)  # one text source per file


def test_a_run_goes_on_only_with_its_own_settings_and_inputs(synth, tmp_path):
    """A piece left in the work directory goes on under new non-result settings (a new time limit),
    and is refused under another learning rate or over another corpus: its checkpoint belongs to
    the other run. A finished output is returned only to its own settings."""
    work = tmp_path / "out.work"
    first = run(synth, tmp_path / "out", steps=4, max_minutes=1e-9)
    assert first.stopped and (work / "settings.json").is_file()
    with pytest.raises(
        ConfigError, match=r"holds a pre-training with other settings \(differs in: lr 0.003 -> 0.001"
    ):
        run(synth, tmp_path / "out", steps=4, lr=1e-3)
    changed = tmp_path / "corpus.txt"
    changed.write_text((synth / "corpus" / "train.txt").read_text() + "one more line .\n")
    with pytest.raises(ConfigError, match="the corpus changed since this pre-training started"):
        pretrain(
            PretrainConfig(**{**TINY, "lr": 3e-3, "steps": 4, "save_every": 5, "progress": False}),
            changed,
            tmp_path / "out",
            tokenizer=synth / "tokenizer",
            dev=synth / "corpus" / "dev.txt",
        )
    done = run(synth, tmp_path / "out", steps=4, progress=True)  # goes on: progress is no setting
    assert not done.stopped and done.steps == 4 and not work.exists()
    assert run(synth, tmp_path / "out", steps=4).cached
    with pytest.raises(ConfigError, match="other settings"):
        run(synth, tmp_path / "out", steps=4, seed=1)


# Continued pre-training (`init`): a checkpoint trains on from its own weights, with its tokenizer.


@pytest.fixture(scope="module")
def start(synth, tmp_path_factory):
    """A tiny pre-trained BERT with its MLM head, and the same body saved without a head."""
    root = tmp_path_factory.mktemp("init")
    config = PretrainConfig(**{**TINY, "lr": 3e-3, "steps": 20, "progress": False})
    cache = root / "cache"
    pretrain(
        config, synth / "corpus" / "train.txt", root / "mlm", tokenizer=synth / "tokenizer", cache_dir=cache
    )
    body = load_model(root / "mlm", head="base")
    body.save_pretrained(root / "body")
    load_tokenizer(root / "mlm").save_pretrained(root / "body")
    return root


def go_on(synth, init, out, **kw):
    config = PretrainConfig(
        **{"max_length": 32, "batch_size": 16, "lr": 3e-3, "steps": 12, "progress": False, **kw}
    )
    return pretrain(
        config,
        synth / "corpus" / "train.txt",
        out,
        tokenizer=None,
        init=init,
        dev=synth / "corpus" / "dev.txt",
    )


def _weights(path, head="mlm"):
    return {k: v.clone() for k, v in load_model(path, head=head).state_dict().items()}


def test_continued_pretraining_starts_from_the_checkpoint_and_trains_every_parameter(synth, start, tmp_path):
    before = _weights(start / "mlm")
    # A learning rate of ~0 leaves every weight where the checkpoint had it: nothing was re-initialised.
    still = go_on(synth, start / "mlm", tmp_path / "still", lr=1e-12, dropout=0.0)
    for k, v in _weights(tmp_path / "still").items():
        torch.testing.assert_close(v, before[k], atol=1e-6, rtol=0)
    moved = go_on(synth, start / "mlm", tmp_path / "moved", lr=3e-3)
    after = _weights(tmp_path / "moved")
    body = [k for k in before if k.startswith("bert.encoder.") and k.endswith("weight")]
    assert body and all(not torch.equal(after[k], before[k]) for k in body)  # the body trains too
    assert moved.dev["mlm_loss"] < still.dev["mlm_loss"]
    assert load_tokenizer(tmp_path / "moved").get_vocab() == load_tokenizer(start / "mlm").get_vocab()


def test_a_checkpoint_without_mlm_head_gets_a_fresh_seeded_one_said_in_one_line(
    synth, start, tmp_path, caplog
):
    with caplog.at_level("WARNING"):
        go_on(synth, start / "body", tmp_path / "a", lr=1e-12, dropout=0.0)
    notes = [r.getMessage() for r in caplog.records if "no MLM head" in r.getMessage()]
    assert len(notes) == 1 and str(start / "body") in notes[0]
    a = _weights(tmp_path / "a")
    body = _weights(start / "body", head="base")
    for k, v in body.items():  # the body is the checkpoint's (an MLM model has no pooler)
        if k.startswith("pooler."):
            continue
        torch.testing.assert_close(a["bert." + k], v, atol=1e-6, rtol=0)
    from transformers import AutoModelForMaskedLM

    assert type(AutoModelForMaskedLM.from_pretrained(tmp_path / "a")).__name__ == "BertForMaskedLM"
    go_on(synth, start / "body", tmp_path / "b", lr=1e-12, dropout=0.0)  # the head is seeded
    b = _weights(tmp_path / "b")
    head = [k for k in a if k.startswith("cls.")]
    assert head and all(torch.equal(a[k], b[k]) for k in head)
    go_on(synth, start / "body", tmp_path / "c", lr=1e-12, dropout=0.0, seed=1)
    c = _weights(tmp_path / "c")
    assert not torch.equal(
        a["cls.predictions.transform.dense.weight"], c["cls.predictions.transform.dense.weight"]
    )


def test_continued_pretraining_in_pieces_gives_the_weights_of_one_run(synth, start, tmp_path):
    whole = go_on(synth, start / "mlm", tmp_path / "whole", save_every=3)
    piece = go_on(synth, start / "mlm", tmp_path / "pieces", save_every=3, max_minutes=1e-9)
    assert piece.stopped and not (tmp_path / "pieces").exists()
    while piece.stopped:
        piece = go_on(synth, start / "mlm", tmp_path / "pieces", save_every=3, max_minutes=1e-9)
    assert piece.steps == whole.steps == 12
    w, p = _weights(tmp_path / "whole"), _weights(tmp_path / "pieces")
    assert all(torch.equal(w[k], p[k]) for k in w)
    # The run is tied to its checkpoint: the same out over another init is refused.
    with pytest.raises(ConfigError, match="other settings|changed"):
        go_on(synth, start / "body", tmp_path / "whole", save_every=3)


def test_continued_pretraining_saves_float16_and_ticketlab_loads_it_in_float32(synth, start, tmp_path):
    from safetensors import safe_open

    go_on(synth, start / "mlm", tmp_path / "half", steps=2, save_dtype="float16")
    with safe_open(str(tmp_path / "half" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118 (no __iter__)
    assert {p.dtype for p in load_model(tmp_path / "half").parameters()} == {torch.float32}


def test_continued_pretraining_refuses_what_cannot_run_before_any_folder(synth, start, tmp_path, capsys):
    with pytest.raises(ConfigError, match="keeps the checkpoint's shape; drop --hidden"):
        go_on(synth, start / "mlm", tmp_path / "x", hidden=64)
    with pytest.raises(ConfigError, match="max_length 64 exceeds the model's 32 positions"):
        go_on(synth, start / "mlm", tmp_path / "x", max_length=64)
    assert not list(tmp_path.iterdir())
    corpus = str(synth / "corpus" / "train.txt")
    common = ["pretrain", "--corpus", corpus, "--steps", "2", "--out", str(tmp_path / "y")]
    assert main([*common, "--init", str(start / "mlm"), "--build-tokenizer"]) == 2
    assert "--init brings its own tokenizer" in capsys.readouterr().err
    assert main(common) == 2
    assert "give --tokenizer DIR, --build-tokenizer or --init MODEL" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_pretrain_init(synth, start, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["pretrain", "--init", str(start / "body"), "--corpus", str(synth / "corpus" / "train.txt")]
    args += ["--max-length", "32", "--batch-size", "8", "--steps", "3", "--out", "m"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 steps" in out and "model -> m" in out
    saved = json.loads((tmp_path / "m" / "pretrain.json").read_text())
    assert saved["identity"]["init content"].startswith("sha256:")


def test_pretraining_reads_twice_what_its_steps_train_on_unless_told():
    from ticketlab.lm.pretrain import corpus_cap
    from ticketlab.lm.pretrain_config import PretrainConfig

    config = PretrainConfig(steps=10, batch_size=4, max_length=16)
    assert corpus_cap(config, carved=False) == 2 * 10 * 4 * 16
    assert corpus_cap(config, carved=True) == -(-2 * 10 * 4 * 16 // 0.95)  # and the dev tail carved from it
    assert corpus_cap(PretrainConfig(steps=10, corpus_tokens=0), carved=False) is None  # the whole corpus
    assert corpus_cap(PretrainConfig(steps=10, corpus_tokens=500), carved=False) == 500
    assert corpus_cap(PretrainConfig(time_budget=60), carved=False) is None  # steps unknown before reading
