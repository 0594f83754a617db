"""Fine-tune a subnetwork (model + mask) on a downstream task: the transfer step of TAMT §3.3.

The mask is applied as a fixed `BinaryMask` parametrization and stays on during fine-tuning, so
pruned weights are exactly zero at every step while all unpruned weights and a freshly initialised
task head train (AdamW, linear decay; defaults from TAMT Table 1 via the task's `TaskSpec`). The
dev set is scored every `eval_every` steps and the *best* dev score is reported, as the papers do,
together with the final one. Without a mask the same code fine-tunes the full model (the baseline).

Pieces, from the bottom up:

* `task_objective(task, tokenizer, data_dir)`: a task as (dataset, collate_fn, loss_fn, eval_fn,
  metric), ready for `training.train`; task-specific IMP builds on it.
* `load_task_model(model, task, seed, mask=...)`: the pre-trained encoder with a fresh seeded head
  and the mask attached.
* `finetune(FinetuneConfig(...), out_dir)`: one run, resumable and idempotent: a finished run
  directory returns its saved `FinetuneResult`, an interrupted one resumes from its checkpoint, and
  a directory holding another configuration is refused.
* `finetune_seeds(config, seeds, out_dir)`: one run per seed in `out_dir/seed-<s>/`, mean ± std in
  `out_dir/results.json`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .data.features import Features, length_sorted_batches, pad_collate
from .data.glue import load_features, task_dir
from .data.squad import SquadExamples, best_answers, load_squad_features
from .errors import ConfigError, TicketlabError
from .files import atomic_write_json, claim_dir, content_key, read_json
from .masking import MaskConfig, current_mask, export_pretrained, load_mask_onto
from .masking.apply import plain_name
from .masking.io import library_versions
from .metrics import GLUE_METRICS, squad_metrics
from .modeling import encoder_of, fit_max_length, load_config, load_model, load_tokenizer
from .rundir import RunDir, check_same_run
from .tasks import BUILTIN, TaskSpec, get_task, metric_key
from .training import CollateFn, EvalFn, LossFn, TrainConfig, make_accelerator, train
from .validation import (
    Fraction,
    NonNegFloat,
    NonNegInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    check_config,
    check_distinct,
    not_result,
    option,
)

log = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CONFIG_FILE, RESULT_FILE, MODEL_DIR, SUMMARY_FILE = "config.json", "result.json", "model", "results.json"


# --------------------------------------------------------------------------- configuration


@dataclass
class FinetuneConfig:
    """One fine-tuning run. `None` hyper-parameters take the task's defaults (TAMT Table 1)."""

    model: str  # pre-trained model: local dir or hub id
    task: str = option(help=f"{' '.join(BUILTIN)}, a custom task id or a task.json", metavar="TASK")
    data_dir: str | None = option(None, "GLUE root or task folder (default: the hub, online)", metavar="DIR")
    mask: str | None = option(None, "mask directory (default: the full model)", metavar="MASK_DIR")
    seed: int = 1  # head init, dropout, data order
    lr: PositiveFloat | None = option(None, "peak learning rate")
    batch_size: PositiveInt | None = option(None, "global batch size")
    max_length: PositiveInt | None = option(None, "tokens per example (SQuAD: per window)")
    epochs: PositiveFloat | None = option(None, "passes over the training set")
    max_steps: PositiveInt | None = option(  # caps ceil(epochs * n_train / batch_size)
        None, "cap on the number of optimizer steps (quick runs)"
    )
    eval_every: PositiveInt | None = option(None, "steps between dev evaluations", metavar="STEPS")
    train_samples: PositiveInt | None = option(  # data scarcity, TAMT Fig. 9
        None, "seeded subset of N training examples", metavar="N"
    )
    data_seed: int | None = option(None, "seed of that subset (default: the run seed)")
    eval_samples: PositiveInt | None = option(
        None, "score only the first N dev examples (not for reporting)", metavar="N"
    )
    # Pick the best step on a seeded fraction of the dev set and report the rest (super tickets select
    # on 10% of dev and report the other 90%); None: the whole dev set does both.
    select_fraction: OpenFraction | None = None
    select_seed: int = 0
    warmup_ratio: Fraction = option(0.0, "fraction of the steps with a linear warm-up")
    warmup_steps: NonNegInt | None = None  # overrides warmup_ratio
    weight_decay: NonNegFloat = option(0.0, "AdamW weight decay")
    max_grad_norm: PositiveFloat | None = 1.0  # None: no clipping (0 would zero every gradient)
    grad_accum: PositiveInt = option(1, "micro-batches per optimizer step")
    metric: str | None = option(None, "metric that picks the best step (default: the task's main metric)")
    mixed_precision: Literal["no", "fp16", "bf16"] = option("no", "autocast precision")
    doc_stride: PositiveInt = option(
        128, "SQuAD: tokens shared by consecutive context windows (transformers run_qa convention)"
    )
    n_best: PositiveInt = option(20, "SQuAD: span candidates per window")
    max_answer_length: PositiveInt = option(30, "SQuAD: longest answer, in tokens")
    # result=False: no change to what the run computes, so left out of its fingerprint (`not_result`)
    eval_batch_size: PositiveInt = option(64, "batch size of dev evaluations", result=False)
    check_hash: bool = option(
        True, "apply the mask even if it was found on other weights", flag="--ignore-hash", result=False
    )
    save_model: bool = option(False, "also save the fine-tuned weights (zeros in place)", result=False)
    save_every: PositiveInt | None = option(
        100, "checkpoint interval (resume point)", metavar="STEPS", result=False
    )
    keep_checkpoint: bool = option(False, "keep checkpoint.pt when a run finishes", result=False)
    progress: bool = option(True, "no progress bar", result=False)

    def __post_init__(self) -> None:
        check_config(self)  # types and ranges, from the annotations: e.g. batch_size "four", lr nan
        if self.batch_size is not None and self.batch_size % self.grad_accum:
            raise ConfigError(
                f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **kw: Any) -> FinetuneConfig:
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class Hyper:
    """The hyper-parameters a run actually uses (config values, else the task's defaults)."""

    lr: float
    batch_size: int
    max_length: int
    epochs: float
    eval_every: int
    metric: str

    @classmethod
    def of(cls, config: FinetuneConfig, spec: TaskSpec) -> Hyper:
        metric = config.metric or spec.main
        if metric not in spec.metric_keys():
            raise ConfigError(f"task '{spec.id}' has no metric '{metric}' (it has {spec.metric_keys()})")
        return cls(
            lr=config.lr or spec.lr,
            batch_size=config.batch_size or spec.batch_size,
            max_length=config.max_length or spec.max_length,
            epochs=config.epochs or spec.epochs,
            eval_every=config.eval_every or spec.eval_every,
            metric=metric,
        )


