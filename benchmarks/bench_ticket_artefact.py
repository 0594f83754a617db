"""Size of a fine-tuned ticket's artefact (`ticketlab export --base`, `save_ticket`) against its dense
checkpoint, for a 70% OMP ticket of bert-mini-ref fine-tuned a few steps on MRPC.

    OMP_NUM_THREADS=1 python benchmarks/bench_ticket_artefact.py --out /tmp/artefact

Two fine-tunings of the same ticket, 20 AdamW steps (batch 32, 128 tokens, lr 2e-5, no weight
decay, as `ticketlab finetune --max-steps 20` with the task's defaults): every tensor trained (the
default), and the word embeddings frozen. For each: the artefact's size (every file of the
directory), the dense checkpoint's (`export_pretrained`: model.safetensors with zeros in place), and
the largest |logit difference| between the fine-tuned model and `load_ticket` of its artefact.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer

from ticketlab.masks import MaskConfig, export_pretrained, load_mask_onto, save_mask
from ticketlab.masks.ticket import load_ticket, save_ticket
from ticketlab.methods import omp_mask
from ticketlab.models.load import load_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BASE = SHARED / "models" / "bert-mini-ref"
MRPC = SHARED / "data" / "glue" / "MRPC" / "train.tsv"


def fine_tuned(mask_dir: Path, frozen: bool, tok) -> torch.nn.Module:
    torch.manual_seed(0)
    model = load_model(BASE, "seq-cls", num_labels=2)
    load_mask_onto(model, mask_dir)
    if frozen:
        model.bert.embeddings.word_embeddings.parametrizations.weight.original.requires_grad_(False)
    with MRPC.open(encoding="utf-8-sig") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5, weight_decay=0.0)
    model.train()
    for step in range(20):
        batch = rows[step * 32 : (step + 1) * 32]
        x = tok([r[3] for r in batch], [r[4] for r in batch], truncation=True, max_length=128,
                padding=True, return_tensors="pt")  # fmt: skip
        model(**x, labels=torch.tensor([int(r[0]) for r in batch])).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="a scratch directory (replaced)")
    out = p.parse_args().out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    base = load_model(BASE, "mlm")
    mask = omp_mask(base, 0.7)
    save_mask(
        mask, MaskConfig.for_model(base, mask, method="omp", sparsity=0.7, base_model=str(BASE)), out / "m"
    )
    tok = AutoTokenizer.from_pretrained(BASE)
    x = tok(["the cat sat on the mat"], ["a cat is on a mat"], return_tensors="pt")
    for frozen in (False, True):
        name = "frozen-embeddings" if frozen else "all-trained"
        model = fine_tuned(out / "m", frozen, tok)
        with torch.no_grad():
            want = model(**x).logits
        save_ticket(model, out / name, base=BASE)
        export_pretrained(model, out / f"{name}-dense")
        with torch.no_grad():
            delta = (load_ticket(out / name)(**x).logits - want).abs().max().item()
        small, dense = size(out / name), (out / f"{name}-dense" / "model.safetensors").stat().st_size
        print(f"{name}: artefact {small / 1e6:.2f} MB, dense {dense / 1e6:.2f} MB ({small / dense:.1%}); "
              f"max |dlogit| {delta}")  # fmt: skip


if __name__ == "__main__":
    main()
