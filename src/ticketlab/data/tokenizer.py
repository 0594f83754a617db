"""Word-level tokenizers with BERT's special tokens, for models pre-trained from scratch.

A model trained from scratch needs a vocabulary that fits its corpus: a fixed word list (the
synthetic language's lexicon) or the most frequent words of a text corpus. Both are `tokenizers`
WordLevel models with BERT's lower-casing and punctuation splitting and BERT's `[CLS] a [SEP] b [SEP]`
template (with token type ids), saved as a standard `PreTrainedTokenizerFast` that `AutoTokenizer`
loads back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ..errors import ConfigError, DataError
from .corpus import read_text_file

SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
SPECIAL["mask_token"] = "[MASK]"


def _pipeline(model: models.Model) -> Tokenizer:
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok


def _wrap(tok: Tokenizer, model_max_length: int) -> PreTrainedTokenizerFast:
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        **SPECIAL,
    )


def word_level_tokenizer(words: Sequence[str], model_max_length: int = 128) -> PreTrainedTokenizerFast:
    """A tokenizer over exactly `words` (after the 5 special tokens, in the order given)."""
    vocab = dict.fromkeys([*SPECIAL.values(), *(w.lower() for w in words)])
    return _wrap(
        _pipeline(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]")), model_max_length
    )


def train_word_level_tokenizer(
    files: Iterable[str | os.PathLike],
    vocab_size: int = 8192,
    min_frequency: int = 2,
    model_max_length: int = 128,
) -> PreTrainedTokenizerFast:
    """A tokenizer over the `vocab_size` most frequent words of text files (rarer words become [UNK])."""
    paths = [Path(f) for f in files]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: corpus file not found")
    if vocab_size <= len(SPECIAL):
        raise ConfigError(f"vocab_size must be > {len(SPECIAL)}, got {vocab_size}")
    texts = [read_text_file(p)[0] for p in paths]  # the corpus's reader: a binary file is one line
    tok = _pipeline(models.WordLevel(unk_token="[UNK]"))
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL.values()),
        show_progress=False,
    )
    tok.train_from_iterator((line for text in texts for line in text.splitlines()), trainer)
    return _wrap(tok, model_max_length)