def _fit_doc_stride(config: FinetuneConfig, spec: TaskSpec, length: int) -> FinetuneConfig:
    """SQuAD windows overlap by doc_stride tokens, which must be fewer than the window's. The default
    stride (128 of the default 384 tokens) follows a length fitted to a smaller model: a third of it,
    with one notice; a stride that does not fit a length the user gave is refused before any work."""
    if spec.kind != "squad" or config.doc_stride < length:
        return config
    default = FinetuneConfig.__dataclass_fields__["doc_stride"].default
    if config.max_length is None and config.doc_stride == default:
        stride = max(1, length // 3)
        print(f"note: max_length is {length}: doc_stride is {stride} (default {default})", file=sys.stderr)
        return config.replace(doc_stride=stride)
    raise ConfigError(
        f"doc_stride {config.doc_stride} must be smaller than max_length {length} (SQuAD windows)"
    )


def fingerprint(config: FinetuneConfig, spec: TaskSpec) -> dict[str, Any]:
    """What determines a run's result: the config's result-affecting fields and the task spec."""
    fields = {k: v for k, v in config.to_dict().items() if k not in not_result(FinetuneConfig)}
    return {"config": fields, "task": spec.to_dict()}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the task as an objective


def forward(model: nn.Module, batch: dict[str, Tensor]) -> Any:
    """The model's output for the batch's model inputs (labels and bookkeeping columns left out)."""
    return model(**{k: batch[k] for k in MODEL_INPUTS if k in batch})


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


@torch.inference_mode()
def predict(
    model: nn.Module,
    features: Features,
    collate: CollateFn,
    batch_size: int,
    outputs: Callable[[Any], list[Tensor]],
    per_token: bool = False,
) -> list[list[np.ndarray]]:
    """Per-example model outputs in dataset order: `outputs(model_output)` picks (B, ...) tensors.

    With `per_token` they are (B, T) and each row is cut to the example's own length. Batches are
    length-sorted so that little is spent on padding.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = features.lengths()
    results: list[list[np.ndarray]] = [[] for _ in range(len(features))]
    try:
        for idx in length_sorted_batches(lengths, batch_size):
            batch = collate([features[i] for i in idx], None)
            batch = {k: v.to(device) for k, v in batch.items()}
            tensors = [t.float().cpu().numpy() for t in outputs(forward(model, batch))]
            for row, i in enumerate(idx):
                results[i] = [t[row, : lengths[i]] if per_token else t[row] for t in tensors]
    finally:
        model.train(was_training)
    return results


def _glue_eval(spec: TaskSpec, dev: dict[str, Features], collate: CollateFn, batch_size: int) -> EvalFn:
    def evaluate(model: nn.Module) -> dict[str, float]:
        out: dict[str, float] = {}
        for split, feats in dev.items():
            logits = np.stack(
                [r[0] for r in predict(model, feats, collate, batch_size, lambda o: [o.logits])]
            )
            preds = logits[:, 0] if spec.kind == "regression" else logits.argmax(-1)  # (N,)
            labels = feats.columns["labels"]
            for m in spec.metrics:
                out[metric_key(m, split, spec.eval_splits)] = GLUE_METRICS[m](preds, labels)
        return out

    return evaluate


SELECT = "select_"  # prefix of the scores on the selection part of the dev set


MIN_SPLIT = 4  # examples on each side of a selection split: fewer score in steps of > 25 points


def split_dev(features: Features, fraction: float, seed: int) -> tuple[Features, Features]:
    """(selection part, report part) of a dev set: round(fraction · n) seeded examples, and the rest.
    Each part needs MIN_SPLIT examples: a score on one example is 0 or 100, and would pick a step or
    a level (or be reported) on chance alone."""
    n = len(features)
    k = round(fraction * n)
    if min(k, n - k) < MIN_SPLIT:
        raise ConfigError(
            f"select_fraction {fraction:g} of a dev set of {n} examples leaves {k} to select on and "
            f"{n - k} to report: each side needs at least {MIN_SPLIT} (fewer score in steps of more than "
            f"{100 // MIN_SPLIT} points, so picks and reports would be chance)"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return features.subset(sorted(order[:k])), features.subset(sorted(order[k:]))


def _selected_eval(report: EvalFn, select: EvalFn) -> EvalFn:
    def evaluate(model: nn.Module) -> dict[str, float]:
        return {**report(model), **{SELECT + k: v for k, v in select(model).items()}}

    return evaluate


def _squad_eval(
    examples: SquadExamples,
    feats: Features,
    collate: CollateFn,
    batch_size: int,
    n_best: int,
    max_answer_length: int,
) -> EvalFn:
    gold = dict(zip(examples.ids, examples.answers, strict=True))

    def evaluate(model: nn.Module) -> dict[str, float]:
        out = predict(model, feats, collate, batch_size, lambda o: [o.start_logits, o.end_logits], True)
        answers = best_answers(
            examples,
            feats,
            [r[0] for r in out],
            [r[1] for r in out],
            n_best=n_best,
            max_answer_length=max_answer_length,
        )
        return squad_metrics(answers, gold)

    return evaluate


@dataclass
class TaskObjective:
    """A downstream task as what `training.train` consumes, plus what was read."""

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
    seeded permutation: a smaller k's subset lies inside a larger one's (`experiments.adaptation`)."""
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
    n_best: int = 20,
    max_answer_length: int = 30,
    select_fraction: float | None = None,
    select_seed: int = 0,
) -> TaskObjective:
    """Read, tokenize (cached) and wrap a task: train set, collate, loss and the dev evaluation.

    With `select_fraction` the dev set is split (`split_dev`): `eval_fn` scores the rest under the
    plain metric names and the selection part under `select_<name>`.

    Use it with `load_task_model` and `training.train(model, params, obj.dataset, obj.collate_fn,
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
        return _squad_objective(*common, (doc_stride, n_best, max_answer_length))
    return _glue_objective(*common, (select_fraction, select_seed))


# --------------------------------------------------------------------------- the model


# Norm layers a task head may hold (ModernBERT's has a LayerNorm without bias): weight 1, bias 0.
_NORMS = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)


Sizes = tuple[int | None, int, int | None]  # (train_samples, data_seed, eval_samples)


def _squad_objective(
    spec: TaskSpec,
    tokenizer: PreTrainedTokenizerBase,
    data_dir: str | os.PathLike | None,
    max_length: int,
    sizes: Sizes,
    eval_batch_size: int,
    metric: str,
    squad: tuple[int, int, int],
) -> TaskObjective:
    """SQuAD: windows of `max_length` with `doc_stride`; a subset keeps every window of its questions."""
    (train_samples, data_seed, eval_samples), (doc_stride, n_best, max_answer_length) = sizes, squad
    train_set, train_ex = load_squad_features(
        spec, data_dir, "train", tokenizer, max_length, doc_stride, train=True
    )
    chosen = _subset(len(train_ex), train_samples, data_seed)
    if chosen is not None:  # keep every window of the chosen questions
        keep = np.isin(train_set.columns["example_index"], chosen)
        train_set = train_set.subset(np.flatnonzero(keep).tolist())
    split = spec.eval_splits[0]
    dev_set, dev_ex = load_squad_features(
        spec, data_dir, split, tokenizer, max_length, doc_stride, train=False
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
        eval_fn=_squad_eval(dev_ex, dev_set, inputs, eval_batch_size, n_best, max_answer_length),
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
    eval_fn = _glue_eval(spec, dev, collate, eval_batch_size)
    n_dev = {s: len(f) for s, f in dev.items()}
    if select_fraction is not None:
        parts = {s: split_dev(f, select_fraction, select_seed) for s, f in dev.items()}
        eval_fn = _selected_eval(
            _glue_eval(spec, {s: p[1] for s, p in parts.items()}, collate, eval_batch_size),
            _glue_eval(spec, {s: p[0] for s, p in parts.items()}, collate, eval_batch_size),
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
) -> tuple[PreTrainedModel, MaskConfig | None]:
    """The pre-trained model with a fresh task head seeded by `seed`, and the mask attached (if any)."""
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
        )
    reset_head(net, seed)
    mask_config = load_mask_onto(net, mask, check_hash=check_hash) if mask is not None else None
    return net, mask_config


# --------------------------------------------------------------------------- one run


@dataclass
class FinetuneResult:
    task: str
    metric: str  # the metric that picked `best`
    seed: int
    best: dict[str, Any]  # the eval record ({"step", every metric}) with the best `metric`
    final: dict[str, Any]  # the last eval record
    history: list[dict[str, Any]]
    steps: int
    epochs: float  # steps * batch / n_train
    n_train: int
    n_dev: dict[str, int]
    skipped: dict[str, int]
    sparsity: float  # of the mask's target weights (0 for the full model)
    mask: str | None
    train_time_s: float  # optimisation, summed over resumes
    eval_time_s: float
    wall_time_s: float  # this invocation
    resumed_from: int = 0
    out_dir: str | None = None
    model_dir: str | None = None
    selected_by: str | None = None  # the eval key that picked `best`, when not `metric` (select_fraction)

    @property
    def best_score(self) -> float:
        return float(self.best[self.metric])

    @property
    def final_score(self) -> float:
        return float(self.final[self.metric])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


INPUT_NAMES = {"model": "the model", "mask": "the mask", "data": "the task data", "task": "the task file"}


def input_content(config: FinetuneConfig, spec: TaskSpec) -> dict[str, str]:
    """Content keys of the local files a run reads (model weights, mask, task data, task file): the
    config names paths, and a path may get other bytes. Hub ids have none. Kept beside the
    fingerprint, not in it, so the ids of recorded runs stay as they are."""
    paths = input_paths(config)
    if config.data_dir is not None:
        paths["data"] = task_dir(spec, config.data_dir)  # the task's own folder, not the whole GLUE root
    keys = {k: content_key([p]) for k, p in paths.items() if p is not None}
    return {k: v for k, v in keys.items() if v is not None}


def _check_run_dir(
    out: Path, print_: dict[str, Any], config: FinetuneConfig, inputs: dict[str, str]
) -> FinetuneResult | None:
    """The saved result of the same finished run, None to (re)start, or an error for another config
    or changed inputs (`rundir.check_same_run`)."""
    cfg_path = out / CONFIG_FILE
    if not cfg_path.is_file():
        return None
    recorded = read_json(cfg_path, "run config")
    recorded = recorded if isinstance(recorded, dict) else {}
    where = input_paths(config)
    names = {f"{k} content": f"{v} at {where[k]}" if where.get(k) else v for k, v in INPUT_NAMES.items()}
    check_same_run(
        out,
        "run",
        _identity(recorded.get("fingerprint"), recorded.get("inputs")),
        _identity(print_, inputs),
        names,
    )
    done = _run_dir(out).finished()
    return FinetuneResult.from_dict(done) if done is not None else None


def _run_dir(out: Path) -> RunDir:
    """RUN_DIR: its identity is in `config.json` (`_check_run_dir` reads its nested record)."""
    return RunDir(out, "run", identity=CONFIG_FILE, result=RESULT_FILE)


def _identity(fingerprint: Any, inputs: Any) -> dict[str, Any]:
    """A fine-tuning's identity as one flat mapping: its settings, its task's spec, its inputs' keys."""
    fp = fingerprint if isinstance(fingerprint, dict) else {}
    config = fp.get("config") if isinstance(fp.get("config"), dict) else {}
    keys = inputs if isinstance(inputs, dict) else {}
    return {**config, "task spec": fp.get("task"), **{f"{k} content": v for k, v in keys.items()}}


