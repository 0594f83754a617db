"""Language-modelling corpora: read text, tokenize once, cache on disk, cut into fixed-length blocks.

A corpus is one or more sources: plain text files (UTF-8, with a cp1252 fallback for old Gutenberg
files) or directories written by `datasets.Dataset.save_to_disk` (a `text` column; for a
`DatasetDict` the `train` split, and `validation`/`test` as the dev split when none is given).
WikiText's tokenized format is undone on the fly when detected: ` @-@ `, ` @,@ `, ` @.@ ` become
`-`, `,`, `.` and `<unk>` becomes the tokenizer's own unknown token (BERT's WordPiece would
otherwise split `<unk>` into four pieces).

Each source is tokenized into one stream of token ids (lines in order, no special tokens), which is
cached as safetensors under `cache_dir`, keyed by the source's content hash and the tokenizer's
identity: a second run, or a run with another `max_length`, does not re-tokenize. Each stream is
then cut into blocks `[CLS] t_1 .. t_{L-2} [SEP]` of exactly `max_length` tokens (the special tokens
are the tokenizer's own, so RoBERTa gets `<s> .. </s>`), as in BERT pre-training and TAMT Table 1. A
source's final partial block is kept when it has at least 16 text tokens (or half a block, if less),
or when it is the source's only block.
Blocks never straddle two sources.

Without a separate dev corpus, the dev split is carved from the *tail* of every source (the last
`dev_fraction` of its blocks), so dev text is contiguous and never interleaved with training text.

    corpus = load_lm_corpus(["wiki.valid.txt"], tokenizer, max_length=128, dev=["wiki.test.txt"])
    corpus.train[0]   # {"input_ids": LongTensor[128]}

Where the text comes from (sources, token files' format) is `sources.py`; tokenizing and its cache,
`tokens.py`; cutting into blocks and the corpus, here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from ..core.errors import ConfigError, DataError
from ..core.files.caches import corpus_cache_dir
from .sources import (
    TOKENS_SUFFIX,
    Source,
    clean_wikitext,
    is_dataset_dir,
    read_text_file,
    resolve_sources,
    text_files,
)
from .tokens import token_stream, tokenizer_fingerprint, write_token_file

__all__ = [
    "TOKENS_SUFFIX",
    "DEV_FRACTION",
    "BlockDataset",
    "LMCorpus",
    "Source",
    "clean_wikitext",
    "is_dataset_dir",
    "load_lm_blocks",
    "load_lm_corpus",
    "make_blocks",
    "needed_tokens",
    "read_text_file",
    "resolve_sources",
    "special_affixes",
    "text_files",
    "token_stream",
    "tokenizer_fingerprint",
    "write_token_file",
]

MIN_PARTIAL_BLOCK = 16
DEV_FRACTION = 0.05  # of each source's blocks carved off as dev, where no dev text is given


# --------------------------------------------------------------------------- blocks


class BlockDataset(Sequence[dict[str, Tensor]]):
    """Fixed-length token blocks; item i is `{"input_ids": LongTensor[length_i]}` (no padding)."""

    def __init__(self, blocks: Tensor, lengths: Tensor):
        if blocks.ndim != 2 or lengths.shape != blocks.shape[:1]:
            raise ValueError("blocks must be [n, max_length] with one length per block")
        self.blocks = blocks  # [n, max_length] int32, padded with 0 past each length
        self.lengths = lengths  # [n] int32
        self.content_key: str | None = None  # of the sources, set by `load_lm_corpus`

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return {"input_ids": self.blocks[i, : int(self.lengths[i])].long()}

    @property
    def max_length(self) -> int:
        return self.blocks.shape[1]

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())

    def take(self, n: int | None) -> BlockDataset:
        """The first `n` blocks (all when n is None or larger than the dataset)."""
        if n is None or n >= len(self):
            return self
        return BlockDataset(self.blocks[:n], self.lengths[:n])

    @classmethod
    def concat(cls, parts: Sequence[BlockDataset]) -> BlockDataset:
        if not parts:
            raise ValueError("nothing to concatenate")
        return cls(torch.cat([p.blocks for p in parts]), torch.cat([p.lengths for p in parts]))


def special_affixes(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after one sequence ([CLS]/[SEP], <s>/</s>, ...)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain) :])
    raise ConfigError(f"cannot find where {type(tokenizer).__name__} puts its special tokens")


def make_blocks(
    ids: Tensor, max_length: int, prefix: list[int], suffix: list[int], pad_id: int
) -> BlockDataset:
    """Cut one token stream into blocks `prefix + max_length-len(affixes) tokens + suffix`."""
    width = max_length - len(prefix) - len(suffix)
    if width < 1:
        raise ConfigError(f"max_length {max_length} leaves no room for text after the special tokens")
    n_full, rest = divmod(ids.numel(), width)
    keep_rest = rest >= min(MIN_PARTIAL_BLOCK, width // 2) or (n_full == 0 and rest > 0)
    n = n_full + int(keep_rest)
    blocks = torch.full((n, max_length), pad_id, dtype=torch.int32)
    lengths = torch.full((n,), max_length, dtype=torch.int32)
    p, s = len(prefix), len(suffix)
    if prefix:
        blocks[:, :p] = torch.tensor(prefix, dtype=torch.int32)
    if n_full:
        blocks[:n_full, p : p + width] = ids[: n_full * width].view(n_full, width)
        if suffix:
            blocks[:n_full, p + width :] = torch.tensor(suffix, dtype=torch.int32)
    if keep_rest:
        blocks[-1, p : p + rest] = ids[n_full * width :]
        if suffix:
            blocks[-1, p + rest : p + rest + s] = torch.tensor(suffix, dtype=torch.int32)
        lengths[-1] = p + rest + s
    return BlockDataset(blocks, lengths)


# --------------------------------------------------------------------------- corpus


@dataclass
class LMCorpus:
    train: BlockDataset
    dev: BlockDataset
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{len(self.train):,} train blocks ({self.train.num_tokens:,} tokens), "
            f"{len(self.dev):,} dev blocks ({self.dev.num_tokens:,} tokens) of {self.train.max_length} tokens"
        )


def _source_blocks(sources, tokenizer, max_length, cache_dir, wikitext, progress, max_tokens=None):
    """Each source's blocks and info, the sources read in order until `max_tokens` text tokens are
    read in all (every source where None): a cap reads the corpus's start, whatever is cached, and
    the source it cuts gives its full blocks only."""
    prefix, suffix = special_affixes(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out, infos, left = [], [], max_tokens
    for src in sources:
        if left is not None and left <= 0:
            infos.append({"source": src.name, "tokens": 0, "capped": True})  # not read: the cap is reached
            continue
        ids, info = token_stream(
            src, tokenizer, cache_dir=cache_dir, wikitext=wikitext, progress=progress, max_tokens=left
        )
        left = None if left is None else left - ids.numel()
        blocks = make_blocks(ids, max_length, prefix, suffix, pad)
        if info.get("capped") and len(blocks) > 1 and blocks.lengths[-1] < max_length:
            blocks = blocks.take(len(blocks) - 1)  # cut by the cap, not by the source's end: full blocks only
        out.append(blocks)
        infos.append({**info, "blocks": len(out[-1])})
    return out, infos


def read_summary(infos: list[dict[str, Any]], max_tokens: int | None) -> dict[str, Any]:
    """How much of a corpus's sources a load read: the text tokens, the cap, whether it left text out."""
    return {
        "tokens_read": sum(i["tokens"] for i in infos),
        "max_tokens": max_tokens,
        "capped": any(i.get("capped") for i in infos),
    }


