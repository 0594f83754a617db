"""What the search methods (TAMT, IMP and one's own) share to set up a search from a `SearchConfig`:
the model with its MLM head, the corpus objective, the options of the resumable runner; and the
search verb's run (`verbs.search.search`, whose module `--help` reads, runs it)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from accelerate import Accelerator

from ..core.errors import ConfigError
from ..core.outputs import check_output
from ..data.corpus import LMCorpus, load_lm_corpus, needed_tokens, resolve_sources
from ..data.kd_chunks import reference_kd_chunks
from ..lm.evaluation import check_scorable
from ..lm.evaluation import evaluate_pretraining as evaluate_blocks
from ..lm.objectives import MLMCollator, pretraining_loss
from ..lm.options import Decoder, KdInput, Teacher
from ..models.load import check_model, load_config, load_model, load_tokenizer
from ..models.source import head_of
from ..train.processes import make_accelerator
from .search import SearchObjective, SearchResult
from .search_config import SearchConfig
from .search_dir import SearchDir

log = logging.getLogger(__name__)


def load_mlm_model(config: SearchConfig, need_head: bool):
    """The model with its MLM head (a fresh, seeded one if the checkpoint has none and it is needed)."""
    model_config = load_config(config.model)
    has_head = head_of(model_config) == "mlm"
    torch.manual_seed(config.seed)  # a fresh MLM head (checkpoint without one) is seeded too
    model = load_model(config.model, head="mlm" if need_head or has_head else "base")
    return model, model_config, has_head


def search_corpus(config: SearchConfig, tokenizer, acc: Accelerator) -> LMCorpus:
    """The corpus a search on MLM reads, its training and dev blocks (the main process first)."""
    with acc.main_process_first():
        corpus = load_lm_corpus(
            config.corpus,
            tokenizer,
            config.max_length,
            dev=config.dev,
            dev_fraction=config.dev_fraction,
            cache_dir=config.cache_dir,
            text_column=config.text_column,
            wikitext=wikitext_cleanup(config),
            progress=acc.is_main_process and config.progress,
            max_tokens=corpus_cap(config),
            # the dev evaluation scores the first dev_blocks blocks, which these tokens hold
            max_dev_tokens=(config.dev_blocks + 1) * config.max_length,
        )
    if acc.is_main_process:
        log.info(f"corpus: {corpus.summary()}{read_note(corpus.info['read'])}")
    return corpus


def lm_objective(
    config: SearchConfig,
    tokenizer,
    acc: Accelerator,
    name: str,
    *,
    mlm_eval: bool,
    decoder: Decoder = "dense",
    kd_input: KdInput = "clean",
    eval_kd_input: KdInput = "clean",
    teacher: Teacher = "eval",
    kd_data: str = "blocks",
) -> SearchObjective:
    """The corpus objective of a search: `pretraining_loss(name)` with the MLM decoder, the KD input and
    the KD teacher's mode given (the training loss's), and the dev evaluation (its KD loss reads
    `eval_kd_input`, its teacher in eval mode). `kd_data="reference"`: TAMT-KD trains on TAMT's own KD
    data (`reference_kd_data`); the dev evaluation stays on the dev blocks."""
    corpus = search_corpus(config, tokenizer, acc)
    collator = MLMCollator(tokenizer, keep_clean="clean" in (kd_input, eval_kd_input))
    dev = corpus.dev.take(config.dev_blocks)
    source = ", ".join(map(str, config.dev or config.corpus))
    if not config.no_eval:  # before the search, not at its first evaluation
        check_scorable(dev, collator, mlm=mlm_eval, source=source)

    def eval_fn(model):
        return evaluate_blocks(
            model,
            dev,
            collator,
            batch_size=config.eval_batch_size,
            mlm=mlm_eval,
            kd=True,
            source=source,
            decoder=decoder,
            kd_input=eval_kd_input,
        )

    info = {
        "corpus": [str(p) for p in config.corpus],
        "dev": [str(p) for p in config.dev] if config.dev else corpus.info["dev_split"],
        "max_length": config.max_length,
        "train_blocks": len(corpus.train),
        "train_tokens": corpus.train.num_tokens,
        "corpus_read": corpus.info["read"],  # the text tokens read, the cap, whether it left text out
        "eval_dev_blocks": len(dev),
    }
    objective = SearchObjective(
        name=name,
        dataset=corpus.train,
        collate_fn=collator,
        loss_fn=pretraining_loss(name, decoder=decoder, kd_input=kd_input, teacher=teacher),
        eval_fn=None if config.no_eval else eval_fn,
        info=info,
    )
    if kd_data == "reference":
        with acc.main_process_first():
            objective = reference_kd_data(config, tokenizer, objective, corpus, teacher, acc.is_main_process)
    return objective


def corpus_cap(config: SearchConfig) -> int | None:
    """The training text a search reads (`SearchConfig.corpus_tokens`): what its steps draw, twice,
    and the dev split carved from it where no dev corpus is given; None (0 given): all of it."""
    if config.corpus_tokens is not None:
        return config.corpus_tokens or None
    carved = None if config.dev else config.dev_fraction
    return needed_tokens(config.steps, config.batch_size, config.max_length, carved)


def read_note(read: dict[str, Any]) -> str:
    """'; read its first N tokens (cap M)' where a cap left text out, else ''."""
    if not read["capped"]:
        return ""
    return f"; read the first {read['tokens_read']:,} tokens of the corpus (its cap, --corpus-tokens)"


def wikitext_cleanup(config: SearchConfig) -> bool | None:
    """The corpus readers' `wikitext`: None detects WikiText's markup and undoes it; False keeps it
    (`--wikitext-markup keep`, as TAMT's code reads the files)."""
    return False if config.wikitext_markup == "keep" else None


def reference_kd_data(
    config: SearchConfig,
    tokenizer,
    objective: SearchObjective,
    corpus: LMCorpus,
    teacher: Teacher,
    main: bool,
) -> SearchObjective:
    """`objective` training on TAMT-KD's reference data (`data.kd_chunks`): sequences of the training
    corpus's documents padded to max_length, the KD loss averaged over every position. The chunks are
    drawn from the whole training text, so the dev text must be a split of its own."""
    if corpus.info["dev_split"] not in ("separate", "dataset split"):
        raise ConfigError(
            "--kd-data reference draws its sequences from all of the training text: give a dev corpus "
            "(--dev), or a dataset (saved or on the hub) with a validation split"
        )
    chunks = reference_kd_chunks(
        resolve_sources(config.corpus, role="train", text_column=config.text_column),
        tokenizer,
        config.max_length,
        seed=config.seed,
        content_key=corpus.train.content_key,
        wikitext=wikitext_cleanup(config),
        progress=main and config.progress,
    )
    if main:
        log.info(f"TAMT-KD reference data: {len(chunks):,} sequences ({chunks.num_tokens:,} tokens)")
    info = {k: v for k, v in objective.info.items() if k != "train_blocks"}  # not what it trains on
    info.update(kd_data="reference", train_sequences=len(chunks), train_tokens=chunks.num_tokens)
    return dataclasses.replace(
        objective,
        dataset=chunks,
        collate_fn=MLMCollator(tokenizer, mlm_probability=0, pad_to_multiple_of=config.max_length),
        loss_fn=pretraining_loss("kd", kd_input="clean", teacher=teacher, count_padding=True),
        info=info,
    )


def run_options(config: SearchConfig, lr: float, acc: Accelerator) -> dict[str, Any]:
    """What `search_tamt` and `search_imp` both take besides the model, objective and configs."""
    return {
        "base_model": str(config.model),
        "save_at": config.save_at,
        "settings": config.settings(lr),
        "accelerator": acc,
        "keep_checkpoint": config.keep_checkpoint,
    }


def run_search_config(config: SearchConfig, accelerator: Accelerator | None) -> SearchResult:
    """`verbs.search.search`: check the output and the model, then run the config's method."""
    config = dataclasses.replace(config)  # the run fits max_length to the model: not the caller's copy
    reads = [config.model, *(config.corpus or []), *(config.dev or []), config.data_dir]
    check_output(config.out, kind="search", inputs=reads)  # before any work
    check_model(config.model)  # its config and weights' files, before the search directory is made
    load_tokenizer(config.model)  # and its tokenizer's ids against its embeddings
    acc = accelerator or make_accelerator(config.mixed_precision)
    if acc.is_main_process:  # a second process on this search is refused before it loads anything
        SearchDir(config.out).run_dir.refuse_held()  # its lock is run/.lock
    # The directory is claimed and locked by `run_search` once the model and corpus are read: a
    # refused input (an empty corpus) leaves no output behind.
    return config.search_method.run(config, acc)
