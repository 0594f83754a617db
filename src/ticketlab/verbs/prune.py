"""`ticketlab prune`: one-shot pruning, `prune(PruneConfig) -> PruneResult`.

The config is read when `ticketlab prune --help` is parsed: torch, transformers and the methods are
imported by the function that runs (lazy start-up; tests/test_startup.py pins it).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..core.checks import Fraction, Seed, check_config, check_one_of, option
from ..core.outputs import check_output
from ..masks.pattern import parse_pattern, pattern_sparsity
from ..masks.targets import POOLER_HELP, Targets, resolve_targets
from ..methods.registry import methods
from ..models.arch import arch_of
from ..models.load import load_model

if TYPE_CHECKING:
    from torch import nn

    from ..masks import Mask, MaskConfig


@dataclass
class PruneConfig:
    """One-shot pruning of `model` into the mask directory `out`."""

    model: str  # local directory or hub id
    method: str  # a registered one-shot method (`methods.registry`, verb prune): omp, random
    sparsity: Fraction | None  # None with a pattern: the one it implies
    out: str | os.PathLike
    ranking: Literal["local", "global"] = option(
        "local",
        "rank weights per matrix (local, TAMT's OMP) or over all targets (global, Chen et al.'s one-shot "
        "pruning: without --targets, the layers' matrices only, the word embeddings left dense)",
    )
    seed: Seed = option(0, "seed for random pruning")
    # regexes over module names (default: TAMT §3.2's weights and the pooler; with global ranking
    # Chen et al.'s, the layers' six matrices without the word embeddings, `one_shot_targets`)
    targets: Targets = None
    pattern: str | None = None  # "N:M": keep N of every M consecutive weights along the input dim
    pooler: bool = option(True, POOLER_HELP)

    def __post_init__(self) -> None:
        check_config(self)  # types, sparsity in [0, 1), ranking
        check_one_of("method", self.method, sorted(methods("prune")))
        self.sparsity = pattern_sparsity(self.sparsity, self.pattern, self.ranking)
        self.pattern = self.pattern and str(parse_pattern(self.pattern))  # " 2:4" is recorded as "2:4"


@dataclass
class PruneResult:
    mask: Mask
    config: MaskConfig
    out: Path
    time_s: float  # the pruning itself, loading and saving excluded


def one_shot_targets(model: nn.Module, config: PruneConfig) -> Targets:
    """The weights one-shot pruning ranks: `config.targets` when given; under global ranking Chen et
    al.'s (BERT-Tickets' `pruning_model`: the layers' Q, K, V, attention-output and FFN matrices,
    the word embeddings dense, whose 7.8M weights would otherwise spare the encoder of a small model
    or take most of the pruning); else None, the family's default (TAMT §3.2: word embeddings too)."""
    if config.targets is not None or config.ranking != "global":
        return config.targets
    return arch_of(getattr(model.config, "model_type", "unknown")).encoder_targets()


def prune(config: PruneConfig, *, model: nn.Module | None = None) -> PruneResult:
    """Prune and write the mask directory. `model`: the already loaded base model (not modified)."""
    from ..masks import MaskConfig, load_mask, save_mask  # lazy start-up (see the imports)

    check_output(config.out, kind="mask", inputs=[config.model])  # before any work
    model = model if model is not None else load_model(config.model, head="base")
    targets = resolve_targets(model, one_shot_targets(model, config), config.pooler)
    t0 = time.perf_counter()
    method = methods("prune")[config.method]
    mask = method.run(
        model,
        config.sparsity,
        ranking=config.ranking,
        targets=targets,
        seed=config.seed,
        pattern=config.pattern,
    )
    elapsed = time.perf_counter() - t0
    mc = MaskConfig.for_model(
        model,
        mask,
        method=config.method,
        sparsity=config.sparsity,
        base_model=str(config.model),
        targets=targets,
        ranking=config.ranking,
        seed=config.seed if method.seeded else None,
        pattern=config.pattern,
    )
    save_mask(mask, mc, config.out)
    return PruneResult(mask, load_mask(config.out)[1], Path(config.out), elapsed)  # config as saved
