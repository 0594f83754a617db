"""Super tickets (Liang et al. 2021 §3, §5): fine-tune → importance → tickets → rewind → select.

For every seed s:

1. fine-tune the full model (seed s), keeping its final weights;
2. importance scores of every head and FFN unit on the training set (`importance.py`), saved;
3. tickets at every level (10% ... 80% of heads and of FFN units pruned): winning (lowest importance
   pruned), losing (highest) and random (seeded by s), each a structured mask file;
4. rewinding: every ticket fine-tuned again from the *pre-trained* weights, with the same seed (so the
   same task-head initialisation and data order) and the same schedule as step 1;
5. selection: the super ticket of seed s is the winning level with the best score on a seeded 10%
   of the dev set (`select_fraction`); the score reported for it is on the other 90%.

Every fine-tuning, the full model's included, picks its best step on the 10% part and reports the
90% part at that step, so nothing reported was seen by a choice. Scores are mean ± std over seeds.

Rewound tickets are fine-tuned through their equivalent weight mask (`masks.load_mask` reads a
structured ticket as one): a pruned head, neuron or FFN sub-layer (its FFN-out bias masked with it)
computes exactly what the gated model computes (see `masks/units.py`).

Everything goes into a results store (`studies.store`) in OUT: a `finetune` row per fine-tuning
and a `search` row per ticket (method `st-winning`, `st-random`, `st-losing`; its `sparsity` is the
level), so `ticketlab report OUT` draws the phase transition (Liang et al. Fig. 4). Rerunning the
same command resumes: finished rows are skipped, an interrupted fine-tuning continues from its
checkpoint.

    OUT/results.sqlite            the store
    OUT/super.json                the summary: per seed the super ticket, mean ± std, the full model
    OUT/runs/<run>/               fine-tuning run directories (importance/ inside the full model's)
    OUT/masks/<run>/              the tickets (structured mask directories)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import TicketlabError
from ..core.files.atomic import atomic_write_json
from ..core.outputs import claim_dir, remove_ours
from ..masks.gates import attach_gates
from ..masks.unit_io import load_unit_mask, save_unit_mask, unit_mask_config
from ..methods.super_tickets.importance import Importance, compute_importance
from ..methods.super_tickets.levels import LEVELS
from ..methods.super_tickets.tickets import Shapes, check_levels_fit, fit_levels, select
from ..models.compaction import refuse_compacted
from ..models.load import check_model, load_config, load_model, load_tokenizer, shared_base_model
from ..models.source import fit_max_length
from ..models.structure import unit_arch
from ..tasks.evaluation import SELECT
from ..tasks.glue import check_task_data
from ..tasks.objective import task_objective
from ..tasks.registry import get_task
from ..verbs.finetune import INPUT_NAMES, finetune, input_content, input_paths
from ..verbs.finetune_config import default_length
from ..verbs.finetune_results import FinetuneResult, mean_std
from .rows import record_study
from .store import Store
from .super_config import SuperConfig
from .super_rows import (
    IMPORTANCE_DIR,
    METHOD,
    SUMMARY_FILE,
    Study,
    SuperPick,
    draw_key,
    importance_key,
    super_picks,
    units_key,
)
from .sweep.plan import FULL

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- the rows' metrics


def _scores(r: FinetuneResult) -> dict[str, Any]:
    """A fine-tuning's metrics for the store: `score` is the reported (90%) part at the step the
    selection (10%) part picked; `select_score` that part's score there."""
    return {
        "metric": r.metric,
        "score": r.best_score,
        "select_score": float(r.best[SELECT + r.metric]),
        "final_score": r.final_score,
        "best": r.best,
        "final": r.final,
        "steps": r.steps,
        "time_s": r.train_time_s,
        "n_dev": r.n_dev,
    }


# --------------------------------------------------------------------------- the steps


def _importance(config: SuperConfig, run: FinetuneResult, seed: int, out: Path) -> Importance:
    """Importance scores of the fine-tuned full model over its training set (saved in `out`)."""
    if (out / "importance.json").is_file():
        found = Importance.load(out)
        per = found.meta.get("per")  # what the scores are means over: example, token or batch
        if per != config.importance:
            held = f"per-{per} importance scores" if per else "importance scores that do not say per what"
            raise TicketlabError(f"{out}: holds {held}, not per-{config.importance}")
        return found
    if run.model_dir is None or not Path(run.model_dir).is_dir():
        raise TicketlabError(
            f"{run.out_dir}: the fine-tuned weights are gone; delete this run directory to fine-tune again"
        )
    ft = config.run_config(seed)
    spec = get_task(ft.task, ft.data_dir)
    obj = task_objective(
        spec,
        load_tokenizer(ft.model),
        ft.data_dir,
        max_length=fit_max_length(
            load_config(ft.model), ft.max_length, default_length(ft, spec)
        ),  # as finetune
        train_samples=ft.train_samples,
        data_seed=seed if ft.data_seed is None else ft.data_seed,
        eval_samples=1,  # the dev set is not used here
    )
    model = load_model(run.model_dir, head="seq-cls")
    gates = attach_gates(model, granularity=config.granularity)
    batch_size = config.importance_batch_size or ft.batch_size or spec.batch_size
    meta = {"task": spec.id, "model": ft.model, "seed": seed, "batch_size": batch_size}
    imp = compute_importance(
        model,
        gates,
        obj.dataset,
        obj.collate_fn,
        obj.loss_fn,
        batch_size=batch_size,
        per=config.importance,  # type: ignore[arg-type]
        meta=meta,
    )
    return Importance.load(imp.save(out))


