"""The settings of a domain-adaptation study (`adaptation.py` runs it), in a module that imports no
torch: `ticketlab adapt --help` reads its defaults here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.checks import check_config
from ..core.errors import ConfigError
from ..verbs.finetune_config import FinetuneConfig

FRACTIONS = (0.001, 0.01, 0.1, 1.0)


@dataclass(frozen=True)
class AdaptSource:
    """A model fine-tuned on task A: where B's fine-tuning starts."""

    label: str  # "super", "full", or the user's
    seed: int  # B's fine-tuning seed (head, order, subset): the seed of A's run
    model: str  # the fine-tuned weights (a HF model directory)
    mask: str | None = None  # units kept pruned on B (the ticket)
    study: str | None = None  # the folder that holds it (a super-ticket study): no output goes inside it


def check_fractions(fractions: Sequence[float]) -> list[float]:
    fractions = sorted(set(float(f) for f in fractions))
    if not fractions or not all(0.0 < f <= 1.0 for f in fractions):
        raise ConfigError(f"fractions must be in (0, 1], got {list(fractions)}")
    return fractions


def subset_size(n: int, fraction: float) -> int | None:
    """Training examples at `fraction` of n (None: all of them)."""
    return None if fraction >= 1.0 else max(1, round(fraction * n))


@dataclass
class AdaptConfig:
    """`finetune` is task B's protocol (its model, mask, seed and train_samples are set per run)."""

    finetune: FinetuneConfig  # task B's fine-tuning protocol
    sources: list[AdaptSource]  # models fine-tuned on task A (a super ticket, the full model), where B starts
    fractions: list[float] = field(default_factory=lambda: list(FRACTIONS))

    def __post_init__(self) -> None:
        check_config(self)
        self.fractions = check_fractions(self.fractions)
        if not self.sources:
            raise ConfigError("domain adaptation needs at least one source model")
        keys = [(s.label, s.seed) for s in self.sources]
        if len(set(keys)) != len(keys):
            raise ConfigError("each source label may have each seed once")

    def run_config(self, source: AdaptSource, n_train: int, fraction: float) -> FinetuneConfig:
        return self.finetune.replace(
            model=source.model,
            mask=source.mask,
            check_hash=False,  # the ticket was found on the pre-trained weights, these are A's
            seed=source.seed,
            data_seed=source.seed,  # one subset per seed, whatever the source: a paired comparison
            train_samples=subset_size(n_train, fraction),
        )
