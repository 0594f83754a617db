"""SQuAD v1.1: read the official JSON, cut long contexts into overlapping windows, map spans back.

Question + context pairs truncated on the context side only; a context longer than `max_length` is
cut into windows (`windows`): `step`, window k starts at context token k·doc_stride, as transformers
2.10's `squad_convert_examples_to_features` (TAMT's `squad_trans.py` fine-tunes with it; BERT's
`run_squad` windows so too); `overlap`, consecutive windows share doc_stride tokens (the tokenizer's
`stride`, as transformers' later `run_qa`). A training window whose span does not contain the answer
points at [CLS]. At evaluation the `n_best` start and end logits of every window of a question are paired
into spans (end >= start, at most `max_answer_length` tokens, inside the context), the
best-scoring span over all windows wins, and its text is cut from the *original* context through
the tokenizer's character offsets, so the answer keeps the context's spelling.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from ..core.errors import ConfigError, DataError, TicketlabError
from ..core.files.inputs import read_json
from ..data.features import Features, Ragged, cached, file_digest, token_columns, tokenizer_digest
from .glue import hub_split, split_file
from .registry import SquadWindows as Windows
from .registry import TaskSpec

log = logging.getLogger(__name__)


@dataclass
class SquadExamples:
    ids: list[str]
    questions: list[str]
    contexts: list[str]
    answers: list[list[str]]  # gold texts (several in dev)
    answer_starts: list[list[int]]  # character offsets into the context
    source: str
    skipped: int = 0  # questions without an answer (SQuAD 2.0 style), left out

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, n: int) -> SquadExamples:
        """The first n questions."""
        return SquadExamples(
            self.ids[:n],
            self.questions[:n],
            self.contexts[:n],
            self.answers[:n],
            self.answer_starts[:n],
            self.source,
            self.skipped,
        )


# --------------------------------------------------------------------------- reading


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{path}: {where}: missing '{key}' (not a SQuAD v1.1 file?)")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataError(f"{path}: {where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def read_squad(path: str | os.PathLike) -> SquadExamples:
    """Parse a SQuAD v1.1 JSON file; a structural problem raises one `DataError` saying where."""
    path = Path(path)
    try:
        root = read_json(path, "SQuAD file")
    except TicketlabError as e:
        raise DataError(str(e)) from None
    out = SquadExamples([], [], [], [], [], str(path))
    for i, article in enumerate(_get(root, "data", list, "top level", path)):
        for j, para in enumerate(_get(article, "paragraphs", list, f"data[{i}]", path)):
            where = f"data[{i}].paragraphs[{j}]"
            context = _get(para, "context", str, where, path)
            for k, qa in enumerate(_get(para, "qas", list, where, path)):
                qwhere = f"{where}.qas[{k}]"
                answers = _get(qa, "answers", list, qwhere, path)
                if not answers or qa.get("is_impossible"):
                    out.skipped += 1
                    continue
                texts = [_get(a, "text", str, f"{qwhere}.answers", path) for a in answers]
                starts = [_get(a, "answer_start", int, f"{qwhere}.answers", path) for a in answers]
                out.ids.append(str(_get(qa, "id", (str, int), qwhere, path)))
                out.questions.append(_get(qa, "question", str, qwhere, path))
                out.contexts.append(context)
                out.answers.append(texts)
                out.answer_starts.append(starts)
    if not out.ids:
        raise DataError(f"{path}: no answerable questions")
    if out.skipped:
        log.warning("%s: skipped %d question(s) without an answer", path, out.skipped)
    return out


def read_hub_squad(spec: TaskSpec, split: str) -> SquadExamples:
    """SQuAD from the hub (`glue.hub_split`)."""
    ds = hub_split(spec, split, "train-v1.1.json and dev-v1.1.json")
    name, answers = spec.hub[0], ds["answers"]
    return SquadExamples(
        [str(x) for x in ds["id"]],
        list(ds["question"]),
        list(ds["context"]),
        [list(a["text"]) for a in answers],
        [list(a["answer_start"]) for a in answers],
        f"hub:{name}/{split}",
    )


def load_squad_examples(spec: TaskSpec, data_dir: str | os.PathLike | None, split: str) -> SquadExamples:
    if data_dir is None:
        return read_hub_squad(spec, split)
    return read_squad(split_file(spec, data_dir, split))


# --------------------------------------------------------------------------- windows


def _check_fast(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"SQuAD needs a fast tokenizer (character offsets); {type(tokenizer).__name__} is not one"
        )


def _encode(
    ex: SquadExamples,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
    windows: Windows = "step",
) -> dict[str, list]:
    """The windows of every question, in question order: the tokenizer's columns, `sequence_ids` and
    `overflow_to_sample_mapping` (each window's question) as lists."""
    _check_fast(tokenizer)
    if doc_stride >= max_length:
        raise ConfigError(f"doc_stride ({doc_stride}) must be smaller than max_length ({max_length})")
    questions = [q.lstrip() for q in ex.questions]  # some questions start with spaces that eat the window
    if not questions:
        return {k: [] for k in ("input_ids", "offset_mapping", "overflow_to_sample_mapping", "sequence_ids")}
    rooms = _check_room(ex, questions, tokenizer, max_length, doc_stride, windows)
    if windows == "overlap":
        return _columns(
            _tokenize(tokenizer, questions, ex.contexts, max_length, doc_stride), range(len(rooms))
        )
    # step: window k at k·doc_stride, so consecutive windows share room - doc_stride tokens, which
    # depends on the question's length: the questions of one length are tokenized together
    by_room: dict[int, list[int]] = {}
    for i, room in enumerate(rooms):
        by_room.setdefault(room, []).append(i)
    parts = [
        _columns(
            _tokenize(
                tokenizer,
                [questions[i] for i in idx],
                [ex.contexts[i] for i in idx],
                max_length,
                room - doc_stride,
            ),
            idx,
        )
        for room, idx in by_room.items()
    ]
    order = sorted(
        ((i, p, w) for p, part in enumerate(parts) for w, i in enumerate(part["overflow_to_sample_mapping"])),
        key=lambda t: t[0],  # stable: a question's windows keep their order
    )
    return {k: [parts[p][k][w] for _, p, w in order] for k in parts[0]}


def _tokenize(tokenizer: PreTrainedTokenizerBase, questions, contexts, max_length: int, overlap: int):
    return tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=max_length,
        stride=overlap,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def _columns(enc: Any, questions: Sequence[int]) -> dict[str, list]:
    """A tokenizer's output as plain lists, each window's question as an index of `questions`."""
    out = {k: list(enc[k]) for k in ("input_ids", "token_type_ids", "offset_mapping") if k in enc}
    out["overflow_to_sample_mapping"] = [questions[i] for i in enc["overflow_to_sample_mapping"]]
    out["sequence_ids"] = [enc.sequence_ids(w) for w in range(len(out["input_ids"]))]
    return out


def _check_room(
    ex: SquadExamples,
    questions: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
    windows: Windows,
) -> list[int]:
    """Each question's room for context in a window (max_length less the question and special tokens).
    It must exceed the stride where windows overlap (the tokenizer panics, a Rust panic, on the first
    question too long) and hold it where they step (a larger step would skip context tokens)."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    rooms = [max_length - specials - n for n in lengths]
    i = min(range(len(rooms)), key=rooms.__getitem__)
    if rooms[i] <= doc_stride - (windows == "step"):
        raise ConfigError(
            f"{ex.source}: doc_stride {doc_stride} does not fit max_length {max_length}: question "
            f"{ex.ids[i]!r} takes {lengths[i]} tokens, leaving {max(rooms[i], 0)} for the context; "
            "pass a smaller --doc-stride or a larger --max-length"
        )
    return rooms


def _context_span(seq_ids: list[int | None]) -> tuple[int, int]:
    """First and last token index of the context (sequence 1) in a window."""
    start = seq_ids.index(1)
    end = len(seq_ids) - 1 - seq_ids[::-1].index(1)
    return start, end


def train_features(
    ex: SquadExamples,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
    windows: Windows = "step",
) -> Features:
    """Windows with start/end token positions of the (first) answer, or [CLS] when it is outside."""
    enc = _encode(ex, tokenizer, max_length, doc_stride, windows)
    starts, ends = [], []
    for w, offsets in enumerate(enc["offset_mapping"]):
        ids = enc["input_ids"][w]
        cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        i = enc["overflow_to_sample_mapping"][w]
        a_start = ex.answer_starts[i][0]
        a_end = a_start + len(ex.answers[i][0])  # exclusive
        c0, c1 = _context_span(enc["sequence_ids"][w])
        if not (offsets[c0][0] <= a_start and offsets[c1][1] >= a_end):
            starts.append(cls)
            ends.append(cls)
            continue
        s = c0
        while s <= c1 and offsets[s][0] <= a_start:
            s += 1
        e = c1
        while e >= c0 and offsets[e][1] >= a_end:
            e -= 1
        starts.append(s - 1)
        ends.append(e + 1)
    columns = token_columns(enc)
    columns["example_index"] = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
    columns["start_positions"] = np.asarray(starts, dtype=np.int64)
    columns["end_positions"] = np.asarray(ends, dtype=np.int64)
    return Features(columns)


def eval_features(
    ex: SquadExamples,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
    windows: Windows = "step",
) -> Features:
    """Windows with their question index and the character span of each context token (-1 elsewhere)."""
    enc = _encode(ex, tokenizer, max_length, doc_stride, windows)
    span_start, span_end = [], []
    for w, offsets in enumerate(enc["offset_mapping"]):
        seq = enc["sequence_ids"][w]
        span_start.append([o[0] if s == 1 else -1 for o, s in zip(offsets, seq, strict=True)])
        span_end.append([o[1] if s == 1 else -1 for o, s in zip(offsets, seq, strict=True)])
    columns = token_columns(enc)
    columns["example_index"] = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
    columns["char_start"] = Ragged.from_lists(span_start)
    columns["char_end"] = Ragged.from_lists(span_end)
    return Features(columns)


def load_squad_features(
    spec: TaskSpec,
    data_dir: str | os.PathLike | None,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
    *,
    train: bool,
    windows: Windows = "step",
) -> tuple[Features, SquadExamples]:
    ex = load_squad_examples(spec, data_dir, split)
    key = {
        "kind": "squad-train" if train else "squad-eval",
        "file": file_digest(ex.source) if data_dir is not None else ex.source,
        "tokenizer": tokenizer_digest(tokenizer),
        "max_length": max_length,
        "doc_stride": doc_stride,
        "windows": windows,
        "n": len(ex),
    }
    build = train_features if train else eval_features
    return cached(key, lambda: build(ex, tokenizer, max_length, doc_stride, windows)), ex


# --------------------------------------------------------------------------- post-processing


def best_answers(
    ex: SquadExamples,
    features: Features,
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """Question id -> answer text: the best valid span over all windows of each question.

    `start_logits[w]` / `end_logits[w]` are window w's logits over its own tokens (padding cut off).
    """
    best: dict[int, tuple[float, str]] = {}
    example_index = features.columns["example_index"]
    for w in range(len(features)):
        i = int(example_index[w])
        cs, ce = features.columns["char_start"][w], features.columns["char_end"][w]
        s_log, e_log = np.asarray(start_logits[w]), np.asarray(end_logits[w])
        s = np.argsort(-s_log, kind="stable")[:n_best]  # (n,) candidate starts
        e = np.argsort(-e_log, kind="stable")[:n_best]  # (n,) candidate ends
        length = e[None, :] - s[:, None] + 1  # (n, n)
        valid = (cs[s] >= 0)[:, None] & (ce[e] >= 0)[None, :] & (length >= 1) & (length <= max_answer_length)
        if not valid.any():
            continue
        scores = np.where(valid, s_log[s][:, None] + e_log[e][None, :], -np.inf)  # (n, n)
        a, b = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if i not in best or scores[a, b] > best[i][0]:
            best[i] = (float(scores[a, b]), ex.contexts[i][cs[s[a]] : ce[e[b]]])
    return {qid: best[i][1] if i in best else "" for i, qid in enumerate(ex.ids)}
