"""Task-agnostic mask training (TAMT, Liu et al. 2022 §3.4): learn the mask on a pre-training objective.

Every target weight W gets a real-valued score S, and the model computes with W ⊙ M, M = 1[S ≥ φ]
(Eq. 3), the gradient passing straight through the binarisation to the scores (Eq. 4; the scores
and the masked layers: `scores.py`). The weights are frozen. Scores start from OMP (Eq. 5: α·φ
where OMP keeps a weight, 0 elsewhere; φ = 0.01, α = 2) or from a random mask with the same values
(§4.2.4). After every optimizer step the threshold φ is re-derived from the ranking of the scores so
that the sparsity is *exactly* the target, per matrix (default) or over all targets (`thresholds.py`).

This module is the search: its settings (`TamtConfig`, in the torch-free `config.py` that `--help`
reads), its setup (`initial_mask`, `prepare_tamt`) and its run (`search_tamt`). The public names of
`scores.py` and `thresholds.py` are re-exported.

As TAMT's code: its masker masks the pooler too; transformers' *ForMaskedLM models have
none, so the checkpoint's pooler is taken into the MLM model (`masks.prunable.attach_pooler`, where
the checkpoint has one) and, as no MLM or KD loss reaches it, its scores stay at their OMP start
(frozen: `--no-pooler` leaves it dense). The tied MLM decoder stays dense (`decoder`), the KD loss of
TAMT-KD reads clean text (`kd_input`), and the learning rate follows TAMT's schedule: a search stops
part-way down a longer linear schedule, where Tab. 2 took the mask of its sparsity in a 27,920-step
run (`paper_schedule_steps`; `SearchConfig.schedule_steps`, `SearchConfig.paper`).

The mask kept is the one at the step budget, as TAMT's main results load its budget checkpoints
(`checkpoint-17000/mask.pt` at 70%; its trainer also saves a `best_eval_mask`, which they do not
use): a search's cost is its budget and no dev set picks the mask (masks along the way are kept with
`save_at`, each with its dev loss in the log when `eval_every` is set). TAMT-KD's teacher trains in
train mode (`TamtConfig.kd_teacher`) and TAMT's masks prune int(s·n) weights per matrix
(`TamtConfig.count`), as its code does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

from accelerate import Accelerator
from torch import Tensor, nn

from ...core.errors import ConfigError
from ...data.kd_chunks import KD_EPOCHS, reference_kd_horizon
from ...lm.evaluation import HEAD_FILE
from ...lm.mlm_head import head_parameters
from ...masks import Mask
from ...masks.prunable import attach_pooler
from ...masks.targets import resolve_targets
from ...models.arch import ARCHS
from ...models.load import load_tokenizer
from ...models.source import fit_max_length
from ...train.config import TrainConfig
from ..omp.prune import omp_mask
from ..options import DEFAULT_MAX_LENGTH
from ..random.prune import random_mask
from ..search import SearchObjective, SearchResult, SearchSpec, run_search
from ..search_config import SearchConfig
from ..search_inputs import lm_objective, load_mlm_model, run_options
from .config import (
    PAPER_SCHEDULE_STEPS,
    PAPER_STEPS,
    Init,
    ScoreDtype,
    TamtConfig,
    moving_lr,
    paper_budget,
    paper_fraction,
    paper_schedule_steps,
    score_travel,
)
from .masked_layers import row_blocks
from .scores import SCORE_DTYPES, FlatScores, ScoreMask, Scratch, at_least, attach_scores
from .thresholds import (
    DIVERGED,
    GroupThresholder,
    Rethreshold,
    Thresholder,
    make_thresholders,
    rethreshold,
)

__all__ = [
    "DIVERGED",
    "SCORE_DTYPES",
    "PAPER_SCHEDULE_STEPS",
    "PAPER_STEPS",
    "FlatScores",
    "GroupThresholder",
    "Rethreshold",
    "Init",
    "ScoreDtype",
    "ScoreMask",
    "Scratch",
    "TamtConfig",
    "Thresholder",
    "at_least",
    "attach_scores",
    "frozen_mask_warning",
    "head_state",
    "initial_mask",
    "make_thresholders",
    "paper_budget",
    "paper_fraction",
    "paper_schedule_steps",
    "prepare_tamt",
    "rethreshold",
    "row_blocks",
    "search_tamt",
]


log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- setup


def initial_mask(model: nn.Module, config: TamtConfig) -> Mask:
    """The mask TAMT starts from: OMP, or random at the same sparsity (with the same ranking and count
    of pruned weights)."""
    kw = {"ranking": config.ranking, "targets": config.targets, "pattern": config.pattern}
    kw["count"] = config.count
    if config.init == "omp":
        return omp_mask(model, config.sparsity, **kw)
    return random_mask(model, config.sparsity, seed=config.seed, **kw)


def prepare_tamt(
    model: nn.Module, config: TamtConfig, *, flat: bool = False, flat_grads: bool = True
) -> tuple[dict[str, ScoreMask], list[dict]]:
    """Freeze `model`, attach trainable masks initialised per `config`, and return (masks, param groups).

    The parameter groups are the scores and, for the MLM objectives with `train_head`, the MLM
    head's own parameters (transform, LayerNorm, output bias; the decoder weight is the masked
    word-embedding matrix and stays frozen). `flat`, `flat_grads`: see `attach_scores` (give the
    optimizer stepped inside the backward no flat gradient).
    """
    masks = attach_scores(
        model,
        initial_mask(model, config),
        threshold=config.threshold,
        alpha=config.alpha,
        dtype=SCORE_DTYPES[config.score_dtype],
        pattern=config.pattern,
        flat=flat,
        flat_grads=flat_grads,
    )
    for key in _unreached(model, masks):  # the pooler: held at its start, as TAMT's masker holds it
        masks[key].scores.requires_grad_(False)
    groups = [{"params": [p.scores for p in masks.values() if p.scores.requires_grad], "name": "scores"}]
    if config.trains_head:
        head = list(head_parameters(model).values())
        for p in head:
            p.requires_grad_(True)
        group = {"params": head, "name": "mlm_head"}
        if config.head_lr is not None:
            group["lr"] = config.head_lr
        groups.append(group)
    return masks, groups


def _unreached(model: nn.Module, masks: dict[str, ScoreMask]) -> list[str]:
    """Mask keys no pre-training loss reaches: the family's pooler (only the pooled output reads it).
    Their scores get no gradient and stay where they start (TAMT's masker masks the pooler, at its OMP
    start throughout); frozen, they are no parameter a DDP reducer would wait for."""
    arch = ARCHS.get(getattr(getattr(model, "config", None), "model_type", None))
    key = f"{arch.pooler}.weight" if arch is not None and arch.pooler else None
    return [key] if key in masks else []


def head_state(model: nn.Module) -> dict[str, Tensor]:
    """The MLM head's own parameters (a delta over the base model), for `mlm_head.safetensors`."""
    return {k: v.detach().cpu().clone() for k, v in head_parameters(model).items()}


