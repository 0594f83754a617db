"""TAMT-KD's training data as TAMT's reference code makes it (`search tamt --kd-data reference`).

TAMT's `generate_kd_data_bert.sh` runs `pregenerate_training_data.py --one_seq --max_seq_len 512
--masked_lm_prob 0` on the corpus once, and `train_kd.py` distils on what it wrote. That script:

* reads *documents*: runs of non-blank lines, one line one segment; a document whose first line's
  tokens hold a `=` (a WikiText heading) or number fewer than 20 is dropped (the corpus's last
  document is kept unchecked, as its loader does);
* draws one target length per document: max_num_tokens (max_length less the pair's special tokens),
  or, 10% of the time, a uniform length in [2, max_num_tokens];
* gathers segments into a chunk until the chunk reaches that length or the document ends, splits the
  chunk at a uniform segment boundary into A and B (`--one_seq`: B is the chunk's own rest, never
  another document's text; a one-segment chunk has no B), trims the longer of the two by one token
  from its front or back (a fair coin) until both fit, and lays them out as the tokenizer's pair
  `[CLS] A [SEP] B [SEP]`, segment ids 0 up to the first `[SEP]` and 1 after; without B,
  `[CLS] A [SEP]` with segment ids 0;
* corrupts one token per sequence although `masked_lm_prob` is 0 (`create_masked_lm_predictions`
  masks `max(1, round(n · 0))` = 1 token): a uniform position other than `[CLS]`, `[SEP]` becomes
  `[MASK]` (80%), stays (10%) or becomes a uniform token of the vocabulary (10%). Teacher and
  student both read it.

The data are drawn once from `seed` (the script writes one epoch, which every epoch of `train_kd.py`
reads again). Each sequence is padded to max_length by the collator (`MLMCollator(mlm_probability=0,
pad_to_multiple_of=max_length)`), and the KD loss then averages over every position, padding
included (`lm.objectives.pretraining_loss(count_padding=True)`), as `train_kd.py`'s `CosineLoss`.

The text is tokenized line by line here, without the corpus cache (the blocks' cache holds one
stream without line breaks). A chunk's A and B are consecutive lines of one document, so each
sequence is kept as two spans of one flat token stream.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from ..core.errors import ConfigError, DataError
from ..core.progress import progress_bar
from .sources import Source, clean_wikitext, looks_like_wikitext

SHORT_SEQ_PROB = 0.1  # pregenerate_training_data.py's --short_seq_prob
KD_EPOCHS = 2  # train_kd.py's --num_train_epochs in TAMT's scripts (shell_scripts/train_kd/bert/0.7.sh)
MIN_FIRST_LINE = 20  # tokens the first line of a kept document needs (its loader's filter)


@dataclass(frozen=True)
class PairLayout:
    """Where the tokenizer puts its special tokens around one sequence or a pair, and the pair's
    segment ids: BERT's `[CLS] A [SEP] B [SEP]` (0 … 0 1 … 1), RoBERTa's `<s> A </s></s> B </s>`."""

    prefix: list[int]  # before A
    middle: list[int]  # between A and B
    suffix: list[int]  # after B
    single_suffix: list[int]  # after A when there is no B
    types: tuple[int, int, int, int, int]  # segment id of prefix, A, middle, B, suffix

    @property
    def pair_specials(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def build(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """(input ids, segment ids) of A and B laid out as the tokenizer's pair (one sequence without B)."""
        if b.numel() == 0:
            parts = [self.prefix, a, self.single_suffix]
            return _cat(parts), torch.zeros(sum(len(p) for p in parts), dtype=torch.long)
        parts = [self.prefix, a, self.middle, b, self.suffix]
        types = torch.cat(
            [torch.full((len(p),), t, dtype=torch.long) for p, t in zip(parts, self.types, strict=True)]
        )
        return _cat(parts), types


def _cat(parts: Sequence[list[int] | Tensor]) -> Tensor:
    return torch.cat([torch.as_tensor(p, dtype=torch.long) for p in parts])


def pair_layout(tokenizer: PreTrainedTokenizerBase) -> PairLayout:
    """The tokenizer's own layout of one sequence and of a pair, read from what it makes of `a` and `b`."""
    a = tokenizer("a", add_special_tokens=False)["input_ids"]
    b = tokenizer("b", add_special_tokens=False)["input_ids"]
    one = tokenizer("a")["input_ids"]
    pair = tokenizer("a", "b", return_token_type_ids=True)
    ids, types = pair["input_ids"], pair["token_type_ids"]
    i, n = _find(one, a), len(a)
    j = _find(ids, a)
    k = j + n + _find(ids[j + n :], b)
    if min(i, j, k - j - n) < 0 or len(a) != 1 or len(b) != 1 or one[:i] != ids[:j]:
        raise ConfigError(f"cannot find where {type(tokenizer).__name__} puts its special tokens in a pair")
    return PairLayout(
        prefix=ids[:j],
        middle=ids[j + n : k],
        suffix=ids[k + len(b) :],
        single_suffix=one[i + n :],
        types=(types[0], types[j], types[j + n] if k > j + n else types[j], types[k], types[-1]),
    )