def head_ranking(importance_dir: str | os.PathLike) -> list[str]:
    """The heads of saved importance scores from least to most important, as "L<layer>H<head>"
    (0-based; scores l2-normalised per layer, as tickets rank them)."""
    heads = Importance.load(importance_dir).head
    return [f"L{i // heads.shape[1]}H{i % heads.shape[1]}" for i in heads.flatten().argsort().tolist()]


def _full(study: Study, seed: int) -> tuple[str, dict[str, Any] | None]:
    config = study.config
    run = study.finetune_row(seed, {**FULL, **importance_key(config)})

    def work(run_dir: Path) -> dict[str, Any]:
        # its weights feed the importance pass: once that is saved, a rerun needs (and asks) none
        scored = (run_dir / IMPORTANCE_DIR / "importance.json").is_file()
        result = finetune(config.run_config(seed).replace(save_model=not scored), run_dir)
        _importance(config, result, seed, run_dir / IMPORTANCE_DIR)
        if not config.keep_models and result.model_dir is not None:
            remove_ours(result.model_dir)  # an exported model: its marker lists its files
        return {**_scores(result), "importance_dir": str((run_dir / IMPORTANCE_DIR).relative_to(study.out))}

    return run.id, study.execute(run, work)


def _ticket(study: Study, kind: str, level: float, seed: int, full: tuple[str, dict]) -> dict | None:
    config = study.config
    run = study.ticket_row(kind, level, seed, full[0])
    mask_dir = study.out / "masks" / run.dirname

    def work(run_dir: Path) -> dict[str, Any]:
        t0 = time.perf_counter()
        imp = Importance.load(study.out / full[1]["importance_dir"])
        units = select(imp, level, kind, seed=seed, units=config.units, draw=config.random_draw)
        model = shared_base_model(config.finetune.model)
        found = {"task": get_task(config.finetune.task, config.finetune.data_dir).id, "kind": kind}
        found.update(units=config.units, **draw_key(kind, config.random_draw))
        found["importance"] = full[1]["importance_dir"]  # relative to the study directory
        cfg = unit_mask_config(
            model,
            units,
            method=METHOD[kind],
            level=level,
            base_model=config.finetune.model,
            seed=seed,
            search=found,
        )
        save_unit_mask(units, cfg, mask_dir)
        return {
            "mask_dir": str(mask_dir.relative_to(study.out)),
            "achieved_sparsity": load_unit_mask(mask_dir)[1].achieved_sparsity,
            "pruned": units.level(),
            "steps": 0,
            "time_s": time.perf_counter() - t0,
            "intermediate": [],
        }

    metrics = study.execute(run, work)
    if metrics is None:
        return None
    what = {
        "mask": {"search": run.id, "step": None},
        "method": METHOD[kind],
        "sparsity": level,
        "mask_seed": seed,
        "search_steps": None,
    }
    rewind = study.finetune_row(seed, what, (run.id,))
    # rewinding: the ticket's kept weights start from the pre-trained values, the head from the same
    # seeded initialisation, and train with the full model's schedule
    ft = config.run_config(seed, str(study.out / metrics["mask_dir"]))
    # the super ticket (a winning level) fine-tuned on this task is where domain adaptation starts
    ft = ft.replace(save_model=config.keep_models and kind == "winning")
    return study.execute(rewind, lambda run_dir: _scores(finetune(ft, run_dir)))


# --------------------------------------------------------------------------- the study


