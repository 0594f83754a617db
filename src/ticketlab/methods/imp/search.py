"""Iterative magnitude pruning with rewinding (IMP; Chen et al. 2020, as run in TAMT §4.1.3 and §B.2).

The weights train on an objective (MLM by default; any downstream task's loss for task-specific IMP)
while the sparsity rises in equal steps of `prune_rate` (10%) of the target weights, pruned by
magnitude; R = ceil(sparsity / prune_rate) prunings reach the target exactly at the last step N.
Where the first one falls (`first_pruning`) is where the two reference scripts differ:

  start        on MLM (the default there), as BERT-Tickets' `LT_pretrain.py` and TAMT's IMP do: the
               first pruning at step 0, on θ0 before any training, then at N/(R-1), 2N/(R-1), ..., N;
               with 10% per round, 70% takes 7 prunings and N steps are 6 training rounds (TAMT
               Table 2: 16.75K iterations = 6 × 2.79K).
  after-round  on a task (the default there), as BERT-Tickets' `LT_glue.py`: training first, every
               pruning after a full round, at N/R, 2N/R, ..., N; 70% takes 7 training rounds (one
               more than `start`).

After every pruning, the surviving weights are rewound to θ0, the pre-trained weights, or with
`rewind_to=k` to θ at k·N steps (Chen et al. Fig. 7; k·N must not be later than the end of the first
training round). Pruned weights stay exactly zero while training (they are masked by a `BinaryMask`
parametrization).

What is pruned and how it is ranked: the two papers' IMPs differ, and `variant` names each.
  chen    Chen et al. 2020 (BERT-Tickets, `LT_pretrain.py::pruning_model`): one *global* magnitude
          ranking over the encoder's Q, K, V, attention-output and FFN matrices, WITHOUT the word
          embeddings (the default: ticketlab's `imp` is Chen et al.'s method, and the transfer study
          is theirs). Every encoder matrix is then pruned to the target overall, none spared.
  tamt    TAMT's IMP baseline (its `imp_and_fine_tune/LT_pretrain.py::pruning_model`): each matrix
          pruned to the target by its own magnitudes (*per matrix*), the word embeddings included.
          Use it where IMP is compared with TAMT's masks (same targets, same per-matrix sparsity).
Both papers' code also prunes the pooler (TAMT's `LT_pretrain.py` per matrix, BERT-Tickets' in its
global ranking), and so does ticketlab's IMP where the checkpoint has one (`pooler=False`: dense).
transformers' *ForMaskedLM models are built without it, so IMP on MLM takes the checkpoint's
(`masks.prunable.attach_pooler`, as TAMT's search does): no MLM loss reads it, so its weights stay at
θ0 and its mask is their magnitude ranking, as in the references' BertForMaskedLM, whose pooler no
loss reaches either. On MLM the tied decoder stays dense (`decoder`; the references' torch pruning
re-parametrises the embedding module only) and the KD dev loss reads clean text (`kd_input`), as
TAMT-MLM's defaults.

What is rewound: the encoder's weights (`bert.*`: embeddings, layers, pooler), as both reference
codes rewind only the keys holding 'bert'. The head — the MLM head, or a task's classifier — keeps
training across rounds; `rewind_head=True` rewinds a task head too (ticketlab's task IMP before it
followed LT_glue.py: the ticket f(x; m ⊙ θ0, C0)). After every pruning the optimizer and its
learning-rate schedule start afresh (Adam's moments and step counts dropped, the schedule back to its
first step, warm-up included), as both reference codes rebuild AdamW and
`get_linear_schedule_with_warmup(..., num_training_steps=t_total)` after each pruning: every round
starts at the peak learning rate and decays linearly towards 0 at `schedule_steps` (default N, the
search's steps; the references' t_total is their whole epoch budget, which also holds the rounds past
the target: give it as `schedule_steps` to decay as slowly as they do).

The mask applies to the rewind point: θ0 is the base model itself; θ_k is written as a Hugging Face
checkpoint to `OUT/rewound_model/`, and the mask file's `base_model` and hash name it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import Tensor, nn

from ...core.errors import ConfigError
from ...core.outputs import atomic_dir
from ...masks import BinaryMask, attach, dense_weight, find_targets, weights_hash
from ...masks.prunable import add_missing_children, attach_pooler, pooler_target
from ...masks.targets import Targets
from ...models.arch import arch_of, encoder_of
from ...models.load import load_config, load_tokenizer, save_tokenizer
from ...models.source import fit_max_length
from ...tasks.objective import load_task_model, task_objective
from ...tasks.registry import get_task
from ...train.config import TrainConfig, TrainState
from ...train.schedule import restart_optimizer
from ..options import DEFAULT_MAX_LENGTH
from ..ranking import Ranking, keep_top
from ..search import SearchObjective, SearchResult, SearchSpec, run_search
from ..search_config import SearchConfig
from ..search_dir import SearchDir
from ..search_inputs import lm_objective, load_mlm_model, run_options
from .config import ImpConfig, imp_schedule

REWOUND_DIR = "rewound_model"
log = logging.getLogger(__name__)


def variant_targets(model: nn.Module, config: ImpConfig) -> Targets:
    """The weights IMP prunes: `config.targets` when given, else the variant's set for the model, with
    the pooler where the checkpoint gave the model one (unless `pooler` is off)."""
    if config.targets is not None:
        return config.targets
    arch = arch_of(getattr(model.config, "model_type", "unknown"))  # a known family, or say so
    pattern = arch.encoder_targets() if config.variant == "chen" else arch.targets(pooler=False)
    pooler = pooler_target(model) if config.pooler else None
    return f"{pattern}|{pooler}" if pooler else pattern


@torch.no_grad()
def magnitude_prune(
    modules: dict[str, nn.Module], masks: dict[str, BinaryMask], sparsity: float, ranking: Ranking
):
    """Prune the smallest-|W| surviving weights until `sparsity` of all is pruned (pruned stay pruned)."""
    scores = {
        k: torch.where(masks[k].mask, dense_weight(m).abs().float(), -math.inf) for k, m in modules.items()
    }
    new = keep_top(scores, sparsity, ranking)
    for k, p in masks.items():
        p.mask.copy_(new[k].to(p.mask.device))


class _Imp:
    """The state of one IMP run: masks, schedule, rewind point."""

    def __init__(self, model: nn.Module, config: ImpConfig, steps: int):
        assert config.first_pruning is not None, "ImpConfig.resolved first"
        self.model, self.config = model, config
        self.schedule = imp_schedule(config.sparsity, steps, config.prune_rate, config.first_pruning)
        self.at_start = config.first_pruning == "start"
        self.targets = variant_targets(model, config)
        self.modules = find_targets(model, self.targets)
        self.masks = {
            k: BinaryMask(torch.ones_like(m.weight, dtype=torch.bool)) for k, m in self.modules.items()
        }
        attach(model, self.masks)
        for p in model.parameters():
            p.requires_grad_(True)
        inside = {id(p) for p in encoder_of(model).parameters()}
        self.rewind_names = [n for n, p in model.named_parameters() if config.rewind_head or id(p) in inside]
        self.rewind_step = round(config.rewind_to * steps) if config.rewind_to is not None else 0
        first_round_end = self.schedule[1 if self.at_start else 0][0]
        if self.rewind_step and self.rewind_step > first_round_end:
            raise ConfigError(
                f"rewind_to={config.rewind_to} is step {self.rewind_step}, after the first training "
                f"round's pruning (step {first_round_end}): rewind to an earlier point or train longer"
            )
        self.theta = self.snapshot()  # θ0; replaced by θ_k at the rewind step
        self.hash = weights_hash(model, list(self.masks))
        self.level = 0.0
        if self.at_start:
            self.prune(self.schedule[0][1])  # the first pruning, at step 0 on θ0

    def snapshot(self) -> dict[str, Tensor]:
        params = dict(self.model.named_parameters())
        return {n: params[n].detach().clone() for n in self.rewind_names}

    @torch.no_grad()
    def rewind(self) -> None:
        params = dict(self.model.named_parameters())
        for n, t in self.theta.items():
            params[n].copy_(t)

    def prune(self, level: float) -> None:
        magnitude_prune(self.modules, self.masks, level, self.config.ranking)
        self.level = level

    def on_step(self, state: TrainState, sd: SearchDir, save_rewound) -> None:
        step = state.step
        if step == self.rewind_step and self.rewind_step:
            self.theta = self.snapshot()
            self.hash = weights_hash(self.model, list(self.masks))
            save_rewound(state.accelerator)
        for s, level in self.schedule[1:] if self.at_start else self.schedule:
            if s == step:
                self.prune(level)
                self.rewind()
                restart_optimizer(state)
                if state.accelerator.is_main_process:
                    sd.log(
                        {"event": "pruned", "step": step, "sparsity": level, "rewound_to": self.rewind_step}
                    )

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"imp_level": self.level}
        if self.rewind_step:  # θ_k cannot be recomputed from the base model
            out.update(imp_theta=self.theta, imp_hash=self.hash)
        return out

    def load(self, d: dict[str, Any]) -> None:
        self.level = float(d.get("imp_level", self.level))
        if "imp_theta" in d:
            self.theta = dict(d["imp_theta"])
            self.hash = d["imp_hash"]


def dense_state(model: nn.Module) -> dict[str, Tensor]:
    """The model's state dict with masks ignored: `X.parametrizations.weight.original` -> `X.weight`."""
    out = {}
    for name, t in model.state_dict().items():
        if ".parametrizations.weight." in name:
            if not name.endswith(".parametrizations.weight.original"):
                continue  # the masks' own buffers
            name = name.replace(".parametrizations.weight.original", ".weight")
        out[name] = t.detach().cpu().clone()
    return out


