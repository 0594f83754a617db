"""Ticket sharing for multi-task learning (Liang et al. 2021 §4, Algorithm 1).

One encoder shared by all tasks, one head per task, and task i's structured ticket Ω^i (its super
ticket) as its subnetwork:

* the forward pass of task i runs the encoder gated by Ω^i (`structured.gates`);
* minibatches of all tasks are shuffled together every epoch (Algorithm 1, line 5);
* a step on task i updates only the parameters inside Ω^i: the weight slices of the heads and FFN
  units Ω^i keeps, everything no unit owns (embeddings, LayerNorms, attention-output bias, pooler),
  and task i's head. Nothing outside moves: `MaskedAdamW` leaves the entries, their Adam moments
  and their step counts bit-identical, and weight decay touches only updated entries (the reference
  code lets both moments and weight decay move parameters outside the ticket). Units kept by several
  tasks are updated by each of them; units no task keeps are pruned for all (every gate is 0).

Without tickets the same loop is plain multi-task learning (MT-DNN): every task keeps everything.
Optionally each task is then fine-tuned alone from the multi-task weights, still gated by its ticket
(`finetune_after`, the paper's "+ ST fine-tuning").

Results go to a results store in OUT, one `finetune` row per task and stage (method `ticket-share`
or `mtl`, and `...+ft`), with the best dev score of the task's main metric (on the report part of
the dev set with `select_fraction`, at the step the selection part picked). Rerunning resumes from
the last checkpoint; finished stages are not repeated.

    OUT/seed-<s>/mtl/           checkpoint.pt while running, weights.safetensors, result.json
    OUT/seed-<s>/ft-<task>/     per-task fine-tuning runs (`training.train` directories)
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import Tensor, nn

from ..compaction import head_extras
from ..data.glue import task_dir
from ..errors import ConfigError
from ..files import atomic_write_bytes, atomic_write_json, claim_dir, content_key, read_json
from ..finetune import SELECT, TaskObjective, _params, load_task_model, mean_std, task_objective
from ..masking import MaskConfig
from ..masking.units import UnitMask, to_weight_mask
from ..modeling import encoder_of, fit_max_length, load_config, load_tokenizer
from ..progress import progress_bar
from ..structure import Structure, structure_of, unit_arch
from ..structured.compact import refuse_compacted
from ..structured.gates import Gates, attach_gates
from ..structured.io import check_unit_fits, load_unit_mask
from ..structured.masked_adam import MaskedAdamW, StepMask
from ..tasks import get_task
from ..training import (
    TrainConfig,
    TrainResult,
    example_seed,
    load_checkpoint,
    make_scheduler,
    seed_everything,
    train,
)
from ..validation import Fraction, NonNegFloat, OpenFraction, PositiveFloat, PositiveInt, check_config
from .supertickets import record_study

log = logging.getLogger(__name__)

CHECKPOINT, WEIGHTS, RESULT = "checkpoint.pt", "weights.safetensors", "result.json"


@dataclass
class MtlConfig:
    model: str  # pre-trained model: local dir or hub id
    tasks: list[str]  # task ids (`ticketlab.tasks`)
    tickets: list[str] | None = None  # one structured ticket per task, same order; None: share everything
    data_dir: str | None = None  # GLUE root holding every task
    seeds: list[int] = field(default_factory=lambda: [1])
    lr: PositiveFloat = 5e-5  # Liang et al. A.2.1 (MT-DNN's settings)
    batch_size: PositiveInt = 32
    max_length: PositiveInt | None = None  # default: each task's
    epochs: PositiveFloat = 5.0
    max_steps: PositiveInt | None = None  # cap on the multi-task steps
    eval_every: PositiveInt = 100
    warmup_ratio: Fraction = 0.1
    weight_decay: NonNegFloat = 0.0
    max_grad_norm: PositiveFloat | None = 1.0  # None: no clipping (0 would zero every gradient)
    train_samples: PositiveInt | None = None  # seeded subset of each task's training set
    eval_samples: PositiveInt | None = None
    select_fraction: OpenFraction | None = None  # pick best steps on a seeded part of each dev set
    select_seed: int = 0
    finetune_after: bool = False  # then fine-tune each task alone from the multi-task weights
    finetune_lr: PositiveFloat | None = None  # default: lr
    finetune_epochs: PositiveFloat | None = None  # default: the task's
    finetune_max_steps: PositiveInt | None = None
    check_hash: bool = True
    save_every: PositiveInt | None = 100
    progress: bool = True

    NON_RESULT = ("check_hash", "save_every", "progress")

    def __post_init__(self) -> None:
        check_config(self)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"tasks must be distinct and non-empty, got {list(self.tasks)}")
        if self.tickets is not None and len(self.tickets) != len(self.tasks):
            raise ConfigError(
                f"the task list does not match the tickets: {len(self.tasks)} tasks "
                f"({', '.join(self.tasks)}) but {len(self.tickets)} tickets: one ticket per task, in order"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct and non-empty, got {list(self.seeds)}")
        refuse_compacted(self.model, "multi-task learning gates every head and FFN unit of")
        if self.tickets is not None:  # tickets need units: ALBERT's shared layer is refused up front
            unit_arch(load_config(self.model).model_type)
        for task in self.tasks:
            if get_task(task, self.data_dir).kind == "squad":
                raise ConfigError(
                    "ticket sharing covers GLUE-style tasks (one classifier head each), not SQuAD"
                )

    @property
    def method(self) -> str:
        return "ticket-share" if self.tickets is not None else "mtl"

    def settings(self) -> dict[str, Any]:
        skip = {"model", "tasks", "tickets", "data_dir", "seeds", *self.NON_RESULT}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


# --------------------------------------------------------------------------- tickets


def load_tickets(config: MtlConfig, model: nn.Module) -> list[UnitMask]:
    """Every task's ticket, checked against the model (structure, base weights) and its task; none
    for plain multi-task learning."""
    if config.tickets is None:
        return []
    units = []
    for task, path in zip(config.tasks, config.tickets, strict=True):
        u, mask_config = load_unit_mask(path)
        check_unit_fits(u, mask_config, model, source=path, check_hash=config.check_hash)
        _check_task(mask_config, task, config.data_dir, path)
        units.append(u)
    if len({u.granularity for u in units}) > 1:
        raise ConfigError(f"the tickets mix FFN granularities ({', '.join(u.granularity for u in units)})")
    return units


def _check_task(mask_config: MaskConfig, task: str, data_dir: str | None, path: str) -> None:
    """A ticket that records the task it was found on must be given for that task."""
    found_on = (mask_config.search or {}).get("task")
    want = get_task(task, data_dir).id
    if found_on is not None and found_on != want:
        raise ConfigError(
            f"the task list does not match the tickets: {path} was found on {found_on}, given for {want}"
        )


def shared_units(tickets: Sequence[UnitMask]) -> UnitMask:
    """The units some task keeps (the others are pruned for all)."""
    union = {n: t.clone() for n, t in tickets[0].tensors().items()}
    for u in tickets[1:]:
        for n, t in u.tensors().items():
            union[n] |= t
    return UnitMask(**union)


def ticket_param_masks(
    encoder: nn.Module, units: UnitMask, structure: Structure
) -> dict[nn.Parameter, StepMask]:
    """Which entries of the encoder's parameters a step of this ticket may update (True = all).

    Weights: the unit slices of `to_weight_mask`. Biases: a head owns its Q/K/V bias entries, a
    neuron its FFN-in bias entry, an FFN sub-layer both FFN biases. Parameters no unit owns are shared.
    """
    out: dict[nn.Parameter, StepMask] = {p: True for p in encoder.parameters()}
    arch, weights = structure.arch, to_weight_mask(units, structure)
    for layer in range(structure.num_layers):
        for name in arch.layer_modules:
            keep = weights[arch.layer_key(layer, name)]
            module = encoder.get_submodule(arch.layer_key(layer, name).removesuffix(".weight"))
            out[module.weight] = keep
            if module.bias is None:  # a bias-free projection: its weight is all the unit owns
                continue
            if name in (*arch.qkv, arch.ffn_in):
                out[module.bias] = keep[:, 0].clone()  # rows: one per head dimension / neuron
            elif name == arch.ffn_out and units.ffn is not None and not bool(units.ffn[layer]):
                out[module.bias] = False  # a pruned FFN sub-layer's output bias goes with it
        out.update(_head_extras(encoder, arch, layer, units.head[layer], structure.head_size))
    return out


def _head_extras(encoder: nn.Module, arch, layer: int, heads: Tensor, head_size: int) -> dict:
    """The per-head rows outside Q/K/V a pruned head also owns (`compaction.head_extras`), by
    parameter."""
    rows = heads.repeat_interleave(head_size)  # [H·dh]
    out: dict[nn.Parameter, StepMask] = {}
    for _, _, extra in head_extras(encoder.get_submodule(f"{arch.layers}.{layer}"), arch):
        if isinstance(extra, nn.Parameter):  # q_bias, v_bias: [H·dh]
            out[extra] = rows.clone()
            continue
        out[extra.weight] = rows[:, None].expand_as(extra.weight).clone()
        if extra.bias is not None:
            out[extra.bias] = rows.clone()
    return out


# --------------------------------------------------------------------------- the model


@dataclass
class MultiTask:
    """One encoder, one task model per task sharing it, the gates on it, and each task's ticket."""

    models: nn.ModuleDict  # "t0", "t1", ...: task models whose encoder is the same module
    gates: Gates | None  # None: plain multi-task learning (no tickets, nothing gated)
    tickets: list[UnitMask]  # per task; empty without tickets
    masks: list[dict[nn.Parameter, StepMask]]  # per task: what its step updates

    def task_model(self, i: int) -> nn.Module:
        """Task i's model, gated by its ticket."""
        if self.gates is not None:
            self.gates.load_(self.tickets[i])
        return self.models[f"t{i}"]

    def named_parameters(self) -> dict[str, nn.Parameter]:
        return dict(self.models.named_parameters())  # the shared encoder once


