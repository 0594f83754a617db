"""`ticketlab prune`: one-shot pruning, `prune(PruneConfig) -> PruneResult`.

The config is read when `ticketlab prune --help` is parsed: torch, transformers and the methods are
imported by the function that runs, from `methods.one_shot` (tests/test_startup.py pins it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..core.checks import Fraction, Seed, check_config, check_one_of, option
from ..masks.pattern import parse_pattern, pattern_sparsity
from ..masks.targets import POOLER_HELP, Targets
from ..methods.registry import methods

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
        "pruning: without --targets, the layers' matrices and the pooler, the word embeddings left dense)",
    )
    seed: Seed = option(0, "seed for random pruning")
    # regexes over module names (default: TAMT §3.2's weights and the pooler; with global ranking
    # Chen et al.'s, the layers' six matrices and the pooler without the word embeddings, `one_shot_targets`)
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


def prune(config: PruneConfig, *, model: nn.Module | None = None) -> PruneResult:
    """Prune and write the mask directory. `model`: the already loaded base model (not modified)."""
    from ..methods.one_shot import prune_into  # lazy: PruneConfig is read by `ticketlab prune --help`

    mask, saved, elapsed = prune_into(config, model)
    return PruneResult(mask, saved, Path(config.out), elapsed)
