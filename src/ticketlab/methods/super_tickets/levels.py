"""The names and checks of structured-ticket settings, in a module that imports no torch:
`ticketlab super --help` offers them (`studies.super_config`). Their meaning is `tickets.py`'s
(ticket kinds and levels) and `importance.py`'s (where |dL/dgate| is taken)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ...core.checks import check_config, check_one_of, is_number, option
from ...core.errors import ConfigError

Kind = Literal["winning", "losing", "random"]
KINDS: tuple[Kind, ...] = ("winning", "random", "losing")
Units = Literal["liang", "round"]
UNITS: tuple[Units, ...] = ("liang", "round")  # how many units a level prunes (`tickets.py`'s docstring)
# How a random ticket draws its units: "exact" (a seeded order without replacement: the winning
# ticket's counts, its per-layer guard) or "replacement" (Liang et al.'s data_utils/mask_utils.py
# `gen_random_head`/`gen_random_ffn`: np.random.choice with replacement, repeats collapse, no guard)
Draw = Literal["exact", "replacement"]
DRAWS: tuple[str, ...] = ("exact", "replacement")
DRAW_HELP = (
    "how a random ticket draws its units: exact (default: without replacement, the winning ticket's "
    "counts and one head kept per layer, the paper's random tickets 'of the same size') or "
    "replacement (Liang et al.'s code: the winning ticket's count drawn with replacement, repeats "
    "collapse, no guard: about 72 of BERT-base's 144 heads and 5.4 of 12 FFN sub-layers at 0.7)"
)
UNITS_HELP = (
    "how many units a level prunes: liang (default, Liang et al.'s scripts: int(p·heads) with one "
    "head kept in every layer; FFN sub-layers: k of BERT-base's 12 at level k/10, int(10p·L/12) of "
    "L layers) or round "
    "(round(p·n) of each kind, no per-layer guard)"
)
LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 9))  # 10% ... 80%, the paper's 8 levels
Granularity = Literal["layer", "neuron"]
GRANULARITIES: tuple[Granularity, ...] = ("layer", "neuron")
GRANULARITY_HELP = "FFN unit: the whole sub-layer (the paper's) or each neuron"


@dataclass(frozen=True)
class RandomTicketConfig:
    """A random structured ticket's settings (the sweep method `st-random`; `ticketlab super` has
    them as options), checked when built: a sweep spec's bad value is refused by its dry run."""

    granularity: Granularity = option("layer", GRANULARITY_HELP, choices=GRANULARITIES)
    units: Units = option("liang", UNITS_HELP, choices=UNITS)
    random_draw: Draw = option("exact", DRAW_HELP, choices=DRAWS)

    def __post_init__(self) -> None:
        check_config(self)


def check_level(level: float) -> float:
    """A level is the fraction of heads (and of FFN units) pruned, strictly between 0 and 1."""
    if not is_number(level) or not 0.0 < float(level) < 1.0:
        raise ConfigError(
            f"level must be a fraction in (0, 1) (0.3 = 30% of heads and FFN units pruned), got {level!r}"
        )
    return float(level)


def check_kind(kind: str) -> Kind:
    check_one_of("ticket kind", kind, KINDS)
    return kind  # type: ignore[return-value]


def levels_arg(values: Sequence[float]) -> list[float]:
    """Sorted levels, each checked; a level given twice is refused (it would be run and counted once)."""
    given = [round(check_level(v), 6) for v in values]
    if not given:
        raise ConfigError("at least one level is required")
    twice = sorted({v for v in given if given.count(v) > 1})
    if twice:
        raise ConfigError(f"levels must be distinct: {', '.join(f'{v:g}' for v in twice)} given twice")
    return sorted(given)


PER = ("example", "token", "batch")  # where |·| is taken (see `importance.py`'s docstring)
Per = Literal["example", "token", "batch"]
