"""Pre-training objectives: MLM on the masked positions only, hidden-state cosine KD, and their sum.

* **MLM** (BERT): 15% of the non-special tokens are chosen; 80% of those become [MASK], 10% a
  random token, 10% stay. The loss is the cross-entropy of the model's own MLM head applied to the
  encoder's hidden states *at the chosen positions only* (BERT's head on all positions costs a
  [tokens x vocab] product for nothing). The head is the family's whole head, transform and norm
  included (its `Arch.mlm_heads` in the architecture map, `models.arch.ARCHS`; `lm.mlm_head` finds
  it), so the loss is the model's own `model(**batch, labels=...).loss`. The corruption of each
  example is drawn from the seed the training loop hands to `collate_fn`, so it does not depend on
  batch composition, process count or resumption.
* **KD** (TAMT Eq. 6): mean over the L transformer layers and the non-padding tokens of
  1 - cos(teacher hidden, student hidden). The embedding output is not a term (Eq. 6 sums l = 1..L,
  and TAMT's code drops it too). The teacher is the same model with its masks switched off
  (`masks_disabled`), under no_grad: no second copy in memory. Its mode is `teacher`: "eval" (no
  dropout; every evaluation, and the library's default) or "train" (the model's own mode, dropout on
  while it trains: TAMT's `train_kd.py` never puts its teacher in eval mode, and a TAMT search does
  as it does). Teacher and
  student read the *clean* text by default (`kd_input="clean"`): TAMT's KD data is generated with
  `masked_lm_prob 0` (its `generate_kd_data.sh`), for training and for the KD dev loss alike. A batch
  then carries the uncorrupted ids beside the corrupted ones (`MLMCollator(keep_clean=True)`).
  `kd_input="corrupted"` distils on the MLM-corrupted input (TAMT-MLM+KD's own choice, whose one
  forward serves both losses, as `train_mlm.py --use_kd` does). A model without
  masks has KD loss 0.
* **MLM+KD**: their equal sum (TAMT §4.1.2).
* **The MLM decoder** (tied to the word embeddings) is *dense* by default (`decoder="dense"`): TAMT
  masks the input word embeddings only, in mask training and in the MLM dev loss; the encoder reads the
  masked embeddings and the head's decoder the pre-trained matrix. `decoder="masked"` makes the logits
  with the masked matrix too (what the exported checkpoint, one shared matrix with zeros, computes).

Losses are token-weighted means. Under DDP the token counts of all processes are summed first (one
small all-reduce per micro-batch), so the averaged gradient is exactly the gradient of the global
batch mean, whatever the split of masked tokens between processes. With gradient accumulation each
micro-batch is normalised by its own count (the usual convention).

    collate = MLMCollator(tokenizer)
    loss_fn = pretraining_loss("mlm+kd")        # (model, batch) -> (loss, logs); for training.train
    sums = pretraining_sums(model, batch, kd=True)  # raw sums and counts, e.g. for evaluation
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from ..core.checks import check_one_of
from ..core.errors import ConfigError
from ..masks import has_masks, masks_disabled
from ..models.arch import encoder_of
from .mlm_head import mlm_head
from .options import Decoder, KdInput, Teacher
from .static_loss import mean_loss_static, mlm_sums_static

IGNORE_INDEX = -100
Objective = Literal["mlm", "kd", "mlm+kd"]
OBJECTIVES: tuple[str, ...] = ("mlm", "kd", "mlm+kd")
CLEAN_IDS = "clean_input_ids"  # a batch's uncorrupted ids (`MLMCollator(keep_clean=True)`)

# --------------------------------------------------------------------------- MLM corruption


class MLMCollator:
    """Pad examples and corrupt them for MLM, deterministically from one seed per example.

    `collator(examples, seeds)` takes examples `{"input_ids": ...}` (tensors or lists) and returns
    `input_ids`, `attention_mask` and `labels` ([B, T] long; labels are IGNORE_INDEX except at the
    chosen positions), `token_type_ids` where the examples have them (0 on padding), and with
    `keep_clean` the uncorrupted ids as `clean_input_ids` (for KD on clean text beside MLM).
    Without `seeds`, they are drawn from torch's global RNG.
    `mlm_probability=0` gives a plain padding collator.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        mlm_probability: float = 0.15,
        *,
        mask_fraction: float = 0.8,
        random_fraction: float = 0.1,
        pad_to_multiple_of: int | None = None,
        keep_clean: bool = False,
    ):
        if not 0.0 <= mlm_probability < 1.0:
            raise ConfigError(f"mlm_probability must be in [0, 1), got {mlm_probability}")
        if mask_fraction < 0 or random_fraction < 0 or mask_fraction + random_fraction > 1:
            raise ConfigError("mask_fraction and random_fraction must be >= 0 and sum to <= 1")
        if tokenizer.mask_token_id is None and mlm_probability > 0:
            raise ConfigError(f"{type(tokenizer).__name__} has no mask token; MLM needs one")
        self.mlm_probability = mlm_probability
        self.mask_fraction = mask_fraction
        self.random_fraction = random_fraction
        self.pad_to_multiple_of = pad_to_multiple_of
        self.keep_clean = keep_clean
        self.mask_id = tokenizer.mask_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids) | {self.pad_id}))

    def __call__(self, examples: Sequence[Any], seeds: Sequence[int] | None = None) -> dict[str, Tensor]:
        ids = [
            torch.as_tensor(e["input_ids"] if isinstance(e, dict) else e, dtype=torch.long) for e in examples
        ]
        if seeds is None:
            seeds = torch.randint(0, 2**62, (len(ids),)).tolist()
        if len(seeds) != len(ids):
            raise ValueError(f"{len(ids)} examples but {len(seeds)} seeds")
        width = max(x.numel() for x in ids)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        labels = torch.full((len(ids), width), IGNORE_INDEX, dtype=torch.long)
        clean = input_ids.clone() if self.keep_clean else None
        for i, (x, seed) in enumerate(zip(ids, seeds, strict=True)):
            n = x.numel()
            attention_mask[i, :n] = 1
            input_ids[i, :n], labels[i, :n] = self.corrupt(x, int(seed))
            if clean is not None:
                clean[i, :n] = x
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if isinstance(examples[0], dict) and "token_type_ids" in examples[0]:  # sentence pairs: 0 past them
            batch["token_type_ids"] = torch.zeros_like(input_ids)
            for i, e in enumerate(examples):
                types = torch.as_tensor(e["token_type_ids"], dtype=torch.long)
                batch["token_type_ids"][i, : types.numel()] = types
        return batch if clean is None else {**batch, CLEAN_IDS: clean}

    def corrupt(self, ids: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        """(corrupted ids, labels) of one example [n]; the same seed gives the same corruption."""
        if self.mlm_probability == 0:
            return ids, torch.full_like(ids, IGNORE_INDEX)
        g = torch.Generator().manual_seed(seed)
        chosen = (torch.rand(ids.shape, generator=g) < self.mlm_probability) & ~torch.isin(
            ids, self.special_ids
        )
        action = torch.rand(ids.shape, generator=g)
        random_ids = torch.randint(0, self.vocab_size, ids.shape, generator=g)
        out = torch.where(chosen & (action < self.mask_fraction), self.mask_id, ids)
        use_random = (
            chosen & (action >= self.mask_fraction) & (action < self.mask_fraction + self.random_fraction)
        )
        out = torch.where(use_random, random_ids, out)
        return out, torch.where(chosen, ids, IGNORE_INDEX)


# --------------------------------------------------------------------------- model parts


def __getattr__(name: str) -> Any:
    # The per-family head table moved into the architecture map: say where, not a bare AttributeError.
    if name == "MLM_HEADS":
        raise AttributeError(
            "ticketlab.lm.objectives.MLM_HEADS is gone: a family's MLM head is its Arch's `mlm_heads` "
            "(ticketlab.models.arch.ARCHS; a family of your own: ticketlab.models.arch.register_arch)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def _encode(model: nn.Module, batch: dict[str, Tensor], hidden_states: bool):
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    return encoder_of(model)(**kwargs, output_hidden_states=hidden_states, return_dict=True)


def clean_batch(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """`batch` with its uncorrupted ids as `input_ids`: what the KD loss reads on clean text. A batch
    that predicts nothing (no labels, or none set: `mlm_probability=0`) is clean already; a corrupted
    one without its clean ids is refused, not distilled on the corrupted text without a word."""
    if CLEAN_IDS in batch:
        return {**batch, "input_ids": batch[CLEAN_IDS]}
    if "labels" in batch and bool((batch["labels"] != IGNORE_INDEX).any()):
        raise ConfigError(
            "KD on clean inputs needs the uncorrupted ids beside an MLM batch: collate with "
            "MLMCollator(keep_clean=True), or pass kd_input='corrupted'"
        )
    return batch


def teacher_hidden_states(
    model: nn.Module, batch: dict[str, Tensor], teacher: Teacher = "eval"
) -> tuple[Tensor, ...]:
    """Hidden states of layers 1..L of the dense model (masks off, no grad), in eval mode or, with
    `teacher="train"`, in the model's own mode (a training model's dropout draws the teacher's too)."""
    check_one_of("teacher", teacher, ("train", "eval"))
    mode = eval_mode(model) if teacher == "eval" else contextlib.nullcontext()
    with torch.no_grad(), masks_disabled(model), mode:
        return _encode(model, batch, hidden_states=True).hidden_states[1:]


# --------------------------------------------------------------------------- sums and losses


@dataclass
class LossSums:
    """Sums over a batch (tensors; the loss sums carry gradients) and their token counts."""

    mlm_sum: Tensor | None = None  # sum of cross-entropies over masked tokens
    mlm_correct: Tensor | None = None  # masked tokens predicted exactly
    mlm_count: Tensor | None = None  # masked tokens
    kd_sum: Tensor | None = None  # sum over layers and tokens of 1 - cos
    kd_count: Tensor | None = None  # layers x non-padding tokens


def mlm_sums(
    model: nn.Module, hidden: Tensor, labels: Tensor, decoder: Decoder = "dense"
) -> tuple[Tensor, Tensor, Tensor]:
    """(sum of CE, correct, count) of the MLM head on the masked positions of `hidden` [B, T, H].

    `decoder="dense"`: the head runs with the masks off. The encoder has already read the masked word
    embeddings; in the head the only masked tensor is the decoder tied to them (a head module is
    never a target), so this is TAMT's dense decoder; "masked" keeps its mask on."""
    check_one_of("decoder", decoder, ("dense", "masked"))
    chosen = labels != IGNORE_INDEX  # [B, T]
    if torch.compiler.is_compiling():
        return mlm_sums_static(model, hidden, labels, chosen, decoder, IGNORE_INDEX)
    where = chosen.reshape(-1).nonzero().squeeze(1)  # [n]: the one host read (n sets the head's shape)
    dense = masks_disabled(model) if decoder == "dense" else contextlib.nullcontext()
    with dense:
        logits = mlm_head(model)(hidden.reshape(-1, hidden.shape[-1])[where])  # [n, V]
    target = labels.reshape(-1)[where]  # [n]
    loss_sum = F.cross_entropy(logits.float(), target, reduction="sum")
    correct = (logits.detach().argmax(-1) == target).sum()
    return loss_sum, correct, chosen.sum()


def kd_sums(
    student: Sequence[Tensor], teacher: Sequence[Tensor], attention_mask: Tensor
) -> tuple[Tensor, Tensor]:
    """(sum, count) of 1 - cos(teacher, student) over layers and the positions `attention_mask` counts
    (the non-padding tokens: TAMT Eq. 6; all ones: every position, as `train_kd.py`'s CosineLoss)."""
    if len(student) != len(teacher):
        raise ValueError(f"{len(student)} student layers vs {len(teacher)} teacher layers")
    valid = attention_mask.bool()  # [B, T]
    total = student[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(student, teacher, strict=True):
        cos = F.cosine_similarity(s.float(), t.float(), dim=-1)  # [B, T]
        total = total + (1.0 - cos).masked_fill(~valid, 0.0).sum()  # no host read, unlike [valid]
    return total, valid.sum() * len(student)


def pretraining_sums(
    model: nn.Module,
    batch: dict[str, Tensor],
    *,
    mlm: bool = True,
    kd: bool = False,
    decoder: Decoder = "dense",
    kd_input: KdInput = "clean",
    teacher: Teacher = "eval",
    count_padding: bool = False,
) -> LossSums:
    """One student forward (plus one teacher forward for KD, and a second student forward when KD
    reads the clean text beside MLM) and the raw sums of the objectives (`teacher`: its mode, see
    `teacher_hidden_states`; `count_padding`: the KD sums cover padding positions too, as TAMT's
    `train_kd.py` averages its cosine loss over all of them)."""
    if not (mlm or kd):
        raise ConfigError("nothing to compute: enable mlm and/or kd")
    check_one_of("kd_input", kd_input, ("clean", "corrupted"))
    kd_batch = clean_batch(batch) if kd and kd_input == "clean" else batch
    same = kd_batch["input_ids"] is batch["input_ids"]  # one student forward serves both losses
    out = _encode(model, batch, hidden_states=kd and same) if mlm or same else None
    sums = LossSums()
    if mlm:
        if "labels" not in batch:
            raise ConfigError("the MLM objective needs a batch with labels (use MLMCollator)")
        sums.mlm_sum, sums.mlm_correct, sums.mlm_count = mlm_sums(
            model, out.last_hidden_state, batch["labels"], decoder
        )
    if kd:
        batch = kd_batch
        if not same:
            out = _encode(model, batch, hidden_states=True)
        mask = batch.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(batch["input_ids"])
        student = out.hidden_states[1:]
        if count_padding:  # the forwards above read the real mask; only the mean counts padding
            mask = torch.ones_like(mask)
        if has_masks(model):
            target = teacher_hidden_states(model, batch, teacher)
            sums.kd_sum, sums.kd_count = kd_sums(student, target, mask)
        else:  # teacher == student: Eq. 6 is exactly 0 (and no second forward is needed)
            sums.kd_sum = student[0].new_zeros((), dtype=torch.float32)
            sums.kd_count = mask.bool().sum() * len(student)
    return sums


def _world() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def pretraining_loss(
    objective: Objective = "mlm",
    *,
    sync_counts: bool = True,
    decoder: Decoder = "dense",
    kd_input: KdInput = "clean",
    teacher: Teacher = "eval",
    count_padding: bool = False,
):
    """A `loss_fn(model, batch) -> (loss, logs)` for `train.loop.train`: MLM, KD or their sum, with the
    MLM decoder, the KD input, the teacher's mode and the KD mean's positions as `pretraining_sums`
    takes them.

    With `sync_counts` and several processes, the token counts are all-reduced so that DDP's average
    of the per-process gradients equals the gradient of the global token-weighted mean; every
    process must then call the loss the same number of times (true inside `train`).
    """
    check_one_of("objective", objective, OBJECTIVES)
    check_one_of("decoder", decoder, ("dense", "masked"))
    check_one_of("kd_input", kd_input, ("clean", "corrupted"))
    check_one_of("teacher", teacher, ("train", "eval"))
    use_mlm, use_kd = "mlm" in objective, "kd" in objective

    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        s = pretraining_sums(
            model,
            batch,
            mlm=use_mlm,
            kd=use_kd,
            decoder=decoder,
            kd_input=kd_input,
            teacher=teacher,
            count_padding=count_padding,
        )
        zero = torch.zeros((), device=batch["input_ids"].device)
        parts = [
            s.mlm_sum.detach() if use_mlm else zero,
            s.mlm_correct if use_mlm else zero,
            s.mlm_count if use_mlm else zero,
            s.kd_sum.detach() if use_kd else zero,
            s.kd_count if use_kd else zero,
        ]
        totals = torch.stack([p.float() for p in parts])  # [5]: global sums for logging and scaling
        if torch.compiler.is_compiling():  # nothing read back: the logs stay tensors
            return mean_loss_static(s, totals, use_mlm, use_kd, _world() if sync_counts else 1)
        return _mean_loss(s, totals, use_mlm, use_kd, sync_counts)

    return loss_fn


# Not compiled: the host reads the sums here (one read a step), and torch.compile, tracing on
# after the read, would specialise on the floats read and recompile at every step.
@torch.compiler.disable
def _mean_loss(
    s: LossSums, totals: Tensor, use_mlm: bool, use_kd: bool, sync_counts: bool
) -> tuple[Tensor, dict[str, float]]:
    """The loss as the sums over the global token counts, and the logs (`totals`: [5] sums)."""
    world = _world() if sync_counts else 1
    if world > 1:
        torch.distributed.all_reduce(totals)
    mlm_sum, mlm_correct, mlm_n, kd_sum, kd_n = totals.tolist()
    loss = torch.zeros((), device=totals.device)
    logs: dict[str, float] = {}
    if use_mlm:
        loss = loss + s.mlm_sum * (world / max(mlm_n, 1.0))
        logs.update(mlm_loss=mlm_sum / max(mlm_n, 1.0), mlm_acc=mlm_correct / max(mlm_n, 1.0))
    if use_kd:
        loss = loss + s.kd_sum * (world / max(kd_n, 1.0))
        logs["kd_loss"] = kd_sum / max(kd_n, 1.0)
    return loss, logs


def mlm_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """MLM loss (mean over masked tokens) and logs {mlm_loss, mlm_acc}: `pretraining_loss("mlm")`."""
    return _MLM(model, batch)


def kd_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """KD loss of TAMT Eq. 6 and logs {kd_loss}: `pretraining_loss("kd")`."""
    return _KD(model, batch)


def mlm_kd_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """MLM + KD (equal weights) and logs: `pretraining_loss("mlm+kd")`."""
    return _MLM_KD(model, batch)


_MLM, _KD, _MLM_KD = pretraining_loss("mlm"), pretraining_loss("kd"), pretraining_loss("mlm+kd")
