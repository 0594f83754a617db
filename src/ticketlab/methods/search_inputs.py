"""What the search methods (TAMT, IMP and one's own) share to set up a search from a `SearchConfig`:
the model with its MLM head, the corpus objective, the options of the resumable runner, the training
settings; and the search verb's run (`verbs.search.search`, whose module `--help` reads, runs it)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from accelerate import Accelerator

from ..core.outputs import check_output
from ..data.corpus import load_lm_corpus
from ..lm.evaluation import check_scorable
from ..lm.evaluation import evaluate_pretraining as evaluate_blocks
from ..lm.objectives import MLMCollator, pretraining_loss
from ..lm.options import Decoder, KdInput, Teacher
from ..models.load import check_model, load_config, load_model, load_tokenizer
from ..models.source import head_of
from ..train.config import TrainConfig
from ..train.processes import make_accelerator
from .search import SearchObjective, SearchResult
from .search_dir import SearchDir

log = logging.getLogger(__name__)
SearchConfig = Any  # `verbs.search.SearchConfig`, a layer above: read here by its fields only


def load_mlm_model(config: SearchConfig, need_head: bool):
    """The model with its MLM head (a fresh, seeded one if the checkpoint has none and it is needed)."""
    model_config = load_config(config.model)
    has_head = head_of(model_config) == "mlm"
    torch.manual_seed(config.seed)  # a fresh MLM head (checkpoint without one) is seeded too
    model = load_model(config.model, head="mlm" if need_head or has_head else "base")
    return model, model_config, has_head


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
) -> SearchObjective:
    """The corpus objective of a search: `pretraining_loss(name)` with the MLM decoder, the KD input and
    the KD teacher's mode given (the training loss's), and the dev evaluation (its KD loss reads
    `eval_kd_input`, its teacher in eval mode)."""
    with acc.main_process_first():
        corpus = load_lm_corpus(
            config.corpus,
            tokenizer,
            config.max_length,
            dev=config.dev,
            dev_fraction=config.dev_fraction,
            cache_dir=config.cache_dir,
            text_column=config.text_column,
            wikitext=False if config.wikitext_markup == "keep" else None,  # None: detect and undo
            progress=acc.is_main_process and config.progress,
        )
    if acc.is_main_process:
        log.info(f"corpus: {corpus.summary()}")
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
        "eval_dev_blocks": len(dev),
    }
    return SearchObjective(
        name=name,
        dataset=corpus.train,
        collate_fn=collator,
        loss_fn=pretraining_loss(name, decoder=decoder, kd_input=kd_input, teacher=teacher),
        eval_fn=None if config.no_eval else eval_fn,
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


def train_config(
    config: SearchConfig, lr: float, *, metric: str | None = None, greater: bool = True
) -> TrainConfig:
    """The training loop's settings of the search `config` at learning rate `lr` (`metric`: a task's
    dev metric for the best checkpoint); `SearchConfig.train_config`."""
    return TrainConfig(
        max_steps=config.steps,
        schedule_steps=config.horizon if config.horizon != config.steps else None,
        batch_size=config.batch_size,
        lr=lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        grad_accum=config.grad_accum,
        max_grad_norm=config.max_grad_norm
        if config.max_grad_norm > 0 and not config.optimizer_in_backward
        else None,
        clip="per-tensor" if config.clip_per_tensor else "global",
        adam_eps=config.adam_eps,
        optimizer_in_backward=config.optimizer_in_backward,
        eval_every=config.eval_every,
        save_every=config.save_every,
        log_every=config.log_every,
        seed=config.seed,
        mixed_precision=config.mixed_precision,
        metric=metric,
        greater_is_better=greater,
        progress=config.progress,
        desc=f"search {config.verb}",
    )


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
