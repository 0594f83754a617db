"""Text to token ids, once: a source (`sources.py`) is tokenized into one stream of ids (lines in
order, no special tokens), cached as safetensors under `cache_dir`, keyed by the source's content
hash and the tokenizer's identity (`tokenizer_fingerprint`), so a second run, or a run with another
`max_length`, does not re-tokenize (`token_stream`). `write_token_file` writes a corpus's streams
into one token file to carry where the text is not; a token file's streams are read back here.

Blocks and the corpus are `corpus.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from tokenizers import Tokenizer
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from ..core.errors import ConfigError, DataError, TicketlabError
from ..core.files.atomic import atomic_write_bytes
from ..core.files.caches import corpus_cache_dir
from ..core.files.inputs import open_safetensors, read_bytes
from ..core.files.tensors import safetensors_bytes
from ..core.progress import progress_bar
from .sources import (
    TOKENS_FORMAT,
    TOKENS_SUFFIX,
    Source,
    clean_wikitext,
    looks_like_wikitext,
    resolve_sources,
    token_header,
)

CACHE_BYTES = 1 << 36  # a cached token stream read whole: 16 G tokens of int32, past any corpus here
CACHE_VERSION = 1  # bump when tokenization or cleaning changes, so old caches are not reused


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of everything that decides how text becomes ids (the full tokenizer definition)."""
    return hashlib.sha256(f"{type(tokenizer).__name__}\n{_definition(tokenizer)}".encode()).hexdigest()[:16]


