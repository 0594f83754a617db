"""Where ticketlab caches what it computed (tokenized corpora, features): one directory chosen by
the environment, `$TICKETLAB_CACHE`, else `$XDG_CACHE_HOME/ticketlab`, else `~/.cache/ticketlab`."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """`$TICKETLAB_CACHE`, else `$XDG_CACHE_HOME/ticketlab`, else `~/.cache/ticketlab`."""
    if os.environ.get("TICKETLAB_CACHE"):
        return Path(os.environ["TICKETLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ticketlab"


# One text for every `--cache-dir` that caches tokenized corpora (search, pretrain, evaluate-pretrain).
CORPUS_CACHE_HELP = (
    "tokenized-corpus cache (default <cache>/corpus: <cache> is $TICKETLAB_CACHE, else "
    "$XDG_CACHE_HOME/ticketlab, else ~/.cache/ticketlab)"
)


def corpus_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where tokenized corpora are cached: `cache_dir`, else `default_cache_dir() / "corpus"`."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "corpus"
