"""Fine-tune a subnetwork (model + mask) on a downstream task: the transfer step of TAMT §3.3.

The mask is applied as a fixed `BinaryMask` parametrization and stays on during fine-tuning, so
pruned weights are exactly zero at every step while all unpruned weights and a freshly initialised
task head train (AdamW, linear decay; defaults from TAMT Table 1 via the task's `TaskSpec`). The
dev set is scored every `eval_every` steps; the best and the final scores are kept, and the run
reports one that no data it is scored on chose (`FinetuneConfig.checkpoint`: the final one, or with
`select_fraction` the best step by a selection part of the dev set, scored on the rest; "best-dev"
reports the papers' best dev score), with that evaluation's per-example predictions (whichever step
it is, across a resume too; none for SQuAD). Without a mask the same code fine-tunes the full model
(the baseline).

* `finetune(FinetuneConfig(...), out_dir)`: one run, resumable and idempotent: a finished run
  directory returns its saved `FinetuneResult`, an interrupted one resumes from its checkpoint, and
  a directory holding another configuration is refused.
* `finetune_seeds(config, seeds, out_dir)`: one run per seed in `out_dir/seed-<s>/`, mean ± std in
  `out_dir/results.json`.

This module is the verb. The pieces it is made of live beside it, and their names import from here
as well: the settings in `finetune_config` (`FinetuneConfig`, `Hyper`, `fingerprint`); the run
directories in `finetune_dirs` (`input_paths`, `input_content`); the task as an objective in
`tasks.objective` (`task_objective`: dataset, collate_fn, loss_fn, eval_fn, metric for
`train.loop.train`; `load_task_model`: the encoder with a fresh seeded head and the mask attached);
the results in `finetune_results` (`FinetuneResult`, `summarize`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from torch import nn

from ..core.checks import check_distinct
from ..core.files.atomic import as_written, atomic_write_json
from ..core.outputs import check_output, claim_dir
from ..masks import current_mask, export_pretrained
from ..models.load import check_model, load_config, load_tokenizer
from ..models.source import fit_max_length
from ..tasks.evaluation import MODEL_INPUTS, SELECT, predict, split_dev
from ..tasks.glue import task_dir
from ..tasks.objective import (
    LOSSES,
    TaskObjective,
    classification_loss,
    load_task_model,
    regression_loss,
    reset_head,
    span_loss,
    task_objective,
)
from ..tasks.registry import TaskSpec, get_task
from ..train.config import PAYLOAD, EvalFn, TrainConfig, TrainResult, eval_payload
from ..train.loop import train
from ..train.processes import make_accelerator
from ..train.schedule import decay_groups
from .finetune_config import (
    FinetuneConfig,
    Hyper,
    classifier_dropout,
    default_length,
    fingerprint,
    fit_doc_stride,
    loop_config,
    train_steps,
    with_recipe,
)
from .finetune_dirs import (
    INPUT_NAMES,
    MODEL_DIR,
    OUTPUT_KIND,
    RUN_KIND,
    _check_run_dir,
    _finished,
    _inputs,
    _is_main,
    _run_dir,
    _write_config,
    _write_result,
    input_content,
    input_paths,
)
from .finetune_results import SUMMARY_FILE, FinetuneResult, mean_std, seed_dir, summarize

__all__ = [  # the verb, and the names of its pieces that users import from here
    "INPUT_NAMES",
    "LOSSES",
    "MODEL_INPUTS",
    "SELECT",
    "FinetuneConfig",
    "FinetuneResult",
    "Hyper",
    "TaskObjective",
    "check_run",
    "classification_loss",
    "fingerprint",
    "finetune",
    "finetune_seeds",
    "input_content",
    "input_paths",
    "load_task_model",
    "mean_std",
    "predict",
    "regression_loss",
    "reset_head",
    "seed_dir",
    "span_loss",
    "split_dev",
    "summarize",
    "task_objective",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- one run


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
        squad_windows=config.squad_windows,
        n_best=config.n_best,
        max_answer_length=config.max_answer_length,
        select_fraction=config.select_fraction,
        select_seed=config.select_seed,
    )


def _timed(eval_fn: EvalFn, timing: dict[str, float]) -> EvalFn:
    """`eval_fn`, adding its time to `timing["eval_time_s"]` (kept across a resume as extra state),
    and leaving what it left (its per-example predictions) to the loop."""

    def timed_eval(m: nn.Module) -> dict[str, float]:
        t0 = time.perf_counter()
        scores = eval_fn(m)
        timing["eval_time_s"] += time.perf_counter() - t0
        setattr(timed_eval, PAYLOAD, eval_payload(eval_fn))
        return scores

    return timed_eval


@dataclasses.dataclass
class _Run:
    """One fine-tuning, resolved and checked before anything is read or made: its settings, its
    output directory (None: none), its identity, and its saved result when it finished before."""

    config: FinetuneConfig
    spec: TaskSpec
    hyper: Hyper
    out: Path | None
    fingerprint: dict[str, Any]
    inputs: dict[str, str]
    done: FinetuneResult | None


@dataclasses.dataclass
class _Loaded:
    """What a run reads, read: a refused input (a corrupt mask, a NaN label, an empty file) is
    refused while loading, before the run's directory is made."""

    tokenizer: Any
    obj: TaskObjective
    train_config: TrainConfig
    model: nn.Module
    mask_config: Any
    started: float  # perf_counter() when the run began: its wall time counts from here


