"""Tokenizers with BERT's special tokens, for models pre-trained from scratch.

A model trained from scratch needs a vocabulary that fits its corpus: a fixed word list (the
synthetic language's lexicon), the most frequent words of a text corpus (WordLevel: rarer words
become [UNK]), or a WordPiece vocabulary trained on it (BERT's own scheme: rare words become
`##` pieces, nothing is unknown). All use BERT's lower-casing and punctuation splitting and BERT's
`[CLS] a [SEP] b [SEP]` template (with token type ids), saved as a standard
`PreTrainedTokenizerFast` that `AutoTokenizer` loads back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ..core.checks import check_one_of
from ..core.errors import ConfigError
from .sources import read_text_file, text_files
from .tokenizer_kinds import KINDS

SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
SPECIAL["mask_token"] = "[MASK]"


def _pipeline(model: models.Model, strip_accents: bool = False) -> Tokenizer:
    tok = Tokenizer(model)
    steps = [normalizers.NFD(), normalizers.Lowercase()]
    # BERT-uncased's WordPiece strips accents (café -> cafe), else the combining marks take vocabulary.
    tok.normalizer = normalizers.Sequence([*steps, normalizers.StripAccents()] if strip_accents else steps)
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
    return train_tokenizer(files, "word", vocab_size, min_frequency, model_max_length)


def train_tokenizer(
    files: Iterable[str | os.PathLike],
    kind: str = "wordpiece",
    vocab_size: int = 8192,
    min_frequency: int = 2,
    model_max_length: int = 128,
) -> PreTrainedTokenizerFast:
    """A `kind` tokenizer ("wordpiece" or "word") of `vocab_size` entries trained on text files or
    directories of them (read a line at a time, so a large corpus is never held whole)."""
    check_one_of("tokenizer kind", kind, KINDS)
    if vocab_size <= len(SPECIAL):
        raise ConfigError(f"vocab_size must be > {len(SPECIAL)}, got {vocab_size}")
    paths = text_files(files)
    special = list(SPECIAL.values())
    if kind == "word":
        tok = _pipeline(models.WordLevel(unk_token="[UNK]"))
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special, show_progress=False
        )
    else:
        tok = _pipeline(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100), strip_accents=True)
        tok.decoder = decoders.WordPiece(prefix="##")  # "un ##related" decodes back to "unrelated"
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=special,
            continuing_subword_prefix="##",
            show_progress=False,
        )
    tok.train_from_iterator(_lines(paths), trainer)
    return _wrap(tok, model_max_length)


def _lines(paths: Sequence[Path]) -> Iterator[str]:
    for p in paths:  # the corpus's reader: its encodings, its refusal of binary files
        yield from read_text_file(p)[0].splitlines()
