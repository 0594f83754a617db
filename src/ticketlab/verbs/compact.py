"""`ticketlab compact`: `compact(CompactConfig) -> Compacted`, a model with a structured ticket's pruned
heads, FFN neurons and FFN sub-layers removed: a smaller model whose outputs equal the ticketed
model's (reloaded with `ticketlab.masks.load_compacted(DIR)`), written in the dtype its base is stored in
(a float16 base gives a float16 model: half the bytes of float32, the same values; ticketlab's
loaders cast it to float32 to compute).

The command line declares its options itself (`cli/compact.py`), so this module is read only when the
verb runs and imports what it runs at the top.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.checks import NonNegInt, PositiveInt, changed, check_config
from ..core.errors import ConfigError
from ..core.outputs import check_output
from ..masks import check_unit_fits, load_unit_mask, parameter_count, save_compacted
from ..masks import compact as compact_model
from ..models.arch import encoder_of
from ..models.compaction import refuse_compacted
from ..models.load import load_config, stored_dtype
from ..models.source import fit_max_length
from ..models.structure import unit_arch
from ..models.timing import Times, check_device, forward_times, random_batch
from .export import Head, load_with_head

TIME_LENGTH = 128  # tokens per sequence timed, by default
# The tokens of the timed batch at most: 8192 sequences of 128 (an encoder's activations for them
# are gigabytes already).
MAX_TIMED_TOKENS = 1 << 20


@dataclass
class CompactConfig:
    """Compact `model` with the structured ticket `mask` into `out`."""

    model: str  # local directory or hub id
    mask: str | os.PathLike  # a structured ticket
    out: str | os.PathLike
    head: Head = "auto"  # the head to load the model with (auto: the one in its config)
    ignore_hash: bool = False  # apply the ticket even if the weights differ (e.g. fine-tuned with it)
    # FFN widths kept at a multiple of this, with zero neurons: GPU matrix tiles (64 on an H100)
    multiple: PositiveInt = 1
    # Timing (`time_reps` > 0): the encoder's forward, dense and compacted, in float32 on `device`, on
    # a random batch of `time_batch_size` x `time_length` tokens; median and minimum of the repetitions.
    time_reps: NonNegInt = 0
    time_batch_size: PositiveInt = 8
    time_length: PositiveInt | None = None  # default: TIME_LENGTH, or the model's positions if fewer
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_config(self)  # types, ranges and choices (head)
        check_device(self.device)
        tokens = self.time_batch_size * (self.time_length or TIME_LENGTH)
        if not self.time_reps and changed(self, ("time_batch_size", "time_length", "device")):
            raise ConfigError("time_batch_size, time_length and device set the timing: give time_reps too")
        if self.time_reps and tokens > MAX_TIMED_TOKENS:  # its activations are allocated whole
            raise ConfigError(
                f"time_batch_size x time_length: {tokens} tokens, more than the {MAX_TIMED_TOKENS} "
                "a timed batch may hold (its activations are allocated at once)"
            )


@dataclass
class Compacted:
    out: Path
    head: str  # the head the model was loaded with
    heads: int  # heads kept, of `all_heads`
    all_heads: int
    parameters: int  # of the compacted model, and of the model before
    parameters_before: int
    timing: dict[str, Times] | None = None  # "dense" and "compacted", with `time_reps`
    timed_batch: tuple[int, int] | None = None  # (sequences, tokens each) of the timed batch


def compact(config: CompactConfig) -> Compacted:
    """Compact and write the model; every input is read before `out` is made."""
    inputs = (config.model, config.mask)
    check_output(config.out, kind="compacted model", inputs=inputs)  # before loading anything
    refuse_compacted(config.model, "a structured ticket is compacted from")
    model_config = load_config(config.model)
    unit_arch(model_config.model_type)  # a family without units (ALBERT), whatever the mask
    timed_batch = None
    if config.time_reps:  # a length past the model's positions is refused before any work
        length = fit_max_length(model_config, config.time_length, TIME_LENGTH, what="time_length")
        timed_batch = (config.time_batch_size, length)
    units, mc = load_unit_mask(config.mask)
    if config.multiple > 1 and units.neuron is None:
        raise ConfigError(
            f"multiple {config.multiple}: pads FFNs of kept neurons, and {config.mask} prunes whole FFN "
            "sub-layers (granularity layer): leave it out"
        )
    model, head, tokenizer = load_with_head(config.model, config.head)
    check_unit_fits(units, mc, model, source=config.mask, check_hash=not config.ignore_hash)
    before = parameter_count(model)
    dense = copy.deepcopy(model) if timed_batch else None  # the compaction is in place
    compact_model(model, units, inplace=True, multiple=config.multiple)  # ours: no second copy
    timing = None
    if dense is not None and timed_batch:
        timing = time_against_dense(dense, model, timed_batch, config)
    model.to(stored_dtype(config.model))  # loaded in float32: a smaller model, not a wider one
    save_compacted(model, config.out, tokenizer=tokenizer, mask_config=mc, inputs=inputs)
    heads = sum(len(h) for h in units.kept_per_layer()["heads"])
    return Compacted(
        Path(config.out), head, heads, units.head.numel(), parameter_count(model), before, timing, timed_batch
    )


def time_against_dense(
    dense: torch.nn.Module, small: torch.nn.Module, shape: tuple[int, int], config: CompactConfig
) -> dict[str, Times]:
    """The encoders' forward times, dense and compacted (the head is the same in both, and an MLM
    head's decoder would hide the difference), interleaved on one random batch."""
    device = torch.device(config.device)
    models = {"dense": encoder_of(dense), "compacted": encoder_of(small)}
    for m in models.values():
        m.to(device).eval()
    vocab = dense.config.vocab_size
    batch = random_batch(vocab, *shape, device)
    return forward_times(models, batch, config.time_reps)
