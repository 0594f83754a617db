"""Jaccard similarity |A∩B| / |A∪B| of the kept weights of the study's 13 final masks, per pair of
methods, four ways (ticketlab's `Mask.jaccard` and `Mask.matrix_mean_jaccard`, as `ticketlab compare`
and `ticketlab compare --per-matrix` compute them):

  pooled      one Jaccard over every pruned matrix (the 36 encoder matrices and the word embeddings;
              this checkpoint has no pooler): 22.3M weights, 52% of them the word embeddings; the
              report's Fig. 8;
  per-matrix  the mean of the 37 matrices' Jaccards, as TAMT's `compare_mask.py` computes it;
  encoder     one Jaccard over the 36 encoder matrices only (10.6M weights);
  embeddings  the word-embedding matrix alone (11.7M weights).

A pair of methods shows the mean over its pairs of masks (3 × 3, or 3 within a method) with the
smallest and largest. The masks are not in the tree: restore them first (they are in git history,
each checked against the hash its search recorded):

    mkdir -p sweeps/minilm-mlm && cp docs/results/minilm-mlm/results.sqlite sweeps/minilm-mlm/
    PYTHONPATH=src python recipes/minilm-mlm/snapshot.py --restore sweeps/minilm-mlm
    PYTHONPATH=src python recipes/minilm-mlm/mask_similarity.py sweeps/minilm-mlm
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path

from ticketlab.masks import Mask, load_mask

METHODS = ("omp", "random", "imp", "tamt-mlm", "tamt-kd")


def only(mask: Mask, keep: Callable[[str], bool]) -> Mask:
    return Mask({k: t for k, t in mask.items() if keep(k)})


def encoder(key: str) -> bool:
    return ".encoder." in f".{key}"


def embeddings(key: str) -> bool:
    return "word_embeddings" in key


WAYS: dict[str, Callable[[Mask, Mask], float]] = {
    "pooled": Mask.jaccard,
    "per-matrix": Mask.matrix_mean_jaccard,
    "encoder": lambda a, b: only(a, encoder).jaccard(only(b, encoder)),
    "embeddings": lambda a, b: only(a, embeddings).jaccard(only(b, embeddings)),
}


def load(sweep: Path) -> dict[str, list[Mask]]:
    """The final masks under `sweep/masks`, by method (a folder is `<method>_s70[_seed<k>]_<id>`)."""
    out: dict[str, list[Mask]] = {m: [] for m in METHODS}
    for folder in sorted((sweep / "masks").iterdir()):
        method = folder.name.split("_s70")[0]
        if method in out and (folder / "masks.safetensors").is_file():
            out[method].append(load_mask(folder)[0].weights())
    return out


def main(sweep: Path) -> None:
    masks = load(sweep)
    print(", ".join(f"{m} {len(v)}" for m, v in masks.items()), "masks")
    print(f"{'pair':<20} " + " ".join(f"{w:>22}" for w in WAYS))
    for a, b in itertools.combinations_with_replacement(METHODS, 2):
        if a == b:
            pairs = list(itertools.combinations(masks[a], 2))
        else:
            pairs = list(itertools.product(masks[a], masks[b]))
        if not pairs:
            continue
        cells = []
        for fn in WAYS.values():
            v = [fn(x, y) for x, y in pairs]
            cells.append(f"{sum(v) / len(v):.3f} ({min(v):.3f}-{max(v):.3f})")
        print(f"{a + ' / ' + b:<20} " + " ".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "sweeps/minilm-mlm"))