def _params(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no decay on biases and LayerNorm weights (BERT's recipe), masked biases included
    (named `X.parametrizations.bias.original`)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            name = plain_name(name)
            (
                no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay
            ).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _objective(config: FinetuneConfig, spec: TaskSpec, hyper: Hyper, tokenizer: Any) -> TaskObjective:
    """The task's data, loss and dev evaluation at the run's resolved settings."""
    return task_objective(
        spec,
        tokenizer,
        config.data_dir,
        max_length=hyper.max_length,
        train_samples=config.train_samples,
        data_seed=config.seed if config.data_seed is None else config.data_seed,
        eval_samples=config.eval_samples,
        eval_batch_size=config.eval_batch_size,
        metric=hyper.metric,
        doc_stride=config.doc_stride,
        n_best=config.n_best,
        max_answer_length=config.max_answer_length,
        select_fraction=config.select_fraction,
        select_seed=config.select_seed,
    )


def _steps(config: FinetuneConfig, hyper: Hyper, n_train: int) -> int:
    """Optimizer steps: `hyper.epochs` over the training set, capped at `max_steps`."""
    steps = math.ceil(hyper.epochs * n_train / hyper.batch_size)
    if config.max_steps is None:
        return steps
    if config.max_steps > steps:  # a cap, not a target: say so, small subsets hit it often
        log.warning(
            "%s: %g epochs of %d examples are %d steps, fewer than max_steps %d "
            "(raise --epochs to train longer)",
            config.task,
            hyper.epochs,
            n_train,
            steps,
            config.max_steps,
        )
    return min(steps, config.max_steps)


def _train_config(
    config: FinetuneConfig, hyper: Hyper, spec: TaskSpec, steps: int, selected_by: str | None
) -> TrainConfig:
    warmup = config.warmup_steps if config.warmup_steps is not None else round(config.warmup_ratio * steps)
    return TrainConfig(
        max_steps=steps,
        batch_size=hyper.batch_size,
        lr=hyper.lr,
        weight_decay=config.weight_decay,
        warmup_steps=warmup,
        grad_accum=config.grad_accum,
        max_grad_norm=config.max_grad_norm,
        eval_every=hyper.eval_every,
        save_every=config.save_every,
        seed=config.seed,
        mixed_precision=config.mixed_precision,
        metric=selected_by or hyper.metric,
        progress=config.progress,
        desc=f"{spec.id} seed {config.seed}",
    )


def _write_config(out: Path, record: dict[str, Any], config: FinetuneConfig, mask_config: Any) -> None:
    """`config.json`: the fingerprint and its id, the content keys of the inputs, the resolved
    protocol, the whole config, the mask's config and the library versions."""
    print_ = record["fingerprint"]
    atomic_write_json(
        out / CONFIG_FILE,
        {
            "fingerprint": print_,
            "id": _digest(print_),
            "inputs": record["inputs"],
            "resolved": record["resolved"],
            "config": config.to_dict(),
            "mask": mask_config.to_dict() if mask_config is not None else None,
            "versions": library_versions(),
        },
    )


def _claim(
    out: Path, print_: dict[str, Any], config: FinetuneConfig, inputs: dict[str, str]
) -> FinetuneResult | None:
    """Claim the run directory; the saved result when this run finished there before."""
    if _is_main():
        _run_dir(out).claim("fine-tuning run", inputs=_inputs(config))
    done = _check_run_dir(out, print_, config, inputs)
    if done is not None and config.save_model and not (out / MODEL_DIR).is_dir():
        log.warning("%s: finished without --save-model; weights were not kept", out)
    return done


def _timed(eval_fn: EvalFn, timing: dict[str, float]) -> EvalFn:
    """`eval_fn`, adding its time to `timing["eval_time_s"]` (kept across a resume as extra state)."""

    def timed_eval(m: nn.Module) -> dict[str, float]:
        t0 = time.perf_counter()
        scores = eval_fn(m)
        timing["eval_time_s"] += time.perf_counter() - t0
        return scores

    return timed_eval


def _write_result(out: Path, result: FinetuneResult, *, keep_checkpoint: bool) -> None:
    _run_dir(out).finish(result.to_dict(), keep_checkpoint=keep_checkpoint)


def finetune(config: FinetuneConfig, out_dir: str | os.PathLike | None = None) -> FinetuneResult:
    """Fine-tune one (model, mask) on one task with one seed; see the module docstring.

    With `out_dir` the run writes `config.json`, `log.jsonl` (losses and evals), `result.json`
    (this `FinetuneResult`) and, with `save_model`, `model/` (a plain HF checkpoint, zeros in place).
    """
    t_start = time.perf_counter()
    spec = get_task(config.task, config.data_dir)
    hyper = Hyper.of(config, spec)
    length = fit_max_length(load_config(config.model), config.max_length, spec.max_length, what="max_length")
    hyper = dataclasses.replace(hyper, max_length=length)
    config = _fit_doc_stride(config, spec, length)  # before the fingerprint: the run records the stride used
    out = Path(out_dir) if out_dir is not None else None
    print_ = json.loads(json.dumps(fingerprint(config, spec), default=str))
    inputs = input_content(config, spec) if out is not None else {}
    if out is not None and (done := _claim(out, print_, config, inputs)) is not None:
        return done

    tokenizer = load_tokenizer(config.model)
    obj = _objective(config, spec, hyper, tokenizer)
    selected_by = SELECT + hyper.metric if config.select_fraction is not None else None
    steps = _steps(config, hyper, len(obj.dataset))
    train_config = _train_config(config, hyper, spec, steps, selected_by)
    model, mask_config = load_task_model(
        config.model, spec, config.seed, mask=config.mask, check_hash=config.check_hash
    )
    sparsity = current_mask(model).sparsity if mask_config is not None else 0.0
    acc = make_accelerator(train_config)
    if out is not None and acc.is_main_process:
        record = {
            "fingerprint": print_,
            "inputs": inputs,
            "resolved": {**dataclasses.asdict(hyper), "max_steps": steps},
        }
        _write_config(out, record, config, mask_config)

    timing = {"eval_time_s": 0.0}
    timed_eval = _timed(obj.eval_fn, timing)
    tr = train(
        model,
        _params(model, config.weight_decay),
        obj.dataset,
        obj.collate_fn,
        obj.loss_fn,
        train_config,
        out_dir=out,
        eval_fn=timed_eval,
        extra_state=(lambda: dict(timing), lambda s: timing.update(s)),
        accelerator=acc,
    )
    model_dir = None
    if config.save_model and out is not None and acc.is_main_process:
        model_dir = str(export_pretrained(model, out / MODEL_DIR, config=mask_config, tokenizer=tokenizer))
    result = FinetuneResult(
        task=spec.id,
        metric=hyper.metric,
        seed=config.seed,
        best=tr.best or {},
        final=tr.final or {},
        history=tr.history,
        steps=tr.steps,
        epochs=tr.steps * hyper.batch_size / max(1, obj.n_train),
        n_train=obj.n_train,
        n_dev=obj.n_dev,
        skipped=obj.skipped,
        sparsity=sparsity,
        mask=config.mask,
        train_time_s=round(tr.train_time_s, 3),
        eval_time_s=round(timing["eval_time_s"], 3),
        wall_time_s=round(time.perf_counter() - t_start, 3),
        resumed_from=tr.resumed_from,
        out_dir=str(out) if out is not None else None,
        model_dir=model_dir,
        selected_by=selected_by,
    )
    if out is not None and acc.is_main_process:
        _write_result(out, result, keep_checkpoint=config.keep_checkpoint)
    return result


# --------------------------------------------------------------------------- several seeds


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for a single run)."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}


def summarize(results: Sequence[FinetuneResult]) -> dict[str, Any]:
    """Mean ± std over seeds of every metric of the best and of the final eval records."""
    if not results:
        raise ValueError("no results to summarise")
    keys = [k for k in results[0].best if k != "step"]
    return {
        "task": results[0].task,
        "metric": results[0].metric,
        "mask": results[0].mask,
        "sparsity": results[0].sparsity,
        "seeds": [r.seed for r in results],
        "best": {k: mean_std([r.best[k] for r in results]) for k in keys},
        "final": {k: mean_std([r.final[k] for r in results]) for k in keys},
        "train_time_s": sum(r.train_time_s for r in results),
        "eval_time_s": sum(r.eval_time_s for r in results),
        "runs": [{k: v for k, v in r.to_dict().items() if k not in ("history",)} for r in results],
    }


def seed_dir(out_dir: str | os.PathLike, seed: int) -> Path:
    return Path(out_dir) / f"seed-{seed}"


def _is_main() -> bool:
    """The main process (under `accelerate launch`, before the accelerator exists): it owns RUN_DIR."""
    return os.environ.get("RANK", "0") == "0"


def input_paths(config: FinetuneConfig) -> dict[str, str | None]:
    """What a fine-tuning reads, by `INPUT_NAMES` key: its model, mask, data folder and task file."""
    return {
        "model": config.model,
        "mask": config.mask,
        "data": config.data_dir,
        "task": config.task if config.task.endswith(".json") else None,
    }


def _inputs(config: FinetuneConfig) -> list[str | None]:
    return list(input_paths(config).values())


def finetune_seeds(
    config: FinetuneConfig,
    seeds: Sequence[int],
    out_dir: str | os.PathLike,
    on_result: Callable[[FinetuneResult], None] | None = None,
) -> dict[str, Any]:
    """`finetune` once per seed into `out_dir/seed-<s>/`; the summary goes to `out_dir/results.json`."""
    check_distinct("seeds", seeds)
    # The task file, its data folder, the model and its tokenizer are checked before RUN_DIR is
    # made: a refused input leaves no output directory behind.
    spec = get_task(config.task, config.data_dir)
    if config.data_dir is not None and spec.kind != "squad":
        task_dir(spec, config.data_dir)
    load_config(config.model)
    load_tokenizer(config.model)
    if _is_main():
        claim_dir(out_dir, kind="fine-tuning output", inputs=_inputs(config))
    results = []
    for s in seeds:
        r = finetune(config.replace(seed=s), seed_dir(out_dir, s))
        results.append(r)
        if on_result is not None:
            on_result(r)
    summary = summarize(results)
    from accelerate import PartialState

    if PartialState().is_main_process:
        atomic_write_json(Path(out_dir) / SUMMARY_FILE, summary)
    return summary
