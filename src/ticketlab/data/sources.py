"""Where a language-modelling corpus's text comes from: plain text files (UTF-8, with a cp1252
fallback), folders of `*.txt` files, directories written by `datasets.Dataset.save_to_disk` (their
`train` or dev split), datasets on the Hugging Face hub (`hub:NAME[:CONFIG]`, the same splits,
downloaded once into `datasets`' own cache) and token files (`*.tokens.safetensors`, a corpus
tokenized once; their format and index are read here, written by `tokens.write_token_file`).
`resolve_sources` turns user paths into `Source`s; WikiText's tokenized markup is recognised and
undone here (`clean_wikitext`).

Tokenizing and its cache are `tokens.py`; blocks and the corpus, `corpus.py`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from ..core.errors import ConfigError, DataError, TicketlabError
from ..core.files.inputs import check_regular, open_read, open_safetensors, read_bytes, read_json
from ..core.files.keys import HUB_DATASET
from ..core.hub import datasets_module

WIKITEXT_MARKERS = (" @-@ ", " @,@ ", " @.@ ", "<unk>")

# A corpus file is read whole, then split into lines: a bound on what that may take (64 GiB).
CORPUS_BYTES = 1 << 36
HUB = HUB_DATASET  # a corpus on the Hugging Face hub: hub:Salesforce/wikitext:wikitext-103-raw-v1

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


BINARY_PROBE = 4096  # bytes of a corpus file's start looked at for a NUL


def refuse_binary(path: Path, head: bytes) -> None:
    """One line for a corpus file whose first bytes hold a NUL: no text (a gzip, weights)."""
    if b"\x00" in head:
        raise DataError(f"{path}: looks like a binary file, not text")


def read_text_file(path: Path) -> tuple[str, str]:
    """The file's text and the encoding used (UTF-8, else cp1252 as found in old Gutenberg files)."""
    data = read_bytes(path, "corpus file", DataError, limit=CORPUS_BYTES)
    refuse_binary(path, data[:BINARY_PROBE])
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
    hub: tuple[str, str | None] | None = None  # for hub datasets: (name, config); `path` is the id

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
            with open_read(self.path, "corpus file", DataError) as f:
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

    def dev_split(self) -> Source | None:
        """The dev split beside this train split of a saved or hub DatasetDict; None where there is
        none (a text file, a single Dataset, a dataset with a train split only)."""
        if self.split != "train":
            return None
        splits = _hub_splits(*self.hub) if self.hub is not None else (_saved_splits(self.path) or [])
        found = pick_split(splits, "dev", self.name, required=False)
        return None if found is None else Source(self.path, found, self.text_column, hub=self.hub)


def hub_dataset(given: str | os.PathLike) -> tuple[str, str | None] | None:
    """`hub:NAME` or `hub:NAME:CONFIG` -> (NAME, CONFIG); None for anything else (a local path)."""
    text = str(given)
    if not text.startswith(HUB):
        return None
    name, _, config = text[len(HUB) :].partition(":")
    if not name:
        raise ConfigError(f"{text}: no dataset after '{HUB}' (hub:NAME or hub:NAME:CONFIG)")
    if Path(name).expanduser().exists():  # `datasets` would load the local folder under the hub's name
        raise ConfigError(f"{text}: {name} is a local path; give it without '{HUB}'")
    return name, config or None


