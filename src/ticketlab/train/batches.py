"""Several tasks' training sets as one dataset for the one training loop (`train.loop.train`).

Multi-task learning (MT-DNN; ticket sharing, Liang et al. 2021 Algorithm 1, line 5) takes every
minibatch from one task: each epoch, each task's data is shuffled and cut into batches, then all
tasks' batches are shuffled together. `MultiTaskData` is the tasks' sets as one flat dataset, its
`sample` that order as the loop's batch sampler, and its `collate` the batch's task's own collate
with the task recorded under `TASK`, so that a loss function can run the task's model.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

TASK = "task"  # the batch key naming its task: an int (the loop moves only tensors to the device)

Collate = Callable[[list[Any], list[int]], dict[str, Any]]


def epoch_batches(
    sizes: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[tuple[int, list[int]]]:
    """(task, example indices) of every minibatch of one epoch: each task's data shuffled and cut
    into batches, then all tasks' batches shuffled together (Algorithm 1, line 5)."""
    batches = []
    for i, n in enumerate(sizes):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch * 1_009 + i))
        batches += [(i, order[k : k + batch_size].tolist()) for k in range(0, n, batch_size)]
    mix = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed * 7_919 + epoch))
    return [batches[j] for j in mix.tolist()]


class MultiTaskData:
    """The tasks' training sets end to end: item k is (task, that task's example); `sample(step)` is
    the flat indices of `epoch_batches`' batch for that step, and its epoch."""

    def __init__(
        self, datasets: Sequence[Sequence[Any]], collates: Sequence[Collate], batch_size: int, seed: int
    ):
        self.datasets, self.collates = list(datasets), list(collates)
        self.sizes = [len(d) for d in self.datasets]
        self.starts = [0, *itertools.accumulate(self.sizes)][:-1]  # flat index of each task's first example
        self.batch_size, self.seed = batch_size, seed
        self.steps_per_epoch = sum(math.ceil(n / batch_size) for n in self.sizes)
        self._epoch: tuple[int, list[tuple[int, list[int]]]] = (-1, [])  # the order of the epoch in use

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        task = bisect.bisect_right(self.starts, index) - 1  # an empty task shares its start: skipped
        return task, self.datasets[task][index - self.starts[task]]

    def sample(self, step: int) -> tuple[list[int], int]:
        """Flat indices of step `step`'s batch and its epoch (a function of the step alone)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._epoch[0] != epoch:  # steps come in order: one epoch's order is kept at a time
            self._epoch = (epoch, epoch_batches(self.sizes, self.batch_size, self.seed, epoch))
        task, idx = self._epoch[1][k]
        return [self.starts[task] + j for j in idx], epoch

    def collate(self, items: list[tuple[int, Any]], seeds: list[int]) -> dict[str, Any]:
        """The batch's task's collate, and the task under `TASK`."""
        tasks = {task for task, _ in items}
        if len(tasks) != 1:
            raise ValueError(f"a multi-task batch holds one task's examples, got tasks {sorted(tasks)}")
        (task,) = tasks
        return {**self.collates[task]([example for _, example in items], seeds), TASK: task}