# --------------------------------------------------------------------------- the search


def frozen_mask_warning(config: TamtConfig, train_config: TrainConfig) -> str | None:
    """Why a search would end with its initial mask, or None. AdamW moves a score by about lr per
    step (`score_travel`), and Eq. 5 starts kept scores α·φ above pruned ones: a kept and a pruned
    score can swap only once their travel together covers that gap. The paper's lr (5e-5) crosses it
    after 200-400 of its 11K-22K steps; a short search at that lr is OMP. The default lr never is
    (`TamtConfig.default_lr`): this fires only on an lr given."""
    steps = train_config.max_steps
    horizon = train_config.schedule_steps or steps
    linear = train_config.schedule == "linear"
    travel = train_config.lr * score_travel(steps, horizon, linear)
    gap = config.alpha * config.threshold
    if 2 * travel >= gap:
        return None
    moving = moving_lr(gap, steps, horizon, linear)
    return (
        f"TAMT: at lr {train_config.lr:g} over {steps} steps a score moves about {travel:.2g} in all, "
        f"so no kept score (start {gap:g}) and pruned score (start 0) can swap: the result will be the "
        f"initial {config.init} mask. Give --lr {moving:g} or more (or leave --lr out: the default "
        "raises Table 1's lr for a search this short)."
    )


def search_tamt(
    model: nn.Module,
    objective: SearchObjective,
    config: TamtConfig,
    train_config: TrainConfig,
    out: str | os.PathLike,
    *,
    base_model: str,
    save_at: Sequence[int] = (),
    settings: dict[str, Any] | None = None,
    accelerator: Accelerator | None = None,
    keep_checkpoint: bool = False,
    warned: bool = False,
) -> SearchResult:
    """Train masks on `model` (a pre-trained model; with its MLM head for the MLM objectives).

    `objective.loss_fn` is normally `pretraining_loss(config.objective)`. The mask (and, for
    TAMT-MLM, the trained head as `mlm_head.safetensors`) is written to `out` at the end and to
    `out/steps/step-N` at each step of `save_at`. See `search.run_search` for resuming. `warned`:
    the caller has said already that the lr moves no mask (`search_from_config`, before its work).
    """
    if not warned and (message := frozen_mask_warning(config, train_config)):
        log.warning(message)
    # The flat score buffer is opt-in (`flat=True` to `prepare_tamt`, until a GPU measures it), so
    # this applies only where it is on: an optimizer stepped inside the backward frees each gradient
    # at once, and a flat gradient would hold them all.
    masks, groups = prepare_tamt(model, config, flat_grads=not train_config.optimizer_in_backward)
    thresholders = make_thresholders(masks, config.sparsity, config.ranking, config.pattern, config.count)
    after = Rethreshold(thresholders, compile=train_config.compile)
    spec = SearchSpec(
        method=f"tamt-{config.objective}",
        sparsity=config.sparsity,
        ranking=config.ranking,
        targets=config.targets,
        seed=config.seed if config.init == "random" else None,
        pattern=config.pattern,
        base_model=base_model,
        params=groups,
        on_step=after,
        graph_hook=after.graph_hook(),  # with --compile, the whole step is one graph
        describe=lambda: _described(config),
        settings=settings or {},
        extra_files=lambda: {HEAD_FILE: head_state(model)} if config.trains_head else None,
        objective_losses=tuple(f"{part}_loss" for part in config.objective.split("+")),
    )
    return run_search(
        model,
        objective,
        spec,
        train_config,
        out,
        save_at=save_at,
        accelerator=accelerator,
        keep_checkpoint=keep_checkpoint,
    )


