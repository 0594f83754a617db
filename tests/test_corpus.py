"""LM corpora: WikiText cleaning, tokenize + block, disk cache, dev split, datasets dirs, bad input."""

from __future__ import annotations

import pytest
import torch

from conftest import HUB_DEV, HUB_TRAIN, SHARED, write_tokenizer
from ticketlab.core.errors import DataError
from ticketlab.data.corpus import (
    BlockDataset,
    clean_wikitext,
    load_lm_corpus,
    make_blocks,
    special_affixes,
)

TEXT = "the cat sees the dog . the dog runs to the river .\n\na big red bird sings .\n" * 30


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tok"))


def test_clean_wikitext():
    line = " The 1 @,@ 000 km state @-@ of @-@ the @-@ art road , 3 @.@ 5 m wide , by <unk> . "
    assert clean_wikitext(line, "[UNK]") == " The 1,000 km state-of-the-art road , 3.5 m wide , by [UNK] . "


def test_blocks_have_exact_length_and_special_tokens(tok, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text(TEXT)
    corpus = load_lm_corpus([f], tok, max_length=16, dev_fraction=0.2, cache_dir=tmp_path / "cache")
    cls, sep = tok.cls_token_id, tok.sep_token_id
    for ds in (corpus.train, corpus.dev):
        for i in range(len(ds)):
            ids = ds[i]["input_ids"]
            assert ids.dtype == torch.long and ids[0] == cls and ids[-1] == sep
            assert len(ids) == 16 or i == len(ds) - 1  # only a final partial block may be shorter
    # train + dev blocks, stripped of their specials, give back the whole token stream in order
    stream = tok(TEXT.replace("\n", " "), add_special_tokens=False)["input_ids"]
    pieces = [corpus.train[i]["input_ids"][1:-1] for i in range(len(corpus.train))]
    pieces += [corpus.dev[i]["input_ids"][1:-1] for i in range(len(corpus.dev))]
    got = torch.cat(pieces).tolist()
    assert got == stream[: len(got)] and len(stream) - len(got) < 7  # only a short tail may be dropped
    assert len(corpus.dev) == round(0.2 * (len(corpus.train) + len(corpus.dev)))


def test_partial_block_rules():
    ids = torch.arange(100, 100 + 14 * 3 + 9, dtype=torch.int32)  # 3 full blocks of 14 + a tail of 9
    ds = make_blocks(ids, 16, [1], [2], pad_id=0)
    assert len(ds) == 4 and ds.lengths.tolist() == [16, 16, 16, 11]
    assert ds[3]["input_ids"].tolist() == [1, *range(142, 151), 2]
    assert ds.blocks[3, 11:].eq(0).all()  # padded past its length
    short = make_blocks(torch.arange(100, 105, dtype=torch.int32), 16, [1], [2], pad_id=0)
    assert len(short) == 1 and short[0]["input_ids"].tolist() == [1, 100, 101, 102, 103, 104, 2]
    dropped = make_blocks(torch.arange(100, 100 + 14 + 3, dtype=torch.int32), 16, [1], [2], pad_id=0)
    assert len(dropped) == 1  # a 3-token tail is not worth a block


def test_cache_is_reused_across_max_lengths_and_invalidated_by_content(tok, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text(TEXT)
    cache = tmp_path / "cache"
    first = load_lm_corpus([f], tok, max_length=16, cache_dir=cache)
    assert first.info["train_sources"][0]["cache"] == "miss"
    again = load_lm_corpus([f], tok, max_length=32, cache_dir=cache)
    assert again.info["train_sources"][0]["cache"] == "hit"
    same = load_lm_corpus([f], tok, max_length=16, cache_dir=cache)
    assert torch.equal(same.train.blocks, first.train.blocks)
    f.write_text(TEXT + "one more line .\n")
    assert (
        load_lm_corpus([f], tok, max_length=16, cache_dir=cache).info["train_sources"][0]["cache"] == "miss"
    )
    # a corrupt cache entry is rebuilt, not trusted
    for entry in cache.iterdir():
        entry.write_bytes(b"garbage")
    rebuilt = load_lm_corpus([f], tok, max_length=16, cache_dir=cache)
    assert rebuilt.info["train_sources"][0]["cache"] == "miss" and len(rebuilt.train) > 0


def test_separate_dev_and_multiple_sources(tok, tmp_path):
    a, b, d = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "dev.txt"
    a.write_text(TEXT)
    b.write_text("the queen walks in the city .\n" * 40)
    d.write_text("the king sleeps .\n" * 20)
    corpus = load_lm_corpus([a, b], tok, max_length=16, dev=d, use_cache=False)
    assert corpus.info["dev_split"] == "separate"
    n_a = corpus.info["train_sources"][0]["blocks"]
    n_b = corpus.info["train_sources"][1]["blocks"]
    assert len(corpus.train) == n_a + n_b
    assert corpus.dev.num_tokens == corpus.info["dev_sources"][0]["tokens"] + 2 * len(corpus.dev)


def test_wikitext_markup_is_cleaned_on_detection(tok, tmp_path):
    f = tmp_path / "wiki.txt"
    f.write_text(" = the river = \n the red @-@ bird sees a <unk> . \n" * 10)

    def stream(corpus):
        return torch.cat([corpus.train[i]["input_ids"][1:-1] for i in range(len(corpus.train))]).tolist()

    cleaned = load_lm_corpus([f], tok, max_length=64, dev=f, use_cache=False)
    assert cleaned.info["train_sources"][0]["wikitext"] is True
    expected = tok(["= the river =", "the red-bird sees a [UNK] ."] * 10, add_special_tokens=False)[
        "input_ids"
    ]
    assert stream(cleaned) == [t for row in expected for t in row][: len(stream(cleaned))]
    raw = load_lm_corpus([f], tok, max_length=64, dev=f, use_cache=False, wikitext=False)
    assert raw.info["train_sources"][0]["wikitext"] is False
    assert len(stream(raw)) > len(stream(cleaned))  # '@', '-', '@' and '<', 'unk', '>' stay separate


def test_cp1252_file_is_read(tok, tmp_path):
    f = tmp_path / "old.txt"
    f.write_bytes(("the cat \x93sees\x94 the dog .\n" * 40).encode("latin-1"))
    corpus = load_lm_corpus([f], tok, max_length=16, use_cache=False)
    assert corpus.info["train_sources"][0]["encoding"] == "cp1252" and len(corpus.train) > 0


def test_datasets_directory(tok, tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": ["the cat runs .", "the dog sleeps ."] * 40}),
        validation=datasets.Dataset.from_dict({"text": ["a bird sings ."] * 20}),
    )
    dd.save_to_disk(str(tmp_path / "ds"))
    corpus = load_lm_corpus([tmp_path / "ds"], tok, max_length=16, cache_dir=tmp_path / "c")
    assert corpus.info["dev_split"] == "dataset split"
    assert "bird" in tok.decode(corpus.dev[0]["input_ids"])
    assert "bird" not in tok.decode(
        torch.cat([corpus.train[i]["input_ids"] for i in range(len(corpus.train))])
    )
    again = load_lm_corpus([tmp_path / "ds"], tok, max_length=16, cache_dir=tmp_path / "c")
    assert again.info["train_sources"][0]["cache"] == "hit"
    with pytest.raises(DataError, match="no column 'sentence'"):
        load_lm_corpus([tmp_path / "ds"], tok, max_length=16, use_cache=False, text_column="sentence")


def test_a_hub_dataset_is_a_corpus_with_its_own_dev_split(tok, tmp_path, fake_hub):
    corpus = load_lm_corpus(["hub:org/tiny-wiki:raw"], tok, max_length=16, cache_dir=tmp_path / "c")
    assert corpus.info["dev_split"] == "dataset split"
    assert [i["source"] for i in corpus.info["train_sources"] + corpus.info["dev_sources"]] == [
        "hub:org/tiny-wiki:raw[train]",
        "hub:org/tiny-wiki:raw[validation]",
    ]
    assert "bird" in tok.decode(corpus.dev[0]["input_ids"])
    train = tok.decode(torch.cat([corpus.train[i]["input_ids"] for i in range(len(corpus.train))]))
    assert "cat" in train and "bird" not in train
    # The same text read from a saved copy gives the same blocks: a hub id is one more way to name it.
    import datasets

    datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": HUB_TRAIN}),
        validation=datasets.Dataset.from_dict({"text": HUB_DEV}),
    ).save_to_disk(str(tmp_path / "ds"))
    local = load_lm_corpus([tmp_path / "ds"], tok, max_length=16, use_cache=False)
    assert torch.equal(local.train.blocks, corpus.train.blocks) and torch.equal(
        local.dev.blocks, corpus.dev.blocks
    )


def test_a_hub_dataset_as_dev_and_one_without_a_dev_split(tok, tmp_path, fake_hub):
    """`--dev hub:...` reads the dataset's validation split; a dataset with a train split only has
    its dev text carved from the tail, as a text file's."""
    corpus = load_lm_corpus(
        ["hub:org/train-only"], tok, max_length=16, dev=["hub:org/tiny-wiki:raw"], use_cache=False
    )
    assert corpus.info["dev_split"] == "separate"
    assert corpus.info["dev_sources"][0]["source"] == "hub:org/tiny-wiki:raw[validation]"
    carved = load_lm_corpus(["hub:org/train-only"], tok, max_length=16, use_cache=False)
    assert carved.info["dev_split"] == "last 5% of each source" and len(carved.dev) > 0


def test_token_files_of_a_dev_corpus_hold_its_dev_split(tok, tmp_path, fake_hub):
    """`pretrain --write-tokens --dev DATASET` tokenizes the dataset's validation split, as a search
    with that --dev reads it (not its train split)."""
    from ticketlab.data.sources import read_token_index
    from ticketlab.data.tokens import write_token_file

    dev = write_token_file(tmp_path / "dev.tokens.safetensors", ["hub:org/tiny-wiki:raw"], tok, role="dev")
    assert (
        dev["tokens"]
        == load_lm_corpus(
            ["hub:org/train-only"], tok, max_length=16, dev=["hub:org/tiny-wiki:raw"], use_cache=False
        ).info["dev_sources"][0]["tokens"]
    )
    index = read_token_index(tmp_path / "dev.tokens.safetensors")
    assert [e["source"] for e in index] == ["hub:org/tiny-wiki:raw[validation]"]


def test_what_a_tokenizers_last_call_set_is_neither_its_identity_nor_saved(tmp_path):
    """Truncation and padding are settings each call leaves on the fast backend. Neither changes the
    tokenizer's identity (a corpus cache's key, a token file's and a task's features' tokenizer), nor
    a saved folder, which would otherwise depend on which encodings ran (none from a cache)."""
    import json

    from ticketlab.data.features import tokenizer_digest
    from ticketlab.data.tokens import tokenizer_fingerprint
    from ticketlab.models.load import load_tokenizer, save_tokenizer

    tok = write_tokenizer(tmp_path / "tok")
    identity = tokenizer_fingerprint(tok), tokenizer_digest(tok)
    tok("the cat", "the dog", truncation=True, max_length=8, padding="max_length")
    assert (tokenizer_fingerprint(tok), tokenizer_digest(tok)) == identity
    save_tokenizer(tok, tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None
    assert tokenizer_fingerprint(load_tokenizer(tmp_path / "saved")) == identity[0]


def test_a_hub_dataset_that_cannot_load_is_one_line(tok, tmp_path, fake_hub, monkeypatch):
    from ticketlab.core.errors import ConfigError

    with pytest.raises(
        DataError,
        match=r"^hub:org/tiny-wiki: cannot load from the hub \(Config name is missing\. "
        r"Please pick one among the available configs: \['raw'\]\)$",
    ):
        load_lm_corpus(["hub:org/tiny-wiki"], tok, max_length=16, use_cache=False)
    with pytest.raises(
        DataError, match=r"^hub:org/offline: cannot load .*OfflineModeIsEnabled\)\); give a local copy"
    ):
        load_lm_corpus(["hub:org/offline"], tok, max_length=16, use_cache=False)
    with pytest.raises(
        DataError, match=r"^hub:org/train-only: no validation or dev or test split \(splits: train\)$"
    ):
        load_lm_corpus(
            ["hub:org/tiny-wiki:raw"], tok, max_length=16, dev=["hub:org/train-only"], use_cache=False
        )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(ConfigError, match="hub:data: data is a local path; give it without 'hub:'"):
        load_lm_corpus(["hub:data"], tok, max_length=16, use_cache=False)

    with pytest.raises(
        DataError, match=r"^hub:org/missing: cannot load from the hub \(Dataset 'org/missing'"
    ):
        load_lm_corpus(["hub:org/missing"], tok, max_length=16, use_cache=False)
    with pytest.raises(ConfigError, match="hub:: no dataset after 'hub:'"):
        load_lm_corpus(["hub:"], tok, max_length=16, use_cache=False)


def test_bad_input_gives_one_clear_error(tok, tmp_path):
    with pytest.raises(DataError, match="missing.txt: corpus not found"):
        load_lm_corpus([tmp_path / "missing.txt"], tok, max_length=16)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    with pytest.raises(DataError, match="no text found"):
        load_lm_corpus([empty], tok, max_length=16, use_cache=False)
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(DataError, match="binary"):
        load_lm_corpus([binary], tok, max_length=16, use_cache=False)
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("the cat .\n")
    with pytest.raises(DataError, match="too little text to carve a dev split"):
        load_lm_corpus([tiny], tok, max_length=16, use_cache=False)
    (tmp_path / "plain_dir").mkdir()
    with pytest.raises(DataError, match="plain_dir: a directory with no .txt files"):
        load_lm_corpus([tmp_path / "plain_dir"], tok, max_length=16)


def test_block_dataset_take_and_concat():
    ds = make_blocks(torch.arange(10, 10 + 14 * 5, dtype=torch.int32), 16, [1], [2], pad_id=0)
    assert len(ds.take(2)) == 2 and len(ds.take(None)) == 5 and len(ds.take(99)) == 5
    both = BlockDataset.concat([ds.take(2), ds])
    assert len(both) == 7 and torch.equal(both[2]["input_ids"], ds[0]["input_ids"])


def test_real_wikitext_with_bert_mini_tokenizer(bert_mini, tmp_path):
    from ticketlab.models.load import load_tokenizer

    tok = load_tokenizer(bert_mini)
    assert special_affixes(tok) == ([tok.cls_token_id], [tok.sep_token_id])
    path = SHARED / "data" / "wikitext-2" / "valid.txt"
    corpus = load_lm_corpus([path], tok, max_length=128, cache_dir=tmp_path, progress=False)
    assert corpus.info["train_sources"][0]["wikitext"] is True
    assert 200_000 < corpus.info["train_sources"][0]["tokens"] < 260_000
    text = tok.decode(corpus.train[0]["input_ids"])
    assert text.startswith("[CLS] = homarus gammarus =") and "<" not in text and "@" not in text


def test_a_search_undoes_wikitext_markup_unless_told_to_keep_it_as_tamt(tok, tmp_path):
    """TAMT's code tokenizes wiki.*.raw as it is, its ' @,@ ' markup included; a search undoes the
    markup by default (`wikitext_markup="undo"`: '1 @,@ 000' reads '1,000') and keeps it with "keep":
    the corpus it trains on is then the file's text tokenized as it is (by hand: load_lm_corpus)."""
    from accelerate import Accelerator

    from ticketlab.methods.search_inputs import lm_objective
    from ticketlab.methods.tamt.config import TamtConfig
    from ticketlab.verbs.search import SearchConfig

    f = tmp_path / "wiki.txt"
    f.write_text(" The 1 @,@ 000 km state @-@ of @-@ the @-@ art road . \n" * 60)

    def trained_on(**kw) -> int:
        config = SearchConfig(
            model="m", method=TamtConfig(0.5), steps=2, out=tmp_path / "o", corpus=[f], dev=[f],
            max_length=16, cache_dir=tmp_path / "c", no_eval=True, progress=False, corpus_tokens=0, **kw,
        )  # fmt: skip
        return lm_objective(config, tok, Accelerator(cpu=True), "mlm", mlm_eval=False).dataset.num_tokens

    def by_hand(wikitext: bool | None) -> int:
        return load_lm_corpus(
            [f], tok, max_length=16, dev=f, use_cache=False, wikitext=wikitext
        ).train.num_tokens

    assert trained_on() == by_hand(None) < trained_on(wikitext_markup="keep") == by_hand(False)


def test_a_token_cap_reads_the_corpus_start_only_and_gives_its_first_blocks(tok, tmp_path):
    """`max_tokens` reads the sources in order up to the cap: the blocks are the first blocks of the whole
    corpus, the sources after the cap are not read, and the tokenizer stops after the lines it needs
    (the rest of a long file is never tokenized), whatever the cache holds."""
    a, b, d = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "dev.txt"
    a.write_text("the cat sees the dog .\n" * 10_000)  # 5 chunks of 2,048 lines
    b.write_text("the queen walks in the city .\n" * 40)
    d.write_text("the king sleeps .\n" * 200)
    cache = tmp_path / "cache"
    capped = load_lm_corpus([a, b], tok, max_length=16, dev=d, cache_dir=cache, max_tokens=1400)
    assert capped.info["read"] == {"tokens_read": 1400, "max_tokens": 1400, "capped": True}
    assert capped.info["train_sources"][1] == {"source": str(b), "tokens": 0, "capped": True}
    assert [p.name.endswith(".prefix.safetensors") for p in cache.iterdir()] == [True, False]  # a, dev
    prefix = next(p for p in cache.iterdir() if p.name.startswith("a.txt"))
    assert prefix.stat().st_size < 2049 * 6 * 4 + 1000  # one chunk of a's lines tokenized, not five
    whole = load_lm_corpus([a, b], tok, max_length=16, dev=d, cache_dir=cache)
    assert not whole.info["read"]["capped"] and whole.info["read"]["tokens_read"] == 60_000 + 40 * 7
    n = len(capped.train)
    assert n == 1400 // 14 and torch.equal(capped.train.blocks, whole.train.blocks[:n])
    again = load_lm_corpus([a, b], tok, max_length=16, dev=d, cache_dir=cache, max_tokens=1400)
    assert torch.equal(again.train.blocks, capped.train.blocks)  # from the whole stream's cache now
    assert again.train.content_key == capped.train.content_key != whole.train.content_key
    roomy = load_lm_corpus([a, b], tok, max_length=16, dev=d, cache_dir=cache, max_tokens=10**6)
    assert roomy.train.content_key == whole.train.content_key  # a cap that leaves nothing out


def test_a_dev_cap_keeps_the_first_dev_blocks_and_blocks_read_capped_are_the_first_blocks(tok, tmp_path):
    from ticketlab.data.corpus import load_lm_blocks, needed_tokens

    d = tmp_path / "dev.txt"
    d.write_text(TEXT * 10)
    whole, _ = load_lm_blocks([d], tok, 16, use_cache=False)
    first, info = load_lm_blocks([d], tok, 16, use_cache=False, max_tokens=11 * 16)
    assert torch.equal(first.take(10).blocks, whole.take(10).blocks) and info[0]["capped"]
    assert needed_tokens(100, 16, 128) == 2 * 100 * 16 * 128
    assert needed_tokens(100, 16, 128, carved=0.05) == -(-2 * 100 * 16 * 128 // 0.95)
