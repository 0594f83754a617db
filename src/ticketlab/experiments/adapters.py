"""What a sweep calls besides mask searches: fine-tuning a (model, mask) on a task, and measuring the
pre-training (MLM / KD) dev loss of a subnetwork.

The runner sees only the small job/output dataclasses below, so tests inject fast fakes and the
shipped runner calls the real library functions (`ticketlab.finetune`, `ticketlab.pretrain_eval`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    score: float  # its best dev value during fine-tuning (what the papers report)
    final_score: float | None = None  # its value at the last evaluation
    best: dict[str, Any] = field(default_factory=dict)  # every metric at the best evaluation
    final: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    time_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


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
# `ticketlab evaluate-pretrain` options a spec may set in `pretrain_eval:`.
PRETRAIN_EVAL_SETTINGS = frozenset(
    {"max_length", "max_blocks", "batch_size", "seed", "no_kd", "ignore_mlm_head", "cache_dir"}
)


def finetune_settings() -> frozenset[str]:
    """Keys a spec may give in `finetune:` or per task: `steps` (a cap on the task's default epochs),
    `train_size`, and every field of `ticketlab.finetune.FinetuneConfig` the sweep does not set."""
    import dataclasses

    from ..finetune import FinetuneConfig

    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    return frozenset({"steps", "train_size"} | (fields - _FINETUNE_OWN))


def finetune_non_result() -> frozenset[str]:
    """Fine-tuning settings that do not change the result (left out of a run's identity)."""
    from ..finetune import FinetuneConfig

    return frozenset(FinetuneConfig.NON_RESULT)


def finetune_unavailable() -> str | None:
    try:
        import ticketlab.finetune  # noqa: F401
    except ImportError as e:
        return f"fine-tuning is not available ({e})"
    return None


def pretrain_eval_unavailable() -> str | None:
    try:
        import ticketlab.pretrain_eval  # noqa: F401
    except ImportError as e:
        return f"pre-training evaluation is not available ({e})"
    return None


def real_finetune(job: FinetuneJob) -> FinetuneOutput:
    """One run of `ticketlab.finetune.finetune` (resumable: an interrupted run continues from its
    checkpoint in `job.out_dir`, a finished one returns its saved result)."""
    import sys

    from ..finetune import FinetuneConfig, finetune

    settings = dict(job.settings)
    steps = settings.pop("steps", None)
    settings.setdefault("progress", sys.stderr.isatty())
    config = FinetuneConfig(
        model=job.model,
        task=job.task,
        data_dir=job.data,
        mask=str(job.mask_dir) if job.mask_dir is not None else None,
        seed=job.seed,
        max_steps=steps,
        train_samples=job.train_size,
        **settings,
    )
    r = finetune(config, job.out_dir)
    return FinetuneOutput(
        metric=r.metric,
        score=r.best_score,
        final_score=r.final_score,
        best=r.best,
        final=r.final,
        steps=r.steps,
        time_s=r.train_time_s,
        history=r.history,
    )


def real_pretrain_eval(job: PretrainEvalJob) -> dict[str, float]:
    """`ticketlab evaluate-pretrain` on the corpus's dev text: MLM loss/accuracy, KD loss."""
    from ..files import read_json

    out = job.out_dir / "pretrain_eval.json"
    argv = ["evaluate-pretrain", "--model", job.model, "--corpus", *job.corpus["dev"], "--out", str(out)]
    argv += ["--mask", str(job.mask_dir)] if job.mask_dir is not None else ["--full"]
    argv += cli_argv({"text_column": job.corpus.get("text_column"), **job.settings})
    run_verb(argv, job.out_dir / "evaluate.log")
    (row,) = read_json(out, "evaluation result")
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# --------------------------------------------------------------------------- verbs in-process


def cli_argv(settings: dict[str, Any]) -> list[str]:
    """{"batch_size": 16, "freeze_head": True, "x": None} -> ["--batch-size", "16", "--freeze-head"]."""
    argv: list[str] = []
    for k, v in settings.items():
        flag = "--" + k.replace("_", "-")
        if v is None or v is False:
            continue
        if v is True:
            argv.append(flag)
        elif isinstance(v, (list, tuple)):
            argv += [flag, *map(str, v)]
        else:
            argv += [flag, str(v)]
    return argv


def run_verb(argv: list[str], log_path: Path) -> None:
    """Run `ticketlab ARGV` in this process, its output appended to `log_path`; its errors propagate
    (a `TicketlabError` is recorded as the run's error by the sweep)."""
    import contextlib
    import io
    import sys

    from ..cli import build_parser
    from ..errors import ConfigError

    log_path.parent.mkdir(parents=True, exist_ok=True)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit:  # argparse: a setting the verb does not take, or a bad value
        msg = err.getvalue().strip().splitlines()
        raise ConfigError(
            f"ticketlab {' '.join(argv[:2])}: {msg[-1] if msg else 'invalid arguments'}"
        ) from None
    with open(log_path, "a") as log, contextlib.redirect_stdout(log):
        # Progress bars (stderr) stay on a terminal; anywhere else they go to the log too.
        quiet = contextlib.nullcontext() if sys.stderr.isatty() else contextlib.redirect_stderr(log)
        with quiet:
            print(f"$ ticketlab {' '.join(argv)}", flush=True)
            rc = args._run(args)
    if rc:
        raise ConfigError(f"ticketlab {argv[0]} exited with status {rc} (see {log_path})")
