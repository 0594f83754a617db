"""Pre-training performance of a (sub)network: MLM dev loss and accuracy, KD dev loss (TAMT Fig. 5).

The dev blocks are corrupted with fixed per-block seeds, so every model and mask is scored on the
same masked positions and the numbers are comparable across methods and runs. The KD loss compares
the masked model with itself unmasked (TAMT Eq. 6) on the clean blocks (TAMT's KD eval data; or on
the corrupted ones, `kd_input="corrupted"`); it is 0 for a model without masks. The MLM loss is made
with a dense decoder by default, as TAMT's `eval_mlm.py` does (`decoder`, `objectives`). All numbers
are token-weighted means over the whole dev set.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from ..core.errors import DataError, MaskFileError
from ..core.files.inputs import load_safetensors
from ..core.progress import progress_bar
from ..data.corpus import BlockDataset
from ..models.weights import not_finite
from ..train.determinism import example_seed
from .mlm_head import head_parameters
from .objectives import (
    IGNORE_INDEX,
    Decoder,
    KdInput,
    MLMCollator,
    eval_mode,
    pretraining_sums,
)

HEAD_FILE = "mlm_head.safetensors"


def check_scorable(
    dev: BlockDataset, collator: MLMCollator, *, mlm: bool, seed: int = 0, source: str
) -> None:
    """Refuse dev blocks that would give a mean over zero tokens (MLM loss 0.0, perplexity 1.0 look like
    a perfect score): no token at all, or, for MLM, none that the fixed-seed corruption `evaluate_pretraining`
    uses would predict (e.g. only special tokens). Collation alone, no model: cheap, before any work."""
    if dev.num_tokens == 0:
        raise DataError(f"{source}: no dev tokens to evaluate on ({len(dev)} blocks)")
    if not mlm:
        return
    predicted = 0
    for start in range(0, len(dev), 256):
        idx = range(start, min(start + 256, len(dev)))
        labels = collator([dev[i] for i in idx], [example_seed(seed, 0, i) for i in idx])["labels"]
        predicted += int((labels != IGNORE_INDEX).sum())
    if predicted == 0:
        raise DataError(
            f"{source}: none of its {dev.num_tokens} dev tokens is masked for prediction (special tokens "
            "only, or too few tokens): an MLM loss over zero tokens is no score; give more text"
        )


@torch.no_grad()
def evaluate_pretraining(
    model: nn.Module,
    dev: BlockDataset,
    collator: MLMCollator,
    *,
    batch_size: int = 32,
    seed: int = 0,
    mlm: bool = True,
    kd: bool = True,
    progress: bool = False,
    source: str = "the dev blocks",
    decoder: Decoder = "dense",
    kd_input: KdInput = "clean",
) -> dict[str, float]:
    """Dev `mlm_loss`, `mlm_acc`, `mlm_ppl` and/or `kd_loss`, with the token counts behind them.
    `source` names the corpus in the error when there is nothing to score (`check_scorable`).
    `decoder`, `kd_input`: see `lm.objectives.pretraining_sums` (TAMT's by default)."""
    check_scorable(dev, collator, mlm=mlm, seed=seed, source=source)
    if kd and kd_input == "clean" and not getattr(collator, "keep_clean", True):  # clean ids beside
        collator = copy.copy(collator)
        collator.keep_clean = True
    device = next(model.parameters()).device
    totals = {"mlm_sum": 0.0, "mlm_correct": 0.0, "mlm_count": 0.0, "kd_sum": 0.0, "kd_count": 0.0}
    starts = range(0, len(dev), batch_size)
    with eval_mode(model):
        for start in progress_bar(starts, desc="evaluate", disable=not progress, leave=False):
            idx = range(start, min(start + batch_size, len(dev)))
            batch = collator([dev[i] for i in idx], [example_seed(seed, 0, i) for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            sums = pretraining_sums(model, batch, mlm=mlm, kd=kd, decoder=decoder, kd_input=kd_input)
            for k in totals:
                v = getattr(sums, k)
                if v is not None:
                    totals[k] += float(v)
    out: dict[str, float] = {"blocks": len(dev), "tokens": dev.num_tokens}
    if mlm:
        n = totals["mlm_count"]  # > 0: check_scorable
        out.update(
            mlm_loss=totals["mlm_sum"] / n,
            mlm_acc=totals["mlm_correct"] / n,
            mlm_ppl=math.exp(min(totals["mlm_sum"] / n, 50.0)),
            masked_tokens=int(totals["mlm_count"]),
        )
    if kd:
        out["kd_loss"] = totals["kd_sum"] / totals["kd_count"]
    return out


def load_head_state(model: nn.Module, path: str | os.PathLike) -> int:
    """Load a trained MLM head (`mlm_head.safetensors`, from TAMT-MLM) into `model`; returns #tensors."""
    path = Path(path)
    if path.is_dir():
        path = path / HEAD_FILE
    try:
        state = load_safetensors(path, "MLM head", MaskFileError)
    except (SafetensorError, OSError) as e:
        raise MaskFileError(f"{path}: cannot read the MLM head ({e})") from None
    own = head_parameters(model)
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise MaskFileError(f"{path}: tensors that are not this model's MLM head, e.g. {unknown[0]}")
    missing = sorted(set(own) - set(state))
    if missing:  # TAMT-MLM saves the whole head: the rest would be the base model's, mixed in unsaid
        raise MaskFileError(
            f"{path}: holds {len(state)} of the model's {len(own)} MLM-head tensors (no {missing[0]}): "
            "a head trained without the rest; search again, or score the mask with the original head "
            "(--mlm-head original, the default)"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise MaskFileError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, the model's is {tuple(own[name].shape)}"
            )
        bad = not_finite([(name, tensor)])  # as load_model's check
        if bad is not None:
            raise MaskFileError(f"{path}: {name} is not finite ({bad[1]} nan/inf values); search again")
        with torch.no_grad():
            own[name].copy_(tensor.to(own[name].device, own[name].dtype))
    return len(state)