def _plan(config: FinetuneConfig, out_dir: str | os.PathLike | None) -> _Run:
    """The run `config` describes in `out_dir`: its settings resolved against the task and model, its
    directory checked (a user's folder, or a run with other settings, refused) without making it."""
    spec = get_task(config.task, config.data_dir)
    config = with_recipe(config)  # before the fingerprint: the run records the values it used
    hyper = Hyper.of(config, spec)
    default = default_length(config, spec)
    length = fit_max_length(load_config(config.model), config.max_length, default, what="max_length")
    hyper = dataclasses.replace(hyper, max_length=length)
    config = fit_doc_stride(config, spec, length)  # before the fingerprint: the run records the stride used
    out = Path(out_dir) if out_dir is not None else None
    print_ = json.loads(json.dumps(fingerprint(config, spec), default=str))
    inputs = input_content(config, spec) if out is not None else {}
    done = None
    if out is not None:
        check_output(out, kind=RUN_KIND, inputs=_inputs(config))
        done = _check_run_dir(out, print_, config, inputs)
        if done is not None and config.save_model and not (out / MODEL_DIR).is_dir():
            log.warning("%s: finished without --save-model; weights were not kept", out)
    return _Run(config, spec, hyper, out, print_, inputs, done)


def _load(run: _Run) -> _Loaded:
    """Read the run's tokenizer, task data, model and mask (nothing is written)."""
    started = time.perf_counter()
    config, hyper = run.config, run.hyper
    tokenizer = load_tokenizer(config.model)
    obj = _objective(config, run.spec, hyper, tokenizer)
    selected_by = SELECT + hyper.metric if config.select_fraction is not None else None
    steps = train_steps(config, hyper, len(obj.dataset))
    train_config = loop_config(config, hyper, run.spec, steps, selected_by)
    model, mask_config = load_task_model(
        config.model,
        run.spec,
        config.seed,
        mask=config.mask,
        check_hash=config.check_hash,
        classifier_dropout=classifier_dropout(config, run.spec),
    )
    return _Loaded(tokenizer, obj, train_config, model, mask_config, started)


def check_run(config: FinetuneConfig, out_dir: str | os.PathLike) -> None:
    """What `finetune(config, out_dir)` refuses of its settings and folder (a run there with other
    settings, a user's folder), checked without running or writing: a study checks all its runs so."""
    _plan(config, out_dir)


def finetune(config: FinetuneConfig, out_dir: str | os.PathLike | None = None) -> FinetuneResult:
    """Fine-tune one (model, mask) on one task with one seed; see the module docstring.

    With `out_dir` the run writes `config.json`, `log.jsonl` (losses and evals), `result.json`
    (this `FinetuneResult`) and, with `save_model`, `model/` (a plain HF checkpoint, zeros in place).
    Every input is read before `out_dir` is made: a refused one leaves nothing behind.
    """
    run = _plan(config, out_dir)
    if run.done is not None:
        return _finished(run.out, run.done, keep_checkpoint=config.keep_checkpoint)
    _refuse_held([run])
    return _train(run, _load(run))


def _refuse_held(runs: Sequence[_Run]) -> None:
    """A run another process is working in is refused before its inputs are read (by the main
    process: under `accelerate launch` the others would see the main one's lock)."""
    for run in runs:
        if run.out is not None and _is_main():
            _run_dir(run.out).refuse_held()


