"""SQuAD v1.1: reading the JSON, sliding windows with doc stride, n-best spans mapped back to the text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ticketlab.core.errors import ConfigError, DataError
from ticketlab.tasks.registry import TASKS
from ticketlab.tasks.squad import best_answers, eval_features, load_squad_examples, read_squad, train_features

CONTEXT = (
    "The Big Dog runs to the river . A bird sings in the tree . The cat sees the king . "
    "The queen walks to the city . A red fish is in the river ."
)
QUESTIONS = [  # (id, question, answer) with the answer's first occurrence in CONTEXT
    ("q1", "who runs to the river ?", "Big Dog"),
    ("q2", "what is in the river ?", "A red fish"),
    ("q3", "who sees the king ?", "The cat"),
]


def squad_json(questions=QUESTIONS, context=CONTEXT, extra_answers=True) -> dict:
    qas = []
    for qid, q, a in questions:
        answers = [{"text": a, "answer_start": context.index(a)}]
        if extra_answers:
            answers.append({"text": a.lower(), "answer_start": context.index(a)})
        qas.append({"id": qid, "question": q, "answers": answers})
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}


def write_squad(root: Path, data: dict | None = None) -> Path:
    d = root / "SQuAD"
    d.mkdir(parents=True, exist_ok=True)
    for f in TASKS["squad"].files.values():
        (d / f).write_text(json.dumps(data or squad_json()))
    return d


def test_read_squad(tmp_path):
    write_squad(tmp_path)
    ex = load_squad_examples(TASKS["squad"], tmp_path, "dev")
    assert ex.ids == ["q1", "q2", "q3"] and ex.answers[0] == ["Big Dog", "big dog"]
    assert ex.contexts[1][ex.answer_starts[1][0] :].startswith("A red fish")
    assert load_squad_examples(TASKS["squad"], tmp_path / "SQuAD", "train").ids == ex.ids


def test_train_windows_label_the_answer_or_cls(tokenizer, tmp_path):
    ex = read_squad(write_squad(tmp_path) / "train-v1.1.json")
    feats = train_features(ex, tokenizer, max_length=20, doc_stride=6)
    windows = feats.columns["example_index"]
    assert len(feats) > 3 * len(ex)  # long context -> several overlapping windows per question
    found = set()
    for w in range(len(feats)):
        s, e = int(feats.columns["start_positions"][w]), int(feats.columns["end_positions"][w])
        ids = feats[w]["input_ids"]
        assert len(ids) <= 20
        if s == 0:
            assert e == 0  # answer outside this window: [CLS]
            continue
        i = int(windows[w])
        span = tokenizer.decode(ids[s : e + 1].tolist())
        assert span == ex.answers[i][0].lower()
        found.add(i)
    assert found == {0, 1, 2}


def test_windows_overlap_by_doc_stride(tokenizer, tmp_path):
    ex = read_squad(write_squad(tmp_path) / "dev-v1.1.json")
    feats = eval_features(ex, tokenizer, max_length=20, doc_stride=6, windows="overlap")
    first = [w for w in range(len(feats)) if feats.columns["example_index"][w] == 0]
    starts = [feats.columns["char_start"][w] for w in first]
    ctx0 = [int(x) for x in starts[0] if x >= 0]
    ctx1 = [int(x) for x in starts[1] if x >= 0]
    assert ctx0[-6:] == ctx1[:6]  # consecutive windows share doc_stride context tokens
    covered = {int(x) for s in starts for x in s if x >= 0}
    words = {i for i, ch in enumerate(CONTEXT) if ch != " " and (i == 0 or CONTEXT[i - 1] == " ")}
    assert covered == words  # every context token lies in some window


def test_window_k_starts_at_k_doc_stride_as_tamts_squad_features(tokenizer, tmp_path):
    """transformers 2.10's `squad_convert_example_to_features` (TAMT's squad_trans.py): window k holds
    the context tokens from k·doc_stride, `paragraph_len` = min(n - k·doc_stride, room) of them (room:
    max_length less the question and 3 special tokens), and windows follow while the last one ends
    before the context does. By hand on CONTEXT's n = 36 one-token words; questions of different lengths
    have different rooms, so different overlaps."""
    ex = read_squad(write_squad(tmp_path) / "dev-v1.1.json")
    words = [i for i, ch in enumerate(CONTEXT) if ch != " " and (i == 0 or CONTEXT[i - 1] == " ")]
    n = len(words)
    assert [len(tokenizer.tokenize(w)) for w in CONTEXT.split()] == [1] * n and n == 36
    feats = eval_features(ex, tokenizer, max_length=20, doc_stride=6)
    assert feats.columns["example_index"].tolist() == sorted(feats.columns["example_index"].tolist())
    for i, question in enumerate(ex.questions):
        room = 20 - 3 - len(tokenizer.tokenize(question))
        expected, k = [], 0
        while True:  # the reference's loop: a window at k·doc_stride until one reaches the end
            expected.append(words[k * 6 : k * 6 + min(n - k * 6, room)])
            if k * 6 + room >= n:
                break
            k += 1
        got = [
            [int(x) for x in feats.columns["char_start"][w] if x >= 0]
            for w in range(len(feats))
            if feats.columns["example_index"][w] == i
        ]
        assert got == expected, question
    train = train_features(ex, tokenizer, max_length=20, doc_stride=6)
    assert len(train) == len(feats)  # the same windows, labelled


def _span_tokens(feats, w, text, start):
    cs, ce = feats.columns["char_start"][w], feats.columns["char_end"][w]
    s = [t for t in range(len(cs)) if cs[t] == start]
    e = [t for t in range(len(ce)) if ce[t] == start + len(text)]
    return (s[0], e[0]) if s and e else None


def test_n_best_post_processing_maps_back_to_original_text(tokenizer, tmp_path):
    ex = read_squad(write_squad(tmp_path) / "dev-v1.1.json")
    feats = eval_features(ex, tokenizer, max_length=20, doc_stride=6)
    starts = [np.zeros(len(feats[w]["input_ids"])) for w in range(len(feats))]
    ends = [np.zeros(len(feats[w]["input_ids"])) for w in range(len(feats))]
    # q1: the answer in one window scores 4; a longer wrong span in another window scores 3
    wins = [w for w in range(len(feats)) if feats.columns["example_index"][w] == 0]
    hits = [(w, _span_tokens(feats, w, "Big Dog", CONTEXT.index("Big Dog"))) for w in wins]
    w, (s, e) = next((w, se) for w, se in hits if se is not None)
    starts[w][s], ends[w][e] = 2.0, 2.0
    other = wins[-1]
    starts[other][-3], ends[other][-2] = 1.5, 1.5  # inside the last window's context
    # q2: the highest start logit sits *after* the highest end logit -> that pair is invalid
    w2 = next(w for w in range(len(feats)) if feats.columns["example_index"][w] == 1)
    s2, e2 = _span_tokens(feats, w2, "The Big Dog", CONTEXT.index("The Big Dog"))
    starts[w2][e2 + 1] = 9.0
    ends[w2][s2 + 1] = 8.0
    starts[w2][s2] = 5.0
    ends[w2][e2] = 1.0
    # q3: logits only on [CLS] / question tokens -> no valid span there; q3 gets some context span
    answers = best_answers(ex, feats, starts, ends, n_best=5, max_answer_length=10)
    assert answers["q1"] == "Big Dog"  # original casing, cut from the context by character offsets
    # start at "The" (5.0) with end at "Big" (8.0) beats every pair that uses the 9.0 start
    assert answers["q2"] == "The Big"
    assert answers["q3"] in CONTEXT
    capped = best_answers(ex, feats, starts, ends, n_best=5, max_answer_length=1)
    assert capped["q1"] != "Big Dog" and len(capped["q1"].split()) <= 1  # a 2-token span is too long


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid JSON"),
        (json.dumps({"version": "1.1"}), "top level: missing 'data'"),
        (
            json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}),
            r"data\[0\].paragraphs\[0\]: missing 'context'",
        ),
        (
            json.dumps({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "a", "question": "q"}]}]}]}),
            r"qas\[0\]: missing 'answers'",
        ),
        (
            json.dumps(
                {
                    "data": [
                        {
                            "paragraphs": [
                                {
                                    "context": "x",
                                    "qas": [
                                        {
                                            "id": "a",
                                            "question": "q",
                                            "answers": [{"text": "x", "answer_start": "0"}],
                                        }
                                    ],
                                }
                            ]
                        }
                    ]
                }
            ),
            "answer_start: expected int, got str",
        ),
    ],
)
def test_malformed_squad_file(tmp_path, content, message):
    path = tmp_path / "dev-v1.1.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as e:
        read_squad(path)
    assert str(path) in str(e.value)


def test_unanswerable_questions_are_skipped(tmp_path):
    data = squad_json()
    data["data"][0]["paragraphs"][0]["qas"].append({"id": "q4", "question": "why ?", "answers": []})
    path = write_squad(tmp_path, data) / "dev-v1.1.json"
    ex = read_squad(path)
    assert len(ex) == 3 and ex.skipped == 1


def test_stride_must_be_below_length(tokenizer, tmp_path):
    ex = read_squad(write_squad(tmp_path) / "dev-v1.1.json")
    with pytest.raises(ConfigError, match="doc_stride"):
        eval_features(ex, tokenizer, max_length=16, doc_stride=16)


def test_oracle_logits_score_100(tokenizer, tmp_path):
    """Windows, labels and post-processing agree: logits peaked at the training labels give EM = F1 = 100."""
    from ticketlab.tasks.metrics import squad_metrics

    ex = read_squad(write_squad(tmp_path) / "dev-v1.1.json")
    train = train_features(ex, tokenizer, max_length=20, doc_stride=6)
    feats = eval_features(ex, tokenizer, max_length=20, doc_stride=6)
    assert len(train) == len(feats)
    starts, ends = [], []
    for w in range(len(feats)):
        s = np.full(len(feats[w]["input_ids"]), -10.0)
        e = s.copy()
        sp, ep = int(train.columns["start_positions"][w]), int(train.columns["end_positions"][w])
        if sp > 0:
            s[sp], e[ep] = 10.0, 10.0
        starts.append(s)
        ends.append(e)
    answers = best_answers(ex, feats, starts, ends)
    assert answers == {qid: a for qid, (_, _, a) in zip(ex.ids, QUESTIONS, strict=True)}
    assert squad_metrics(answers, dict(zip(ex.ids, ex.answers, strict=True))) == {
        "exact_match": 100.0,
        "f1": 100.0,
    }


def test_hub_fallback(monkeypatch):
    import datasets

    def fake_load(name, config, split):
        assert (name, config, split) == ("rajpurkar/squad", None, "validation")
        return datasets.Dataset.from_dict(
            {
                "id": ["x1"],
                "title": ["t"],
                "context": [CONTEXT],
                "question": ["who ?"],
                "answers": [{"text": ["Big Dog"], "answer_start": [CONTEXT.index("Big Dog")]}],
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ex = load_squad_examples(TASKS["squad"], None, "dev")
    assert ex.ids == ["x1"] and ex.answers == [["Big Dog"]] and ex.answer_starts == [[4]]
