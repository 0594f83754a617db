"""The synthetic language: determinism, grammar rules, task labels, the lexical split, files, tokenizers."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest
from transformers import AutoTokenizer

from ticketlab.core.errors import ConfigError, DataError
from ticketlab.data import synthetic as syn
from ticketlab.data.tokenizer import train_word_level_tokenizer, word_level_tokenizer

SMALL = syn.SyntheticConfig(corpus_sentences=400, dev_sentences=50, train_examples=300, dev_examples=200)

# Word -> (class, polarity, number) from the lexicon, for independent checks on generated strings.
POLARITY = {w: c.polarity for c in syn.LEXICON.concepts() for f in c.forms for w in f}
SG_NOUNS = {f[0] for cls in syn.LEXICON.nouns.values() for c in cls for f in c.forms}
PL_NOUNS = {f[1] for cls in syn.LEXICON.nouns.values() for c in cls for f in c.forms}
SG_VERBS = {f[0] for c in syn.LEXICON.tverbs + syn.LEXICON.iverbs for f in c.forms} | {"is", "was", "does"}
PL_VERBS = {f[1] for c in syn.LEXICON.tverbs + syn.LEXICON.iverbs for f in c.forms} | {"are", "were", "do"}
CONCEPT = {w: (c.cls, c.index) for c in syn.LEXICON.concepts() for f in c.forms for w in f}


def agreement_ok(sentence: str) -> bool:
    """Independent check of a simple clause 'DET ADJ* NOUN VERB ...': determiner and verb agree."""
    words = sentence.split()
    noun_at = next(i for i, w in enumerate(words) if w in SG_NOUNS | PL_NOUNS)
    plural = words[noun_at] in PL_NOUNS
    det_ok = words[0] not in (syn.DET_PL if not plural else syn.DET_SG)
    verb = words[noun_at + 1]
    return det_ok and (verb in PL_VERBS if plural else verb in SG_VERBS)


def simple(sentence: str) -> bool:
    """One clause, no modifiers of the subject: the noun is directly followed by its finite verb."""
    ws = set(sentence.split())
    preps = {f[0] for c in syn.LEXICON.preps for f in c.forms}
    return not ws & ({"and", "but", "who", "which", "by"} | preps)


def test_deterministic_and_seeded():
    a = list(syn.corpus_sentences(SMALL))
    assert a == list(syn.corpus_sentences(SMALL))
    assert a != list(syn.corpus_sentences(replace(SMALL, seed=1)))
    assert syn.task_examples(SMALL, "paraphrase", "dev") == syn.task_examples(SMALL, "paraphrase", "dev")
    assert SMALL.key() == replace(SMALL).key() != replace(SMALL, seed=1).key()
    # Independent streams: the corpus does not depend on which tasks are generated.
    assert list(syn.corpus_sentences(replace(SMALL, tasks=("sentiment",)))) == a


def test_config_validation():
    with pytest.raises(ConfigError, match="holdout"):
        syn.SyntheticConfig(holdout=1.5)
    with pytest.raises(ConfigError, match="tasks"):
        syn.SyntheticConfig(tasks=("nli",))
    with pytest.raises(ConfigError, match="train_examples"):
        syn.SyntheticConfig(train_examples=0)


def test_vocabulary_is_a_few_hundred_words_and_covers_the_corpus():
    vocab = set(syn.LEXICON.words())
    assert 250 <= len(vocab) <= 400
    used = Counter(w for s in syn.corpus_sentences(SMALL) for w in s.split())
    assert set(used) <= vocab
    assert len(used) > 0.7 * len(vocab)  # the generator exercises most of the lexicon


def test_rendering_agreement_passive_negation_relatives():
    lex = syn.LEXICON
    dog, film = lex.nouns["animate"][0], lex.nouns["inanimate"][0]
    love = lex.polar(lex.tverbs, +1)[0]
    near = lex.preps[0]
    render = syn.Renderer(random.Random(0), restricted=frozenset(c_key(c) for c in lex.concepts()))
    subj = syn.NP(dog, plural=True, det="the", pp=(near, syn.NP(film, plural=False, det="a")))
    obj = syn.NP(film, plural=False, det="this")
    active = syn.Clause("trans", subj, love, obj)
    assert syn.words(render.sentence([active], [])) == "the dogs near a film love this film ."
    negated = replace(active, negated=True)
    assert syn.words(render.sentence([negated], [])) == "the dogs near a film do not love this film ."
    passive = replace(active, passive=True, past=True)
    assert syn.words(render.sentence([passive], [])) == "this film was loved by the dogs near a film ."
    rel = syn.NP(dog, plural=False, det="a")
    rel.rc = syn.Clause("intr", rel, lex.polar(lex.iverbs, 0)[0])
    cop = syn.Clause("cop", rel, lex.polar(lex.adjs, -1)[0])
    assert syn.words(render.sentence([cop], [])) == "a dog who runs is bad ."


def c_key(c: syn.Concept) -> tuple[str, int]:
    return (c.cls, c.index)


def test_corpus_sentences_agree_in_number():
    checked = 0
    for s in syn.corpus_sentences(replace(SMALL, corpus_sentences=2000)):
        if simple(s):
            assert agreement_ok(s), s
            checked += 1
    assert checked > 300


def test_sentences_keep_to_a_topic():
    """Content words of a sentence mostly share a topic, so MLM can tell concepts (not synonyms) apart."""
    topic_of = {w: syn.topic(c) for c in syn.LEXICON.concepts() for f in c.forms for w in f}
    same = pairs = 0
    for s in syn.corpus_sentences(SMALL):
        topics = [topic_of[w] for w in s.split() if topic_of.get(w) is not None]
        for a, b in zip(topics, topics[1:], strict=False):
            same += a == b
            pairs += 1
    assert same / pairs > 0.6  # 0.25 without topics
    assert all(syn.topic(c) is not None for c in syn.LEXICON.tverbs + syn.LEXICON.adjs)


def test_sentiment_labels_follow_polarity_negation_and_but():
    examples = syn.task_examples(SMALL, "sentiment", "dev")
    assert 0.4 < sum(e["label"] for e in examples) / len(examples) < 0.6
    checked_plain = checked_but = 0
    for e in examples:
        sign = 1 if e["label"] else -1
        clauses = e["sentence"].replace(" but ", " | ").replace(" and ", " | ").split(" | ")
        last = clauses[-1].split()
        polar = [POLARITY[w] for w in last if POLARITY.get(w)]
        assert polar, e  # the last clause always carries sentiment
        if "not" not in last:
            assert all(p == sign for p in polar), e
            checked_plain += 1
        if " but " in e["sentence"] and "not" not in clauses[0].split():
            first = [POLARITY[w] for w in clauses[0].split() if POLARITY.get(w)]
            assert all(p == -sign for p in first), e  # "but" reverses the polarity
            checked_but += 1
    assert checked_plain > 50 and checked_but > 5


def test_acceptability_corruptions_break_a_rule():
    examples = syn.task_examples(SMALL, "acceptability", "train")
    assert 0.4 < sum(e["label"] for e in examples) / len(examples) < 0.6
    for e in examples:
        if e["label"] == 1 and simple(e["sentence"]):
            assert agreement_ok(e["sentence"]), e
    # Each kind of corruption, on a known sentence.
    toks = [("the", "DET"), ("dogs", "N_PL"), ("run", "FIN"), (".", "PUNCT")]
    seen = {}
    for seed in range(40):
        out, kind = syn.corrupt(toks, random.Random(seed))
        seen[kind] = syn.words(out)
    assert seen["agreement"] == "the dogs runs ."
    assert seen["order"] in ("dogs the run .", "the run dogs .")
    assert "determiner" not in seen  # "the" has no number: nothing to corrupt
    det_toks = [("these", "DET_PL"), ("cats", "N_PL"), ("sleep", "FIN"), (".", "PUNCT")]
    for seed in range(40):
        out, kind = syn.corrupt(det_toks, random.Random(seed))
        if kind == "determiner":
            assert out[0][0] in syn.DET_SG and not agreement_ok(syn.words(out))


def content(sentence: str) -> Counter:
    """The multiset of concepts (synonyms identified) and noun numbers of a sentence."""
    out = Counter()
    for w in sentence.split():
        if w in CONCEPT:
            out[CONCEPT[w]] += 1
        if w in PL_NOUNS:
            out["plural"] += 1
    out["not"] = sentence.split().count("not")
    return out


def test_paraphrase_pairs_keep_or_change_the_meaning():
    examples = syn.task_examples(SMALL, "paraphrase", "dev")
    assert 0.4 < sum(e["label"] for e in examples) / len(examples) < 0.6
    differs = 0
    for e in examples:
        if e["label"] == 1:  # same concepts, numbers and negation, whatever the words and voice
            assert content(e["sentence1"]) == content(e["sentence2"]), e
        else:
            differs += content(e["sentence1"]) != content(e["sentence2"])
    # Non-paraphrases that keep every concept are agent/patient swaps.
    n_neg = sum(1 for e in examples if e["label"] == 0)
    assert differs > 0.6 * n_neg
    # Synonyms and voice vary: most paraphrases are not word-for-word copies.
    copies = sum(e["sentence1"] == e["sentence2"] for e in examples if e["label"] == 1)
    assert copies < 0.3 * (len(examples) - n_neg)


def test_lexical_split_keeps_held_out_synonyms_out_of_training_sets():
    held = syn.restricted_concepts(SMALL)
    other_forms = {w for c in syn.LEXICON.concepts() if c_key(c) in held for f in c.forms[1:] for w in f} - {
        w for c in syn.LEXICON.concepts() for w in c.forms[0]
    }
    assert len(held) > 20
    for task in syn.TASKS:
        cols = syn.TASK_INFO[task]["text_columns"]
        train = {w for e in syn.task_examples(SMALL, task, "train") for c in cols for w in e[c].split()}
        dev = {w for e in syn.task_examples(SMALL, task, "dev") for c in cols for w in e[c].split()}
        assert not train & other_forms, task
        assert dev & other_forms, task
    # The corpus uses every form.
    corpus = {w for s in syn.corpus_sentences(SMALL) for w in s.split()}
    assert len(corpus & other_forms) > 0.5 * len(other_forms)


def test_write_dataset_files_and_tokenizer(tmp_path):
    out = syn.write_dataset(SMALL, tmp_path / "synth")
    info = (out / "synthetic.json").read_text()
    assert SMALL.key() in info
    lines = (out / "corpus" / "train.txt").read_text().splitlines()
    assert all(len(line.split()) == SMALL.block_length - 2 for line in lines[:-1])
    for task in syn.TASKS:
        rows = (out / "tasks" / syn.task_id(task) / "dev.tsv").read_text().splitlines()
        assert rows[0].split("\t") == [*syn.TASK_INFO[task]["text_columns"], "label"]
        assert len(rows) == SMALL.dev_examples + 1
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    ids = tok(lines[:200])["input_ids"]
    assert all(tok.unk_token_id not in row for row in ids)
    mtime = (out / "corpus" / "train.txt").stat().st_mtime_ns
    syn.write_dataset(SMALL, out)  # present: not rewritten
    assert (out / "corpus" / "train.txt").stat().st_mtime_ns == mtime


def test_corpus_blocks_start_at_sentence_starts(tmp_path):
    """The corpus loader's fixed-length blocks are exactly the generator's lines."""
    from ticketlab.data.corpus import load_lm_corpus

    out = syn.write_dataset(SMALL, tmp_path / "synth")
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    lines = (out / "corpus" / "train.txt").read_text().splitlines()
    corpus = load_lm_corpus(
        out / "corpus" / "train.txt", tok, SMALL.block_length, dev=out / "corpus" / "dev.txt", use_cache=False
    )
    assert len(corpus.train) in (len(lines), len(lines) - 1)  # the last line may be too short to keep
    determiners = set(tok.convert_tokens_to_ids(syn.DET_SG + syn.DET_PL + syn.DET_ANY))
    for i in range(len(corpus.train)):
        block = corpus.train[i]["input_ids"].tolist()
        assert block[1] in determiners and block == tok(lines[i])["input_ids"]


def test_synthetic_tasks_load_through_the_task_registry(tmp_path):
    from ticketlab.tasks.registry import get_task

    out = syn.write_dataset(SMALL, tmp_path / "synth")
    spec = get_task(syn.task_id("paraphrase"), data_dir=out / "tasks")
    assert spec.text_b == "sentence2" and spec.metrics == ("accuracy", "f1")
    assert get_task(syn.task_id("acceptability"), data_dir=out / "tasks").metrics == ("mcc",)


def test_word_level_tokenizer_pairs_and_unknowns(tmp_path):
    word_level_tokenizer(["the", "dog", "runs", "."], model_max_length=16).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    enc = tok("The dog runs.", "the cat")
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == [
        "[CLS]", "the", "dog", "runs", ".", "[SEP]", "the", "[UNK]", "[SEP]",
    ]  # fmt: skip
    assert enc["token_type_ids"] == [0] * 6 + [1] * 3
    assert tok.mask_token == "[MASK]" and tok.pad_token_id == 0 and tok.model_max_length == 16


def test_train_word_level_tokenizer(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("the cat sat on the mat .\nthe dog sat .\nrare\n")
    tok = train_word_level_tokenizer([text], vocab_size=10, min_frequency=2)
    vocab = tok.get_vocab()
    assert {"the", "sat", "."} <= set(vocab) and "rare" not in vocab
    assert tok("rare cat")["input_ids"][1] == tok.unk_token_id
    with pytest.raises(DataError, match="not found"):
        train_word_level_tokenizer([tmp_path / "missing.txt"])
