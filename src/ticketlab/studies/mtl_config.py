"""The settings of multi-task learning and ticket sharing (`mtl.py` runs them), in a module that
imports no torch: `ticketlab mtl --help` builds its options from `MtlConfig`."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..core.checks import (
    BlockLength,
    Epochs,
    FieldError,
    Fraction,
    LearningRate,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Seed,
    WeightDecay,
    check_config,
    check_distinct,
    option,
)
from ..core.digest import run_identity
from ..core.errors import ConfigError
from ..tasks.registry import readable_task

AFTER = {"after": True}  # field metadata: read only by the per-task fine-tuning after sharing


@dataclass
class MtlConfig:
    model: str  # pre-trained model: local dir or hub id
    tasks: list[str] = option(help="GLUE-style tasks (`ticketlab.tasks.registry` ids)", metavar="TASK")
    tickets: list[str] | None = option(  # None: every task shares everything (plain multi-task learning)
        None, "one structured ticket per task, in order", metavar="TICKET"
    )
    data_dir: str | None = option(None, "GLUE root holding every task", metavar="DIR")
    seeds: list[Seed] = option(factory=lambda: [1], help="one run per seed", metavar="S")
    lr: LearningRate = option(5e-5, "peak learning rate")  # Liang et al. A.2.1 (MT-DNN's settings)
    batch_size: PositiveInt = option(32, "global batch size")
    max_length: BlockLength | None = option(None, "tokens per example (default: each task's)")
    epochs: Epochs = option(5.0, "passes over the tasks' training sets")
    max_steps: PositiveInt | None = option(None, "cap on the multi-task steps")
    eval_every: PositiveInt = option(100, "steps between dev evaluations", metavar="STEPS")
    warmup_ratio: Fraction = option(0.1, "fraction of the steps with a linear warm-up")
    weight_decay: WeightDecay = option(0.0, "AdamW weight decay")
    max_grad_norm: PositiveFloat | None = 1.0  # None: no clipping (0 would zero every gradient)
    train_samples: PositiveInt | None = option(None, "seeded subset of each task's training set", metavar="N")
    eval_samples: PositiveInt | None = option(None, "score only the first N dev examples", metavar="N")
    select_fraction: OpenFraction | None = option(None, "pick best steps on this seeded part of each dev set")
    select_seed: Seed = option(0, "seed of that part")
    finetune_after: bool = option(
        False, "then fine-tune each task alone from the multi-task weights", **AFTER
    )
    finetune_lr: LearningRate | None = option(None, "default: --lr", **AFTER)
    finetune_epochs: Epochs | None = option(None, "default: the task's", **AFTER)
    finetune_max_steps: PositiveInt | None = option(None, "cap on each task's fine-tuning steps", **AFTER)
    check_hash: bool = option(
        True, "apply tickets found on other weights", flag="--ignore-hash", result=False
    )
    save_every: PositiveInt | None = option(100, "checkpoint interval", metavar="STEPS", result=False)
    progress: bool = option(True, "no progress bar", result=False)

    def __post_init__(self) -> None:
        check_config(self)
        check_distinct("tasks", self.tasks)
        if self.tickets is not None and len(self.tickets) != len(self.tasks):
            raise ConfigError(
                f"the task list does not match the tickets: {len(self.tasks)} tasks "
                f"({', '.join(self.tasks)}) but {len(self.tickets)} tickets: one ticket per task, in order"
            )
        check_distinct("seeds", self.seeds)
        specs = [readable_task(task, self.data_dir) for task in self.tasks]  # each with data to read
        if any(spec.kind == "squad" for spec in specs):
            raise ConfigError("ticket sharing covers GLUE-style tasks (one classifier head each), not SQuAD")
        ids = [spec.id for spec in specs]  # two files of one id would share a head, a row and a score
        twice = next((i for i in ids if ids.count(i) > 1), None)
        if twice is not None:
            same = [t for t, i in zip(self.tasks, ids, strict=True) if i == twice]
            raise FieldError("tasks", f"{' and '.join(same)} are one task, '{twice}': give each task once")

    @property
    def method(self) -> str:
        return "ticket-share" if self.tickets is not None else "mtl"

    def settings(self, leave_out: Collection[str] = ()) -> dict[str, Any]:
        """The settings a run computes by (`core.digest.run_identity`), less what it reads (a stage's
        identity names those by path and content key) and the seeds (each stage has its one)."""
        return run_identity(self, leave_out={"model", "tasks", "tickets", "data_dir", "seeds", *leave_out})

    def identity(self, seed: int, inputs: Mapping[str, str], *, after: bool = False) -> dict[str, Any]:
        """What one seed's stage computes from (`train.run_dir`): the settings it reads (the shared
        training not those of the fine-tuning `after` it: adding that stage reuses it), what it
        reads, and their content keys (`_inputs`)."""
        later = set() if after else {f.name for f in dataclasses.fields(self) if f.metadata.get("after")}
        tickets = [str(t) for t in self.tickets] if self.tickets is not None else None
        reads = {"model": str(self.model), "tasks": list(self.tasks), "tickets": tickets}
        data = str(self.data_dir) if self.data_dir is not None else None
        settings = self.settings(leave_out=later)
        keys = {f"{k} content": v for k, v in inputs.items()}
        return {**reads, "data_dir": data, "seed": seed, **settings, **keys}
