"""`ticketlab prune`: one-shot pruning, `prune(PruneConfig) -> PruneResult`.

The config (`methods.prune_config`) is read when `ticketlab prune --help` is parsed: torch,
transformers and the methods are imported by the function that runs, from `methods.one_shot`
(tests/test_startup.py pins it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..methods.prune_config import PruneConfig

if TYPE_CHECKING:
    from torch import nn

    from ..masks import Mask, MaskConfig

__all__ = ["PruneConfig", "PruneResult", "prune"]


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
