"""Language-modelling corpora: read text, tokenize once, cache on disk, cut into fixed-length blocks.

A corpus is one or more sources: plain text files (UTF-8, with a cp1252 fallback for old Gutenberg
files) or directories written by `datasets.Dataset.save_to_disk` (a `text` column; for a
`DatasetDict` the `train` split, and `validation`/`test` as the dev split when none is given).
WikiText's tokenized format is undone on the fly when detected: ` @-@ `, ` @,@ `, ` @.@ ` become
`-`, `,`, `.` and `<unk>` becomes the tokenizer's own unknown token (BERT's WordPiece would
otherwise split `<unk>` into four pieces).

Each source is tokenized into one stream of token ids (lines in order, no special tokens), which is
cached as safetensors under `cache_dir`, keyed by the source's content hash and the tokenizer's
identity: a second run, or a run with another `max_length`, does not re-tokenize. Each stream is
then cut into blocks `[CLS] t_1 .. t_{L-2} [SEP]` of exactly `max_length` tokens (the special tokens
are the tokenizer's own, so RoBERTa gets `<s> .. </s>`), as in BERT pre-training and TAMT Table 1. A
source's final partial block is kept when it has at least 16 text tokens (or half a block, if less),
or when it is the source's only block.
Blocks never straddle two sources.

Without a separate dev corpus, the dev split is carved from the *tail* of every source (the last
`dev_fraction` of its blocks), so dev text is contiguous and never interleaved with training text.

    corpus = load_lm_corpus(["wiki.valid.txt"], tokenizer, max_length=128, dev=["wiki.test.txt"])
    corpus.train[0]   # {"input_ids": LongTensor[128]}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from ..errors import ConfigError, DataError, TicketlabError
from ..files import atomic_write_bytes, default_cache_dir
from ..progress import progress_bar

CACHE_VERSION = 1  # bump when tokenization or cleaning changes, so old caches are not reused
MIN_PARTIAL_BLOCK = 16
WIKITEXT_MARKERS = (" @-@ ", " @,@ ", " @.@ ", "<unk>")
_WIKITEXT_JOINS = re.compile(r" @([-,.])@ ")


# --------------------------------------------------------------------------- text


def looks_like_wikitext(text: str) -> bool:
    return any(m in text for m in WIKITEXT_MARKERS)


def clean_wikitext(line: str, unk_token: str | None) -> str:
    """Undo WikiText's tokenized markup: `1 @,@ 000` -> `1,000`, `<unk>` -> the tokenizer's unk token."""
    line = _WIKITEXT_JOINS.sub(r"\1", line)
    if unk_token is not None:
        line = line.replace("<unk>", unk_token)
    return line


def read_text_file(path: Path) -> tuple[str, str]:
    """The file's text and the encoding used (UTF-8, else cp1252 as found in old Gutenberg files)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read corpus file ({e.strerror or e})") from None
    if b"\x00" in data[:4096]:
        raise DataError(f"{path}: looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), "cp1252"


# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    """One input of a corpus: a text file, or one split of a saved `datasets` dataset."""

    path: Path
    split: str | None = None  # for datasets directories
    text_column: str = "text"
    stream: dict[str, Any] | None = None  # for token files: the entry of one source's ids

    @property
    def name(self) -> str:
        if self.stream is not None:
            return f"{self.path}[{self.stream['source']}]"
        return f"{self.path}[{self.split}]" if self.split else str(self.path)

    def fingerprint(self) -> str:
        if self.stream is not None:  # the text's own content: the same blocks, the same key
            return self.stream["content"]
        if self.split is None:
            h = hashlib.sha256()
            with open(self.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
            return "sha256:" + h.hexdigest()
        return f"datasets:{_load_split(self)._fingerprint}:{self.text_column}"

    def lines(self) -> tuple[list[str], str]:
        """(lines, encoding) of the source's text, one paragraph/record per line."""
        if self.split is None:
            text, encoding = read_text_file(self.path)
            return text.splitlines(), encoding
        ds = _load_split(self)
        if self.text_column not in ds.column_names:
            raise DataError(
                f"{self.name}: no column '{self.text_column}' (columns: {', '.join(ds.column_names)}); "
                "pass text_column / --text-column"
            )
        return [str(t) if t is not None else "" for t in ds[self.text_column]], "datasets"


def is_dataset_dir(path: Path) -> bool:
    return path.is_dir() and any(
        (path / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json")
    )


def _load_split(source: Source):
    import datasets

    try:
        obj = datasets.load_from_disk(str(source.path))
    except Exception as e:  # datasets raises several types for foreign/corrupt directories
        raise DataError(f"{source.path}: cannot load the saved dataset ({e})") from None
    if isinstance(obj, datasets.DatasetDict):
        if source.split not in obj:
            raise DataError(f"{source.path}: no split '{source.split}' (splits: {', '.join(obj)})")
        return obj[source.split]
    return obj


def text_files(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The text files of `paths`: a file is itself, a directory stands for its `*.txt` files in name
    order (e.g. `wiki-2015/` for its shards)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for p in paths:
        path = Path(p).expanduser()
        if path.is_dir():
            found = sorted(f for f in path.glob("*.txt") if f.is_file())
            if not found:
                raise DataError(f"{path}: a directory with no .txt files")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise DataError(f"{path}: corpus not found")
    return out


def resolve_sources(
    paths: Sequence[str | os.PathLike], *, role: str = "train", text_column: str = "text"
) -> list[Source]:
    """Turn user paths into sources; a `datasets` directory contributes its `role` split."""
    if not paths:
        raise ConfigError(f"no {role} corpus given")
    out = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.exists():
            raise DataError(f"{path}: corpus not found")
        if path.name.endswith(TOKENS_SUFFIX) and path.is_file():
            out.extend(Source(path, stream=entry) for entry in read_token_index(path))
        elif is_dataset_dir(path):
            out.append(Source(path, split=_dataset_split(path, role), text_column=text_column))
        elif path.is_dir():  # a folder of text files: one source per file, so blocks stay within one
            out.extend(Source(f, text_column=text_column) for f in text_files(path))
        else:
            out.append(Source(path, text_column=text_column))
    return out


def _dataset_split(path: Path, role: str) -> str:
    """The split a DatasetDict contributes for `role`; '' for a single Dataset."""
    dd = path / "dataset_dict.json"
    if not dd.is_file():
        return ""
    try:
        splits = json.loads(dd.read_text())["splits"]
    except (OSError, ValueError, KeyError, RecursionError):
        raise DataError(f"{dd}: corrupt dataset_dict.json") from None
    wanted = ["train"] if role == "train" else ["validation", "dev", "test"]
    for s in wanted:
        if s in splits:
            return s
    raise DataError(f"{path}: no {' or '.join(wanted)} split (splits: {', '.join(splits)})")


# --------------------------------------------------------------------------- tokenizing + cache


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of everything that decides how text becomes ids (the full tokenizer definition)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = backend.to_str()
    else:
        spec = json.dumps(sorted(tokenizer.get_vocab().items())) + json.dumps(
            {k: str(v) for k, v in sorted(tokenizer.init_kwargs.items()) if k != "name_or_path"}
        )
    return hashlib.sha256(f"{type(tokenizer).__name__}\n{spec}".encode()).hexdigest()[:16]


def _tokenize(source: Source, tokenizer: PreTrainedTokenizerBase, wikitext: bool | None, progress: bool):
    lines, encoding = source.lines()
    lines = [line.strip() for line in lines]
    lines = [line for line in lines if line]
    if wikitext is None:  # decide from the first few thousand paragraphs
        wikitext = looks_like_wikitext("\n".join(lines[:5000]))
    if wikitext:
        lines = [clean_wikitext(line, tokenizer.unk_token) for line in lines]
    parts: list[Tensor] = []  # one tensor per chunk: a Python int per token would take 36 bytes
    step = 2048
    bar = progress_bar(
        total=len(lines), desc=f"tokenize {source.path.name}", unit="line", disable=not progress
    )
    for i in range(0, len(lines), step):
        chunk = lines[i : i + step]
        enc = tokenizer(chunk, add_special_tokens=False, return_attention_mask=False, verbose=False)
        parts.append(torch.tensor([t for row in enc["input_ids"] for t in row], dtype=torch.int32))
        bar.update(len(chunk))
    bar.close()
    return (torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int32)), encoding, wikitext


def token_stream(
    source: Source,
    tokenizer: PreTrainedTokenizerBase,
    *,
    cache_dir: Path | None,
    wikitext: bool | None = None,
    progress: bool = True,
) -> tuple[Tensor, dict[str, Any]]:
    """All token ids of a source (int32, no special tokens), from the cache when possible."""
    if source.stream is not None:
        return _token_file_stream(source, tokenizer)
    key_data = {
        "source": source.fingerprint(),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "wikitext": wikitext,
        "version": CACHE_VERSION,
    }
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:24]
    cached = cache_dir / f"{source.path.name}-{key}.safetensors" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        try:
            data = st_load(cached.read_bytes())
            info = {"source": source.name, "tokens": data["ids"].numel(), "cache": "hit"}
            return data["ids"], {**info, "content": key_data["source"]}
        except (SafetensorError, KeyError, OSError):
            pass  # a corrupt cache entry is rebuilt below
    ids, encoding, detected = _tokenize(source, tokenizer, wikitext, progress)
    if ids.numel() == 0:
        raise DataError(f"{source.name}: no text found")
    info = {"source": source.name, "tokens": ids.numel(), "cache": "miss", "encoding": encoding}
    info["content"] = key_data["source"]
    info["wikitext"] = detected
    if cached is not None:
        meta = {"source": source.name, "tokens": str(ids.numel()), "key": json.dumps(key_data)}
        with contextlib.suppress(TicketlabError):  # a read-only cache costs re-tokenizing, not the run
            atomic_write_bytes(cached, st_save({"ids": ids}, metadata=meta))
    return ids, info


# --------------------------------------------------------------------------- token files
# A corpus tokenized once, to carry where the text is not (a GPU machine gets only the working
# tree): one safetensors file, `<name>.tokens.safetensors`, holding each source's id stream (uint16
# when the vocabulary fits, else int32) and, in its metadata, the tokenizer's fingerprint and each
# source's name and content hash. `load_lm_corpus` accepts it as a corpus: the streams are cut into
# the same blocks as the text gives, under the same content key.

TOKENS_SUFFIX = ".tokens.safetensors"
TOKENS_FORMAT = "ticketlab-tokens/1"


def write_token_file(
    path: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    tokenizer: PreTrainedTokenizerBase,
    *,
    cache_dir: str | os.PathLike | None = None,
    wikitext: bool | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Tokenize `paths` (as a training corpus reads them) into the token file `path`; its summary."""
    path = Path(path).expanduser()
    if not path.name.endswith(TOKENS_SUFFIX):
        raise ConfigError(f"{path}: a token file's name must end in {TOKENS_SUFFIX}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "corpus"
    dtype = torch.uint16 if len(tokenizer) <= 1 << 16 else torch.int32
    tensors, index = {}, []
    for i, src in enumerate(resolve_sources(paths, role="train")):
        ids, info = token_stream(src, tokenizer, cache_dir=cache, wikitext=wikitext, progress=progress)
        tensors[f"ids.{i}"] = ids.to(dtype)
        entry = {"key": f"ids.{i}", "source": src.name, "content": info["content"]}
        index.append({**entry, "tokens": ids.numel()})
    meta = {"format": TOKENS_FORMAT, "tokenizer": tokenizer_fingerprint(tokenizer)}
    meta["sources"] = json.dumps(index)
    atomic_write_bytes(path, st_save(tensors, metadata=meta))
    return {"file": str(path), "sources": len(index), "tokens": sum(e["tokens"] for e in index)}


def _token_header(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise DataError(f"{path}: not a readable token file ({e})") from None
    if meta.get("format") != TOKENS_FORMAT:
        raise DataError(f"{path}: not a ticketlab token file (see pretrain --write-tokens)")
    return meta


def read_token_index(path: Path) -> list[dict[str, Any]]:
    """The sources of a token file: key, source name, content hash, token count."""
    try:
        index = json.loads(_token_header(path)["sources"])
        return [{k: e[k] for k in ("key", "source", "content", "tokens")} for e in index]
    except (KeyError, TypeError, ValueError, RecursionError):
        raise DataError(f"{path}: corrupt token file index") from None


def _token_file_stream(source: Source, tokenizer: PreTrainedTokenizerBase) -> tuple[Tensor, dict[str, Any]]:
    meta = _token_header(source.path)
    if meta.get("tokenizer") != tokenizer_fingerprint(tokenizer):
        raise DataError(
            f"{source.path}: was tokenized with another tokenizer; pass the one it was written with"
        )
    try:
        with safe_open(str(source.path), "pt") as f:
            ids = f.get_tensor(source.stream["key"]).to(torch.int32)
    except (SafetensorError, OSError, KeyError) as e:
        raise DataError(f"{source.path}: corrupt token file ({e})") from None
    info = {"source": source.name, "tokens": ids.numel(), "cache": "token file"}
    return ids, {**info, "content": source.stream["content"]}


# --------------------------------------------------------------------------- blocks


class BlockDataset(Sequence[dict[str, Tensor]]):
    """Fixed-length token blocks; item i is `{"input_ids": LongTensor[length_i]}` (no padding)."""

    def __init__(self, blocks: Tensor, lengths: Tensor):
        if blocks.ndim != 2 or lengths.shape != blocks.shape[:1]:
            raise ValueError("blocks must be [n, max_length] with one length per block")
        self.blocks = blocks  # [n, max_length] int32, padded with 0 past each length
        self.lengths = lengths  # [n] int32
        self.content_key: str | None = None  # of the sources, set by `load_lm_corpus`

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return {"input_ids": self.blocks[i, : int(self.lengths[i])].long()}

    @property
    def max_length(self) -> int:
        return self.blocks.shape[1]

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())

    def take(self, n: int | None) -> BlockDataset:
        """The first `n` blocks (all when n is None or larger than the dataset)."""
        if n is None or n >= len(self):
            return self
        return BlockDataset(self.blocks[:n], self.lengths[:n])

    @classmethod
    def concat(cls, parts: Sequence[BlockDataset]) -> BlockDataset:
        if not parts:
            raise ValueError("nothing to concatenate")
        return cls(torch.cat([p.blocks for p in parts]), torch.cat([p.lengths for p in parts]))


def special_affixes(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after one sequence ([CLS]/[SEP], <s>/</s>, ...)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain) :])
    raise ConfigError(f"cannot find where {type(tokenizer).__name__} puts its special tokens")


def make_blocks(
    ids: Tensor, max_length: int, prefix: list[int], suffix: list[int], pad_id: int
) -> BlockDataset:
    """Cut one token stream into blocks `prefix + max_length-len(affixes) tokens + suffix`."""
    width = max_length - len(prefix) - len(suffix)
    if width < 1:
        raise ConfigError(f"max_length {max_length} leaves no room for text after the special tokens")
    n_full, rest = divmod(ids.numel(), width)
    keep_rest = rest >= min(MIN_PARTIAL_BLOCK, width // 2) or (n_full == 0 and rest > 0)
    n = n_full + int(keep_rest)
    blocks = torch.full((n, max_length), pad_id, dtype=torch.int32)
    lengths = torch.full((n,), max_length, dtype=torch.int32)
    p, s = len(prefix), len(suffix)
    if prefix:
        blocks[:, :p] = torch.tensor(prefix, dtype=torch.int32)
    if n_full:
        blocks[:n_full, p : p + width] = ids[: n_full * width].view(n_full, width)
        if suffix:
            blocks[:n_full, p + width :] = torch.tensor(suffix, dtype=torch.int32)
    if keep_rest:
        blocks[-1, p : p + rest] = ids[n_full * width :]
        if suffix:
            blocks[-1, p + rest : p + rest + s] = torch.tensor(suffix, dtype=torch.int32)
        lengths[-1] = p + rest + s
    return BlockDataset(blocks, lengths)


# --------------------------------------------------------------------------- corpus


@dataclass
class LMCorpus:
    train: BlockDataset
    dev: BlockDataset
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{len(self.train):,} train blocks ({self.train.num_tokens:,} tokens), "
            f"{len(self.dev):,} dev blocks ({self.dev.num_tokens:,} tokens) of {self.train.max_length} tokens"
        )


def _source_blocks(sources, tokenizer, max_length, cache_dir, wikitext, progress):
    prefix, suffix = special_affixes(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out, infos = [], []
    for src in sources:
        ids, info = token_stream(src, tokenizer, cache_dir=cache_dir, wikitext=wikitext, progress=progress)
        out.append(make_blocks(ids, max_length, prefix, suffix, pad))
        infos.append({**info, "blocks": len(out[-1])})
    return out, infos


def load_lm_corpus(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int = 512,
    *,
    dev: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    dev_fraction: float = 0.05,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    text_column: str = "text",
    wikitext: bool | None = None,
    progress: bool = True,
) -> LMCorpus:
    """Load a corpus for MLM/KD: train blocks and dev blocks of `max_length` tokens.

    `dev`: separate dev sources; without them, a saved DatasetDict's validation/test split is used,
    else the last `dev_fraction` of every training source is carved off. `wikitext=None` detects
    WikiText markup per source. `cache_dir` defaults to `default_cache_dir() / "corpus"`.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if isinstance(dev, (str, os.PathLike)):
        dev = [dev]
    if max_length < 8:
        raise ConfigError(f"max_length must be >= 8, got {max_length}")
    if not 0.0 < dev_fraction < 1.0:
        raise ConfigError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    cache = None
    if use_cache:
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "corpus"
    train_sources = resolve_sources(paths, role="train", text_column=text_column)
    train_parts, train_info = _source_blocks(train_sources, tokenizer, max_length, cache, wikitext, progress)

    if dev is not None:
        dev_sources = resolve_sources(dev, role="dev", text_column=text_column)
        dev_parts, dev_info = _source_blocks(dev_sources, tokenizer, max_length, cache, wikitext, progress)
        how = "separate"
    elif all(s.split == "train" for s in train_sources):
        dev_sources = [Source(s.path, _dataset_split(s.path, "dev"), text_column) for s in train_sources]
        dev_parts, dev_info = _source_blocks(dev_sources, tokenizer, max_length, cache, wikitext, progress)
        how = "dataset split"
    else:
        train_parts, dev_parts = _carve_tails(train_parts, dev_fraction, train_sources)
        dev_info, how = [], f"last {dev_fraction:.0%} of each source"
    info = {"train_sources": train_info, "dev_sources": dev_info, "dev_split": how, "max_length": max_length}
    train = BlockDataset.concat(train_parts)
    # What a resumed search checks: the content of every source it read (and how dev was made).
    content = [i["content"] for i in train_info + dev_info] + [how]
    train.content_key = "sha256:" + hashlib.sha256(json.dumps(content).encode()).hexdigest()
    return LMCorpus(train, BlockDataset.concat(dev_parts), info)


def load_lm_blocks(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int = 512,
    *,
    role: str = "dev",
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    text_column: str = "text",
    wikitext: bool | None = None,
    progress: bool = True,
) -> tuple[BlockDataset, list[dict[str, Any]]]:
    """All blocks of the given sources, unsplit (e.g. a dev corpus to evaluate on), and their info.

    A saved DatasetDict contributes its `role` split (dev: validation, dev or test).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if max_length < 8:
        raise ConfigError(f"max_length must be >= 8, got {max_length}")
    cache = None
    if use_cache:
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "corpus"
    sources = resolve_sources(paths, role=role, text_column=text_column)
    parts, info = _source_blocks(sources, tokenizer, max_length, cache, wikitext, progress)
    return BlockDataset.concat(parts), info


def _carve_tails(parts: list[BlockDataset], fraction: float, sources: list[Source]):
    counts = [round(fraction * len(p)) if len(p) >= 2 else 0 for p in parts]
    if sum(counts) == 0:  # tiny corpus: one dev block from the largest source that can spare one
        big = max(range(len(parts)), key=lambda i: len(parts[i]))
        if len(parts[big]) < 2:
            names = ", ".join(s.name for s in sources)
            raise DataError(f"{names}: too little text to carve a dev split (pass a dev corpus)")
        counts[big] = 1
    train = [
        BlockDataset(p.blocks[: len(p) - c], p.lengths[: len(p) - c])
        for p, c in zip(parts, counts, strict=True)
    ]
    dev = [
        BlockDataset(p.blocks[len(p) - c :], p.lengths[len(p) - c :])
        for p, c in zip(parts, counts, strict=True)
    ]
    return [t for t in train if len(t)], [d for d in dev if len(d)]