def _train(run: _Run, loaded: _Loaded) -> FinetuneResult:
    """Claim the run's directory and hold it while the run is recorded, trained (resuming from a
    checkpoint) and its model and result written: a second process on it is refused, and one that
    finished it in the meantime is not repeated."""
    if run.out is None:
        return _train_held(run, loaded)
    main, run_dir = _is_main(), _run_dir(run.out)
    if main:
        run_dir.claim(RUN_KIND, inputs=_inputs(run.config))
    with run_dir.held() if main else contextlib.nullcontext():
        done = _check_run_dir(run.out, run.fingerprint, run.config, run.inputs) if main else None
        done = _from_main(done)  # under `accelerate launch` every process goes the main one's way
        return done if done is not None else _train_held(run, loaded)


def _from_main(value: Any) -> Any:
    """`value` as the main process has it, on every process (one process: `value`)."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return value
    box = [value]
    broadcast_object_list(box)
    return box[0]


def _train_held(run: _Run, loaded: _Loaded) -> FinetuneResult:
    """Record the run's config, train, export the model (`save_model`) and write the result."""
    config, hyper, out = run.config, run.hyper, run.out
    obj, model, train_config = loaded.obj, loaded.model, loaded.train_config
    sparsity = current_mask(model).sparsity if loaded.mask_config is not None else 0.0
    acc = make_accelerator(train_config)
    if out is not None and acc.is_main_process:
        record = {
            "fingerprint": run.fingerprint,
            "inputs": run.inputs,
            "resolved": {**dataclasses.asdict(hyper), "max_steps": train_config.max_steps},
        }
        _write_config(out, record, config, loaded.mask_config)

    timing = {"eval_time_s": 0.0}
    timed_eval = _timed(obj.eval_fn, timing)
    tr = train(
        model,
        decay_groups(model, config.weight_decay),
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
        model_dir = str(
            export_pretrained(model, out / MODEL_DIR, config=loaded.mask_config, tokenizer=loaded.tokenizer)
        )
    result = _result(run, loaded, tr, (sparsity, timing, model_dir))
    result.predictions = tr.payload(result.reported)  # whichever step it is (None: SQuAD keeps none)
    result = as_written(result)  # the call that reads it back returns the same
    if out is not None and acc.is_main_process:
        _write_result(out, result, keep_checkpoint=config.keep_checkpoint)
    return result


def _result(
    run: _Run, loaded: _Loaded, tr: TrainResult, measured: tuple[float, dict[str, float], str | None]
) -> FinetuneResult:
    """The run's result from what training returned and what was measured beside it (the mask's
    sparsity, the evaluations' time, the exported model's folder)."""
    config, spec, hyper, out, obj = run.config, run.spec, run.hyper, run.out, loaded.obj
    sparsity, timing, model_dir = measured
    return FinetuneResult(
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
        wall_time_s=round(time.perf_counter() - loaded.started, 3),
        resumed_from=tr.resumed_from,
        out_dir=str(out) if out is not None else None,
        model_dir=model_dir,
        selected_by=SELECT + hyper.metric if config.select_fraction is not None else None,
        checkpoint=config.checkpoint,
    )


# --------------------------------------------------------------------------- several seeds


def finetune_seeds(
    config: FinetuneConfig,
    seeds: Sequence[int],
    out_dir: str | os.PathLike,
    on_result: Callable[[FinetuneResult], None] | None = None,
) -> dict[str, Any]:
    """`finetune` once per seed into `out_dir/seed-<s>/`; the summary goes to `out_dir/results.json`."""
    check_distinct("seeds", seeds)
    # The task file, its data folder, the model and its tokenizer, every seed's folder, then the
    # inputs the first run reads, are checked before RUN_DIR is made: a refused input or folder
    # leaves no output directory behind, and no seed trains before another's folder is refused.
    spec = get_task(config.task, config.data_dir)
    if config.data_dir is not None and spec.kind != "squad":
        task_dir(spec, config.data_dir)
    check_model(config.model)
    load_tokenizer(config.model)
    check_output(out_dir, kind=OUTPUT_KIND, inputs=_inputs(config))
    runs = [_plan(config.replace(seed=s), seed_dir(out_dir, s)) for s in seeds]
    todo = [r for r in runs if r.done is None]
    _refuse_held(todo)
    loaded = _load(todo[0]) if todo else None
    if _is_main():
        claim_dir(out_dir, kind=OUTPUT_KIND, inputs=_inputs(config))
    results = []
    for run in runs:
        r = run.done
        if r is not None:
            r = _finished(run.out, r, keep_checkpoint=config.keep_checkpoint)
        else:
            r, loaded = _train(run, loaded or _load(run)), None  # the first run's inputs, read above
        results.append(r)
        if on_result is not None:
            on_result(r)
    summary = summarize(results)
    if PartialState().is_main_process:
        atomic_write_json(Path(out_dir) / SUMMARY_FILE, summary)
    return summary
