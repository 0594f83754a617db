"""SparseGPT's settings: the reference's defaults (IST-DASLab/sparsegpt `fasterprune`: blocksize 128,
percdamp 0.01): `ticketlab prune sparsegpt --blocksize N --damp F`, a sweep spec's settings of
`sparsegpt`, `PruneConfig(settings=...)`. Light: `ticketlab prune --help` reads it without torch."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.checks import Fraction, PositiveInt, check_config, option
from ...core.errors import ConfigError
from ...masks.pattern import parse_pattern


@dataclass(frozen=True)
class SparseGptConfig:
    blocksize: PositiveInt = option(128, "columns whose mask is chosen together (the lazy-update block)")
    damp: Fraction = option(0.01, "dampening: damp · mean(diag H) added to the Hessian's diagonal")

    def __post_init__(self) -> None:
        check_config(self)

    def check_pattern(self, pattern: str | None) -> None:
        """An N:M group may not straddle two blocks: M must divide the block size."""
        nm = parse_pattern(pattern)
        if nm is not None and self.blocksize % nm.m:
            raise ConfigError(f"blocksize {self.blocksize}: not a multiple of {nm.m} (pattern {nm})")
