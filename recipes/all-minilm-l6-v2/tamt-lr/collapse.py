"""How much a masked MiniLM's output varies across sentences: the std over 128 SST-2 dev sentences of
the final [CLS] state, of the mean token state and of the pooler output (averaged over dimensions).

    python collapse.py MODEL_DIR GLUE_DIR MASK_DIR [MASK_DIR ...]
"""

import csv
import sys

import torch

from ticketlab.masks import apply_mask, load_mask, remove_mask
from ticketlab.models.load import load_model, load_tokenizer

model_dir, glue, *masks = sys.argv[1:]
torch.set_num_threads(1)
tok = load_tokenizer(model_dir)
with open(f"{glue}/SST-2/dev.tsv") as f:
    sentences = [r[0] for r in list(csv.reader(f, delimiter="\t"))[1:129]]
enc = tok(sentences, padding=True, truncation=True, max_length=64, return_tensors="pt")
model = load_model(model_dir, head="base").eval()


def stats(tag: str) -> None:
    with torch.no_grad():
        out = model(**enc)
    h = out.last_hidden_state  # [B, T, H]
    valid = enc["attention_mask"].unsqueeze(-1).float()
    mean_tok = (h * valid).sum(1) / valid.sum(1)  # [B, H]
    cls = h[:, 0]
    print(
        f"{tag:28s} [CLS] std {cls.std(0).mean():.4f} (norm {cls.norm(dim=1).mean():.2f})  "
        f"token-mean std {mean_tok.std(0).mean():.4f}  pooler std {out.pooler_output.std(0).mean():.4f}"
    )


stats("full model")
for m in masks:
    apply_mask(model, load_mask(m)[0])
    stats(m.rstrip("/").split("/")[-1])
    remove_mask(model, squash=False)
