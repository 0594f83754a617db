"""A downstream task as a training objective: what fine-tuning trains and how it is scored.

No run directory and no config of its own: `finetune` (the verb), task-specific IMP (`verbs.search.search`),
ticket sharing (`studies.mtl`) and super tickets build on it.

* losses by task kind (`LOSSES`): classification, regression, SQuAD spans;
* the dev evaluation (`tasks.evaluation`): the task's metrics on every eval split (GLUE style) or
  SQuAD's best answer spans, with a dev set cut into a part that selects and a part reported;
* `task_objective(task, tokenizer, data_dir)`: a task as (dataset, collate_fn, loss_fn, eval_fn,
  metric), ready for `train.loop.train`;
* `load_task_model(model, task, seed, mask=...)`: the pre-trained encoder with a fresh seeded head
  (`reset_head`) and the mask attached.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..core.errors import ConfigError, TicketlabError
from ..data.features import Features, pad_collate
from ..masks import MaskConfig, load_mask_onto
from ..models.arch import encoder_of
from ..models.load import load_model
from ..train.config import CollateFn, EvalFn, LossFn
from .evaluation import MODEL_INPUTS, SELECT, forward, glue_eval, selected_eval, split_dev, squad_eval
from .glue import load_features
from .registry import SquadWindows as Windows
from .registry import TaskSpec, get_task
from .squad import load_squad_features

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the task as an objective


def classification_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return F.cross_entropy(forward(model, batch).logits.float(), batch["labels"])


def regression_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return F.mse_loss(forward(model, batch).logits.float().squeeze(-1), batch["labels"].float())


def span_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    out = forward(model, batch)
    start = F.cross_entropy(out.start_logits.float(), batch["start_positions"])
    end = F.cross_entropy(out.end_logits.float(), batch["end_positions"])
    return (start + end) / 2


LOSSES: dict[str, LossFn] = {
    "classification": classification_loss,
    "regression": regression_loss,
    "squad": span_loss,
}


@dataclass
class TaskObjective:
    """A downstream task as what `train.loop.train` consumes, plus what was read."""

    spec: TaskSpec
    dataset: Features  # training features (after any --train-samples subset)
    collate_fn: CollateFn
    loss_fn: LossFn
    eval_fn: EvalFn  # model -> {metric key: score}, every eval split
    metric: str
    greater_is_better: bool = True
    n_train: int = 0  # training examples (questions for SQuAD; its windows are len(dataset))
    n_dev: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # malformed rows left out, per split


def _subset(n: int, k: int | None, seed: int) -> list[int] | None:
    """k of n indices chosen by `seed`, in file order; None when all are used. The first k of one
    seeded permutation: a smaller k's subset lies inside a larger one's (`studies.adaptation`)."""
    if k is None or k >= n:
        if k is not None:
            log.warning("train_samples %d >= %d training examples: using all of them", k, n)
        return None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]
    return sorted(order.tolist())


def task_objective(
    task: str | TaskSpec,
    tokenizer: PreTrainedTokenizerBase,
    data_dir: str | os.PathLike | None = None,
    *,
    max_length: int | None = None,
    train_samples: int | None = None,
    data_seed: int = 0,
    eval_samples: int | None = None,
    eval_batch_size: int = 64,
    metric: str | None = None,
    doc_stride: int = 128,
    squad_windows: Windows = "step",
    n_best: int = 20,
    max_answer_length: int = 30,
    select_fraction: float | None = None,
    select_seed: int = 0,
) -> TaskObjective:
    """Read, tokenize (cached) and wrap a task: train set, collate, loss and the dev evaluation.

    With `select_fraction` the dev set is split (`split_dev`): `eval_fn` scores the rest under the
    plain metric names and the selection part under `select_<name>`.

    Use it with `load_task_model` and `train.loop.train(model, params, obj.dataset, obj.collate_fn,
    obj.loss_fn, TrainConfig(..., metric=obj.metric), eval_fn=obj.eval_fn)`.
    """
    spec = get_task(task, data_dir)
    max_length = max_length or spec.max_length
    metric = metric or spec.main
    if spec.kind == "squad" and select_fraction is not None:
        raise ConfigError("select_fraction is for GLUE-style tasks, not SQuAD")
    common = (
        spec,
        tokenizer,
        data_dir,
        max_length,
        (train_samples, data_seed, eval_samples),
        eval_batch_size,
        metric,
    )
    if spec.kind == "squad":
        return _squad_objective(*common, (doc_stride, squad_windows, n_best, max_answer_length))
    return _glue_objective(*common, (select_fraction, select_seed))


Sizes = tuple[int | None, int, int | None]  # (train_samples, data_seed, eval_samples)


def _squad_objective(
    spec: TaskSpec,
    tokenizer: PreTrainedTokenizerBase,
    data_dir: str | os.PathLike | None,
    max_length: int,
    sizes: Sizes,
    eval_batch_size: int,
    metric: str,
    squad: tuple[int, Windows, int, int],
) -> TaskObjective:
    """SQuAD: windows of `max_length` with `doc_stride`; a subset keeps every window of its questions."""
    (train_samples, data_seed, eval_samples), (doc_stride, windows, n_best, max_answer_length) = sizes, squad
    train_set, train_ex = load_squad_features(
        spec, data_dir, "train", tokenizer, max_length, doc_stride, train=True, windows=windows
    )
    chosen = _subset(len(train_ex), train_samples, data_seed)
    if chosen is not None:  # keep every window of the chosen questions
        keep = np.isin(train_set.columns["example_index"], chosen)
        train_set = train_set.subset(np.flatnonzero(keep).tolist())
    split = spec.eval_splits[0]
    dev_set, dev_ex = load_squad_features(
        spec, data_dir, split, tokenizer, max_length, doc_stride, train=False, windows=windows
    )
    if eval_samples is not None and eval_samples < len(dev_ex):
        dev_ex = dev_ex.head(eval_samples)
        keep = dev_set.columns["example_index"] < eval_samples
        dev_set = dev_set.subset(np.flatnonzero(keep).tolist())
    inputs = pad_collate(tokenizer, columns=MODEL_INPUTS)
    return TaskObjective(
        spec=spec,
        dataset=train_set,
        collate_fn=pad_collate(tokenizer, columns=(*MODEL_INPUTS, "start_positions", "end_positions")),
        loss_fn=span_loss,
        eval_fn=squad_eval(dev_ex, dev_set, inputs, eval_batch_size, n_best, max_answer_length),
        metric=metric,
        n_train=len(chosen) if chosen is not None else len(train_ex),
        n_dev={split: len(dev_ex)},
        skipped={"train": train_ex.skipped, split: dev_ex.skipped},
    )


def _glue_objective(
    spec: TaskSpec,
    tokenizer: PreTrainedTokenizerBase,
    data_dir: str | os.PathLike | None,
    max_length: int,
    sizes: Sizes,
    eval_batch_size: int,
    metric: str,
    select: tuple[float | None, int],
) -> TaskObjective:
    """A classification or regression task; with a select fraction, the dev set split in two."""
    (train_samples, data_seed, eval_samples), (select_fraction, select_seed) = sizes, select
    train_set, train_ex = load_features(spec, data_dir, "train", tokenizer, max_length)
    chosen = _subset(len(train_set), train_samples, data_seed)
    if chosen is not None:
        train_set = train_set.subset(chosen)
    dev: dict[str, Features] = {}
    skipped = {"train": train_ex.skipped}
    for split in spec.eval_splits:
        feats, ex = load_features(spec, data_dir, split, tokenizer, max_length)
        dev[split] = (
            feats.subset(range(eval_samples)) if eval_samples and eval_samples < len(feats) else feats
        )
        skipped[split] = ex.skipped
    collate = pad_collate(tokenizer, float_labels=spec.kind == "regression")
    eval_fn = glue_eval(spec, dev, collate, eval_batch_size)
    n_dev = {s: len(f) for s, f in dev.items()}
    if select_fraction is not None:
        parts = {s: split_dev(f, select_fraction, select_seed) for s, f in dev.items()}
        eval_fn = selected_eval(
            glue_eval(spec, {s: p[1] for s, p in parts.items()}, collate, eval_batch_size),
            glue_eval(spec, {s: p[0] for s, p in parts.items()}, collate, eval_batch_size),
        )
        n_dev = {s: len(p[1]) for s, p in parts.items()} | {SELECT + s: len(p[0]) for s, p in parts.items()}
    return TaskObjective(
        spec=spec,
        dataset=train_set,
        collate_fn=collate,
        loss_fn=LOSSES[spec.kind],
        eval_fn=eval_fn,
        metric=metric,
        n_train=len(train_set),
        n_dev=n_dev,
        skipped=skipped,
    )


# --------------------------------------------------------------------------- the model


# Norm layers a task head may hold (ModernBERT's has a LayerNorm without bias): weight 1, bias 0.
_NORMS = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)


def reset_head(model: nn.Module, seed: int) -> None:
    """Re-initialise everything outside the encoder (the task head) from `seed`, BERT-style.

    A checkpoint that already carries a head (e.g. one fine-tuned on another task) would otherwise
    start from it; TAMT §3.3 fine-tunes with a randomly initialised classifier. Biases and norm
    weights are optional (bias-free heads exist). A head module of another kind is refused: keeping
    its trained weights would break that rule without a word.
    """
    inside = {id(m) for m in encoder_of(model).modules()}
    gen = torch.Generator().manual_seed(seed)
    std = getattr(getattr(model, "config", None), "initializer_range", 0.02)
    with torch.no_grad():
        for name, module in model.named_modules():
            if id(module) in inside or not any(True for _ in module.parameters(recurse=False)):
                continue
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.empty(module.weight.shape).normal_(0.0, std, generator=gen))
            elif not isinstance(module, _NORMS):
                raise TicketlabError(
                    f"{type(model).__name__}: cannot re-initialise its task head's {name} "
                    f"({type(module).__name__}): ticketlab resets Linear and norm layers only"
                )
            elif module.weight is not None:
                module.weight.fill_(1.0)
            if getattr(module, "bias", None) is not None:  # RMSNorm has none at all
                module.bias.zero_()


def load_task_model(
    model: str | os.PathLike,
    task: str | TaskSpec,
    seed: int = 1,
    *,
    mask: str | os.PathLike | None = None,
    check_hash: bool = True,
    classifier_dropout: float | None = None,
) -> tuple[PreTrainedModel, MaskConfig | None]:
    """The pre-trained model with a fresh task head seeded by `seed`, and the mask attached (if any).
    `classifier_dropout`: the dropout before the task head (None: the model config's)."""
    spec = get_task(task)
    torch.manual_seed(seed)  # weights missing from the checkpoint (e.g. BERT's pooler after MLM)
    if spec.kind == "squad":
        net = load_model(model, head="qa")
    else:
        labels = list(spec.labels or ["score"])
        net = load_model(
            model,
            head="seq-cls",
            num_labels=spec.num_labels,
            problem_type="regression" if spec.kind == "regression" else "single_label_classification",
            id2label=dict(enumerate(labels)),
            label2id={lab: i for i, lab in enumerate(labels)},
            ignore_mismatched_sizes=True,  # a checkpoint with another task's head
            **({"classifier_dropout": classifier_dropout} if classifier_dropout is not None else {}),
        )
    reset_head(net, seed)
    mask_config = load_mask_onto(net, mask, check_hash=check_hash) if mask is not None else None
    return net, mask_config
