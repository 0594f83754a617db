"""The settings of a super-ticket study (`supertickets.py` runs it), in a module that imports no
torch: `ticketlab super --help` builds its options from `SuperConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.checks import (
    OpenFraction,
    PositiveInt,
    Seed,
    check_config,
    check_distinct,
    check_one_of,
    option,
)
from ..core.errors import ConfigError
from ..methods.super_tickets.levels import (
    DRAW_HELP,
    DRAWS,
    GRANULARITIES,
    GRANULARITY_HELP,
    KINDS,
    PER,
    UNITS,
    UNITS_HELP,
    Draw,
    Units,
    check_kind,
    levels_arg,
)
from ..tasks.registry import get_task
from ..verbs.finetune_config import FinetuneConfig

# The logger of a study's progress lines, a line per row as it starts and as it finishes (named here,
# where the CLI reads it without importing the study)
PROGRESS = "ticketlab.studies.super_rows.progress"


@dataclass
class SuperConfig:
    """A super-ticket study of one task. `finetune` is the protocol of every fine-tuning (its `mask`
    must be None and its `seed` is replaced by each of `seeds`)."""

    finetune: FinetuneConfig  # the protocol of every fine-tuning (see the class docstring)
    seeds: list[Seed] = option(factory=lambda: [1], help="one study per seed", metavar="S")
    levels: list[float] | None = option(  # None: the paper's eight, those that fit the model
        None,
        "fractions of heads and of FFN units pruned, in (0, 1) (default: the paper's 0.1 ... 0.8, "
        "less those that prune none or all of a kind of unit of this model, with a note)",
        metavar="P",
    )
    units: Units = option("liang", UNITS_HELP, choices=UNITS)
    random_draw: Draw = option("exact", DRAW_HELP, choices=DRAWS)
    kinds: list[str] = option(factory=lambda: list(KINDS), help="tickets to build", choices=KINDS)
    granularity: str = option("layer", GRANULARITY_HELP, choices=GRANULARITIES)
    select_fraction: OpenFraction = option(  # seeded by select_seed; picks steps and levels
        0.1, "dev fraction that selects"
    )
    select_seed: Seed = option(0, "seed of that dev split")
    importance_batch_size: PositiveInt | None = option(None, "default: the fine-tuning batch size")
    # where |dL/dgate| is taken (`importance.py`); "batch" is what the committed super-ticket stores used
    importance: str = option(
        "example",
        "|dL/dgate| per example (the paper's E_x, default), per token (the reference code's), or "
        "of each batch's mean (signs cancel inside a batch)",
        choices=PER,
    )
    # the full model's weights after the importance pass, and the winning tickets'
    keep_models: bool = option(
        False,
        "keep the fine-tuned weights of the full models and winning tickets (`ticketlab adapt` "
        "starts from them)",
    )

    # importance alone: `ticketlab importance` is the cross-task study, and these scores need the study's
    # fine-tuned full model, its protocol and its directory (a later run without it goes on from them)
    importance_only: bool = option(
        False,
        "stop after the importance scores: fine-tune the full model of each seed and score its heads "
        "and FFN units, no tickets; the same command without it goes on from there",
        result=False,
    )

    def __post_init__(self) -> None:
        check_config(self)
        if self.finetune.mask is not None:
            raise ConfigError("super tickets start from the full model: give no mask")
        check_distinct("seeds", self.seeds)
        if self.levels is not None:
            self.levels = levels_arg(self.levels)
        check_one_of("units", self.units, UNITS)
        check_one_of("random_draw", self.random_draw, DRAWS)
        check_distinct("kinds", self.kinds)
        for kind in self.kinds:
            check_kind(kind)
        if "winning" not in self.kinds:
            raise ConfigError("the super ticket is a winning ticket: kinds must include 'winning'")
        check_one_of("granularity", self.granularity, GRANULARITIES)
        check_one_of("importance", self.importance, PER)
        if get_task(self.finetune.task, self.finetune.data_dir).kind == "squad":
            raise ConfigError(
                "super tickets select on a split of a GLUE-style dev set; SQuAD is not supported"
            )

    def run_config(self, seed: int, mask: str | None = None) -> FinetuneConfig:
        """The fine-tuning config of one run: the protocol, the seed, the dev split, the ticket."""
        return self.finetune.replace(
            seed=seed,
            mask=mask,
            select_fraction=self.select_fraction,
            select_seed=self.select_seed,
            save_model=mask is None,  # the full model's weights feed the importance pass
        )
