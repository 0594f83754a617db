"""Iterative magnitude pruning with rewinding (IMP; Chen et al. 2020, as run in TAMT §4.1.3 and §B.2).

The weights train on an objective (MLM by default; any downstream task's loss for task-specific IMP)
while the sparsity rises in equal steps: `prune_rate` (10%) more of the target weights are pruned
by magnitude at steps 0, N/(R-1), 2N/(R-1), ..., N, where R = ceil(sparsity / prune_rate)
rounds reach the target exactly at the last step N. The first pruning happens at step 0, before any
training (as Chen et al.'s code does, TAMT §B.2): with 10% per round, 70% takes 7 rounds and N steps
are 6 intervals (TAMT Table 2: 16.75K iterations = 6 × 2.79K). After every pruning, the surviving
weights are rewound to θ0, the pre-trained weights, or with `rewind_to=k` to θ at k·N steps
(Chen et al. Fig. 7; k·N must not be later than the second pruning). Pruned weights stay exactly zero
while training (they are masked by a `BinaryMask` parametrization).

What is pruned and how it is ranked: the two papers' IMPs differ, and `variant` names each.
  chen    Chen et al. 2020 (BERT-Tickets, `LT_pretrain.py::pruning_model`): one *global* magnitude
          ranking over the encoder's Q, K, V, attention-output and FFN matrices, WITHOUT the word
          embeddings (the default: ticketlab's `imp` is Chen et al.'s method, and the transfer study
          is theirs). Every encoder matrix is then pruned to the target overall, none spared.
  tamt    TAMT's IMP baseline (its `imp_and_fine_tune/LT_pretrain.py::pruning_model`): each matrix
          pruned to the target by its own magnitudes (*per matrix*), the word embeddings included.
          Use it where IMP is compared with TAMT's masks (same targets, same per-matrix sparsity).
  legacy  what ticketlab did before the variants: global ranking over the default targets, word
          embeddings included (which spares the 7.8M embedding weights of a small model and prunes
          its encoder far beyond the target), and one optimizer and schedule across all rounds. Kept
          only so that sweeps written before the variants keep their run ids and meaning: a sweep's
          `imp` without `variant:` is this one. Not either paper's method.
Both papers' code also masks the pooler; transformers' *ForMaskedLM models have none, and a masked
pooler would not fit the MLM model used for pre-training losses, so it is a target only with
`pooler=True` (and only where the model has one, i.e. task-specific IMP).

What is rewound: the encoder's weights. The MLM head keeps training across rounds and is not part of
the result, as in the reference code (it rewinds only `bert.*`); for a task objective the whole model
including the task head is rewound (the ticket is f(x; m ⊙ θ0, C0)). After every pruning the
optimizer and its learning-rate schedule start afresh (Adam's moments and step counts dropped, the
schedule back to its first step, warm-up included), as both reference codes rebuild AdamW and
`get_linear_schedule_with_warmup(..., num_training_steps=t_total)` after each pruning: every round
starts at the peak learning rate and decays over the run's length. (`legacy` keeps one AdamW and one
schedule across rounds.)

The mask applies to the rewind point: θ0 is the base model itself; θ_k is written as a Hugging Face
checkpoint to `OUT/rewound_model/`, and the mask file's `base_model` and hash name it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from torch import Tensor, nn

from ..arch import arch_of
from ..errors import ConfigError
from ..masking import BinaryMask, attach, dense_weight, find_targets, weights_hash
from ..masking.targets import POOLER, Targets
from ..modeling import encoder_of
from ..outputs import atomic_dir
from ..training import TrainConfig, TrainState, restart_optimizer
from ..validation import Fraction, OpenFraction, check_config, option
from .ranking import Ranking, keep_top
from .search import SearchDir, SearchObjective, SearchResult, SearchSpec, run_search

REWOUND_DIR = "rewound_model"


Variant = Literal["chen", "tamt", "legacy"]
VARIANT_RANKING: dict[str, Ranking] = {"chen": "global", "tamt": "local", "legacy": "global"}


@dataclass
class ImpConfig:
    sparsity: Fraction
    prune_rate: OpenFraction = option(0.1, "sparsity added per round (of all target weights)")
    ranking: Ranking | None = option(  # None: the variant's
        None,
        "rank per matrix (local) or over all targets (global); default the variant's (chen: "
        "global, tamt: local)",
    )
    rewind_to: OpenFraction | None = option(  # fraction k of the run: rewind to θ at step k·N
        None, "rewind to θ at FRAC of the run (default θ0)", metavar="FRAC"
    )
    rewind_head: bool = False  # rewind the head too (task-specific IMP)
    targets: Targets = None  # None: the variant's (see `variant_targets`)
    variant: Variant = option(  # whose IMP (see the module docstring)
        "chen",
        "chen (default): global ranking over the encoder's matrices, no word embeddings; tamt: "
        "per-matrix ranking, word embeddings included; legacy: ticketlab's old IMP (global over "
        "all targets, one optimizer across rounds)",
    )
    pooler: bool = option(  # where the model has one
        False, "prune the pooler too, as both papers' code does (task models)"
    )

    def __post_init__(self) -> None:
        check_config(self)
        own = VARIANT_RANKING[self.variant]
        if self.ranking is None:
            self.ranking = own
        elif self.variant != "legacy" and self.ranking != own:
            raise ConfigError(
                f"IMP variant {self.variant!r} ranks {'per matrix' if own == 'local' else 'globally'} "
                f"({own}); ranking {self.ranking!r} contradicts it: leave ranking out, or choose the "
                f"variant that ranks so ({'chen' if own == 'local' else 'tamt'})"
            )
        if self.sparsity <= self.prune_rate:
            raise ConfigError(
                f"IMP to {self.sparsity:.0%} with {self.prune_rate:.0%} per round is one pruning at step 0: "
                f"use one-shot magnitude pruning (`ticketlab prune omp --ranking {self.ranking}`)"
            )


def variant_targets(model: nn.Module, config: ImpConfig) -> Targets:
    """The weights IMP prunes: `config.targets` when given, else the variant's set for the model."""
    if config.targets is not None:
        return config.targets
    arch = arch_of(getattr(model.config, "model_type", "unknown"))  # a known family, or say so
    if config.variant == "legacy" and not config.pooler:
        return arch.targets(pooler=False)  # the default targets before issue 34, stored as before
    # the pooler as `pooler` says (issue 34 put it in the default targets; IMP's own flag decides here)
    pattern = arch.encoder_targets() if config.variant == "chen" else arch.targets(pooler=False)
    return f"{pattern}|{POOLER}" if config.pooler else pattern


