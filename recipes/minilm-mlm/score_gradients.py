"""How fast TAMT's MLM and KD losses can move a mask away from OMP on this model, measured at the start.

TAMT's scores start at α·φ = 0.02 (kept) and 0 (pruned); Adam moves a score by about lr × the
consistency of its gradient per step: |E g| / sqrt(E g²) of that entry (1 when every batch pushes it
the same way, ~0 for noise), so a mask leaves OMP as fast as its objective's score gradients agree
from batch to batch. This draws BATCHES batches of the search's shape (16 × 128 tokens, the first
lines of the search corpus), computes each objective's score gradients at the OMP start with the
search's own loss (`pretraining_loss`, dropout on as in training), and prints per group of matrices:

  drift  the mean over entries of |E g| / sqrt(E g²), E g estimated without its noise
         (mean² − var/BATCHES, floored at 0): a score's travel per unit of learning rate while
         the gradients stay as they are at the start;
  rms    the median over entries of sqrt(E g²);
  <1e-6  the fraction of entries whose sqrt(E g²) is below 1e-6, where an Adam ε of 1e-6 (TAMT's
         KD optimiser, BertAdam) shrinks the step at least two-fold; torch's AdamW (ticketlab) has 1e-8;
  damp   the mean over entries of sqrt(E g²) / (sqrt(E g²) + 1e-6): the part of Adam's step that
         ε = 1e-6 leaves, against ~1 at 1e-8.

About 2 × BATCHES forward-backward passes (KD also runs the dense teacher): 32 batches took 9 minutes
of one core on a loaded machine.

Usage (from the worktree's root):
    OMP_NUM_THREADS=1 PYTHONPATH=src python recipes/minilm-mlm/score_gradients.py [BATCHES]  # 32
"""

from __future__ import annotations

import sys
import tempfile
from itertools import islice
from pathlib import Path

import torch

from ticketlab.data.corpus import load_lm_corpus
from ticketlab.lm.objectives import MLMCollator, pretraining_loss
from ticketlab.masks.prunable import attach_pooler
from ticketlab.methods.tamt.config import TamtConfig
from ticketlab.methods.tamt.search import prepare_tamt
from ticketlab.models.load import load_model, load_tokenizer

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "minilm-mlm"
CORPUS = ROOT.parent / "shared" / "data" / "wiki-2015" / "wiki-01.txt"  # the study's search corpus
LINES = 20_000  # enough text for a few hundred blocks of 128 tokens
EPS_REFERENCE = 1e-6  # BertAdam's ε (TAMT's train_kd.py); torch's AdamW: 1e-8
GROUPS = ("word_embeddings", "query", "key", "value", "attention.output", "intermediate", "output.dense")


def group_of(key: str) -> str:
    return next(g for g in GROUPS if g in key)


def batches(n: int, tokenizer) -> list[dict[str, torch.Tensor]]:
    """`n` batches of 16 blocks of 128 tokens, corrupted for MLM as the search does (seeded)."""
    with tempfile.TemporaryDirectory() as tmp, CORPUS.open() as f:
        head = Path(tmp) / "head.txt"
        head.write_text("".join(islice(f, LINES)))
        corpus = load_lm_corpus(head, tokenizer, 128, dev_fraction=0.01, use_cache=False, progress=False)
    collate = MLMCollator(tokenizer, keep_clean=True)
    return [
        collate([corpus.train[16 * i + j] for j in range(16)], list(range(16 * i, 16 * i + 16)))
        for i in range(n)
    ]


Moments = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def gradient_moments(objective: str, data: list[dict[str, torch.Tensor]]) -> Moments:
    """Per target key: (sum of g, sum of g², the OMP start's kept entries) of the score gradients over
    `data`. The pooler's sums stay 0: no pre-training loss reaches it (TAMT holds it at its start)."""
    model = load_model(MODEL, head="mlm").float()
    attach_pooler(model, str(MODEL))
    config = TamtConfig(sparsity=0.7, objective=objective)
    masks, _ = prepare_tamt(model, config)
    kept = {k: m.scores.detach() > config.threshold for k, m in masks.items()}  # α·φ above, 0 below
    model.train()
    loss_fn = pretraining_loss(objective, sync_counts=False)
    sums = {k: (torch.zeros_like(m.scores), torch.zeros_like(m.scores)) for k, m in masks.items()}
    for batch in data:
        for m in masks.values():
            m.scores.grad = None
        loss, _ = loss_fn(model, batch)
        loss.backward()
        for k, m in masks.items():
            if m.scores.grad is not None:
                g = m.scores.grad.detach()
                sums[k][0].add_(g)
                sums[k][1].add_(g * g)
    return {k: (s, s2, kept[k]) for k, (s, s2) in sums.items()}


def signed_drift(s: torch.Tensor, s2: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per entry: E g / sqrt(E g²) with the noise of E g's estimate taken out (mean² − var/n, floored
    at 0; its sign kept), and sqrt(E g²)."""
    mean, second = s / n, s2 / n
    rms = second.sqrt()
    signal = (mean**2 - (second - mean**2).clamp_min(0) / n).clamp_min(0).sqrt()
    drift = torch.where(rms > 0, mean.sign() * signal / rms.clamp_min(1e-30), torch.zeros_like(rms))
    return drift, rms


def summary(moments: Moments, n: int) -> dict[str, dict[str, float]]:
    """The four numbers of the module docstring, per group of matrices and over all of them."""
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for key, (s, s2, _) in moments.items():
        if "pooler" in key:
            continue
        drift, rms = signed_drift(s, s2, n)
        for g in (group_of(key), "all"):
            parts.setdefault(g, []).append((drift.abs().flatten(), rms.flatten()))
    rows = {}
    for g, pairs in parts.items():
        drift, rms = torch.cat([d for d, _ in pairs]), torch.cat([r for _, r in pairs])
        rows[g] = {
            "drift": drift.mean().item(),
            "rms": rms.median().item(),
            "<1e-6": (rms < EPS_REFERENCE).float().mean().item(),
            "damp": (rms / (rms + EPS_REFERENCE)).mean().item(),
        }
    return rows


def main(n: int) -> None:
    tokenizer = load_tokenizer(MODEL)
    data = batches(n, tokenizer)
    print(f"{n} batches of 16 x 128 tokens from {CORPUS.name}; score gradients at the OMP start (70%)")
    print(f"{'objective':<5} {'group':<17} {'drift':>6} {'rms':>9} {'<1e-6':>6} {'damp':>6}")
    for objective in ("mlm", "kd"):
        torch.manual_seed(0)  # dropout
        for g, row in summary(gradient_moments(objective, data), n).items():
            print(
                f"{objective:<5} {g:<17} {row['drift']:>6.3f} {row['rms']:>9.2e} {row['<1e-6']:>6.3f} "
                f"{row['damp']:>6.3f}"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 32)