def needed_tokens(
    steps: int, batch_size: int, max_length: int, carved: float | None = None, margin: float = 2.0
) -> int:
    """The text a run on a corpus reads by default (`max_tokens`): `margin` times its training draw,
    steps x batch x length tokens (a margin, so that the blocks a run draws are a sample of more
    text than it reads), and where the dev split is carved from the same text (the fraction
    `carved` of it), that split on top."""
    train = margin * steps * batch_size * max_length
    return math.ceil(train / (1 - carved) if carved else train)


def load_lm_corpus(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int = 512,
    *,
    dev: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    dev_fraction: float = DEV_FRACTION,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    text_column: str = "text",
    wikitext: bool | None = None,
    progress: bool = True,
    max_tokens: int | None = None,
    max_dev_tokens: int | None = None,
) -> LMCorpus:
    """Load a corpus for MLM/KD: train blocks and dev blocks of `max_length` tokens.

    `max_tokens`: read the training sources' first `max_tokens` text tokens, in order, and no more
    (a dev split carved from them is carved from that start); `max_dev_tokens` the same for the
    dev sources. None reads everything. `info["read"]` says how much was read.

    `dev`: separate dev sources; without them, the validation/dev/test split of DatasetDicts (saved
    or on the hub) where every source has one, else the last `dev_fraction` of every training
    source is carved off. `wikitext=None` detects
    WikiText markup per source. `cache_dir` defaults to `corpus_cache_dir()`.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if isinstance(dev, (str, os.PathLike)):
        dev = [dev]
    if max_length < 8:
        raise ConfigError(f"max_length must be >= 8, got {max_length}")
    if not 0.0 < dev_fraction < 1.0:
        raise ConfigError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    cache = corpus_cache_dir(cache_dir) if use_cache else None
    train_sources = resolve_sources(paths, role="train", text_column=text_column)
    reading = (tokenizer, max_length, cache, wikitext, progress)
    train_parts, train_info = _source_blocks(train_sources, *reading, max_tokens)
    dev_sources = resolve_sources(dev, role="dev", text_column=text_column) if dev is not None else None
    train_parts, dev_parts, dev_info, how = _dev_split(
        train_sources, train_parts, dev_sources, reading, (dev_fraction, max_dev_tokens)
    )
    info = {"train_sources": train_info, "dev_sources": dev_info, "dev_split": how, "max_length": max_length}
    info["read"] = read_summary(train_info, max_tokens)
    info["dev_read"] = read_summary(dev_info, max_dev_tokens)
    train = BlockDataset.concat(train_parts)
    # What a resumed search checks: the content of every source it read (and how dev was made), and
    # how much of it where a cap left text out (a corpus read whole keeps the key it had without one).
    content = [i["content"] for i in train_info + dev_info if "content" in i] + [how]
    content += [f"{part}: first {n} tokens" for part, n, read in _caps(info) if read["capped"]]
    train.content_key = "sha256:" + hashlib.sha256(json.dumps(content).encode()).hexdigest()
    return LMCorpus(train, BlockDataset.concat(dev_parts), info)


def _dev_split(
    train_sources: list[Source],
    train_parts: list[BlockDataset],
    dev_sources: list[Source] | None,
    reading: tuple[Any, ...],
    dev_size: tuple[float, int | None],
) -> tuple[list[BlockDataset], list[BlockDataset], list[dict[str, Any]], str]:
    """(train blocks, dev blocks, what was read for dev, how dev was made): the given dev sources;
    without them, the dev splits beside the train splits where every source has one; else the last
    `dev_fraction` of each training source, carved off (`reading`: `_source_blocks`' arguments)."""
    dev_fraction, max_dev_tokens = dev_size
    paired = [s.dev_split() for s in train_sources] if dev_sources is None else []
    if dev_sources is not None:
        dev_parts, dev_info = _source_blocks(dev_sources, *reading, max_dev_tokens)
        return train_parts, dev_parts, dev_info, "separate"
    if all(d is not None for d in paired):
        dev_parts, dev_info = _source_blocks([d for d in paired if d is not None], *reading, max_dev_tokens)
        return train_parts, dev_parts, dev_info, "dataset split"
    train_parts, dev_parts = _carve_tails(train_parts, dev_fraction, train_sources)
    return train_parts, dev_parts, [], f"last {dev_fraction:.0%} of each source"


def _caps(info: dict[str, Any]):
    return [
        ("train", info["read"]["max_tokens"], info["read"]),
        ("dev", info["dev_read"]["max_tokens"], info["dev_read"]),
    ]


def load_lm_blocks(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int = 512,
    *,
    role: str = "dev",
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    text_column: str = "text",
    wikitext: bool | None = None,
    progress: bool = True,
    max_tokens: int | None = None,
) -> tuple[BlockDataset, list[dict[str, Any]]]:
    """The blocks of the given sources, unsplit (e.g. a dev corpus to evaluate on), and their info:
    all of them, or those of their first `max_tokens` text tokens (`_source_blocks`), which are the
    first blocks of the whole, cut as the whole is.

    A saved DatasetDict contributes its `role` split (dev: validation, dev or test).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if max_length < 8:
        raise ConfigError(f"max_length must be >= 8, got {max_length}")
    cache = corpus_cache_dir(cache_dir) if use_cache else None
    sources = resolve_sources(paths, role=role, text_column=text_column)
    parts, info = _source_blocks(sources, tokenizer, max_length, cache, wikitext, progress, max_tokens)
    return BlockDataset.concat(parts), info


def _carve_tails(parts: list[BlockDataset], fraction: float, sources: list[Source]):
    counts = [round(fraction * len(p)) if len(p) >= 2 else 0 for p in parts]
    if sum(counts) == 0:  # tiny corpus: one dev block from the largest source that can spare one
        big = max(range(len(parts)), key=lambda i: len(parts[i]))
        if len(parts[big]) < 2:
            names = ", ".join(s.name for s in sources)
            raise DataError(f"{names}: too little text to carve a dev split (pass a dev corpus)")
        counts[big] = 1
    train = [
        BlockDataset(p.blocks[: len(p) - c], p.lengths[: len(p) - c])
        for p, c in zip(parts, counts, strict=True)
    ]
    dev = [
        BlockDataset(p.blocks[len(p) - c :], p.lengths[len(p) - c :])
        for p, c in zip(parts, counts, strict=True)
    ]
    return [t for t in train if len(t)], [d for d in dev if len(d)]
