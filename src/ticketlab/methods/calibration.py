"""Calibration sequences for the one-shot methods that read activations (Wanda, SparseGPT).

Both papers draw 128 random sequences from a pre-training corpus (C4) and run them through the
dense model. Here they are drawn from the corpus a search reads (`--corpus`: text files, saved
`datasets` directories, `hub:NAME`), tokenized and cut into blocks by the corpus reader searches use
(`data.corpus.load_lm_corpus`, its cache included): `n` full blocks of `length` tokens of the
training split, chosen by a seeded permutation. Full blocks only, so no sequence is padded and every
calibration token is text the model reads. What was drawn is recorded in the mask file (`info`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from ..core.errors import DataError
from ..data.corpus import DEV_FRACTION, LMCorpus, load_lm_corpus, needed_tokens
from ..masks import Mask
from ..models.load import load_config, load_tokenizer
from ..models.source import fit_max_length


@dataclass(frozen=True)
class Calibration:
    """Token ids of the calibration sequences and where they came from (recorded in the mask)."""

    ids: Tensor  # [n, length] int64, each a full block of the corpus ([CLS] ... [SEP])
    info: dict[str, Any] = field(default_factory=dict)  # sequences, length, seed, corpus, corpus key

    def batches(self, size: int) -> list[Tensor]:
        """The sequences in batches of at most `size` ([b, length] each), in their drawn order."""
        return list(self.ids.split(size))


@dataclass
class OneShotResult:
    """What a calibrated one-shot method returns: its mask over the base weights (a ticket), what it
    records in the mask file's `search`, and, for SparseGPT, the target weights it reconstructed
    (zeros where the mask prunes: a sparse model, not a ticket), by mask key."""

    mask: Mask
    info: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Tensor] | None = None


def full_blocks(
    tokenizer: PreTrainedTokenizerBase,
    corpus: Sequence[str | os.PathLike],
    n: int,
    length: int,
    *,
    text_column: str = "text",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> tuple[LMCorpus, Tensor]:
    """The corpus a draw of `n` blocks of `length` tokens reads, and the indices of its full training
    blocks ([f]); fewer than `n` of them is refused in one line naming the corpus."""
    # the corpus's start, twice the text the draw takes (and the dev tail carved from it): the same
    # cap as a search's (`data.corpus.needed_tokens`), not the whole corpus tokenized for n blocks
    cap = needed_tokens(1, n, length, carved=DEV_FRACTION)
    corpus_read = load_lm_corpus(
        corpus,
        tokenizer,
        length,
        text_column=text_column,
        cache_dir=cache_dir,
        progress=progress,
        max_tokens=cap,
    )
    full = torch.nonzero(corpus_read.train.lengths == length).flatten()  # [f] unpadded blocks
    if len(full) < n:
        raise DataError(
            f"{', '.join(map(str, corpus))}: {len(full)} blocks of {length} tokens in its training "
            f"split, fewer than the {n} calibration sequences asked for (--calibration, "
            "--calibration-length)"
        )
    return corpus_read, full


def draw_calibration(
    model: str,
    corpus: Sequence[str | os.PathLike],
    n: int,
    length: int,
    seed: int,
    *,
    text_column: str = "text",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Calibration:
    """`n` full blocks of `length` tokens of `corpus`'s training split (the blocks a search on it
    trains on), tokenized with `model`'s tokenizer and drawn by a permutation seeded with `seed`."""
    # past the model's positions: one line now, not a shape error inside the first forward pass
    fit_max_length(load_config(model), length, length, what="calibration_length")
    tokenizer = load_tokenizer(model)
    read = {"text_column": text_column, "cache_dir": cache_dir, "progress": progress}
    corpus_read, full = full_blocks(tokenizer, corpus, n, length, **read)
    blocks = corpus_read.train
    names = ", ".join(map(str, corpus))
    gen = torch.Generator().manual_seed(seed)
    chosen = full[torch.randperm(len(full), generator=gen)[:n]]
    info = {
        "calibration_sequences": n,
        "calibration_length": length,
        "calibration_seed": seed,
        "calibration_corpus": names,
        "calibration_corpus_key": blocks.content_key,
        "calibration_corpus_read": corpus_read.info["read"],  # the text tokens read, the cap, whether it cut
    }
    return Calibration(blocks.blocks[chosen].long(), info)