def _find(seq: list[int], part: list[int]) -> int:
    return next((s for s in range(len(seq) - len(part) + 1) if seq[s : s + len(part)] == part), -1)


# --------------------------------------------------------------------------- documents


def read_documents(
    sources: Sequence[Source], tokenizer: PreTrainedTokenizerBase, wikitext: bool | None, progress: bool
) -> tuple[Tensor, list[list[tuple[int, int]]]]:
    """(the flat token stream, the documents: each a list of its lines' (start, end) in the stream),
    filtered as the reference's loader does. `wikitext=None` detects WikiText markup per source and
    undoes it (False keeps it, as the reference does)."""
    stream: list[Tensor] = []
    docs: list[list[tuple[int, int]]] = []
    offset = 0
    for src in sources:
        if src.stream is not None:
            raise ConfigError(f"{src.name}: a token file has no lines; --kd-data reference reads text")
        lines = [line.strip() for line in src.lines()[0]]
        clean = looks_like_wikitext("\n".join(lines[:5000])) if wikitext is None else wikitext
        if clean:
            lines = [clean_wikitext(line, tokenizer.unk_token) for line in lines]
        ids = iter(_tokenize_lines([line for line in lines if line], tokenizer, src.name, progress))
        doc: list[tuple[int, int]] = []
        for line in lines:
            if not line:
                if doc and _kept(stream[-len(doc)], tokenizer):
                    docs.append(doc)
                doc = []
                continue
            x = next(ids)
            stream.append(x)
            doc.append((offset, offset + x.numel()))
            offset += x.numel()
        if doc:  # the loader adds a last document that no blank line ends without its filter
            docs.append(doc)
    if not docs:
        names = ", ".join(s.name for s in sources)
        raise DataError(f"{names}: no document for --kd-data reference (blank lines separate documents)")
    return (torch.cat(stream) if stream else torch.zeros(0, dtype=torch.long)), docs


def _kept(first_line: Tensor, tokenizer: PreTrainedTokenizerBase) -> bool:
    """The reference loader's filter on a document's first line: no `=` token (a WikiText heading)
    and at least 20 tokens."""
    return first_line.numel() >= MIN_FIRST_LINE and "=" not in tokenizer.convert_ids_to_tokens(
        first_line.tolist()
    )


def _tokenize_lines(
    lines: list[str], tokenizer: PreTrainedTokenizerBase, name: str, progress: bool
) -> list[Tensor]:
    out: list[Tensor] = []
    bar = progress_bar(total=len(lines), desc=f"tokenize {name} by line", unit="line", disable=not progress)
    for i in range(0, len(lines), 2048):
        chunk = lines[i : i + 2048]
        enc = tokenizer(chunk, add_special_tokens=False, return_attention_mask=False, verbose=False)
        out.extend(torch.tensor(row, dtype=torch.long) for row in enc["input_ids"])
        bar.update(len(chunk))
    bar.close()
    return out


# --------------------------------------------------------------------------- sequences


def document_pairs(
    doc: list[tuple[int, int]],
    max_num_tokens: int,
    rng: random.Random,
    short_seq_prob: float = SHORT_SEQ_PROB,
) -> list[tuple[int, int, int, int]]:
    """The (A start, A end, B start, B end) spans in the stream of one document's sequences, drawn as
    `create_instances_from_document` does with `--one_seq` (B the chunk's rest; B empty: no B)."""
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = rng.randint(2, max_num_tokens)
    out: list[tuple[int, int, int, int]] = []
    chunk: list[tuple[int, int]] = []
    for i, segment in enumerate(doc):
        chunk.append(segment)
        if i == len(doc) - 1 or chunk[-1][1] - chunk[0][0] >= target:
            a_end = rng.randrange(1, len(chunk)) if len(chunk) >= 2 else 1
            split = chunk[a_end][0] if a_end < len(chunk) else chunk[-1][1]
            out.append(truncate_pair(chunk[0][0], split, split, chunk[-1][1], max_num_tokens, rng))
            chunk = []
    return out


def truncate_pair(
    a0: int, a1: int, b0: int, b1: int, max_num_tokens: int, rng: random.Random
) -> tuple[int, int, int, int]:
    """`truncate_seq_pair`: drop one token of the longer span (B on a tie), from its front or its back
    by a fair coin, until both fit in `max_num_tokens`."""
    while (a1 - a0) + (b1 - b0) > max_num_tokens:
        front = rng.random() < 0.5
        if a1 - a0 > b1 - b0:
            a0, a1 = (a0 + 1, a1) if front else (a0, a1 - 1)
        else:
            b0, b1 = (b0 + 1, b1) if front else (b0, b1 - 1)
    return a0, a1, b0, b1


