"""Timing forwards: several models on one batch, interleaved, so a busy machine slows them alike.

`ticketlab compact --time` times a compacted model against its dense base with it, and so does
`benchmarks/bench_compaction.py` for its built-in tickets. Each model runs once to warm up, then
`reps` times, the order alternating every repetition. The wall clock and the process CPU time of
each forward are kept; on a shared machine the minimum is the steadier estimate (contention only
ever adds time), and with one thread the CPU time is free of waiting.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..core.errors import ConfigError


@dataclass
class Times:
    """Seconds of each timed forward of one model: wall clock and process CPU time."""

    wall: list[float]
    cpu: list[float]

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.wall)

    @property
    def min_ms(self) -> float:
        return 1e3 * min(self.wall)


def random_batch(
    vocab_size: int, batch_size: int, seq_len: int, device: torch.device | str
) -> dict[str, Tensor]:
    """A seeded batch of token ids, no padding (the time of a forward does not depend on the ids)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(min(1000, vocab_size - 1), vocab_size, (batch_size, seq_len), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_s(model: nn.Module, batch: Mapping[str, Tensor], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one forward."""
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    model(**batch)
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


@torch.inference_mode()
def forward_times(
    models: Mapping[str, nn.Module], batch: Mapping[str, Tensor], reps: int
) -> dict[str, Times]:
    """`reps` timed forwards of each model on `batch` (after one warm-up each), interleaved: the
    order of the models alternates from one repetition to the next."""
    device = next(iter(batch.values())).device
    order = list(models.items())
    for _, model in order:
        _forward_s(model, batch, device)
    found = {name: Times([], []) for name in models}
    for rep in range(reps):
        for name, model in order if rep % 2 == 0 else order[::-1]:
            wall, cpu = _forward_s(model, batch, device)
            found[name].wall.append(wall)
            found[name].cpu.append(cpu)
    return found


def check_device(value: str, what: str = "device") -> torch.device:
    """`value` as a torch device that holds data on this machine, or one line: not a device name,
    a kind that computes nothing (`meta`: shapes only) or that ticketlab does not run on, a GPU
    that is not here."""
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{what}: not a torch device, got {value!r} (e.g. cpu, cuda)") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{what}: {value!r} holds no data to compute on here; give cpu or cuda (cuda:N)")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{what}: {value}, but torch sees no CUDA GPU here")
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"{what}: {value}, but torch sees {count} CUDA GPU(s) here (cuda:0 to cuda:{count - 1})"
            )
    return device