def save_rewound_model(model: nn.Module, out: Path, tokenizer=None) -> Path:
    """Write the model's current dense weights (masks ignored, not squashed) as an HF checkpoint."""
    clean = type(model)(model.config)  # a parametrized model cannot be saved or safely deep-copied
    add_missing_children(clean, model)  # an MLM model's attached pooler (its mask has a key for it)
    missing, unexpected = clean.load_state_dict(dense_state(model), strict=False)
    if unexpected or [k for k in missing if not k.endswith("position_ids")]:
        raise RuntimeError(
            f"rewound state does not fit {type(model).__name__}: {missing[:3]} {unexpected[:3]}"
        )
    with atomic_dir(out, kind="rewound model") as tmp:
        clean.save_pretrained(tmp)
        if tokenizer is not None:
            save_tokenizer(tokenizer, tmp)
    return out


def search_imp(
    model: nn.Module,
    objective: SearchObjective,
    config: ImpConfig,
    train_config: TrainConfig,
    out: str | os.PathLike,
    *,
    base_model: str,
    save_at: Sequence[int] = (),
    settings: dict[str, Any] | None = None,
    accelerator: Accelerator | None = None,
    keep_checkpoint: bool = False,
    tokenizer=None,
) -> SearchResult:
    """IMP on `objective` (MLM, or a task's loss): masks at `out` and at `out/steps/step-N` on the way."""
    config = config.resolved(on_task=objective.name != "mlm")
    imp = _Imp(model, config, train_config.max_steps)
    sd = SearchDir(out)
    rewound = sd.out / REWOUND_DIR

    def save_rewound(acc) -> None:
        if acc.is_main_process:
            save_rewound_model(model, rewound, tokenizer)
            sd.log({"event": "rewind_point", "step": imp.rewind_step, "dir": str(rewound)})

    spec = SearchSpec(
        method="imp" if objective.name == "mlm" else f"imp-{objective.name}",
        sparsity=config.sparsity,
        ranking=config.ranking,
        targets=imp.targets,
        seed=train_config.seed,
        base_model=str(rewound.resolve()) if imp.rewind_step else base_model,
        params=[p for p in model.parameters() if p.requires_grad],
        on_step=lambda state: imp.on_step(state, sd, save_rewound),
        describe=lambda: _described(objective, config, imp, train_config),
        settings=settings or {},
        extra_state=(imp.state, imp.load),
        base_hash=lambda: imp.hash,
        sparsity_now=lambda: imp.level,
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


def _described(
    objective: SearchObjective, config: ImpConfig, imp: _Imp, train_config: TrainConfig
) -> dict[str, Any]:
    """What an IMP mask's config records of the search that found it (`imp`: its state at the end)."""
    return {
        "objective": objective.name,
        "variant": config.variant,
        "pooler": any(k.startswith("pooler.") for k in imp.modules),  # pruned (the checkpoint's)
        **({"decoder": config.decoder, "kd_input": config.kd_input} if objective.name == "mlm" else {}),
        "fresh_optimizer": True,
        "prune_rate": config.prune_rate,
        "first_pruning": config.first_pruning,
        "rewind_head": config.rewind_head,
        "schedule_steps": train_config.schedule_steps or train_config.max_steps,
        "schedule": [[s, level] for s, level in imp.schedule],
        "level": imp.level,
        "rewind_to": config.rewind_to,
        "rewind_step": imp.rewind_step,
        "rewound_model": REWOUND_DIR if imp.rewind_step else None,
    }


def search_from_config(config: SearchConfig, acc: Accelerator) -> SearchResult:
    """`ticketlab search imp`: the model, objective and training settings a `SearchConfig` describes,
    on MLM or on its task, searched by `search_imp`."""
    imp: ImpConfig = config.method  # type: ignore[assignment]
    tokenizer = load_tokenizer(config.model)
    if config.task is not None:
        with acc.main_process_first():
            default = get_task(config.task, config.data_dir).max_length
            length = fit_max_length(load_config(config.model), config.max_length, default)
            task = task_objective(config.task, tokenizer, config.data_dir, max_length=length)
        model, _ = load_task_model(config.model, task.spec, seed=config.seed)
        objective = SearchObjective(
            name=task.spec.id,
            dataset=task.dataset,
            collate_fn=task.collate_fn,
            loss_fn=task.loss_fn,
            eval_fn=None if config.no_eval else task.eval_fn,
            info={"task": task.spec.id, "data_dir": config.data_dir, "n_train": task.n_train},
        )
        lr = config.lr or task.spec.lr
        train_config = config.train_config(lr, metric=task.metric, greater=task.greater_is_better)
    else:
        model, model_config, has_head = load_mlm_model(config, need_head=True)
        if not has_head and acc.is_main_process:
            log.warning(f"note: {config.model} has no MLM head; IMP trains a fresh one with the weights")
        config.max_length = fit_max_length(model_config, config.max_length, DEFAULT_MAX_LENGTH)
        if imp.targets is None and imp.pooler:  # both references prune the checkpoint's pooler too
            attach_pooler(model, config.model)
        objective = lm_objective(
            config,
            tokenizer,
            acc,
            "mlm",
            mlm_eval=True,
            decoder=imp.decoder,
            kd_input=imp.kd_input,
            eval_kd_input=imp.kd_input,
        )
        lr = config.lr or 5e-5  # Table 1
        train_config = config.train_config(lr)
    options = run_options(config, lr, acc)
    return search_imp(model, objective, imp, train_config, config.out, tokenizer=tokenizer, **options)
