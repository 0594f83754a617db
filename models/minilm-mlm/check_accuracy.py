"""Dev MLM accuracy of an encoder, measured without ticketlab (issue 36: "measured independently").

Only torch and transformers: the text is tokenized by the model's own tokenizer, cut into blocks of
`--max-length` tokens ([CLS] ... [SEP]), and 15% of the tokens of each block are masked by
transformers' own `DataCollatorForLanguageModeling` (80% [MASK], 10% random, 10% kept) under a fixed
seed; accuracy = argmax of the MLM logits equals the original token, over the masked positions.

    python models/minilm-mlm/check_accuracy.py models/minilm-mlm ../shared/data/wikitext-2/test.txt

The training log's accuracy uses ticketlab's own collator and the first `--eval-blocks` blocks; the
two need not agree to the digit (other masked positions). Measured on models/minilm-mlm they do not
agree: 46.0% here (512 blocks; 44.2% on 256) against 39.4% in its log (issue 36: why is open).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling


def blocks(tokenizer, text: str, max_length: int) -> list[list[int]]:
    """[CLS] + max_length - 2 tokens + [SEP] per block, the text's lines joined as one stream."""
    ids: list[int] = []
    for line in text.splitlines():
        if line.strip():
            ids.extend(tokenizer(line, add_special_tokens=False)["input_ids"])
    body = max_length - 2
    return [
        [tokenizer.cls_token_id, *ids[i : i + body], tokenizer.sep_token_id]
        for i in range(0, len(ids) - body + 1, body)
    ]


@torch.no_grad()
def accuracy(
    model_dir: str, text_file: str, max_length: int, max_blocks: int, seed: int
) -> tuple[float, int]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    data = blocks(tokenizer, Path(text_file).read_text(encoding="utf-8"), max_length)[:max_blocks]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    torch.manual_seed(seed)
    right = total = 0
    for i in range(0, len(data), 32):
        batch = collator([{"input_ids": b} for b in data[i : i + 32]])  # input_ids [B, T], labels [B, T]
        logits = model(input_ids=batch["input_ids"]).logits  # [B, T, V]
        masked = batch["labels"] != -100
        right += int((logits.argmax(-1)[masked] == batch["labels"][masked]).sum())
        total += int(masked.sum())
    return right / total, total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("text")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-blocks", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    acc, n = accuracy(a.model, a.text, a.max_length, a.max_blocks, a.seed)
    print(f"{a.model}: MLM accuracy {acc:.4f} over {n} masked tokens ({a.text}, blocks of {a.max_length})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