def imp_schedule(sparsity: float, steps: int, prune_rate: float = 0.1) -> list[tuple[int, float]]:
    """[(step, sparsity after pruning at that step)]: equal rounds from step 0 to the last step."""
    rounds = math.ceil(round(sparsity / prune_rate, 9))
    if rounds < 2:
        return [(0, sparsity)]
    if steps < rounds - 1:
        raise ConfigError(f"IMP needs at least {rounds - 1} steps for {rounds} pruning rounds, got {steps}")
    levels = [min(round(prune_rate * (r + 1), 9), sparsity) for r in range(rounds)]
    return [(round(r * steps / (rounds - 1)), level) for r, level in enumerate(levels)]


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
        self.model, self.config = model, config
        self.schedule = imp_schedule(config.sparsity, steps, config.prune_rate)
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
        if self.rewind_step and self.rewind_step > self.schedule[1][0]:
            raise ConfigError(
                f"rewind_to={config.rewind_to} is step {self.rewind_step}, after the second pruning "
                f"(step {self.schedule[1][0]}): rewind to an earlier point or train longer"
            )
        self.theta = self.snapshot()  # θ0; replaced by θ_k at the rewind step
        self.hash = weights_hash(model, list(self.masks))
        self.level = 0.0
        self.prune(self.schedule[0][1])  # the first pruning, at step 0

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
        for s, level in self.schedule[1:]:
            if s == step:
                self.prune(level)
                self.rewind()
                if self.config.variant != "legacy":
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
    missing, unexpected = clean.load_state_dict(dense_state(model), strict=False)
    if unexpected or [k for k in missing if not k.endswith("position_ids")]:
        raise RuntimeError(
            f"rewound state does not fit {type(model).__name__}: {missing[:3]} {unexpected[:3]}"
        )
    with atomic_dir(out, kind="rewound model") as tmp:
        clean.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
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
        describe=lambda: {
            "objective": objective.name,
            "variant": config.variant,
            "pooler": any(k.startswith("pooler.") for k in imp.modules),  # masked here (MLM models: none)
            "fresh_optimizer": config.variant != "legacy",
            "prune_rate": config.prune_rate,
            "schedule": [[s, level] for s, level in imp.schedule],
            "level": imp.level,
            "rewind_to": config.rewind_to,
            "rewind_step": imp.rewind_step,
            "rewound_model": REWOUND_DIR if imp.rewind_step else None,
        },
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
