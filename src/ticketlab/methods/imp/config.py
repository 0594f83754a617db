"""IMP's settings, in a module that imports no torch: `ticketlab search imp --help` builds its options
from `ImpConfig` (`core.checks.option`). Beside it, the schedule of its pruning rounds
(`imp_schedule`); `search.py` explains the variants."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from ...core.checks import Fraction, OpenFraction, check_config, option
from ...core.errors import ConfigError
from ...lm.options import DECODER_HELP, Decoder, KdInput
from ...masks.targets import POOLER_HELP, Targets
from ..options import Ranking

Variant = Literal["chen", "tamt"]
VARIANT_RANKING: dict[str, Ranking] = {"chen": "global", "tamt": "local"}
FirstPruning = Literal["start", "after-round"]


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
    rewind_head: bool = option(  # task-specific IMP
        False,
        "rewind the task head too (default: only the encoder, bert.*, as BERT-Tickets' LT_glue.py)",
    )
    targets: Targets = None  # None: the variant's (see `variant_targets`)
    variant: Variant = option(  # whose IMP (see the module docstring)
        "chen",
        "chen (default, Chen et al.'s BERT-Tickets): global ranking over the encoder's matrices, no "
        "word embeddings; tamt (TAMT's IMP baseline): per-matrix ranking, word embeddings included",
    )
    pooler: bool = option(True, POOLER_HELP)  # where the checkpoint has one (MLM: `attach_pooler`)
    # IMP on MLM: the tied decoder under a word-embedding mask (variant tamt prunes the embeddings) and
    # what its KD dev loss reads; both as TAMT-MLM's defaults, which follow the reference code
    decoder: Decoder = option("dense", DECODER_HELP + "; IMP on MLM")
    kd_input: KdInput = option(
        "clean",
        "what the KD dev loss of IMP on MLM reads: clean text (TAMT's KD data, masked_lm_prob 0) or the "
        "MLM-corrupted dev blocks",
    )
    first_pruning: FirstPruning | None = option(  # None: by objective (`resolved`)
        None,
        "start: prune θ0 at step 0, then after each round (BERT-Tickets' LT_pretrain.py, the default "
        "on MLM); after-round: only after each full training round, one round more (LT_glue.py, the "
        "default with --task)",
    )

    def __post_init__(self) -> None:
        check_config(self)
        own = VARIANT_RANKING[self.variant]
        if self.ranking is None:
            self.ranking = own
        elif self.ranking != own:
            raise ConfigError(
                f"IMP variant {self.variant!r} ranks {'per matrix' if own == 'local' else 'globally'} "
                f"({own}); ranking {self.ranking!r} contradicts it: leave ranking out, or choose the "
                f"variant that ranks so ({'chen' if own == 'local' else 'tamt'})"
            )
        if self.sparsity <= self.prune_rate:
            raise ConfigError(
                f"IMP to {self.sparsity:.0%} with {self.prune_rate:.0%} per round is one pruning: "
                f"use one-shot magnitude pruning (`ticketlab prune omp --ranking {self.ranking}`)"
            )

    def resolved(self, on_task: bool) -> ImpConfig:
        """This config with the defaults that depend on the objective filled in: where the first
        pruning falls (LT_glue.py on a task, LT_pretrain.py on MLM)."""
        if self.first_pruning is not None:
            return self
        return dataclasses.replace(self, first_pruning="after-round" if on_task else "start")


def imp_schedule(
    sparsity: float, steps: int, prune_rate: float = 0.1, first_pruning: FirstPruning = "start"
) -> list[tuple[int, float]]:
    """[(step, sparsity after pruning at that step)]: equal rounds up to the last step, the first
    pruning at step 0 (`start`) or after the first of R full rounds (`after-round`)."""
    rounds = math.ceil(round(sparsity / prune_rate, 9))
    at_start = first_pruning == "start"
    if rounds < 2 and at_start:
        return [(0, sparsity)]
    intervals = rounds - 1 if at_start else rounds
    if steps < intervals:
        raise ConfigError(
            f"IMP needs at least {intervals} steps for {rounds} pruning rounds"
            f"{'' if at_start else ' after full training rounds'}, got {steps}"
        )
    levels = [min(round(prune_rate * (r + 1), 9), sparsity) for r in range(rounds)]
    first = 0 if at_start else 1
    return [(round((r + first) * steps / intervals), level) for r, level in enumerate(levels)]
