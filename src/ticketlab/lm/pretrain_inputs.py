"""What a pre-training reads, checked before any work, and what names it: the corpus and tokenizer
checks, the checkpoint to go on from (`init`), the run's identity, the tokenizer (given, or trained on
the corpus). `lm.pretrain` trains (and `write_tokens` tokenizes a corpus once).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig, PreTrainedTokenizerBase

from ..core.checks import check_one_of
from ..core.digest import content_keys, run_identity
from ..core.errors import ConfigError, TicketlabError
from ..core.files.keys import model_key
from ..core.outputs import atomic_dir, check_output
from ..data.sources import TOKENS_SUFFIX, hub_dataset, is_dataset_dir, resolve_sources
from ..data.tokenizer import KINDS, SPECIAL, train_tokenizer
from ..models.load import check_token_ids, load_config, load_tokenizer, save_tokenizer
from ..models.source import head_of, max_positions
from .pretrain_config import MAX_VOCAB, SHAPE_OVERRIDES, PretrainConfig

log = logging.getLogger(__name__)


# Settings that do not change the weights a run ends with: a run goes on under new values of them.
PRETRAIN_INPUTS = {
    "corpus content": "the corpus",
    "dev content": "the dev text",
    "tokenizer content": "the tokenizer",
    "init content": "the initial checkpoint",
}


def pretrain_identity(
    config: PretrainConfig,
    corpus: Any,
    dev: Any,
    tokenizer: Any,
    tokenizer_kind: str,
    vocab_size: int,
    init: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """What a pre-training's weights depend on: its settings, the tokenizer it builds (when it builds
    one), the checkpoint it starts from, and the content of its corpus, dev text, tokenizer folder
    and initial checkpoint. (The keys a from-scratch float32 run had before `init` and `save_dtype`
    existed are unchanged, so its finished outputs stay valid.)"""
    out = run_identity(config)
    if tokenizer is None and init is None:
        out |= {"tokenizer_kind": tokenizer_kind, "vocab_size": vocab_size}
    keys = content_keys(
        {
            "corpus content": listed(corpus),
            "dev content": listed(dev) if dev is not None else None,
            "tokenizer content": tokenizer if isinstance(tokenizer, (str, os.PathLike)) else None,
        }
    )
    if init is not None:  # a hub id is named by itself: another id is another start
        keys["init content"] = model_key(init) or f"hub id {init}"
    return out | keys


def listed(paths: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[str | os.PathLike]:
    return [] if paths is None else [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def get_tokenizer(given, corpus, kind: str, vocab_size: int, max_length: int, work: Path | None):
    """The given tokenizer, or one trained on the corpus text (kept in `work` for a resumed run)."""
    if isinstance(given, PreTrainedTokenizerBase):
        return given
    if given is not None:
        return load_tokenizer(given)
    saved = work / "tokenizer" if work is not None else None
    if saved is None or not saved.is_dir():
        tok = train_tokenizer(listed(corpus), kind, vocab_size, model_max_length=max_length)
        if saved is None:
            return tok
        with atomic_dir(saved, kind="tokenizer") as tmp:
            save_tokenizer(tok, tmp)
    return load_tokenizer(saved)


# Each family's names for its dropout probabilities (BERT-likes, DistilBERT, ModernBERT).
DROPOUT_NAMES = (
    *("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"),
    *("mlp_dropout", "embedding_dropout"),
)


def dropout_overrides(model_config: PretrainedConfig, p: float) -> dict[str, float]:
    """`from_pretrained` overrides that set every dropout probability the family has to `p`."""
    return {k: p for k in DROPOUT_NAMES if isinstance(getattr(model_config, k, None), float)}


def check_init(init: str | os.PathLike, config: PretrainConfig, tokenizer: Any) -> None:
    """Refuse a continued pre-training that cannot run, before any folder is made; say in one line
    when the checkpoint brings no MLM head (a fresh one is trained with the body)."""
    model_config = load_config(init)  # a missing folder, a decoder, a corrupt config: one line
    given = [k for k in SHAPE_OVERRIDES if getattr(config, k) is not None]
    if given:
        flags = ", ".join(f"--{k}" for k in given)
        raise ConfigError(f"{init}: a continued pre-training keeps the checkpoint's shape; drop {flags}")
    positions = max_positions(model_config)
    if positions is not None and config.max_length > positions:
        raise ConfigError(f"{init}: max_length {config.max_length} exceeds the model's {positions} positions")
    # The checkpoint's own tokenizer is checked as it loads; a separate one here (ids, not its length).
    tok = tokenizer if isinstance(tokenizer, PreTrainedTokenizerBase) else load_tokenizer(tokenizer or init)
    check_token_ids(tok, given_path(tokenizer) or ("the tokenizer" if tokenizer is not None else init), init)
    if head_of(model_config) != "mlm":
        log.warning(f"note: {init} has no MLM head; a fresh one (seeded by --seed) trains with the body")


def check_inputs(corpus, dev, tokenizer: Any, kind: str, vocab_size: int) -> None:
    """Refuse bad corpora and tokenizer settings before any work, so that no work folder is left
    behind by a run that could never start."""
    if tokenizer is None:
        check_one_of("tokenizer kind", kind, KINDS)
        if not len(SPECIAL) < vocab_size <= MAX_VOCAB:
            raise ConfigError(f"vocab_size must be in ({len(SPECIAL)}, {MAX_VOCAB}], got {vocab_size}")
        for p in listed(corpus):  # what a tokenizer cannot be trained on: say what to pass instead
            if str(p).endswith(TOKENS_SUFFIX):
                raise ConfigError(f"{p}: is tokenized already; pass the tokenizer written with it")
            if hub_dataset(p) is not None or is_dataset_dir(Path(p).expanduser()):
                raise ConfigError(
                    f"{p}: building a tokenizer reads text files; pass a tokenizer for datasets"
                )
    resolve_sources(listed(corpus), role="train")  # missing paths, empty folders, bad token files
    if dev is not None:
        resolve_sources(listed(dev), role="dev")


def check_before_work(
    config: PretrainConfig,
    corpus: Any,
    dev: Any,
    tokenizer: Any,
    tokenizer_kind: str,
    vocab_size: int,
    init: str | os.PathLike | None,
    out: Path,
) -> None:
    """Refuse what `pretrain` could not run on, and an output it may not write, before any work."""
    # With init and no tokenizer, init's own is used: nothing is built, so nothing to check for it.
    check_inputs(corpus, dev, tokenizer if init is None else tokenizer or init, tokenizer_kind, vocab_size)
    if init is not None:
        check_init(init, config, tokenizer)
    elif tokenizer is None:  # the tokenizer built here has vocab_size ids (a given one's: `bert_config`)
        config.check_size(vocab_size)
    reads = [*listed(corpus), *listed(dev), given_path(tokenizer), given_path(init)]
    check_output(out, kind="pre-trained model", inputs=reads)  # before any work


def given_path(tokenizer: Any) -> str | os.PathLike | None:
    return tokenizer if isinstance(tokenizer, (str, os.PathLike)) else None


@contextlib.contextmanager
def removed_if_refused(work: Path, fresh: bool) -> Iterator[None]:
    """A work directory this call made goes again when an input is refused before training (an empty
    corpus, a dev text too short to score): a refused input leaves nothing behind, as a search's."""
    try:
        yield
    except TicketlabError:
        if fresh:
            shutil.rmtree(work, ignore_errors=True)
        raise
