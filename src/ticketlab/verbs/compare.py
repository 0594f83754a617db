"""`ticketlab compare`: `compare(CompareConfig) -> Comparison`, the matrix of Jaccard similarities
|A∩B|/|A∪B| of the kept weights of mask files (TAMT §4.2.5's mask distance is 1 - Jaccard); when
every mask is a structured ticket, also the Jaccard similarities of their kept heads and FFN units.

The command line declares its options itself (`cli/compare.py`), so this module is read only when the
verb runs and imports what it runs at the top.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.checks import check_config
from ..core.errors import TicketlabError, prefixed
from ..masks import Mask, load_mask
from ..masks.unit_io import unit_jaccard_matrices

Matrix = list[list[float]]


@dataclass
class CompareConfig:
    masks: Sequence[str | os.PathLike]  # two or more mask directories
    distance: bool = False  # 1 - Jaccard instead
    per_matrix: bool = False  # the mean of per-matrix Jaccards (TAMT's compare_mask.py), not one pooled
    # masks found on other weights (their recorded hashes differ) are refused unless this is off:
    # the same positions of two models' weights are not the same weights
    check_hash: bool = True

    def __post_init__(self) -> None:
        check_config(self)  # its fields' types
        if len(self.masks) < 2:
            names = ", ".join(map(str, self.masks)) or "none"
            raise TicketlabError(
                f"compare needs two or more mask directories; got {len(self.masks)}: {names}"
            )


@dataclass
class Comparison:
    labels: list[str]  # each mask's folder name (`labels`)
    sparsity: list[float]
    matrix: Matrix  # Jaccard similarities, or distances with `distance`
    distance: bool
    units: dict[str, Matrix] = field(default_factory=dict)  # by unit kind; {} unless all are tickets

    def to_dict(self) -> dict[str, Any]:
        """What `ticketlab compare --json` prints."""
        return {
            "labels": self.labels,
            "sparsity": self.sparsity,
            "distance" if self.distance else "jaccard": self.matrix,
            **({"units": self.units} if self.units else {}),
        }


def labels(paths: Sequence[str]) -> list[str]:
    """Each mask's folder name, or as many of its path's last parts as tell the masks apart
    (`a/mask` and `b/mask`)."""
    parts = [Path(p).resolve().parts for p in paths]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return list(paths)  # the same folder twice: as given


def compare(config: CompareConfig) -> Comparison:
    paths = [str(m) for m in config.masks]
    loaded = [load_mask(m) for m in paths]
    masks = [mask.weights() for mask, _ in loaded]  # similarity is over weights (no biases)
    for path, m, (_, mc) in zip(paths[1:], masks[1:], loaded[1:], strict=True):
        try:
            masks[0].check_compatible(m)
        except TicketlabError as e:
            raise prefixed(e, f"{path} vs {paths[0]}") from None
        if config.check_hash and mc.base_model_hash != loaded[0][1].base_model_hash:
            raise TicketlabError(
                f"{path} vs {paths[0]}: found on other weights (their base_model_hash differ): the "
                "Jaccard would compare positions of two models' weights; --ignore-hash to compare them"
            )
    n = len(masks)
    similarity = Mask.matrix_mean_jaccard if config.per_matrix else Mask.jaccard
    sim = [[1.0 if i == j else similarity(masks[i], masks[j]) for j in range(n)] for i in range(n)]
    units = unit_jaccard_matrices(paths)  # {} unless every mask is a structured ticket
    if config.distance:
        sim = [[1.0 - v for v in row] for row in sim]
        units = {k: [[1.0 - v for v in row] for row in m] for k, m in units.items()}
    return Comparison(labels(paths), [m.sparsity for m in masks], sim, config.distance, units)