def _definition(tokenizer: PreTrainedTokenizerBase) -> str:
    """A fast tokenizer's serialisation as loaded, else its vocabulary and options. Not the
    truncation and padding its last call left on the backend: each call sets its own, so a tokenizer
    that encoded a task's features is the one that wrote a corpus's token file."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return json.dumps(sorted(tokenizer.get_vocab().items())) + json.dumps(
            {k: str(v) for k, v in sorted(tokenizer.init_kwargs.items()) if k != "name_or_path"}
        )
    if backend.truncation is not None or backend.padding is not None:
        backend = Tokenizer.from_str(backend.to_str())  # a copy: the caller's keeps its state
        backend.no_truncation()
        backend.no_padding()
    return backend.to_str()


def _tokenize(
    source: Source,
    tokenizer: PreTrainedTokenizerBase,
    wikitext: bool | None,
    progress: bool,
    limit: int | None,
):
    """(ids, encoding, wikitext detected, whether every line was read): the source's lines in order,
    tokenized in chunks until `limit` tokens are read (all where None)."""
    lines, encoding = source.lines()
    lines = [line.strip() for line in lines]
    lines = [line for line in lines if line]
    if wikitext is None:  # decide from the first few thousand paragraphs
        wikitext = looks_like_wikitext("\n".join(lines[:5000]))
    parts: list[Tensor] = []  # one tensor per chunk: a Python int per token would take 36 bytes
    step, read, done = 2048, 0, 0
    bar = progress_bar(
        total=len(lines), desc=f"tokenize {source.path.name}", unit="line", disable=not progress
    )
    for i in range(0, len(lines), step):
        if limit is not None and read >= limit:
            break
        chunk = lines[i : i + step]
        if wikitext:
            chunk = [clean_wikitext(line, tokenizer.unk_token) for line in chunk]
        enc = tokenizer(chunk, add_special_tokens=False, return_attention_mask=False, verbose=False)
        parts.append(torch.tensor([t for row in enc["input_ids"] for t in row], dtype=torch.int32))
        read, done = read + parts[-1].numel(), i + len(chunk)
        bar.update(len(chunk))
    bar.close()
    ids = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int32)
    return ids, encoding, wikitext, done == len(lines)


def _read_cache(path: Path | None) -> Tensor | None:
    if path is None or not path.is_file():
        return None
    try:
        return st_load(read_bytes(path, "token cache", limit=CACHE_BYTES))["ids"]
    except (SafetensorError, KeyError, TicketlabError):
        return None  # a corrupt cache entry is rebuilt


def _write_cache(path: Path | None, ids: Tensor, source: Source, key_data: dict[str, Any]) -> None:
    if path is None:
        return
    meta = {"source": source.name, "tokens": str(ids.numel()), "key": json.dumps(key_data)}
    with contextlib.suppress(TicketlabError):  # a read-only cache costs re-tokenizing, not the run
        atomic_write_bytes(path, safetensors_bytes({"ids": ids}, metadata=meta))


def capped(ids: Tensor, info: dict[str, Any], max_tokens: int | None) -> tuple[Tensor, dict[str, Any]]:
    """The first `max_tokens` ids of a stream (all where None or fewer); `info["capped"]` where cut."""
    if max_tokens is None or ids.numel() <= max_tokens:
        return ids, info
    return ids[:max_tokens], {**info, "tokens": max_tokens, "capped": True}


def token_stream(
    source: Source,
    tokenizer: PreTrainedTokenizerBase,
    *,
    cache_dir: Path | None,
    wikitext: bool | None = None,
    progress: bool = True,
    max_tokens: int | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """The token ids of a source (int32, no special tokens), from the cache when possible: all of
    them, or its first `max_tokens` (`info["capped"]` where that leaves some out). A capped read
    tokenizes only the lines it needs and caches that prefix beside the whole stream's entry; the ids
    are the same whichever entry holds them."""
    if source.stream is not None:
        return capped(*_token_file_stream(source, tokenizer), max_tokens)
    key_data = {
        "source": source.fingerprint(),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "wikitext": wikitext,
        "version": CACHE_VERSION,
    }
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:24]
    full = cache_dir / f"{source.path.name}-{key}.safetensors" if cache_dir is not None else None
    prefix = full.with_name(f"{source.path.name}-{key}.prefix.safetensors") if full is not None else None
    base = {"source": source.name, "content": key_data["source"]}
    ids = _read_cache(full)
    if ids is not None:
        return capped(ids, {**base, "tokens": ids.numel(), "cache": "hit"}, max_tokens)
    ids = _read_cache(prefix) if max_tokens is not None else None
    if ids is not None and ids.numel() >= max_tokens:
        return capped(ids, {**base, "tokens": ids.numel(), "cache": "hit"}, max_tokens)
    ids, encoding, detected, complete = _tokenize(source, tokenizer, wikitext, progress, max_tokens)
    if ids.numel() == 0:
        raise DataError(f"{source.name}: no text found")
    _write_cache(full if complete else prefix, ids, source, key_data)
    info = {**base, "tokens": ids.numel(), "cache": "miss", "encoding": encoding, "wikitext": detected}
    return capped(ids, info, max_tokens)


def write_token_file(
    path: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    tokenizer: PreTrainedTokenizerBase,
    *,
    cache_dir: str | os.PathLike | None = None,
    wikitext: bool | None = None,
    progress: bool = True,
    role: str = "train",
) -> dict[str, Any]:
    """Tokenize `paths` (as a corpus of `role`, train or dev, reads them: a DatasetDict's split) into
    the token file `path`; its summary."""
    path = Path(path).expanduser()
    if not path.name.endswith(TOKENS_SUFFIX):
        raise ConfigError(f"{path}: a token file's name must end in {TOKENS_SUFFIX}")
    cache = corpus_cache_dir(cache_dir)
    dtype = torch.uint16 if len(tokenizer) <= 1 << 16 else torch.int32
    tensors, index = {}, []
    for i, src in enumerate(resolve_sources(paths, role=role)):
        ids, info = token_stream(src, tokenizer, cache_dir=cache, wikitext=wikitext, progress=progress)
        tensors[f"ids.{i}"] = ids.to(dtype)
        entry = {"key": f"ids.{i}", "source": src.name, "content": info["content"]}
        index.append({**entry, "tokens": ids.numel()})
    meta = {"format": TOKENS_FORMAT, "tokenizer": tokenizer_fingerprint(tokenizer)}
    meta["sources"] = json.dumps(index)
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=meta))
    return {"file": str(path), "sources": len(index), "tokens": sum(e["tokens"] for e in index)}


def _token_file_stream(source: Source, tokenizer: PreTrainedTokenizerBase) -> tuple[Tensor, dict[str, Any]]:
    meta = token_header(source.path)
    if meta.get("tokenizer") != tokenizer_fingerprint(tokenizer):
        raise DataError(
            f"{source.path}: was tokenized with another tokenizer; pass the one it was written with, "
            "or write it again with this one (`ticketlab pretrain --write-tokens`)"
        )
    try:
        with open_safetensors(source.path, "token file", DataError) as f:
            ids = f.get_tensor(source.stream["key"]).to(torch.int32)
    except (SafetensorError, OSError, KeyError) as e:
        raise DataError(f"{source.path}: corrupt token file ({e})") from None
    info = {"source": source.name, "tokens": ids.numel(), "cache": "token file"}
    return ids, {**info, "content": source.stream["content"]}
