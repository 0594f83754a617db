"""What one fine-tuning run is asked: its settings, as given and as resolved against the task.

* `FinetuneConfig`: the settings (validated when built; field metadata carries the CLI's help text
  and says which fields leave the result unchanged: `option(..., result=False)`).
* `Hyper.of(config, spec)`: the hyper-parameters the run uses, the task's defaults (TAMT Table 1)
  where the config leaves them open; `fit_doc_stride` fits SQuAD's window stride to the length.
* `fingerprint(config, spec)`: what determines the run's result, hashed into its id
  (`verbs.finetune._write_config`) and compared on resume.
* `train_steps` and `loop_config`: the optimizer steps and the training loop's settings they make.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from dataclasses import dataclass
from typing import Any, Literal

from ..core.checks import (
    BlockLength,
    Epochs,
    FieldError,
    Fraction,
    LearningRate,
    NonNegInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Seed,
    WeightDecay,
    changed,
    check_config,
    option,
)
from ..core.digest import OMIT, run_identity
from ..core.errors import ConfigError
from ..tasks.registry import BUILTIN, DATA_DIR_HELP, SquadWindows, TaskSpec, readable_task
from ..train.config import TrainConfig

log = logging.getLogger(__name__)

# How a fine-tuning is run: ticketlab's own protocol, or MT-DNN's, as Liang et al. 2021 fine-tuned
# super tickets (train_rewind.py's defaults and scripts/rewind_mnli.sh: adamax, lr 5e-5, batch 32,
# 3 epochs, global clipping 1; --warmup 0.1, --max_seq_len 512; mt_dnn/model.py's decay 0.01 off
# biases and LayerNorm; the optimizer is `train.optim.MtdnnAdamax`)
Recipe = Literal["ticketlab", "mt-dnn"]
MTDNN = {"lr": 5e-5, "batch_size": 32, "epochs": 3.0, "warmup_ratio": 0.1, "weight_decay": 0.01}
MTDNN_MAX_LENGTH = 512  # a default, fitted to the model's positions as the task's is (`default_length`)
# The task head's dropout: glue_task_def.yml's dropout_p, else train_rewind.py's --dropout_p
MTDNN_DROPOUT = {"mnli": 0.2, "cola": 0.05}
MTDNN_OTHER_DROPOUT = 0.1


@dataclass
class FinetuneConfig:
    """One fine-tuning run. `None` hyper-parameters take the task's defaults (TAMT Table 1)."""

    model: str  # pre-trained model: local dir or hub id
    task: str = option(help=f"{' '.join(BUILTIN)}, a custom task id or a task.json", metavar="TASK")
    data_dir: str | None = option(None, DATA_DIR_HELP, metavar="DIR")
    mask: str | None = option(None, "mask directory (default: the full model)", metavar="MASK_DIR")
    seed: Seed = 1  # head init, dropout, data order
    lr: LearningRate | None = option(None, "peak learning rate")
    batch_size: PositiveInt | None = option(None, "global batch size")
    max_length: BlockLength | None = option(None, "tokens per example (SQuAD: per window)")
    epochs: Epochs | None = option(None, "passes over the training set")
    max_steps: PositiveInt | None = option(  # caps ceil(epochs * n_train / batch_size)
        None, "cap on the number of optimizer steps (quick runs)"
    )
    eval_every: PositiveInt | None = option(None, "steps between dev evaluations", metavar="STEPS")
    train_samples: PositiveInt | None = option(  # data scarcity, TAMT Fig. 9
        None, "seeded subset of N training examples", metavar="N"
    )
    data_seed: Seed | None = option(None, "seed of that subset (default: the run seed)")
    eval_samples: PositiveInt | None = option(
        None, "score only the first N dev examples (not for reporting)", metavar="N"
    )
    # Pick the best step on a seeded fraction of the dev set and report the rest (super tickets select
    # on 10% of dev and report the other 90%); None: the whole dev set does both.
    select_fraction: OpenFraction | None = option(
        None, "pick the reported step on this seeded fraction of dev and score it on the rest", metavar="F"
    )
    select_seed: Seed = option(0, "seed of that split of dev")
    # Which score a run reports (`FinetuneResult.reported_score`), part of its fingerprint. "held-out"
    # never reports a score from a step the same data chose: with `select_fraction`, the step its
    # selection part picked, scored on the rest of the dev set; without, the last evaluation (the
    # fixed schedule's end). "best-dev" is the papers' best dev score, chosen and reported on one dev
    # set (optimistic).
    checkpoint: Literal["held-out", "best-dev"] = option(
        "held-out", "which score is reported: held-out (never one the same data chose) or best-dev"
    )
    warmup_ratio: Fraction = option(0.0, "fraction of the steps with a linear warm-up")
    warmup_steps: NonNegInt | None = None  # overrides warmup_ratio
    weight_decay: WeightDecay = option(0.0, "AdamW weight decay")
    max_grad_norm: PositiveFloat | None = 1.0  # None: no clipping (0 would zero every gradient)
    grad_accum: PositiveInt = option(1, "micro-batches per optimizer step")
    metric: str | None = option(None, "metric that picks the best step (default: the task's main metric)")
    mixed_precision: Literal["no", "fp16", "bf16"] = option("no", "autocast precision")
    recipe: Recipe = option(
        "ticketlab",
        "mt-dnn: super tickets' fine-tuning as Liang et al. 2021 ran it (MT-DNN's train_rewind.py, "
        "scripts/rewind_*.sh): MT-DNN's Adamax (no bias correction) at lr 5e-5, batch 32, 3 epochs, a "
        "10% linear warm-up from lr 0, weight decay 0.01 off biases and LayerNorm, global clipping 1, "
        "max length 512, the classifier's dropout per task (glue_task_def.yml: MNLI 0.2, CoLA 0.05, "
        "else 0.1); an option given at another value than its default wins",
    )
    doc_stride: PositiveInt = option(
        128,
        "SQuAD: window k starts at context token k·doc_stride (--squad-windows step), or consecutive "
        "windows share doc_stride tokens (overlap)",
    )
    squad_windows: SquadWindows = option(
        "step",
        "SQuAD: step, as transformers 2.10's squad_convert_examples_to_features, which TAMT fine-tunes "
        "with (Liu et al. 2022; also BERT's run_squad); overlap, as transformers' run_qa",
    )
    n_best: PositiveInt = option(20, "SQuAD: span candidates per window")
    max_answer_length: PositiveInt = option(30, "SQuAD: longest answer, in tokens")
    # result=False: no change to what the run computes, so left out of its fingerprint (`run_identity`)
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
    # Left out of the run's identity, as `search` and `pretrain` leave it out: it changes how the same
    # steps are computed (fused kernels, their rounding), not which steps are taken.
    compile: bool = option(
        False,
        "torch.compile the model and loss (dynamic shapes: batches are padded to their longest "
        "example). On an H100 a dense BERT-base training step at 16 x 512 took 37 ms compiled "
        "against 51 ms eager, after minutes of compiling (fine-tuning itself not measured); on a CPU "
        "compiled mask-training steps ran several times slower",
        result=False,
    )

    def __post_init__(self) -> None:
        check_config(self)  # types and ranges, from the annotations: e.g. batch_size "four", lr nan
        # a task that does not exist ("sst-2") is refused now, naming the known ones, not at the run
        spec = readable_task(self.task, self.data_dir)  # and one with no data to read, said now
        if self.recipe == "mt-dnn" and spec.kind == "squad":
            raise FieldError("recipe", "MT-DNN's recipe is GLUE's (classification, regression)", self.recipe)
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


