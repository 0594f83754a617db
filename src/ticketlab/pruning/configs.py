"""The settings of the pruning methods, in a module that imports no torch: a verb's `--help` builds
its options from these dataclasses (`validation.option`), and parsing must not wait seconds for
torch and transformers. The methods themselves are `tamt.py`, `imp.py` and the one-shot modules,
which import these names from here (they are also theirs: `pruning.tamt.TamtConfig`).

* `TamtConfig`: one TAMT search (mask training; `tamt.py`).
* `ImpConfig`: one IMP search (iterative magnitude pruning with rewinding; `imp.py` explains the
  variants).
* `ONE_SHOT_METHODS`: the names of the one-shot methods (`pruning.ONE_SHOT` maps them to functions).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

from ..errors import ConfigError
from ..masking.pattern import parse_pattern, pattern_sparsity
from ..masking.targets import Targets
from ..validation import (
    Fraction,
    LearningRate,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Range,
    Seed,
    check_config,
    option,
)

Ranking = Literal["local", "global"]
# `objectives.Objective` (the losses), spelt out here: objectives.py imports torch and transformers
# (tests/test_startup.py pins the two to the same names).
Objective = Literal["mlm", "kd", "mlm+kd"]
Init = Literal["omp", "random"]
ScoreDtype = Literal["float32", "bfloat16"]
ONE_SHOT_METHODS = ("omp", "random")  # `pruning.ONE_SHOT`: omp_mask, random_mask


@dataclass
class TamtConfig:
    """Settings of one TAMT search (defaults: TAMT §4.1.3 and Table 1)."""

    sparsity: Fraction | None  # None with a pattern: the one it implies
    objective: Objective = option("mlm", "training objective")
    init: Init = option("omp", "initial mask")
    ranking: Ranking = option("local", "rank per matrix (local) or over all targets (global)")
    threshold: PositiveFloat = option(0.01, "φ of Eq. 3/5")
    alpha: Annotated[float, Range(ge=1)] = option(2.0, "α of Eq. 5: initial score α·φ, above the cut")
    train_head: bool = option(  # TAMT-MLM trains the MLM head's transform and bias too (§3.4.3)
        True, "TAMT-MLM: keep the MLM head frozen", flag="--freeze-head"
    )
    head_lr: LearningRate | None = option(
        None, "TAMT-MLM: learning rate of the MLM head (default: --lr, as in TAMT)"
    )
    seed: Seed = 0  # for random init
    targets: Targets = None
    score_dtype: ScoreDtype = option(
        "float32",
        "bfloat16: scores, their gradients and Adam moments in bf16 with stochastic rounding "
        "(6 bytes less per target weight: less memory than dense training)",
    )
    pattern: str | None = None  # "N:M": exactly N of every M kept after every step (per-group cuts)

    def __post_init__(self) -> None:
        check_config(self)  # types and ranges (a nan threshold is refused here, not as a diverged search)
        self.sparsity = pattern_sparsity(self.sparsity, self.pattern, self.ranking)
        self.pattern = self.pattern and str(parse_pattern(self.pattern))  # " 2:4" is recorded as "2:4"

    @property
    def trains_head(self) -> bool:
        return self.train_head and "mlm" in self.objective

    @property
    def default_lr(self) -> float:
        return 2e-5 if self.objective == "kd" else 5e-5  # Table 1


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
        "rewind the task head too (ticketlab's earlier task IMP; default: only the encoder, bert.*, "
        "as BERT-Tickets' LT_glue.py)",
    )
    targets: Targets = None  # None: the variant's (see `variant_targets`)
    variant: Variant = option(  # whose IMP (see the module docstring)
        "chen",
        "chen (default, Chen et al.'s BERT-Tickets): global ranking over the encoder's matrices, no "
        "word embeddings; tamt (TAMT's IMP baseline): per-matrix ranking, word embeddings included",
    )
    pooler: bool = option(  # where the model has one
        False, "prune the pooler too, as both papers' code does (task models)"
    )
    first_pruning: FirstPruning | None = option(  # None: by objective (`resolved`)
        None,
        "start: prune θ0 at step 0, then after each round (BERT-Tickets' LT_pretrain.py, the default "
        "on MLM); after-round: only after each full training round, one round more (LT_glue.py, the "
        "default with --task)",
    )
    schedule_steps: PositiveInt | None = option(
        None,
        "horizon of each round's linear learning-rate decay (the references' t_total, their whole "
        "epoch budget; default: --steps)",
        metavar="N",
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
