"""N:M patterns: keep exactly N of every M consecutive weights along the input dimension.

A pattern is a parameter of the one selection (`methods.ranking.keep_top`, TAMT's thresholds), the
way `torch.ao.pruning` treats N:M as a parameter of its one sparsifier: the scores are ranked inside
each group of M instead of per matrix or over all targets. Groups run along the last dimension of a
weight (the input dimension of `nn.Linear.weight` [out, in], the hidden size of an embedding), which
is what NVIDIA's sparse tensor cores need for 2:4 (`torch.sparse.to_sparse_semi_structured`).
Ties inside a group keep the lower position, as the unstructured selection does.

A matrix whose last dimension is not a multiple of M is refused, not left dense: a mask that says
"2:4" then holds for every target, its sparsity is exactly 1 - N/M, and the export to 2:4 tensors
never meets a dense matrix it cannot take.

This module is torch-free: configs check their pattern with it when a verb's options are parsed.
The selection on tensors is `masks.nm`'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..core.errors import ConfigError

_FORM = re.compile(r"(\d+):(\d+)")
SEMI_STRUCTURED = "2:4"  # the one pattern sparse tensor cores run
SEMI_DTYPE_NAMES = ("fp16", "bf16")  # the dtypes they take (`export.SEMI_DTYPES`)


@dataclass(frozen=True)
class NM:
    """Keep n of every m consecutive weights (0 < n < m)."""

    n: int
    m: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def parse_pattern(pattern: str | NM | None) -> NM | None:
    """'2:4' -> NM(2, 4); None (elementwise) stays None; anything else is refused in one line."""
    if pattern is None or isinstance(pattern, NM):
        return pattern
    found = _FORM.fullmatch(pattern.strip()) if isinstance(pattern, str) else None
    if found is None or not 0 < int(found[1]) < int(found[2]):
        raise ConfigError(f"pattern must be N:M with 0 < N < M (e.g. 2:4), got {pattern!r}")
    return NM(int(found[1]), int(found[2]))


def pattern_sparsity(sparsity: float | None, pattern: str | None, ranking: str | None = "local") -> float:
    """The sparsity a config runs at: the given one, or the one an N:M pattern implies (1 - N/M).
    A given sparsity that disagrees with the pattern, a pattern with global ranking (N:M ranks
    inside each group), or neither sparsity nor pattern is refused."""
    nm = parse_pattern(pattern)
    if nm is None:
        if sparsity is None:
            raise ConfigError("give a sparsity (a fraction in [0, 1)) or an N:M pattern")
        return sparsity
    if sparsity is not None and abs(sparsity - nm.sparsity) > 1e-9:
        raise ConfigError(
            f"sparsity {sparsity:g} disagrees with pattern {nm}, which keeps {nm.n} of every {nm.m} "
            f"weights (sparsity {nm.sparsity:g}); leave the sparsity out"
        )
    if ranking == "global":
        raise ConfigError(f"pattern {nm} ranks weights inside each group of {nm.m}: use local ranking")
    return nm.sparsity


def pattern_line(pattern: str | None) -> str:
    """How `ticketlab info` shows a mask's pattern (a mask with no pattern: elementwise)."""
    if (nm := parse_pattern(pattern)) is None:
        return "elementwise"
    return f"{nm} ({nm.n} of every {nm.m} consecutive weights along the input dimension kept)"


def check_divisible(shapes: Mapping[str, tuple[int, ...]], nm: NM) -> None:
    """Refuse, naming the first such weight, a target whose last dimension is not a multiple of M."""
    for name, shape in shapes.items():
        if shape[-1] % nm.m:
            raise ConfigError(
                f"pattern {nm}: {name} has {shape[-1]} inputs per row, not a multiple of {nm.m}; "
                "leave it out of the targets"
            )
