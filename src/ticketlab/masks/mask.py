"""The Mask type: boolean tensors keyed by tensor name, True where an entry is kept.

Keys name weights (`X.weight`) and, where a mask must cover a bias to compute what a unit mask
means (a pruned FFN sub-layer takes FFN-out's bias with it: `masks.units`), biases (`X.bias`).
Sparsity is a fraction of *weights* (biases are never pruned targets), so every count,
per-matrix figure and similarity here runs over the weight entries only; bias entries ride along,
are applied, saved, compared for equality and combined like the rest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor

from ..core.errors import MaskMismatchError

BIAS_SUFFIX = ".bias"


def is_bias_key(key: str) -> bool:
    """Whether a mask key names a bias (`X.bias`) rather than a weight (`X.weight`)."""
    return key.endswith(BIAS_SUFFIX)


class Mask(Mapping[str, Tensor]):
    """An immutable mapping `tensor key -> bool tensor` (True = kept, False = pruned).

    Similarity follows TAMT §4.2.5 / Chen et al.: masks are the sets of kept weights, the Jaccard
    similarity is |A ∩ B| / |A ∪ B| over all targets, and the mask distance is 1 - Jaccard.
    """

    def __init__(self, tensors: Mapping[str, Tensor]):
        self._t: dict[str, Tensor] = {}
        for name, t in tensors.items():
            if t.dtype != torch.bool:
                raise TypeError(f"mask '{name}' must be a bool tensor, got {t.dtype}")
            self._t[name] = t

    # Mapping protocol
    def __getitem__(self, name: str) -> Tensor:
        return self._t[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def __repr__(self) -> str:
        return f"Mask({len(self)} tensors, {self.numel:,} weights, sparsity={self.sparsity:.4f})"

    # Views
    def weights(self) -> Mask:
        """The weight entries only (what sparsity and similarity count)."""
        return Mask({n: t for n, t in self._t.items() if not is_bias_key(n)})

    def biases(self) -> Mask:
        """The bias entries only (empty for every mask but a unit mask's weight form)."""
        return Mask({n: t for n, t in self._t.items() if is_bias_key(n)})

    # Counts: weights only (a bias entry is not a weight; see the module docstring)
    @property
    def numel(self) -> int:
        return sum(t.numel() for n, t in self._t.items() if not is_bias_key(n))

    @property
    def kept(self) -> int:
        return sum(int(t.sum()) for n, t in self._t.items() if not is_bias_key(n))

    @property
    def sparsity(self) -> float:
        """Fraction of target weights that are pruned (zero)."""
        n = self.numel
        return 1.0 - self.kept / n if n else 0.0

    def per_matrix(self) -> dict[str, float]:
        return {name: 1.0 - int(t.sum()) / t.numel() for name, t in self.weights().items()}

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(t.shape) for name, t in self._t.items()}

    # Set algebra and similarity
    def check_compatible(self, other: Mask) -> None:
        if self.shapes != other.shapes:
            mine, theirs = set(self.shapes), set(other.shapes)
            if mine != theirs:
                diff = sorted(mine ^ theirs)[:3]
                raise MaskMismatchError(f"masks cover different weights (e.g. {', '.join(diff)})")
            bad = next(n for n in self.shapes if self.shapes[n] != other.shapes[n])
            raise MaskMismatchError(
                f"masks differ in shape at {bad}: {self.shapes[bad]} vs {other.shapes[bad]}"
            )

    def _combine(self, other: Mask, op) -> Mask:
        self.check_compatible(other)
        return Mask({n: op(t, other[n].to(t.device)) for n, t in self._t.items()})

    def __and__(self, other: Mask) -> Mask:
        return self._combine(other, torch.logical_and)

    def __or__(self, other: Mask) -> Mask:
        return self._combine(other, torch.logical_or)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask) or self.shapes != other.shapes:
            return False
        return all(torch.equal(t, other[n].to(t.device)) for n, t in self._t.items())

    __hash__ = None  # mutable-content tensors: not hashable

    def jaccard(self, other: Mask) -> float:
        """Over the weights: two tickets that differ only in whether they carry bias entries (FFN
        sub-layers vs neurons) are compared on what they prune. A weight matrix only one mask covers
        is kept, dense, by the other (Chen et al.'s masks leave the word embeddings unpruned), so masks
        of different targets compare over the union of the weights they cover."""
        mine, theirs = self.weights(), other.weights()
        common = mine.shapes.keys() & theirs.shapes.keys()
        Mask({n: mine[n] for n in common}).check_compatible(Mask({n: theirs[n] for n in common}))
        inter = union = 0
        for n in mine.shapes.keys() | theirs.shapes.keys():
            t = mine._t.get(n)
            o = theirs._t.get(n)
            if t is None or o is None:  # covered by one mask: the other keeps all of it
                covered = t if t is not None else o
                inter, union = inter + int(covered.sum()), union + covered.numel()
                continue
            o = o.to(t.device)
            inter += int(torch.logical_and(t, o).sum())
            union += int(torch.logical_or(t, o).sum())
        return inter / union if union else 1.0

    def matrix_mean_jaccard(self, other: Mask) -> float:
        """The unweighted mean of the per-matrix Jaccard similarities, as TAMT's `compare_mask.py`
        computes it (a small matrix weighs as much as the word embeddings); the same targets only."""
        mine, theirs = self.weights(), other.weights()
        mine.check_compatible(theirs)
        sims = []
        for n, t in mine.items():
            o = theirs[n].to(t.device)
            union = int(torch.logical_or(t, o).sum())
            sims.append(int(torch.logical_and(t, o).sum()) / union if union else 1.0)
        return sum(sims) / len(sims) if sims else 1.0

    def distance(self, other: Mask) -> float:
        return 1.0 - self.jaccard(other)

    # Conversions
    def to(self, device: torch.device | str) -> Mask:
        return Mask({n: t.to(device) for n, t in self._t.items()})

    def cpu(self) -> Mask:
        return self.to("cpu")

    @classmethod
    def ones_like(cls, shapes: Mapping[str, tuple[int, ...]]) -> Mask:
        return cls({n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()})

    def summary(self) -> str:
        """A table with one row per matrix and the overall sparsity (and a line for masked biases)."""
        rows = [
            (n, "x".join(map(str, t.shape)), t.numel(), 1.0 - int(t.sum()) / t.numel())
            for n, t in self.weights().items()
        ]
        width = max([len(r[0]) for r in rows] + [len("overall")])
        lines = [f"{'weight':<{width}}  {'shape':>12}  {'params':>12}  {'sparsity':>8}"]
        lines += [f"{n:<{width}}  {s:>12}  {k:>12,}  {sp:>8.1%}" for n, s, k, sp in rows]
        lines.append(f"{'overall':<{width}}  {'':>12}  {self.numel:>12,}  {self.sparsity:>8.1%}")
        biases = self.biases()
        if biases:
            zero = sum(int((~t).sum()) for t in biases.values())
            lines.append(f"biases: {zero:,} entries zero in {len(biases)} masked bias vectors (not above)")
        return "\n".join(lines)
