"""The one-shot methods by name (`ticketlab prune METHOD`): (model, sparsity, *, ranking, targets,
seed, pattern) -> Mask. Their names are `configs.ONE_SHOT_METHODS`, which the CLI offers without
importing torch."""

from __future__ import annotations

from collections.abc import Callable

from ..masks import Mask
from .configs import ONE_SHOT_METHODS
from .magnitude import omp_mask
from .random_pruning import random_mask

OneShot = Callable[..., Mask]  # (model, sparsity, *, ranking, targets, seed, pattern) -> Mask
ONE_SHOT: dict[str, OneShot] = dict(zip(ONE_SHOT_METHODS, (omp_mask, random_mask), strict=True))