def build(config: MtlConfig, seed: int, device: torch.device) -> MultiTask:
    models: dict[str, nn.Module] = {}
    encoder = None
    for i, task in enumerate(config.tasks):
        net, _ = load_task_model(config.model, get_task(task, config.data_dir), seed)
        if encoder is None:
            encoder = encoder_of(net)
        else:
            setattr(net, net.base_model_prefix, encoder)  # share: this task's own copy is dropped
        models[f"t{i}"] = net
    mt = nn.ModuleDict(models).to(device)
    tickets = load_tickets(config, mt["t0"])
    if not tickets:
        # Plain MTL: every task updates everything. No gates and no unit structure, so it runs on a
        # family without per-layer units too (ALBERT's one shared layer).
        everything = [dict.fromkeys(mt[f"t{i}"].parameters(), True) for i in range(len(mt))]
        return MultiTask(mt, None, [], everything)
    structure = structure_of(mt["t0"])
    gates = attach_gates(mt["t0"], granularity=tickets[0].granularity)
    masks = []
    for i, units in enumerate(tickets):
        m = {
            p: (k.to(device) if isinstance(k, Tensor) else k)
            for p, k in ticket_param_masks(encoder, units, structure).items()
        }
        inside = {id(p) for p in encoder.parameters()}
        m.update({p: True for p in mt[f"t{i}"].parameters() if id(p) not in inside})  # its own head
        masks.append(m)
    return MultiTask(mt, gates, tickets, masks)