def is_dataset_dir(path: Path) -> bool:
    return path.is_dir() and any(
        (path / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json")
    )


def _load_split(source: Source):
    if source.hub is not None:
        return _hub_load(*source.hub, source.split)
    datasets = datasets_module()
    try:
        obj = datasets.load_from_disk(str(source.path))
    except Exception as e:  # datasets raises several types for foreign/corrupt directories
        raise DataError(f"{source.path}: cannot load the saved dataset ({e})") from None
    if isinstance(obj, datasets.DatasetDict):
        if source.split not in obj:
            raise DataError(f"{source.path}: no split '{source.split}' (splits: {', '.join(obj)})")
        return obj[source.split]
    return obj


def _hub_error(name: str, config: str | None, e: Exception) -> DataError:
    why = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    hint = ""
    if isinstance(e, ConnectionError):  # offline: what works without the hub
        hint = "; give a local copy (text files, or a folder written by datasets' save_to_disk)"
    return DataError(f"{HUB}{name}{':' + config if config else ''}: cannot load from the hub ({why}){hint}")


@functools.lru_cache(maxsize=8)
def _hub_splits(name: str, config: str | None) -> tuple[str, ...]:
    try:
        return tuple(datasets_module().get_dataset_split_names(name, config))
    except Exception as e:  # offline, unknown name, a config missing: one line the user can act on
        raise _hub_error(name, config, e) from None


@functools.lru_cache(maxsize=8)
def _hub_load(name: str, config: str | None, split: str):
    """One split, downloaded once into `datasets`' cache (`HF_DATASETS_OFFLINE=1` reads it there)."""
    try:
        return datasets_module().load_dataset(name, config, split=split)
    except Exception as e:
        raise _hub_error(name, config, e) from None


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


def check_corpus_source(given: str | os.PathLike) -> None:
    """A corpus argument that is neither a hub dataset (`hub:NAME`) nor a local file or folder, a
    folder with no text files, an empty file or one whose start is binary, refused in one line
    before any work (the command line checks it before a verb's imports; text that holds no token
    is found where it is read)."""
    path = Path(given).expanduser()
    if hub_dataset(given) is None and not path.exists():
        raise DataError(f"{path}: corpus not found")
    if path.is_dir() and not is_dataset_dir(path):
        text_files(path)  # `*.txt`, or one line
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: empty corpus file")
    if path.is_file() and not path.name.endswith(TOKENS_SUFFIX):
        with open_read(path, "corpus file", DataError) as f:
            refuse_binary(path, f.read(BINARY_PROBE))


def check_data_dir(given: str | os.PathLike) -> Path:
    """A task's data folder (a GLUE root, or the task's own folder), or one line saying it is not there."""
    root = Path(given).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data directory not found")
    return root


def resolve_sources(
    paths: Sequence[str | os.PathLike], *, role: str = "train", text_column: str = "text"
) -> list[Source]:
    """Turn user paths into sources; a `datasets` directory contributes its `role` split."""
    if not paths:
        raise ConfigError(f"no {role} corpus given")
    out = []
    for p in paths:
        hub = hub_dataset(p)
        if hub is not None:
            split = pick_split(_hub_splits(*hub), role, str(p))
            out.append(Source(Path(str(p)), split=split, text_column=text_column, hub=hub))
            continue
        check_corpus_source(p)
        path = Path(p).expanduser()
        if path.name.endswith(TOKENS_SUFFIX) and path.is_file():
            out.extend(Source(path, stream=entry) for entry in read_token_index(path))
        elif is_dataset_dir(path):
            out.append(Source(path, split=dataset_split(path, role), text_column=text_column))
        elif path.is_dir():  # a folder of text files: one source per file, so blocks stay within one
            out.extend(Source(f, text_column=text_column) for f in text_files(path))
        else:  # a FIFO or a device is refused here, before any corpus is read
            out.append(Source(check_regular(path, "corpus file", DataError), text_column=text_column))
    return out


def dataset_split(path: Path, role: str) -> str:
    """The split a DatasetDict contributes for `role`; '' for a single Dataset."""
    splits = _saved_splits(path)
    return "" if splits is None else pick_split(splits, role, str(path))


def _saved_splits(path: Path) -> list[str] | None:
    """The splits of a saved DatasetDict; None for a single saved Dataset."""
    dd = path / "dataset_dict.json"
    if not dd.is_file():
        return None
    try:
        return list(read_json(dd, "dataset_dict.json")["splits"])
    except (TicketlabError, KeyError, TypeError):
        raise DataError(f"{dd}: corrupt dataset_dict.json") from None


def pick_split(splits: Sequence[str], role: str, where: str, *, required: bool = True) -> str | None:
    """The split a DatasetDict contributes for `role`: `train`, or for dev the first of validation,
    dev and test it has (None without one, unless `required`)."""
    wanted = ["train"] if role == "train" else ["validation", "dev", "test"]
    for s in wanted:
        if s in splits:
            return s
    if not required:
        return None
    raise DataError(f"{where}: no {' or '.join(wanted)} split (splits: {', '.join(splits)})")


# --------------------------------------------------------------------------- token files
# A corpus tokenized once, to carry where the text is not (a GPU machine gets only the working
# tree): one safetensors file, `<name>.tokens.safetensors`, holding each source's id stream (uint16
# when the vocabulary fits, else int32) and, in its metadata, the tokenizer's fingerprint and each
# source's name and content hash. `load_lm_corpus` accepts it as a corpus: the streams are cut into
# the same blocks as the text gives, under the same content key.

TOKENS_SUFFIX = ".tokens.safetensors"

TOKENS_FORMAT = "ticketlab-tokens/1"


def token_header(path: Path) -> dict[str, str]:
    try:
        with open_safetensors(path, "token file", DataError) as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise DataError(f"{path}: not a readable token file ({e})") from None
    if meta.get("format") != TOKENS_FORMAT:
        raise DataError(f"{path}: not a ticketlab token file (see pretrain --write-tokens)")
    return meta


def read_token_index(path: Path) -> list[dict[str, Any]]:
    """The sources of a token file: key, source name, content hash, token count."""
    try:
        index = json.loads(token_header(path)["sources"])
        return [{k: e[k] for k in ("key", "source", "content", "tokens")} for e in index]
    except (KeyError, TypeError, ValueError, RecursionError):
        raise DataError(f"{path}: corrupt token file index") from None
