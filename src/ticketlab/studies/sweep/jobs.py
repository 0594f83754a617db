"""What a sweep hands a method and what a method is to a sweep: one search (`SearchJob`), what it
reports back (`SearchOutput`), and a sweep method (`MethodSpec`): how a method name becomes a mask
directory, and what the planner must know to expand and cache it. `methods.sweep_methods` makes one
`MethodSpec` per registered method (`one_shot.py`: through `ticketlab.prune`; `trained.py`: through
`ticketlab.search`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass
class SearchJob:
    """One mask search, as the runner hands it to a method."""

    model: str  # base model: local directory or hub id
    method: str
    sparsity: float
    seed: int | None  # None for deterministic methods
    steps: int | None  # step budget (None for one-shot methods)
    save_at: list[int]  # also write masks at these steps (search-cost curves)
    settings: dict[str, Any]  # method settings from the spec (only those the method declares)
    corpus: dict[str, Any] | None  # resolved corpus block of the spec, for methods that train
    mask_dir: Path  # where the final mask directory goes (written atomically)
    work_dir: Path  # checkpoints and logs; the same directory on a resume
    # The task a per-task method searches on: {"label", "task", "data"} (None: not per task).
    source: dict[str, Any] | None = None

    def step_dir(self, step: int) -> Path:
        """Where the mask saved at `step` goes."""
        return self.mask_dir.parent / f"{self.mask_dir.name}.step{step:06d}"


@dataclass
class SearchOutput:
    """What a search reports back: its cost and, for `save_at`, the masks along the way."""

    steps: int = 0  # training steps the search took (0 for one-shot methods)
    time_s: float = 0.0  # search time, evaluation excluded
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. final training / dev losses
    # One entry per mask saved during the search: {"step", "mask_dir", "time_s"}.
    intermediate: list[dict[str, Any]] = field(default_factory=list)


SearchFn = Callable[[SearchJob], SearchOutput]
Curve = Literal["save_at", "budgets"]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    search: SearchFn | None  # None: the dense model, no mask ("full")
    description: str
    seeded: bool = True  # False: one mask whatever the search seeds (OMP)
    uses_corpus: bool = False
    uses_steps: bool = False  # reads the step budget `search.steps`
    settings: frozenset[str] = frozenset()  # search settings it reads, besides `steps`
    non_result: frozenset[str] = frozenset()  # of those, the ones that do not change the mask (logging...)
    curve: Curve | None = None  # how `search_curve` is realised; None: no curve for this method
    per_task: bool = False  # searched on each source task (`SearchJob.source`), not on the corpus
    # The config `search` would build for a job, built without running it: the sweep's plan refuses
    # a bad setting as the run would (None: nothing to check before the run).
    configure: Callable[[SearchJob], Any] | None = None
    # Its colour in figures (matplotlib's); the methods that have one lead every report, in the
    # registry's order. None: after them, in the order the store has them, coloured by position
    # (imp-task is reported per source task, `imp-task@sst2`).
    color: str | None = None
    # The defaults its search runs under for the settings the spec leaves out, given the spec's
    # settings and whether the base checkpoint holds a pooler: part of a run's identity (`plan`,
    # `run_ids.identity`).
    changed_defaults: Callable[[dict[str, Any], bool], dict[str, Any]] = lambda settings, pooler: {}
    not_swept: str | None = None  # why no sweep can make its masks (`Method.not_swept`): refused
