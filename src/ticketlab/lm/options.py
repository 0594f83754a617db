"""The choices of the LM objectives' options, in a module that imports no torch: the configs a
verb's `--help` offers read them (`methods.tamt.config`, `methods.search_config`), and parsing must
not wait for torch. `lm/objectives.py` computes what they mean."""

from __future__ import annotations

from typing import Literal

Decoder = Literal["dense", "masked"]  # the tied MLM decoder under a word-embedding mask
KdInput = Literal["clean", "corrupted"]  # what teacher and student read for the KD loss
Teacher = Literal["train", "eval"]  # the KD teacher's mode in training: dropout on, or off
# Help of the options that choose them, for every verb that has them.
DECODER_HELP = (
    "the tied MLM decoder: dense (TAMT, Liu et al. 2022: only the input word embeddings are masked) "
    "or masked (the shared matrix masked, as an exported checkpoint computes it)"
)
KD_INPUT_HELP = (
    "what the KD loss reads: clean text (TAMT's KD data, masked_lm_prob 0) or the MLM-corrupted "
    "input (what the student trains on under MLM+KD)"
)
TEACHER_HELP = (
    "the KD teacher's mode while masks train: train (dropout on, as TAMT's train_kd.py, which never "
    "puts its teacher in eval mode) or eval (no dropout: a deterministic target); KD dev losses always "
    "read the teacher in eval mode"
)
