"""`ticketlab info`: `info(InfoConfig) -> MaskInfo`, a mask file's provenance and per-matrix sparsity
(a structured ticket: its heads and FFN units kept per layer).

The command line declares its options itself (`cli/info.py`), so this module is read only when the
verb runs and imports what it runs at the top: torch, not transformers (a mask file is tensors).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..core.checks import check_config
from ..masks import Mask, MaskConfig, load_mask
from ..masks.pattern import pattern_line
from ..masks.reconstructed import NOT_A_TICKET, RECONSTRUCTED_NAME, reconstructed_file
from ..masks.unit_io import summary as units_summary
from ..masks.unit_io import units_line


@dataclass
class InfoConfig:
    mask: str | os.PathLike  # a mask directory (or a hub mask)

    def __post_init__(self) -> None:
        check_config(self)  # its fields' types


@dataclass
class MaskInfo:
    path: str
    mask: Mask
    config: MaskConfig

    def to_dict(self) -> dict[str, Any]:
        """The config and the sparsity, overall and per matrix (`ticketlab info --json`)."""
        mask = self.mask
        shown = {"config": self.config.to_dict(), "sparsity": mask.sparsity, "per_matrix": mask.per_matrix()}
        if biases := mask.biases():  # masked biases (FFN sub-layers' weight form): not in the sparsity
            shown["biases"] = {n: 1.0 - int(t.sum()) / t.numel() for n, t in biases.items()}
        return shown

    def lines(self) -> list[str]:
        """The summary `ticketlab info` prints: provenance, then the per-matrix (or per-unit) table."""
        config, mask = self.config, self.mask
        lines = [f"mask:       {self.path}", f"method:     {method_line(config)}"]
        if config.kind == "structured":
            lines.append(f"units:      {units_line(config.units)}")
            zero = f"{mask.sparsity:.1%} of their weights zero"
            lines.append(f"level:      target {config.sparsity:.1%} of units; {zero}")
        else:
            lines.append(f"sparsity:   target {config.sparsity:.1%}, achieved {mask.sparsity:.1%}")
            lines.append(f"pattern:    {pattern_line(config.pattern)}")
        lines.append(f"base model: {config.base_model} [{config.model_type}]")
        lines.append(f"hash:       {hash_line(config)}")
        if config.search:
            shown = (
                f"{k}={v}"
                for k, v in config.search.items()
                if not isinstance(v, (dict, list)) and k != "reconstructed"
            )
            lines.append("search:     " + ", ".join(shown))
        if reconstructed_file(self.path) is not None:
            lines.append(f"weights:    this mask over θ0 is a ticket; {RECONSTRUCTED_NAME} beside it holds")
            lines.append(f"            {NOT_A_TICKET} (`ticketlab export --reconstructed` writes it)")
        lines.append("")
        lines.append(units_summary(config.units) if config.kind == "structured" else mask.summary())
        return lines


def method_line(config: MaskConfig) -> str:
    """'omp (ranking local)', 'tamt-kd (ranking local, seed 3)', 'st-winning': what the method set."""
    shown = [f"ranking {config.ranking}"] if config.ranking is not None else []
    shown += [f"seed {config.seed}"] if config.seed is not None else []
    return f"{config.method} ({', '.join(shown)})" if shown else config.method


def hash_line(config: MaskConfig) -> str:
    """The hash a mask checks a model against, said as what it is: of the weights the mask prunes
    (its targets), so masks of other targets on the same model (Chen et al.'s IMP leaves the word
    embeddings out) record other hashes; and, for a mask that prunes a pooler, the one without it."""
    line = f"{config.base_model_hash[:19]} (of the weights the mask prunes; other targets hash others)"
    if config.encoder_hash is not None:
        line += f"; {config.encoder_hash[:19]} without the pooler"
    return line


def info(config: InfoConfig) -> MaskInfo:
    """The mask file at `config.mask`, read (a corrupt or missing one: one clear error)."""
    mask, mc = load_mask(config.mask)
    return MaskInfo(str(config.mask), mask, mc)
