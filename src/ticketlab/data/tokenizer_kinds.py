"""The kinds of tokenizer `tokenizer.train_tokenizer` builds, in a module that imports neither
`tokenizers` nor transformers: `ticketlab pretrain --help` offers them, and parsing must not wait
for those imports."""

from __future__ import annotations

KINDS = ("wordpiece", "word")  # what `train_tokenizer` builds
DEFAULT_KIND = "wordpiece"  # BERT's; the one default of `pretrain`, `write_tokens` and the CLI
