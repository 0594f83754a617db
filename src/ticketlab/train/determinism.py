"""Deterministic data order: the batch at step t is a function of (seed, t) alone, and so is every
per-example random choice (the seeds the loop hands to `collate_fn`): resuming or adding processes
does not change what the model sees.
"""

from __future__ import annotations

import hashlib
import math
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def example_seed(seed: int, epoch: int, index: int) -> int:
    """A per-example seed that depends only on (run seed, epoch, example index)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def batch_indices(n: int, batch_size: int, micro_step: int, seed: int) -> tuple[list[int], int]:
    """Example indices of global micro-batch `micro_step` and its epoch: reshuffled every epoch."""
    per_epoch = max(1, math.ceil(n / batch_size))
    epoch, k = divmod(micro_step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[k * batch_size : (k + 1) * batch_size].tolist(), epoch
