"""What a sweep calls besides mask searches: fine-tuning a (model, mask) on a task, and measuring the
pre-training (MLM / KD) dev loss of a subnetwork.

The runner sees only the small job/output dataclasses below, so tests inject fast fakes and the
shipped runner calls the library's verb functions (`ticketlab.finetune`,
`ticketlab.evaluate_pretraining`), never the command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ticketlab  # `ticketlab.finetune` is imported on first use: reading a spec loads no torch

from ...core.checks import is_number, not_result
from ...core.files.owned import open_append
from ...core.progress import logs_to
from ...verbs.evaluate_pretrain import MASK_OPTIONS, PretrainEvalConfig, evaluate_pretraining
from ...verbs.finetune_config import FinetuneConfig


@dataclass
class FinetuneJob:
    model: str  # base model: local directory or hub id
    mask_dir: Path | None  # None: the dense model
    task: str  # task name in the task registry
    data: str | None  # task data directory
    seed: int
    train_size: int | None  # number of training examples (None: the whole training set)
    settings: dict[str, Any]  # fine-tuning settings from the spec (steps, lr, batch_size, ...)
    out_dir: Path  # checkpoints, logs; the same directory on a resume


@dataclass
class FinetuneOutput:
    metric: str  # the task's main metric
    score: float  # the score the run reports (`FinetuneResult.reported_score`)
    final_score: float  # its value at the last evaluation
    best: dict[str, Any] = field(default_factory=dict)  # every metric at the best evaluation
    final: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    time_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    # the reported evaluation's per-example predictions and labels (`tasks.predictions`; None: none
    # kept, as for SQuAD): `studies.rows.finish` moves them to the store's `predictions` table
    predictions: dict[str, Any] | None = None


@dataclass
class PretrainEvalJob:
    model: str
    mask_dir: Path | None
    corpus: dict[str, Any]  # resolved corpus block of the spec
    settings: dict[str, Any]  # the spec's `pretrain_eval` block
    out_dir: Path


FinetuneFn = Callable[[FinetuneJob], FinetuneOutput]
PretrainEvalFn = Callable[[PretrainEvalJob], dict[str, float]]  # e.g. {"mlm_loss": 2.1, "kd_loss": 0.3}

# Fine-tuning settings the sweep sets itself, or names in its own words (`steps`, `train_size`).
_FINETUNE_OWN = frozenset(
    {"model", "task", "data_dir", "mask", "seed", "max_steps", "train_samples", "data_seed", "progress"}
)
# `ticketlab evaluate-pretrain` options a spec may set in `pretrain_eval:` (`PretrainEvalConfig` fields).
PRETRAIN_EVAL_SETTINGS = frozenset(
    {"max_length", "max_blocks", "batch_size", "seed", "no_kd", "ignore_mlm_head", "cache_dir"}
    | {"mlm_head", "decoder", "kd_input"}
)


def pretrain_eval_changed(settings: dict[str, Any]) -> dict[str, Any]:
    """The defaults a mask's pre-training evaluation runs under where the spec names none (dense
    decoder, KD on clean text, the original MLM head): part of the run's identity (`plan`)."""
    changed: dict[str, Any] = {}
    if settings.get("decoder") is None:
        changed["decoder"] = "dense"
    if settings.get("kd_input") is None and not settings.get("no_kd"):
        changed["kd_input"] = "clean"
    if settings.get("mlm_head") is None and not settings.get("ignore_mlm_head"):
        changed["mlm_head"] = "original"
    return changed


def finetune_settings() -> frozenset[str]:
    """Keys a spec may give in `finetune:` or per task: `steps` (a cap on the task's default epochs),
    `train_size`, and every field of `ticketlab.verbs.finetune.FinetuneConfig` the sweep does not set."""
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    return frozenset({"steps", "train_size"} | (fields - _FINETUNE_OWN))


def finetune_non_result() -> frozenset[str]:
    """Fine-tuning settings that do not change the result (left out of a run's identity)."""
    return frozenset(not_result(FinetuneConfig))


def finetune_config(job: FinetuneJob):
    """The `FinetuneConfig` of a job (the spec's `steps` is its `max_steps`, `train_size` its
    `train_samples`): what the run uses, and what the dry run builds to refuse bad values early."""
    settings = dict(job.settings)
    steps = settings.pop("steps", None)
    settings.setdefault("progress", sys.stderr.isatty())
    return FinetuneConfig(
        model=job.model,
        task=job.task,
        data_dir=job.data,
        mask=str(job.mask_dir) if job.mask_dir is not None else None,
        seed=job.seed,
        max_steps=steps,
        train_samples=job.train_size,
        **settings,
    )


def real_finetune(job: FinetuneJob) -> FinetuneOutput:
    """One run of `ticketlab.verbs.finetune.finetune` (resumable: an interrupted run continues from its
    checkpoint in `job.out_dir`, a finished one returns its saved result)."""
    r = ticketlab.finetune(finetune_config(job), job.out_dir)
    return FinetuneOutput(
        metric=r.metric,
        score=r.reported_score,
        final_score=r.final_score,
        best=r.best,
        final=r.final,
        steps=r.steps,
        time_s=r.train_time_s,
        history=r.history,
        predictions=r.predictions,
    )


def pretrain_eval_config(job: PretrainEvalJob):
    """The `PretrainEvalConfig` of a job (built by the run, and by the dry run to check it)."""
    settings = {k: v for k, v in job.settings.items() if v is not None}
    if job.mask_dir is None:  # the full model's row: how masks are scored says nothing of it
        settings = {k: v for k, v in settings.items() if k not in MASK_OPTIONS}
    if job.corpus.get("text_column") is not None:
        settings["text_column"] = job.corpus["text_column"]
    return PretrainEvalConfig(
        corpus=job.corpus["dev"],
        model=job.model,
        masks=[job.mask_dir] if job.mask_dir is not None else [],
        full=job.mask_dir is None,
        out=job.out_dir / "pretrain_eval.json",
        progress=sys.stderr.isatty(),
        **settings,
    )


def real_pretrain_eval(job: PretrainEvalJob) -> dict[str, float]:
    """`ticketlab.evaluate_pretraining` on the corpus's dev text: MLM loss/accuracy, KD loss."""
    config = pretrain_eval_config(job)
    with logged(job.out_dir / "evaluate.log", f"evaluate-pretrain {job.mask_dir or 'full'}"):
        (row,) = evaluate_pretraining(config)
    return {k: float(v) for k, v in row.items() if is_number(v)}


@contextlib.contextmanager
def logged(log_path: Path, what: str) -> Iterator[None]:
    """Append a library call's messages (the `ticketlab` logger, stdout, and stderr when it is not a
    terminal: progress bars) to `log_path`; its errors propagate (the sweep records them)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open_append(log_path) as f, contextlib.redirect_stdout(f):
        quiet = contextlib.nullcontext() if sys.stderr.isatty() else contextlib.redirect_stderr(f)
        with quiet, logs_to("ticketlab", logging.INFO, logging.StreamHandler(f)):
            print(f"# {what}", flush=True)
            yield
