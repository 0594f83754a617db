"""Tokenized features held as flat arrays, cached on disk as safetensors, and padded per batch.

A tokenized split is a handful of columns: ragged ones (`input_ids`, one list per example) stored as
one flat array plus offsets, and scalar ones (`labels`). That keeps 400k MNLI pairs in a few MB, and
the cache file (`<cache>/features/<key hash>.safetensors`, `core.files.default_cache_dir`) is
plain safetensors: nothing is unpickled. The key covers the data file's bytes, the tokenizer and
every tokenization setting, so a stale cache is never read.

Batches are padded to their own longest example (dynamic padding), not to `max_length`: on a CPU
most GLUE sentences are far shorter than 128 tokens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from ..core.errors import TicketlabError
from ..core.files.atomic import atomic_write_bytes
from ..core.files.caches import default_cache_dir
from ..core.files.inputs import load_safetensors, open_read
from ..core.files.tensors import safetensors_bytes
from .tokens import tokenizer_fingerprint


class Ragged:
    """A list of variable-length int arrays as one flat array and n + 1 offsets."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values, self.offsets = values, offsets

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], dtype: Any = np.int32) -> Ragged:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter((x for r in rows for x in r), dtype=dtype, count=int(offsets[-1]))
        return cls(values, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, idx: Sequence[int]) -> Ragged:
        return Ragged.from_lists([self[i] for i in idx], dtype=self.values.dtype)


Column = Ragged | np.ndarray


class Features(Sequence[dict[str, np.ndarray]]):
    """Columns of equal length; `features[i]` is one example as a dict of arrays / scalars."""

    def __init__(self, columns: Mapping[str, Column]):
        lengths = {len(c) for c in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: { {k: len(c) for k, c in columns.items()} }")
        self.columns = dict(columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        return {k: c[i] for k, c in self.columns.items()}

    def subset(self, idx: Sequence[int]) -> Features:
        idx = list(idx)
        return Features(
            {k: c.take(idx) if isinstance(c, Ragged) else c[idx] for k, c in self.columns.items()}
        )

    def lengths(self) -> np.ndarray:
        return self.columns["input_ids"].lengths()


def token_columns(enc: Mapping[str, Any]) -> dict[str, Column]:
    """A tokenizer's output as the columns every task's features begin with: input_ids, and
    token_type_ids where the tokenizer makes them (int8: segment ids 0 and 1)."""
    columns: dict[str, Column] = {"input_ids": Ragged.from_lists(enc["input_ids"])}
    if "token_type_ids" in enc:
        columns["token_type_ids"] = Ragged.from_lists(enc["token_type_ids"], dtype=np.int8)
    return columns


# --------------------------------------------------------------------------- the cache


def cache_root() -> Path:
    return default_cache_dir() / "features"


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open_read(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenizer_digest(tokenizer: PreTrainedTokenizerBase) -> str:
    """Identity of a tokenizer for truncated, padded features: its definition
    (`tokenizer_fingerprint`) and the sides it pads and truncates on."""
    text = f"{tokenizer_fingerprint(tokenizer)}:{tokenizer.padding_side}:{tokenizer.truncation_side}"
    return hashlib.sha256(text.encode()).hexdigest()


def _save(path: Path, features: Features, key: str) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, col in features.columns.items():
        if isinstance(col, Ragged):
            arrays[f"{name}.values"], arrays[f"{name}.offsets"] = col.values, col.offsets
        else:
            arrays[name] = np.ascontiguousarray(col)
    # files.atomic_write_bytes: never half-written, the umask's mode, a killed writer's temporary removed
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}  # views: no copy
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata={"key": key}))


def _load(path: Path) -> Features:
    arrays = load_safetensors(path, "feature cache", framework="np")
    columns: dict[str, Column] = {}
    for name in sorted(arrays):
        if name.endswith(".values"):
            base = name.removesuffix(".values")
            columns[base] = Ragged(arrays[name], arrays[f"{base}.offsets"])
        elif not name.endswith(".offsets"):
            columns[name] = arrays[name]
    return Features(columns)


_MEMORY: dict[str, Features] = {}  # the same split tokenized twice in one process (IMP rounds)


def cached(key: Mapping[str, Any], build: Callable[[], Features]) -> Features:
    """`build()` once per key: from memory, then the disk cache, else built and written there."""
    text = json.dumps(key, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    if digest in _MEMORY:
        return _MEMORY[digest]
    path = cache_root() / f"{digest}.safetensors"
    features = None
    if path.is_file():
        with contextlib.suppress(Exception):  # a corrupt cache entry is rebuilt, never trusted
            features = _load(path)
    if features is None:
        features = build()
        with contextlib.suppress(OSError, TicketlabError):  # a read-only home costs re-tokenizing
            path.parent.mkdir(parents=True, exist_ok=True)
            _save(path, features, text)
    _MEMORY[digest] = features
    return features


# --------------------------------------------------------------------------- batching


def pad_collate(
    tokenizer: PreTrainedTokenizerBase,
    float_labels: bool = False,
    columns: Sequence[str] | None = None,
) -> Callable[[list[dict[str, np.ndarray]], list[int] | None], dict[str, Tensor]]:
    """collate_fn(examples, seeds): pad ragged columns to the longest example of the batch.

    `input_ids` pads with the tokenizer's pad id, other ragged columns with 0, and the attention mask
    comes from the lengths. Scalar columns are stacked (`labels` as float for regression). `columns`
    keeps only those (model inputs and targets; not e.g. SQuAD's offsets).
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def collate(examples: list[dict[str, np.ndarray]], seeds: list[int] | None = None) -> dict[str, Tensor]:
        lengths = [len(e["input_ids"]) for e in examples]
        width = max(lengths)
        batch: dict[str, Tensor] = {}
        for name, value in examples[0].items():
            if columns is not None and name not in columns:
                continue
            if isinstance(value, np.ndarray) and value.ndim == 1:
                fill = pad_id if name == "input_ids" else 0
                out = torch.full((len(examples), width), fill, dtype=torch.long)  # (B, T)
                for row, e in enumerate(examples):
                    out[row, : len(e[name])] = torch.from_numpy(e[name].astype(np.int64))
                batch[name] = out
            else:
                dtype = torch.float32 if (name == "labels" and float_labels) else None
                batch[name] = torch.tensor(np.array([e[name] for e in examples]), dtype=dtype)
        positions = torch.arange(width)
        batch["attention_mask"] = (positions[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, T)
        return batch

    return collate


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """Evaluation batches of similar lengths (less padding); the caller restores the order."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