def with_recipe(config: FinetuneConfig) -> FinetuneConfig:
    """`config` with its recipe's values where it leaves a setting at its default (mt-dnn: `MTDNN`)."""
    if config.recipe != "mt-dnn":
        return config
    kept = changed(config, list(MTDNN))  # settings given: the recipe's value where one is left at its default
    given = {k: v for k, v in MTDNN.items() if k not in kept}
    if config.warmup_steps is not None:  # a warm-up in steps overrides the ratio
        given.pop("warmup_ratio", None)
    return config.replace(**given)


def default_length(config: FinetuneConfig, spec: TaskSpec) -> int:
    """The length a run takes when `max_length` is not given: the recipe's, else the task's."""
    return MTDNN_MAX_LENGTH if config.recipe == "mt-dnn" else spec.max_length


def classifier_dropout(config: FinetuneConfig, spec: TaskSpec) -> float | None:
    """The task head's dropout the recipe sets (None: the model's own)."""
    return MTDNN_DROPOUT.get(spec.id, MTDNN_OTHER_DROPOUT) if config.recipe == "mt-dnn" else None


def fit_doc_stride(config: FinetuneConfig, spec: TaskSpec, length: int) -> FinetuneConfig:
    """SQuAD's doc_stride (the step between windows, or their overlap) must be fewer tokens than a
    window's. The default
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
    """What determines a run's result: the config's result-affecting fields (SQuAD's windows on SQuAD
    alone) and the task spec."""
    windows = {} if spec.kind == "squad" else {"squad_windows": OMIT}
    return {"config": run_identity(config, values=windows), "task": spec.to_dict()}


def train_steps(config: FinetuneConfig, hyper: Hyper, n_train: int) -> int:
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


def loop_config(
    config: FinetuneConfig, hyper: Hyper, spec: TaskSpec, steps: int, selected_by: str | None
) -> TrainConfig:
    """The training loop's settings for `steps` optimizer steps of the run's resolved settings."""
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
        compile=config.compile,
        optimizer="adamax" if config.recipe == "mt-dnn" else "adamw",
        metric=selected_by or hyper.metric,
        progress=config.progress,
        desc=f"{spec.id} seed {config.seed}",
    )
