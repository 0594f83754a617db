"""`ticketlab export`: `export(ExportConfig) -> Exported`, a masked model as a standard Hugging Face
checkpoint with the pruned weights set to zero, or with `base` a fine-tuned ticket as a small
artefact beside its base model (`masks.ticket`: the mask and the weights that differ from the base).

The command line declares its options itself (`cli/export.py`), so this module is read only when the
verb runs and imports what it runs at the top.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn
from transformers import PreTrainedTokenizerBase

from ..core.checks import check_config
from ..core.errors import ConfigError, TicketlabError
from ..core.outputs import check_output
from ..masks import apply_mask, check_fits, export_pretrained, load_mask, save_ticket
from ..masks.export import SEMI_DTYPES, require_semi_structured
from ..masks.io import MaskConfig
from ..masks.reconstructed import NOT_A_TICKET, load_reconstructed, load_weights_into
from ..masks.ticket import WEIGHTS_NAME, check_squashed
from ..models.compaction import refuse_compacted
from ..models.load import load_config, load_model, load_tokenizer, stored_dtype
from ..models.source import check_source, head_of

Head = Literal["auto", "mlm", "seq-cls", "qa", "base"]


@dataclass
class ExportConfig:
    """Export the model `model` with the mask `mask` into `out`."""

    model: str  # local directory or hub id
    mask: str | os.PathLike
    out: str | os.PathLike
    head: Head = "auto"  # the head to load the model with (auto: the one in its config)
    ignore_hash: bool = False  # apply the mask even if the weights differ from those it was found on
    semi_structured: str | None = None  # a 2:4 mask's checkpoint in this dtype (fp16, bf16; CUDA)
    base: str | None = None  # write a ticket artefact against this base model instead of a checkpoint
    # the mask's reconstructed weights (SparseGPT's, beside the mask) instead of θ0's: a sparse model
    reconstructed: bool = False

    def __post_init__(self) -> None:
        check_config(self)  # types and choices (head)
        if self.reconstructed and self.base is not None:
            raise ConfigError(
                "--reconstructed writes a checkpoint of the reconstructed weights; --base writes a "
                "fine-tuned ticket's artefact: not both"
            )
        if self.semi_structured and self.base is not None:
            raise ConfigError(
                "--semi-structured writes a checkpoint; --base writes a ticket artefact: not both"
            )
        if self.semi_structured and self.semi_structured not in SEMI_DTYPES:
            raise ConfigError(
                f"semi_structured: one of {', '.join(sorted(SEMI_DTYPES))}, got {self.semi_structured!r}"
            )


@dataclass
class Exported:
    out: Path
    head: str  # the head the model was loaded with
    sparsity: float  # of the mask's target weights
    pattern: str | None  # the mask's N:M pattern, where the checkpoint is semi-structured
    size: int | None = None  # a ticket artefact: bytes of its files, and of its weights alone
    stored: int | None = None
    reconstructed: bool = False  # the mask's reconstructed weights: a sparse model, not a ticket


def load_with_head(model: str, head: str) -> tuple[nn.Module, str, PreTrainedTokenizerBase | None]:
    """(model, the head it was loaded with, its tokenizer or None) for `--model` and `--head`
    (auto: the head in its config); a directory without a tokenizer is written without one."""
    head = head_of(load_config(model)) if head == "auto" else head
    tokenizer = None
    with contextlib.suppress(TicketlabError):
        tokenizer = load_tokenizer(model)
    return load_model(model, head=head), head, tokenizer


def export(config: ExportConfig) -> Exported:
    """Write the checkpoint (or with `base`, the ticket artefact); every input is read first."""
    if config.base is not None:
        return _export_ticket(config)
    inputs = [config.model, config.mask]
    check_output(config.out, kind="exported model", inputs=inputs)  # before loading anything
    # per-layer head and FFN sizes do not fit a plain HF config: the checkpoint would not load
    refuse_compacted(config.model, "a plain HF checkpoint (one head count, one FFN size) is exported from")
    mask, mc = load_mask(config.mask)
    if config.semi_structured:
        require_semi_structured(mc, config.mask)  # before loading the model
    model, head, tokenizer = load_with_head(config.model, config.head)
    check_fits(mask, mc, model, source=config.mask, check_hash=not config.ignore_hash)
    if config.reconstructed:
        mc = _with_reconstructed(model, config, mask, mc)
    dtype = SEMI_DTYPES[config.semi_structured] if config.semi_structured else None
    model.to(stored_dtype(config.model))  # loaded in float32: the checkpoint in the dtype it came in
    export_pretrained(
        model, config.out, mask=mask, config=mc, tokenizer=tokenizer, inputs=inputs, semi_structured=dtype
    )
    pattern = mc.pattern if config.semi_structured else None
    return Exported(Path(config.out), head, mask.sparsity, pattern, reconstructed=config.reconstructed)


def _with_reconstructed(model: nn.Module, config: ExportConfig, mask, mc: MaskConfig) -> MaskConfig:
    """Put the mask's reconstructed weights into `model` (checked against the mask); the mask config
    the checkpoint records, saying its weights are not θ0's."""
    load_weights_into(model, load_reconstructed(config.mask, mask))
    return dataclasses.replace(mc, search={**mc.search, "exported_weights": NOT_A_TICKET})


def _export_ticket(config: ExportConfig) -> Exported:
    """`base`: the fine-tuned ticket in `model` as an artefact against `base` (`masks.ticket`)."""
    inputs = [config.model, config.mask, config.base]
    check_output(config.out, kind="ticket", inputs=inputs)
    check_source(config.base)  # a mistyped base before the mask and the model are read
    refuse_compacted(config.model, "a ticket artefact is written from")
    mask, mc = load_mask(config.mask)
    model, head, _ = load_with_head(config.model, config.head)
    check_fits(mask, mc, model, source=config.mask, check_hash=False)  # fine-tuned: the base is checked
    check_squashed(model, mask, source=config.model)  # named by --model, then carried as its ticket
    apply_mask(model, mask)
    out = save_ticket(model, config.out, base=config.base, mask_config=mc, check_hash=not config.ignore_hash)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return Exported(out, head, mask.sparsity, None, size, (out / WEIGHTS_NAME).stat().st_size)
