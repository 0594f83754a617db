"""The numbers a report is made of: one fine-tuning run's score (`Score`, grouped under
`method_label`), a cell of runs (`Cell`: mean ± sample standard deviation, with the ids of the runs
behind it) and Chen et al.'s winning-ticket criterion (`wins`). `AVG` names the average over tasks."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

AVG = "avg"


@dataclass(frozen=True)
class Score:
    """One finished fine-tuning run."""

    id: str
    method: str
    sparsity: float
    task: str
    metric: str
    train_size: int | None
    mask_seed: int | None
    seed: int
    search: str | None  # id of the search run that made the mask
    step: int | None  # mask saved at this search step (None: the search's final mask)
    search_steps: int | None
    value: float
    protocol: str  # how the reported checkpoint was chosen: see `results.reported_score`

    @property
    def mask(self) -> tuple[str | None, int | None]:
        return (self.search, self.step)


@dataclass
class Cell:
    values: list[float]
    run_ids: list[str]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); 0 for one value."""
        if len(self.values) < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))


def stats(cells: Iterable[tuple[float, str]]) -> Cell:
    pairs = list(cells)
    return Cell([v for v, _ in pairs], [i for _, i in pairs])


def method_label(config: dict[str, Any]) -> str:
    """What a run's results are grouped under: its method, and for a ticket found on a task its source
    (`imp-task@sst2`). A search config names the source as a mapping, a fine-tuning config by its label."""
    source = config.get("source")
    if isinstance(source, dict):
        source = source.get("label")
    return f"{config['method']}@{source}" if source else config["method"]


def wins(cell: Cell, full: Cell) -> bool:
    """Chen et al.'s winning-ticket criterion: mean at least the full model's mean minus one sample std."""
    return cell.mean >= full.mean - full.std


def pct(s: float) -> str:
    """A sparsity as the report writes it: 0.7 -> '70%', 0.12345 -> '12.345%'."""
    return f"{round(s * 100, 4):g}%"