@dataclass
class SuperResult:
    task: str
    metric: str
    full: dict[str, Any]  # mean_std of the full model's report scores
    super: dict[str, Any]  # mean_std of the super tickets' report scores
    picks: list[SuperPick]
    tickets: dict[str, dict[str, dict[str, Any]]]  # method -> level (str) -> mean_std
    out_dir: str
    skipped: int = 0  # rows held by another process
    importance: dict[int, str] = dataclasses.field(default_factory=dict)  # seed -> its scores' directory

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _unit_shapes(config: SuperConfig) -> Shapes:
    """The units of each kind the levels prune from (`tickets.select` ranks each kind model-wide)."""
    c = load_config(config.finetune.model)
    inner = getattr(c, "intermediate_size", None) or getattr(c, "hidden_dim", None)  # DistilBERT: hidden_dim
    layers, heads = c.num_hidden_layers, c.num_attention_heads
    if not all(isinstance(v, int) for v in (layers, heads, inner)):  # per-layer sizes (compacted)
        return {}
    if config.granularity == "neuron":
        return {"attention heads": ("head", (layers, heads)), "FFN neurons": ("neuron", (layers, inner))}
    return {"attention heads": ("head", (layers, heads)), "FFN sub-layers": ("ffn", (layers,))}


def study_levels(config: SuperConfig) -> list[float]:
    """The levels the study runs: those given (each must fit the model, else one clear error), or
    the paper's eight less those this model cannot take (said in a one-line note)."""
    shapes = _unit_shapes(config)
    if config.levels is not None:
        check_levels_fit(config.levels, shapes, config.units)  # type: ignore[arg-type]
        return list(config.levels)
    levels, note = fit_levels(LEVELS, shapes, config.units)  # type: ignore[arg-type]
    if note:
        log.warning(note)
    return levels


def run_super(config: SuperConfig, out_dir: str | os.PathLike) -> SuperResult:
    """The whole study of `config` into `out_dir` (resumable); see the module docstring."""
    # what the model must be, before any directory or work: uncompacted, ...
    refuse_compacted(config.finetune.model, "super tickets score every head and FFN unit of")
    check_model(config.finetune.model)  # its files (pickled or truncated weights), before its folder
    # before any directory or fine-tuning: ALBERT's shared layer has no units of its own per layer
    unit_arch(load_config(config.finetune.model).model_type)
    levels = study_levels(config)
    ft = config.finetune
    check_task_data(get_task(ft.task, ft.data_dir), ft.data_dir, config.select_fraction, ft.eval_samples)
    # a new or empty directory, or this study's own (resumed): never one holding other files
    out = claim_dir(
        out_dir,
        kind="super-ticket study",
        joins=["sweep"],  # a study may join a sweep's store
        inputs=[config.finetune.model, config.finetune.data_dir],
    )
    spec = get_task(config.finetune.task, config.finetune.data_dir)
    with Store(out) as store:
        ft = config.run_config(config.seeds[0])
        where = {k: f"{INPUT_NAMES[k]} at {p}" for k, p in input_paths(ft).items() if p is not None}
        study = Study(config, out, store, inputs=input_content(ft, spec), where=where)
        tickets = 0 if config.importance_only else len(config.kinds) * len(levels)
        study.total = len(config.seeds) * (1 + 2 * tickets)  # the full model; each ticket, rewound
        skipped, importance = 0, {}
        for seed in config.seeds:
            full = _full(study, seed)
            if full[1] is None:
                skipped += 1
                continue
            importance[seed] = str(out / full[1]["importance_dir"])
            for kind in [] if config.importance_only else config.kinds:
                for level in levels:
                    skipped += _ticket(study, kind, level, seed, full) is None
        info = {"name": f"super-{spec.id}", "model": config.finetune.model, "study": "super"}
        shared = study.finetune_row(config.seeds[0], {"method": "full", "mask": None}).config
        protocol = {k: shared[k] for k in ("model", "task", "data", "train_size", "settings")}
        protocol.update(granularity=config.granularity, **importance_key(config), **units_key(config.units))
        record_study(store, info["name"], study.plan, info, protocol)
        ids = store.get_meta("studies")[info["name"]]  # this call's rows and earlier ones of its protocol
        records = [r for r in map(store.get, ids) if r is not None]
    result = dataclasses.replace(_summary(config, records, spec.id, out, skipped), importance=importance)
    atomic_write_json(out / SUMMARY_FILE, result.to_dict())
    return result


def _summary(config: SuperConfig, records: list, task: str, out: Path, skipped: int) -> SuperResult:
    done = [r for r in records if r.kind == "finetune" and r.status == "done"]
    by: dict[tuple[str, float], list[float]] = {}
    for r in done:
        by.setdefault((r.config["method"], r.config["sparsity"]), []).append(r.metrics["score"])
    full = by.get(("full", 0.0), [])
    picks = sorted(super_picks(done).values(), key=lambda p: p.seed)
    tickets: dict[str, dict[str, dict[str, Any]]] = {}
    for (method, level), scores in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if method != "full":
            tickets.setdefault(method, {})[f"{level:g}"] = mean_std(scores)
    metric = done[0].metrics["metric"] if done else "?"
    return SuperResult(
        task=task,
        metric=metric,
        full=mean_std(full) if full else {},
        super=mean_std([p.score for p in picks]) if picks else {},
        picks=picks,
        tickets=tickets,
        out_dir=str(out),
        skipped=skipped,
    )
