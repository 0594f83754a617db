"""Dev MLM accuracy of an encoder, measured without ticketlab: a check of the training log's own figure.

Only torch and transformers: WikiText's tokenized markup is undone (` @-@ ` -> `-`, `<unk>` -> the
tokenizer's [UNK], as the text is read for training and for the log), the text is tokenized by the
model's own tokenizer, cut into blocks of `--max-length` tokens ([CLS] ... [SEP]), and 15% of the
tokens of each block are masked by transformers' own `DataCollatorForLanguageModeling` (80% [MASK],
10% random, 10% kept) under a fixed seed; accuracy = argmax of the MLM logits equals the original
token, over the masked positions.

    python models/minilm-mlm/check_accuracy.py models/minilm-mlm wikitext-2/test.txt   # WikiText-2's tokenized test split

The training log's accuracy uses ticketlab's own collator on the first `--eval-blocks` blocks; the two
need not agree to the digit (other masked positions). On models/minilm-mlm, 256 blocks: 39.5% here,
39.4% in its log. `--raw` keeps the markup, which scores higher and means less: `<unk>` becomes four
word pieces (`<`, `un`, `##k`, `>`) and `@-@` three, all easy to predict (46.0% on 512 blocks).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling


def undo_wikitext(text: str, unk_token: str) -> str:
    """`1 @,@ 000` -> `1,000`, `guest @-@ starring` -> `guest-starring`, `<unk>` -> [UNK]."""
    return re.sub(r" @([-,.])@ ", r"\1", text).replace("<unk>", unk_token)


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
    model_dir: str, text_file: str, max_length: int, max_blocks: int, seed: int, raw: bool = False
) -> tuple[float, int]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    text = Path(text_file).read_text(encoding="utf-8")
    text = text if raw else undo_wikitext(text, tokenizer.unk_token)
    data = blocks(tokenizer, text, max_length)[:max_blocks]
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
    p.add_argument("--raw", action="store_true", help="keep WikiText's markup (scores higher, means less)")
    a = p.parse_args(argv)
    acc, n = accuracy(a.model, a.text, a.max_length, a.max_blocks, a.seed, a.raw)
    print(f"{a.model}: MLM accuracy {acc:.4f} over {n} masked tokens ({a.text}, blocks of {a.max_length})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
