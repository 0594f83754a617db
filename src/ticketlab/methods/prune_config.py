"""The settings of one-shot pruning, `PruneConfig` (`ticketlab prune NAME`, the `prune` verb): which
registered one-shot method, at what sparsity, over which weights, into which mask directory. In a
module that imports no torch: `ticketlab prune --help` reads it; `one_shot.py` runs it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.checks import (
    BlockLength,
    Fraction,
    PositiveInt,
    Seed,
    changed,
    check_config,
    check_one_of,
    from_options,
    option,
    option_name,
)
from ..core.errors import ConfigError
from ..core.files.caches import CORPUS_CACHE_HELP
from ..core.files.keys import CORPUS_PATHS
from ..masks.pattern import parse_pattern, pattern_sparsity
from ..masks.targets import POOLER_HELP, Targets
from .options import Ranking
from .registry import methods


@dataclass
class PruneConfig:
    """One-shot pruning of `model` into the mask directory `out`."""

    model: str  # local directory or hub id
    method: str  # a registered one-shot method (`methods.registry`, verb prune): omp, random, wanda...
    sparsity: Fraction | None  # None with a pattern: the one it implies
    out: str | os.PathLike
    ranking: Ranking = option(
        "local",
        "rank weights per matrix (local, TAMT's OMP) or over all targets (global, Chen et al.'s one-shot "
        "pruning: without --targets, the layers' matrices and the pooler, the word embeddings left dense)",
    )
    seed: Seed = option(
        0, "seed for random pruning and for drawing wanda's and sparsegpt's calibration sequences"
    )
    # regexes over module names (default: TAMT §3.2's weights and the pooler; with global ranking
    # Chen et al.'s, the layers' six matrices and the pooler without the word embeddings, `one_shot_targets`)
    targets: Targets = None
    pattern: str | None = None  # "N:M": keep N of every M consecutive weights along the input dim
    pooler: bool = option(True, POOLER_HELP)
    corpus: Sequence[str | os.PathLike] | None = option(
        None,
        f"wanda, sparsegpt: {CORPUS_PATHS} to draw the calibration sequences from",
        metavar="PATH",
    )
    calibration: PositiveInt = option(
        128, "wanda, sparsegpt: calibration sequences, drawn with --seed (both papers: 128)", metavar="N"
    )
    calibration_length: BlockLength = option(128, "wanda, sparsegpt: tokens per calibration sequence")
    text_column: str = option("text", "wanda, sparsegpt: column of `datasets` sources in --corpus")
    cache_dir: str | os.PathLike | None = option(
        None, f"wanda, sparsegpt: {CORPUS_CACHE_HELP}", metavar="DIR", result=False
    )
    # The method's own settings: an instance of the config it registers (`Method.config`: SparseGPT's
    # `SparseGptConfig`), or a mapping of that config's fields by option name; None: its defaults.
    settings: Any = None

    def __post_init__(self) -> None:
        check_config(self)  # types, sparsity in [0, 1), ranking
        check_one_of("method", self.method, sorted(methods("prune")))
        self._check_calibration()
        self.sparsity = pattern_sparsity(self.sparsity, self.pattern, self.ranking)
        self.pattern = self.pattern and str(parse_pattern(self.pattern))  # " 2:4" is recorded as "2:4"
        self.settings = self._method_settings()

    def _method_settings(self) -> Any:
        """`settings` as an instance of the method's config (its defaults where None; None for a
        method without settings), checked against the pattern before any work (SparseGPT: an N:M
        group within one block)."""
        own = methods("prune")[self.method].config
        if own is None:
            if self.settings is not None:
                raise ConfigError(f"settings: {self.method} has no settings of its own: {self.settings!r}")
            return None
        given = self.settings
        names = [option_name(f) for f in dataclasses.fields(own)]
        if given is None or (isinstance(given, Mapping) and set(given) <= set(names)):
            given = own(**from_options(own, dict(given or {})))
        if not isinstance(given, own):
            raise ConfigError(
                f"settings: {self.method}'s are a {own.__name__} or a mapping of its fields "
                f"({', '.join(names)}), got {self.settings!r}"
            )
        if (check := getattr(given, "check_pattern", None)) is not None:
            check(self.pattern)
        return given

    def _check_calibration(self) -> None:
        """A calibrated method needs a corpus and compares within its own groups (not global); the
        others read no corpus."""
        calibrated = [name for name, m in methods("prune").items() if m.calibrated]
        if self.method not in calibrated:
            given = ["corpus"] if self.corpus else changed(self, ("text_column", "cache_dir"))
            if given:
                raise ConfigError(
                    f"--{given[0].replace('_', '-')}: {self.method} reads no calibration data "
                    f"({', '.join(calibrated)} do)"
                )
            return
        if not self.corpus:
            raise ConfigError(
                f"{self.method} runs calibration sequences through the model: give --corpus (text files "
                "or a saved dataset, as `ticketlab search --corpus` reads)"
            )
        if self.ranking != "local":
            raise ConfigError(
                f"--ranking {self.ranking}: {self.method} compares weights within each matrix by its own "
                "rule (Wanda: per output row; SparseGPT: per block of columns), never over all targets"
            )
        self.corpus = [self.corpus] if isinstance(self.corpus, (str, os.PathLike)) else list(self.corpus)