def _described(config: TamtConfig) -> dict[str, Any]:
    """What a TAMT mask's config records of the search that found it."""
    return {
        "objective": config.objective,
        "init": config.init,
        "threshold": config.threshold,
        "alpha": config.alpha,
        "train_head": config.trains_head,
        "head_lr": config.head_lr if config.trains_head else None,
        "mlm_head": HEAD_FILE if config.trains_head else None,
        "decoder": config.decoder if "mlm" in config.objective else None,
        "kd_input": config.kd_reads,
        "kd_teacher": config.teacher_mode if config.kd_reads else None,
        **({"kd_data": config.kd_data} if config.kd_data != "blocks" else {}),
        **({"score_dtype": config.score_dtype} if config.score_dtype != "float32" else {}),
    }


def kd_data_horizon(config: SearchConfig, sequences: int) -> int:
    """The lr schedule's horizon on TAMT's KD data: train_kd.py's t_total over its sequences
    (`data.kd_chunks.reference_kd_horizon`), or one error when the search would go past it."""
    horizon = reference_kd_horizon(sequences, config.batch_size)
    if horizon < config.steps:
        raise ConfigError(
            f"--kd-data reference: train_kd.py's schedule on these data ends at step {horizon} ({KD_EPOCHS} "
            f"epochs of {sequences:,} sequences at batch {config.batch_size}); --steps {config.steps} goes "
            "past it: give fewer steps, or the horizon wanted as --schedule-steps"
        )
    return horizon


def search_from_config(config: SearchConfig, acc: Accelerator) -> SearchResult:
    """`ticketlab search tamt`: the model (with its MLM head and the checkpoint's pooler), the corpus
    objective and the training settings a `SearchConfig` describes, searched by `search_tamt`."""
    tamt: TamtConfig = config.method  # type: ignore[assignment]
    # the schedule on TAMT's KD data is known once they are drawn; any other, now
    later = tamt.kd_data == "reference" and config.schedule_steps is None
    if not later:
        _said_lr(config, tamt, acc)  # before the model and the corpus load, not minutes later
    need_head = "mlm" in tamt.objective
    model, model_config, has_head = load_mlm_model(config, need_head)
    if tamt.targets is None and tamt.pooler:  # TAMT's masker masks the checkpoint's pooler too
        attach_pooler(model, config.model)
    tamt = dataclasses.replace(tamt, targets=resolve_targets(model, tamt.targets, tamt.pooler))
    if need_head and not has_head:
        if not tamt.train_head:
            raise ConfigError(f"{config.model} has no MLM head: a frozen random head cannot be used for MLM")
        if acc.is_main_process:
            log.warning(
                f"note: {config.model} has no MLM head; "
                "a fresh one (transform, bias) is trained with the masks"
            )
    config.max_length = fit_max_length(model_config, config.max_length, DEFAULT_MAX_LENGTH)
    tokenizer = load_tokenizer(config.model)
    # TAMT-KD on a model without an MLM head: no MLM loss to report
    mlm_eval = tamt.objective != "kd" or has_head
    objective = lm_objective(
        config,
        tokenizer,
        acc,
        tamt.objective,
        mlm_eval=mlm_eval,
        decoder=tamt.decoder,
        kd_input=tamt.kd_reads or "clean",
        eval_kd_input=tamt.kd_input or "clean",  # TAMT's KD dev data is clean text, whatever the objective
        teacher=tamt.teacher_mode,
        kd_data=tamt.kd_data,
    )
    objective.info["fresh_mlm_head"] = need_head and not has_head
    if later:
        config.schedule_steps = kd_data_horizon(config, objective.info["train_sequences"])
    lr, train_config = _said_lr(config, tamt, acc, say=later)
    return search_tamt(
        model, objective, tamt, train_config, config.out, warned=True, **run_options(config, lr, acc)
    )


def _said_lr(
    config: SearchConfig, tamt: TamtConfig, acc: Accelerator, say: bool = True
) -> tuple[float, TrainConfig]:
    """The search's lr (`--lr`, else `TamtConfig.default_lr` for its steps and schedule) and training
    settings; `say`: warn (the main process) where that lr moves no mask (`frozen_mask_warning`)."""
    lr = config.lr or tamt.default_lr(config.steps, config.horizon)
    train_config = config.train_config(lr)
    if say and acc.is_main_process and (message := frozen_mask_warning(tamt, train_config)):
        log.warning(message)
    return lr, train_config
