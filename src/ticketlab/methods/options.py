"""The settings the methods share, in a module that imports no torch (a verb's `--help` reads them):
how weights are ranked and counted, the search's block length and its steps to save at, BertAdam's
own settings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from ..core.errors import ConfigError

Ranking = Literal["local", "global"]
# How many of n weights a sparsity s prunes: round(s·n) (torch's pruning, which Chen et al.'s code
# calls), or int(s·n) (TAMT's masker, `controlled_init` in its masking/maskers.py): `ranking.pruned_count`
Count = Literal["round", "floor"]
# BertAdam's own settings in TAMT's train_kd.py (its `e` default, its parameter groups' decay), which a
# search's `optimizer: bertadam` brings (`SearchConfig.train_config`)
BERTADAM = {"adam_eps": 1e-6, "weight_decay": 0.01}
DEFAULT_MAX_LENGTH = 512  # tokens per block of a search on a corpus (TAMT Table 1)


def parse_steps(values: Iterable[int] | None, max_steps: int) -> list[int]:
    steps = sorted(set(values or []))
    bad = [s for s in steps if not 1 <= s <= max_steps]
    if bad:
        raise ConfigError(f"save-at steps must be in [1, {max_steps}], got {bad[:3]}")
    return steps