def corrupt_one(
    ids: Tensor, special: set[int], rng: random.Random, mask_id: int, vocab_size: int
) -> tuple[int, int]:
    """(position, new id) of the one token `create_masked_lm_predictions` corrupts at masked_lm_prob 0:
    a uniform position that is not one of the sequence's special tokens (`special`); [MASK] 80% of
    the time, the token itself 10%, a uniform token of the vocabulary 10%."""
    candidates = [i for i, t in enumerate(ids.tolist()) if t not in special]
    pos = candidates[rng.randrange(len(candidates))]
    if rng.random() < 0.8:
        return pos, mask_id
    return pos, int(ids[pos]) if rng.random() < 0.5 else rng.randrange(vocab_size)


class KdChunks(Sequence[dict[str, Tensor]]):
    """TAMT-KD's reference sequences; item i is `{"input_ids", "token_type_ids"}` (LongTensor[n_i],
    unpadded), its one corrupted token in place."""

    def __init__(self, stream: Tensor, spans: Tensor, corrupted: Tensor, layout: PairLayout, max_length: int):
        self.stream = stream  # [tokens] the corpus's lines, one after the other
        self.spans = spans  # [n, 4] A start, A end, B start, B end
        self.corrupted = corrupted  # [n, 2] position, id
        self.layout = layout
        self.max_length = max_length
        self.content_key: str | None = None  # of the sources and the draw, set by `reference_kd_chunks`

    def __len__(self) -> int:
        return self.spans.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        ids, types = self.sequence(i)
        pos, new = self.corrupted[i].tolist()
        ids[pos] = new
        return {"input_ids": ids, "token_type_ids": types}

    def sequence(self, i: int) -> tuple[Tensor, Tensor]:
        """(ids, segment ids) of sequence i before its corruption."""
        a0, a1, b0, b1 = self.spans[i].tolist()
        return self.layout.build(self.stream[a0:a1], self.stream[b0:b1])

    @property
    def num_tokens(self) -> int:
        """Real tokens, special ones included (padding to max_length is the collator's)."""
        a = self.spans[:, 1] - self.spans[:, 0]
        b = self.spans[:, 3] - self.spans[:, 2]
        lay = self.layout
        single = len(lay.prefix) + len(lay.single_suffix)
        return int((a + b).sum()) + int(torch.where(b > 0, lay.pair_specials, single).sum())


def reference_kd_chunks(
    sources: Sequence[Source],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    *,
    seed: int,
    content_key: str,
    wikitext: bool | None = None,
    progress: bool = True,
) -> KdChunks:
    """TAMT-KD's training sequences from the corpus's documents, drawn from `seed` as TAMT's
    `pregenerate_training_data.py --one_seq --masked_lm_prob 0` draws them (see the module docstring).
    `content_key`: the corpus's, which this draw's key extends (a resumed search checks it)."""
    if tokenizer.mask_token_id is None:
        raise ConfigError(
            f"{type(tokenizer).__name__} has no mask token: TAMT's KD data corrupt one per sequence"
        )
    layout = pair_layout(tokenizer)
    max_num_tokens = max_length - layout.pair_specials
    if max_num_tokens < 2:
        raise ConfigError(f"max_length {max_length} leaves no room for a sentence pair")
    stream, docs = read_documents(sources, tokenizer, wikitext, progress)
    rng = random.Random(seed)
    special = set(layout.prefix + layout.middle + layout.suffix + layout.single_suffix)  # [CLS], [SEP]
    spans: list[tuple[int, int, int, int]] = []
    corrupted: list[tuple[int, int]] = []
    for doc in docs:
        for a0, a1, b0, b1 in document_pairs(doc, max_num_tokens, rng):
            ids = layout.build(stream[a0:a1], stream[b0:b1])[0]
            spans.append((a0, a1, b0, b1))
            corrupted.append(corrupt_one(ids, special, rng, tokenizer.mask_token_id, tokenizer.vocab_size))
    chunks = KdChunks(
        stream,
        torch.tensor(spans, dtype=torch.long).reshape(-1, 4),
        torch.tensor(corrupted, dtype=torch.long).reshape(-1, 2),
        layout,
        max_length,
    )
    draw = f"{content_key}:kd-reference:{max_length}:{seed}"
    chunks.content_key = "sha256:" + hashlib.sha256(draw.encode()).hexdigest()
    return chunks


def reference_kd_horizon(sequences: int, batch_size: int) -> int:
    """`train_kd.py`'s t_total, the lr schedule's horizon on its KD data: its `num_train_optimization_steps`
    = int(epochs · n / train_batch_size / gradient_accumulation_steps) for n sequences (the one
    pregenerated epoch read every epoch), its per-step batch already divided by the accumulation, so
    int(2·n / B) for the global batch B per optimizer step (TAMT's scripts: 2 epochs at 16)."""
    return KD_EPOCHS * sequences // batch_size