# --------------------------------------------------------------------------- the loop


def epoch_batches(
    sizes: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[tuple[int, list[int]]]:
    """(task, example indices) of every minibatch of one epoch: each task's data shuffled and cut
    into batches, then all tasks' batches shuffled together (Algorithm 1, line 5)."""
    batches = []
    for i, n in enumerate(sizes):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch * 1_009 + i))
        batches += [(i, order[k : k + batch_size].tolist()) for k in range(0, n, batch_size)]
    mix = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed * 7_919 + epoch))
    return [batches[j] for j in mix.tolist()]


def sharing_step(
    mt: MultiTask,
    i: int,
    batch: dict[str, Tensor],
    obj: TaskObjective,
    optimizer: MaskedAdamW,
    max_grad_norm: float | None,
) -> float:
    """One step of task i: its loss through its ticket, then an update of what its ticket holds."""
    model = mt.task_model(i)
    model.train()
    out = obj.loss_fn(model, batch)
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward()
    if max_grad_norm is not None:
        params = [p for p in mt.models.parameters() if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step(mt.masks[i])
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


@dataclass
class _State:
    step: int = 0
    history: list[list[dict[str, Any]]] = field(default_factory=list)  # per task
    best: list[dict[str, Any] | None] = field(default_factory=list)
    train_time_s: float = 0.0


def _evaluate(mt: MultiTask, objs: list[TaskObjective], state: _State, metric_keys: list[str]) -> None:
    for i, obj in enumerate(objs):
        record = {"step": state.step, **obj.eval_fn(mt.task_model(i))}
        state.history[i].append(record)
        key = metric_keys[i]
        if state.best[i] is None or record[key] > state.best[i][key]:
            state.best[i] = record


def _save_checkpoint(path: Path, mt: MultiTask, opt, sched, state: _State) -> None:
    buf = io.BytesIO()
    payload = {
        "step": state.step,
        "model": {n: p.detach().cpu() for n, p in mt.named_parameters().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": torch.get_rng_state(),
        "state": dataclasses.asdict(state),
    }
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


@torch.no_grad()
def _load_weights(mt: MultiTask, weights: dict[str, Tensor]) -> None:
    for name, p in mt.named_parameters().items():
        p.copy_(weights[name])


def train_shared(
    config: MtlConfig, seed: int, out: Path, device: torch.device
) -> tuple[MultiTask, list, dict]:
    """Algorithm 1 for one seed (resumable in `out`); returns the model, the tasks and the result."""
    tokenizer = load_tokenizer(config.model)
    objs = [_objective(config, task, tokenizer, seed) for task in config.tasks]
    seed_everything(seed)
    mt = build(config, seed, device)
    keys = [(SELECT if config.select_fraction is not None else "") + o.metric for o in objs]
    if (out / RESULT).is_file():
        _load_weights(mt, load_file(out / WEIGHTS))
        return mt, objs, read_json(out / RESULT, "multi-task result")
    sizes = [len(o.dataset) for o in objs]
    per_epoch = sum(math.ceil(n / config.batch_size) for n in sizes)
    total = math.ceil(config.epochs * per_epoch)
    total = min(total, config.max_steps) if config.max_steps is not None else total
    optimizer = MaskedAdamW(mt.models.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = TrainConfig(max_steps=total, lr=config.lr, warmup_steps=round(config.warmup_ratio * total))
    scheduler = make_scheduler(optimizer, schedule)
    state = _State(history=[[] for _ in objs], best=[None for _ in objs])
    if (out / CHECKPOINT).is_file():
        saved = load_checkpoint(out / CHECKPOINT)
        _load_weights(mt, saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        state = _State(**saved["state"])
    bar = progress_bar(total=total, initial=state.step, desc="ticket sharing", disable=not config.progress)
    cache: dict[int, list] = {}
    while state.step < total:
        t0 = time.perf_counter()
        epoch, k = divmod(state.step, per_epoch)
        i, idx = cache.setdefault(epoch, epoch_batches(sizes, config.batch_size, seed, epoch))[k]
        if len(cache) > 1:
            cache = {epoch: cache[epoch]}
        batch = objs[i].collate_fn(
            [objs[i].dataset[j] for j in idx], [example_seed(seed, epoch, j) for j in idx]
        )
        batch = {n: v.to(device) if isinstance(v, Tensor) else v for n, v in batch.items()}
        sharing_step(mt, i, batch, objs[i], optimizer, config.max_grad_norm)
        scheduler.step()
        state.step += 1
        state.train_time_s += time.perf_counter() - t0
        bar.update(1)
        if state.step % config.eval_every == 0 or state.step == total:
            _evaluate(mt, objs, state, keys)
        if config.save_every and state.step % config.save_every == 0 and state.step < total:
            _save_checkpoint(out / CHECKPOINT, mt, optimizer, scheduler, state)
    bar.close()
    weights = {n: p.detach().cpu().contiguous() for n, p in mt.named_parameters().items()}
    atomic_write_bytes(out / WEIGHTS, save(weights))
    result = {
        "steps": state.step,
        "train_time_s": state.train_time_s,
        "history": state.history,
        "best": state.best,
    }
    atomic_write_json(out / RESULT, result)
    (out / CHECKPOINT).unlink(missing_ok=True)
    return mt, objs, result


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
    """Task i alone from the multi-task weights, gated by its ticket (the paper's + ST fine-tuning)."""
    model = mt.task_model(i)
    spec = obj.spec
    steps = math.ceil((config.finetune_epochs or spec.epochs) * len(obj.dataset) / config.batch_size)
    steps = min(steps, config.finetune_max_steps) if config.finetune_max_steps else steps
    selected = (SELECT if config.select_fraction is not None else "") + obj.metric
    tc = TrainConfig(
        max_steps=steps,
        batch_size=config.batch_size,
        lr=config.finetune_lr or config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=round(config.warmup_ratio * steps),
        max_grad_norm=config.max_grad_norm,
        eval_every=spec.eval_every,
        save_every=config.save_every,
        seed=seed,
        metric=selected,
        progress=config.progress,
        desc=f"{spec.id} after sharing",
    )
    params = _params(model, config.weight_decay)
    return train(
        model, params, obj.dataset, obj.collate_fn, obj.loss_fn, tc, out_dir=out, eval_fn=obj.eval_fn
    )


# --------------------------------------------------------------------------- the study


def _row(config: MtlConfig, seed: int, task: str, method: str, level: float):
    from .plan import make_run

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
    """Content keys of what every row reads (the model, each task's data folder and task file) and
    what each of them is, for a message."""
    paths: dict[str, str | os.PathLike] = {"model": config.model}
    for task in config.tasks:
        spec = get_task(task, config.data_dir)
        if config.data_dir is not None:
            paths[f"data {spec.id}"] = task_dir(spec, config.data_dir)
        if task.endswith(".json"):
            paths[f"task {spec.id}"] = task
    keys = {k: content_key([p]) for k, p in paths.items()}
    names = {"model": "the model", "data": "the task data", "task": "the task file"}
    where = {k: f"{names[k.split()[0]]} at {p}" for k, p in paths.items()}
    return {k: v for k, v in keys.items() if v is not None}, where


def _done(store, run, out: Path, inputs: tuple[dict[str, str], dict[str, str]]):
    """The finished row of `run`, or None; refused when its inputs changed since it finished."""
    from .store import refuse_changed_inputs

    record = store.get(run.id)
    if record is None or record.status != "done":
        return None
    refuse_changed_inputs(out, record, *inputs)
    return record


def _record(store, run, metrics: dict[str, Any], out: Path, inputs: tuple[dict, dict]) -> dict[str, Any]:
    """Write a finished row (unless another process did); the metrics with the row's id."""
    from .runner import code_version
    from .store import HOST

    store.add_runs([run])
    if _done(store, run, out, inputs) is None and store.claim(run.id):
        store.finish(run.id, metrics, {"code": code_version(), "host": HOST, "inputs": inputs[0]})
    return {**metrics, "run_id": run.id}


def run_mtl(config: MtlConfig, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Ticket sharing (or plain MTL) for every seed, then optional per-task fine-tuning; rows per task
    and stage in OUT's results store. Returns {method: {task: mean_std of the scores over seeds}}."""
    from .store import Store

    # a new or empty directory, or this study's own (resumed): never one holding other files
    out = claim_dir(
        out_dir,
        kind="ticket-sharing study",
        joins=["sweep"],  # a study may join a sweep's store
        inputs=[config.model, config.data_dir],
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
    inputs, root = _inputs(config), out.parent
    mt, objs, result = train_shared(config, seed, out / "mtl", device)
    level = round(1.0 - shared_units(mt.tickets).head.float().mean().item(), 6) if mt.tickets else 0.0
    rows = []
    for i, obj in enumerate(objs):
        best, history = result["best"][i], result["history"][i]
        metrics = _metrics(best, history, result["steps"], result["train_time_s"], obj)
        rows.append(
            (
                config.method,
                i,
                _record(
                    store, _row(config, seed, config.tasks[i], config.method, level), metrics, root, inputs
                ),
            )
        )
    if not config.finetune_after:
        return rows
    weights = {n: p.detach().clone() for n, p in mt.named_parameters().items()}
    for i, obj in enumerate(objs):
        run = _row(config, seed, config.tasks[i], config.method + "+ft", level)
        done = _done(store, run, root, inputs)
        if done is not None:
            rows.append((config.method + "+ft", i, {**done.metrics, "run_id": run.id}))
            continue
        _load_weights(mt, weights)  # every task starts from the multi-task weights
        r = finetune_task(config, mt, i, obj, seed, out / f"ft-{obj.spec.id}")
        metrics = _metrics(r.best, r.history, r.steps, r.train_time_s, obj)
        rows.append((config.method + "+ft", i, _record(store, run, metrics, root, inputs)))
    return rows
