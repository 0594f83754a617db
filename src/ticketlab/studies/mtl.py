"""Ticket sharing for multi-task learning (Liang et al. 2021 §4, Algorithm 1).

One encoder shared by all tasks, one head per task, and task i's structured ticket Ω^i (its super
ticket) as its subnetwork (the model: `mtl_model.py`):

* every task's ticket is a named mask on the shared encoder (`masks.named`, in its weight form,
  FFN-out's bias included: exactly what gates compute), kept as bits; the forward pass of task i
  runs with Ω^i in force (`set_active_mask`);
* minibatches of all tasks are shuffled together every epoch (Algorithm 1, line 5): the tasks'
  training sets as one `train.batches.MultiTaskData`, whose sampler gives the one training loop
  (`train.loop.train`) that order;
* a step on task i updates only the parameters inside Ω^i: the weight slices of the heads and FFN
  units Ω^i keeps, everything no unit owns (embeddings, LayerNorms, attention-output bias, pooler),
  and task i's head. Nothing outside moves: `MaskedAdamW` (asking the model for the step mask of
  the task whose batch the step was on) leaves the entries, their Adam moments
  and their step counts bit-identical, and weight decay touches only updated entries (the reference
  code lets both moments and weight decay move parameters outside the ticket). Units kept by several
  tasks are updated by each of them; units no task keeps are pruned for all (every gate is 0).

Without tickets the same loop is plain multi-task learning (MT-DNN): every task keeps everything.
Optionally each task is then fine-tuned alone from the multi-task weights, still gated by its ticket
(`finetune_after`, the paper's "+ ST fine-tuning").

Results go to a results store in OUT, one `finetune` row per task and stage (method `ticket-share`
or `mtl`, and `...+ft`), with the best dev score of the task's main metric (on the report part of
the dev set with `select_fraction`, at the step the selection part picked). Rerunning resumes from
the last checkpoint; finished stages are not repeated. Each stage's directory is a `train.run_dir.RunDir`
that records what it depends on (`settings.json`: the settings it reads, the content of the model,
the tickets and the task data): a rerun with other settings there, or after new bytes were written
at the same paths, is refused in one line naming the directory and what changed.

    OUT/seed-<s>/mtl/           the loop's directory (settings.json, checkpoint.pt while running,
                                log.jsonl, train_result.json), weights.safetensors, result.json
    OUT/seed-<s>/ft-<task>/     per-task fine-tuning runs (`train.loop.train` directories, settings.json)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..core.digest import content_keys
from ..core.files.atomic import atomic_write_bytes, atomic_write_json
from ..core.files.inputs import load_safetensors
from ..core.files.tensors import safetensors_bytes
from ..core.outputs import claim_dir
from ..models.compaction import refuse_compacted
from ..models.load import check_model, load_config, load_model, load_tokenizer
from ..models.source import fit_max_length
from ..models.structure import unit_arch
from ..tasks.evaluation import SELECT
from ..tasks.glue import check_task_data, task_dir
from ..tasks.objective import TaskObjective, task_objective
from ..tasks.registry import get_task
from ..train.batches import TASK, MultiTaskData
from ..train.config import Batch, EvalFn, LossFn, TrainConfig, TrainResult
from ..train.loop import RESULT as TRAIN_RESULT
from ..train.loop import train
from ..train.masked_adam import MaskedAdamW
from ..train.run_dir import RunDir
from ..train.schedule import decay_groups
from ..verbs.finetune_results import mean_std
from . import rows
from .mtl_config import MtlConfig
from .mtl_model import MultiTask, build, load_tickets, shared_units
from .rows import record_study
from .run_ids import make_run
from .store import Store

log = logging.getLogger(__name__)

WEIGHTS, RESULT = "weights.safetensors", "result.json"
# --------------------------------------------------------------------------- the loop


@torch.no_grad()
def _load_weights(mt: MultiTask, weights: dict[str, Tensor]) -> None:
    for name, p in mt.named_parameters().items():
        p.copy_(weights[name])


def _selected(config: MtlConfig, obj: TaskObjective) -> str:
    """The eval key that picks a task's best step (its selection part's score with select_fraction)."""
    return (SELECT if config.select_fraction is not None else "") + obj.metric


def _train_config(
    config: MtlConfig, seed: int, steps: float, cap: int | None, lr: float, eval_every: int, **kw: Any
) -> TrainConfig:
    """What the multi-task run and the per-task fine-tunings share: `steps` rounded up, at most `cap`."""
    total = min(math.ceil(steps), cap) if cap else math.ceil(steps)
    return TrainConfig(
        max_steps=total,
        batch_size=config.batch_size,
        lr=lr,
        eval_every=eval_every,
        weight_decay=config.weight_decay,
        warmup_steps=round(config.warmup_ratio * total),
        max_grad_norm=config.max_grad_norm,
        save_every=config.save_every,
        seed=seed,
        progress=config.progress,
        **kw,
    )


def _loss_fn(mt: MultiTask, objs: list[TaskObjective]) -> LossFn:
    """The loss of the batch's task through that task's model, its ticket in force (and so the
    ticket the optimizer's step mask then reads)."""

    def loss(models: nn.Module, batch: Batch):
        task = batch[TASK]
        return objs[task].loss_fn(mt.task_model(task), {k: v for k, v in batch.items() if k != TASK})

    return loss


def _eval_fn(mt: MultiTask, objs: list[TaskObjective]) -> EvalFn:
    """Every task's dev scores in one record, task i's keys prefixed `t<i>/` (`_per_task` splits them)."""

    def evaluate(models: nn.Module) -> dict[str, float]:
        return {f"t{i}/{k}": v for i, o in enumerate(objs) for k, v in o.eval_fn(mt.task_model(i)).items()}

    return evaluate


def _per_task(run: TrainResult, keys: list[str]) -> dict[str, Any]:
    """The loop's result as each task's eval history and best record (the first with the top
    `keys[i]` score)."""
    history = [[_task_record(r, f"t{i}/") for r in run.history] for i in range(len(keys))]
    best = [max(h, key=lambda r, key=key: r[key]) for h, key in zip(history, keys, strict=True)]
    return {"steps": run.steps, "train_time_s": run.train_time_s, "history": history, "best": best}


def _task_record(record: dict[str, Any], prefix: str) -> dict[str, Any]:
    """One task's part of an eval record: the step and its scores, under their own names."""
    mine = {k.removeprefix(prefix): v for k, v in record.items() if k.startswith(prefix)}
    return {"step": record["step"], **mine}


def train_shared(
    config: MtlConfig, seed: int, out: Path, device: torch.device
) -> tuple[MultiTask, list, dict]:
    """Algorithm 1 for one seed on the training loop (resumable in `out`, a `RunDir` of this seed's
    settings and inputs); returns the model, the tasks and the result. Each step is one task's
    batch (`MultiTaskData`), and MaskedAdamW updates what that task's ticket holds
    (`MultiTask.active_step_mask`)."""
    run_dir = RunDir(out, "ticket-sharing run", result=RESULT)
    with run_dir.held():
        _check_stage(run_dir, config, seed)
        tokenizer = load_tokenizer(config.model)
        objs = [_objective(config, task, tokenizer, seed) for task in config.tasks]
        mt = build(config, seed, device)
        if (done := run_dir.finished()) is not None:
            run_dir.tidy()  # a kill between the result and the checkpoint's removal left it
            _load_weights(mt, load_safetensors(Path(out) / WEIGHTS, "ticket-sharing weights"))
            return mt, objs, done
        return mt, objs, _train_shared(config, seed, run_dir, mt, objs)


def _check_stage(run_dir: RunDir, config: MtlConfig, seed: int, *, after: bool = False) -> None:
    """Refuse a stage's directory that holds a run of other settings or inputs; record a new one's."""
    keys, where = _inputs(config)
    names = {f"{k} content": v for k, v in where.items()}
    run_dir.check(config.identity(seed, keys, after=after), names)


def _train_shared(config: MtlConfig, seed: int, run_dir: RunDir, mt: MultiTask, objs: list) -> dict:
    out = run_dir.path
    data = MultiTaskData([o.dataset for o in objs], [o.collate_fn for o in objs], config.batch_size, seed)
    # The loop finished but this function did not (killed before the weights file): the loop
    # returns its result with the final weights and the task in force restored from its checkpoint.
    steps = config.epochs * data.steps_per_epoch
    tc = _train_config(
        config, seed, steps, config.max_steps, config.lr, config.eval_every, desc="ticket sharing"
    )
    run = train(
        mt.models,
        mt.params,
        data,
        data.collate,
        _loss_fn(mt, objs),
        tc,
        out_dir=out,
        eval_fn=_eval_fn(mt, objs),
        # the task in force when a checkpoint was written: its mask is what the saved buffers hold
        extra_state=(lambda: {"task": mt.active}, lambda d: mt.task_model(int(d.get("task", 0)))),
        sampler=data.sample,
        optimizer=lambda params, tc: MaskedAdamW(
            params, lr=tc.lr, weight_decay=tc.weight_decay, step_masks=mt.active_step_mask
        ),
    )
    result = _per_task(run, [_selected(config, o) for o in objs])
    weights = {n: p.detach().cpu().contiguous() for n, p in mt.named_parameters().items()}
    atomic_write_bytes(out / WEIGHTS, safetensors_bytes(weights))
    run_dir.finish(result)
    return result


def _objective(config: MtlConfig, task: str, tokenizer, seed: int) -> TaskObjective:
    spec = get_task(task, config.data_dir)
    return task_objective(
        spec,
        tokenizer,
        config.data_dir,
        max_length=fit_max_length(load_config(config.model), config.max_length, spec.max_length),
        train_samples=config.train_samples,
        data_seed=seed,
        eval_samples=config.eval_samples,
        select_fraction=config.select_fraction,
        select_seed=config.select_seed,
    )


def finetune_task(
    config: MtlConfig, mt: MultiTask, i: int, obj: TaskObjective, seed: int, out: Path
) -> TrainResult:
    """Task i alone from the multi-task weights, its ticket in force (the paper's + ST fine-tuning);
    resumable in `out`, a `RunDir` of all the settings."""
    run_dir = RunDir(out, f"fine-tuning of {obj.spec.id} after sharing", result=TRAIN_RESULT)
    with run_dir.held():
        _check_stage(run_dir, config, seed, after=True)
        return _finetune_task(config, mt, i, obj, seed, out)


def _finetune_task(
    config: MtlConfig, mt: MultiTask, i: int, obj: TaskObjective, seed: int, out: Path
) -> TrainResult:
    model = mt.task_model(i)
    spec = obj.spec
    tc = _train_config(
        config,
        seed,
        (config.finetune_epochs or spec.epochs) * len(obj.dataset) / config.batch_size,
        config.finetune_max_steps,
        config.finetune_lr or config.lr,
        spec.eval_every,
        metric=_selected(config, obj),
        desc=f"{spec.id} after sharing",
    )
    params = decay_groups(model, config.weight_decay)
    return train(
        model, params, obj.dataset, obj.collate_fn, obj.loss_fn, tc, out_dir=out, eval_fn=obj.eval_fn
    )


# --------------------------------------------------------------------------- the study


def _row(config: MtlConfig, seed: int, task: str, method: str, level: float):
    spec = get_task(task, config.data_dir)
    c = {
        "model": config.model,
        "task": task,
        "task_label": spec.id,
        "data": config.data_dir,
        "seed": seed,
        "train_size": config.train_samples,
        "settings": {**config.settings(), "tasks": list(config.tasks)},
        "tickets": list(config.tickets) if config.tickets is not None else None,
        "study": "mtl",
        "mask": None,
        "method": method,
        "sparsity": level,  # fraction of heads no task keeps (pruned for all)
        "mask_seed": None,
        "search_steps": None,
    }
    return make_run("finetune", f"{method}_{spec.id}_ft{seed}".replace("+", "-"), c)


def _metrics(
    best: dict, history: list[dict], steps: int, time_s: float, obj: TaskObjective
) -> dict[str, Any]:
    return {
        "metric": obj.metric,
        "score": float(best[obj.metric]),
        "select_score": best.get(SELECT + obj.metric),
        "final_score": float(history[-1][obj.metric]),
        "best": best,
        "final": history[-1],
        "steps": steps,
        "time_s": time_s,
    }


def _inputs(config: MtlConfig) -> tuple[dict[str, str], dict[str, str]]:
    """Content keys of what every row reads (the model, each task's data folder, task file and
    ticket) and what each of them is, for a message."""
    paths: dict[str, str | os.PathLike] = {"model": config.model}
    for task in config.tasks:
        spec = get_task(task, config.data_dir)
        if config.data_dir is not None:
            paths[f"data {spec.id}"] = task_dir(spec, config.data_dir)
        if task.endswith(".json"):
            paths[f"task {spec.id}"] = task
    for task, ticket in zip(config.tasks, config.tickets or [], strict=False):
        paths[f"ticket {get_task(task, config.data_dir).id}"] = ticket
    names = {"model": "the model", "data": "the task data", "task": "the task file", "ticket": "the ticket"}
    where = {k: f"{names[k.split()[0]]} at {p}" for k, p in paths.items()}
    return content_keys(paths), where


def _record(store, run, work: rows.Work, inputs: rows.Inputs) -> dict[str, Any] | None:
    """A row's metrics with its id: `work`'s (`rows.execute`), those it recorded when it was done
    already, or None when another live process runs it."""
    outcome = rows.execute(store, run, work, inputs=inputs)
    if outcome.status == "busy":
        log.warning("%s: running in another process; skipped here", run.name)
        return None
    return {**outcome.metrics, "run_id": run.id}


def run_mtl(config: MtlConfig, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Ticket sharing (or plain MTL) for every seed, then optional per-task fine-tuning; rows per task
    and stage in OUT's results store. Returns {method: {task: mean_std of the scores over seeds}}."""
    # the model first: uncompacted, and with units of its own per layer when tickets gate them
    # (ALBERT's shared layer is refused up front)
    refuse_compacted(config.model, "multi-task learning gates every head and FFN unit of")
    if config.tickets is not None:
        unit_arch(load_config(config.model).model_type)
    for task in config.tasks:  # a bad data file is refused before the directory is made
        spec = get_task(task, config.data_dir)
        check_task_data(spec, config.data_dir, config.select_fraction, config.eval_samples)
    check_model(config.model)  # so are its files (pickled or truncated weights, a config past them),
    load_tokenizer(config.model)  # its tokenizer (ids past the embeddings) ...
    if config.tickets is not None:  # ... and the tickets, checked against the model as `build` does
        load_tickets(config, load_model(config.model))
    # a new or empty directory, or this study's own (resumed): never one holding other files
    out = claim_dir(
        out_dir,
        kind="ticket-sharing study",
        joins=["sweep"],  # a study may join a sweep's store
        inputs=[config.model, config.data_dir, *(config.tickets or [])],  # OUT inside none of them
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scores: dict[str, dict[str, list[float]]] = {}
    with Store(out) as store:
        plan = []
        for seed in config.seeds:
            for method, i, metrics in _seed(config, seed, out / f"seed-{seed}", device, store):
                plan.append(metrics.pop("run_id"))
                scores.setdefault(method, {}).setdefault(
                    get_task(config.tasks[i], config.data_dir).id, []
                ).append(metrics["score"])
        name = f"{config.method}-{'-'.join(config.tasks)}"
        protocol = {
            "model": config.model,
            "tasks": config.tasks,
            "tickets": config.tickets,
            **config.settings(),
        }
        record_study(store, name, plan, {"name": name, "model": config.model, "study": "mtl"}, protocol)
    summary = {m: {t: mean_std(v) for t, v in per.items()} for m, per in scores.items()}
    atomic_write_json(out / "mtl.json", {"config": dataclasses.asdict(config), "scores": summary})
    return summary


def _seed(
    config: MtlConfig, seed: int, out: Path, device: torch.device, store
) -> list[tuple[str, int, dict]]:
    """One seed: sharing, then each task alone if asked; (method, task index, metrics) per row."""
    keys, where = _inputs(config)
    inputs = rows.Inputs(out.parent, keys, where)
    mt, objs, result = train_shared(config, seed, out / "mtl", device)
    level = round(1.0 - shared_units(mt.tickets).head.float().mean().item(), 6) if mt.tickets else 0.0
    out_rows = []
    for i, obj in enumerate(objs):
        best, history = result["best"][i], result["history"][i]
        metrics = _metrics(best, history, result["steps"], result["train_time_s"], obj)
        run = _row(config, seed, config.tasks[i], config.method, level)
        # the shared stage's scores are this seed's whatever the row says (another process's
        # finished or running row holds the same): the row only records them
        rows.execute(store, run, lambda metrics=metrics: metrics, inputs=inputs)
        out_rows.append((config.method, i, {**metrics, "run_id": run.id}))
    if not config.finetune_after:
        return out_rows
    weights = {n: p.detach().clone() for n, p in mt.named_parameters().items()}
    for i, obj in enumerate(objs):
        run = _row(config, seed, config.tasks[i], config.method + "+ft", level)

        def work(i: int = i, obj: TaskObjective = obj) -> dict[str, Any]:
            _load_weights(mt, weights)  # every task starts from the multi-task weights
            r = finetune_task(config, mt, i, obj, seed, out / f"ft-{obj.spec.id}")
            return _metrics(r.best, r.history, r.steps, r.train_time_s, obj)

        metrics = _record(store, run, work, inputs)
        if metrics is not None:
            out_rows.append((config.method + "+ft", i, metrics))
    return out_rows
