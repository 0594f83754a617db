"""Masked-LM pre-training of a small BERT from scratch (the demo's base model, or your own), or
continued MLM pre-training of an existing checkpoint (`init=`: a new domain, or a model shipped
without an MLM head).

    config = PretrainConfig(size="tiny", steps=2000, max_length=64)
    result = pretrain(config, ["corpus.txt"], "out/model", tokenizer="tok/")   # or tokenizer=None
    result.dev["mlm_loss"], result.unigram_entropy                             # nats per masked token
    pretrain(PretrainConfig(steps=3000, lr=2e-4), "wiki/", "out/m2", tokenizer=None, init="model/")

Sizes follow the BERT miniatures of Turc et al. (2019): tiny (L2/H128), mini (L4/H256), small
(L4/H512), medium (L8/H512), base (L12/H768); any of hidden/layers/heads/intermediate can be
overridden. The corpus goes through `data.corpus` (text files, folders of them such as
`wiki-2015/`, or a token file; tokenized once, cached by content, packed into full blocks: each
source's token stream is cut into `[CLS] ... [SEP]` blocks of exactly `max_length` tokens, only a
source's last block may be shorter) and the loss is `lm.objectives.pretraining_loss("mlm")` (BERT's
80/10/10 corruption of 15% of the tokens, the head applied to the masked positions only), trained
by `train.loop.train`. The masking is dynamic: each example's corruption is drawn from (seed, epoch,
block), so a block is masked afresh in every epoch. Without a tokenizer, one is trained on the
corpus: WordPiece (BERT's, `tokenizer_kind="wordpiece"`) or the most frequent words ("word").

On a GPU the defaults turn on bf16 autocast and torch's fused AdamW (`mixed_precision="auto"`,
`fused=None`); `compile=True` adds `torch.compile`; gradients are clipped to `max_grad_norm`. All
of these run on a CPU too. `max_minutes` cuts a run into pieces: when a piece's time is up the run
checkpoints and returns `stopped`, and the same call goes on from there (the output is written
only when the last step is done). `write_tokens` tokenizes a corpus into a compact token file
(with its tokenizer) that a machine without the text can train on.

The settings (`PretrainConfig`, `SIZES`, ...) live in the torch-free `pretrain_config` (so that
`--help` parses without torch) and are re-exported here.

The output is a standard Hugging Face checkpoint (`BertForMaskedLM` + tokenizer) plus
`pretrain.json` (settings, dev MLM loss and accuracy, the corpus's unigram entropy as the
no-context baseline, history, time), written atomically. Training state lives in `<out>.work/`
while it runs, so an interrupted run resumes where its last checkpoint left it; a finished output
is not trained again. A `time_budget` is turned into a step count by timing a few steps first
(the count is then fixed in `<out>.work/plan.json`, so a resume keeps the same schedule).

With `init` (a model directory or hub id of any family in `arch`), every parameter of that
checkpoint trains on, with its own tokenizer unless one is given; a checkpoint without an MLM head
(e.g. a sentence encoder) gets a fresh one, seeded by `seed` and said in one line. Its shape is its
own (the size options are refused), `dropout` replaces its dropout, and the output is that family's
`*ForMaskedLM`, saved in `save_dtype` (float16 halves the file; ticketlab loads it back in float32).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertForMaskedLM, PreTrainedModel, PreTrainedTokenizerBase

from ..core.checks import is_int
from ..core.errors import ConfigError, TicketlabError
from ..core.files.atomic import as_written, atomic_write_json
from ..core.files.inputs import read_json
from ..core.outputs import atomic_dir, check_output
from ..data.corpus import DEV_FRACTION, BlockDataset, LMCorpus, load_lm_corpus, needed_tokens
from ..data.sources import TOKENS_SUFFIX
from ..data.tokenizer_kinds import DEFAULT_KIND
from ..data.tokens import write_token_file
from ..models.load import load_config, load_model, quiet_transformers, save_tokenizer, token_id_bound
from ..train.config import EvalFn, TrainConfig
from ..train.determinism import seed_everything
from ..train.loop import RESULT, train
from ..train.processes import make_accelerator
from ..train.run_dir import RunDir
from .evaluation import check_scorable, evaluate_pretraining
from .objectives import MLMCollator, pretraining_loss
from .pretrain_config import PretrainConfig
from .pretrain_inputs import (
    PRETRAIN_INPUTS,
    check_before_work,
    check_inputs,
    dropout_overrides,
    get_tokenizer,
    given_path,
    listed,
    pretrain_identity,
    removed_if_refused,
)
from .pretrain_output import RESULT_FILE, PretrainResult, finished_result, summarize, write_output

CALIBRATION_STEPS = 6


def corpus_cap(config: PretrainConfig, carved: bool) -> int | None:
    """The training text a pre-training reads (`PretrainConfig.corpus_tokens`): twice what its steps
    train on, and the dev split where it is carved from that text; None (0 given, or a time budget,
    whose steps are not known before the corpus is read): all of it."""
    if config.corpus_tokens is not None or config.steps is None:
        return config.corpus_tokens or None
    return needed_tokens(config.steps, config.batch_size, config.max_length, DEV_FRACTION if carved else None)


def precision(config: PretrainConfig) -> str:
    """The autocast actually used: "auto" is bf16 on a GPU that supports it."""
    if config.mixed_precision != "auto":
        return config.mixed_precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def bert_config(config: PretrainConfig, tokenizer: PreTrainedTokenizerBase) -> BertConfig:
    """The shape of a BERT pre-trained from scratch (`PretrainConfig.shape`), for `tokenizer`."""
    hidden, layers, heads, intermediate = config.shape
    vocab = token_id_bound(tokenizer)  # a word listed twice in vocab.txt still has its id
    config.check_size(vocab)  # the API's callers too: bounded before anything is made
    return BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=config.positions or config.max_length,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
    )


def unigram_entropy(blocks: BlockDataset, special_ids: Sequence[int]) -> float:
    """Entropy (nats) of the token frequencies: the MLM loss of a model that ignores the context."""
    counts = torch.bincount(blocks.blocks.long().flatten())
    mask = torch.ones_like(counts, dtype=torch.bool)
    for i in special_ids:
        if i < len(counts):
            mask[i] = False
    # Padding positions past each block's length are pad ids, already excluded as special tokens.
    p = counts[mask].double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


def _time_steps(model, corpus: LMCorpus, collator: MLMCollator, config: PretrainConfig) -> float:
    """Seconds per optimizer step, measured on a few steps of a throwaway optimizer, on the device,
    autocast and AdamW kernel the training will use (a GPU's step timed on the CPU would plan far
    too few steps)."""
    acc = make_accelerator(precision(config))
    model.to(acc.device)
    loss_fn = pretraining_loss("mlm")
    fused = acc.device.type == "cuda" if config.fused is None else config.fused
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, fused=fused or None)
    n = len(corpus.train)
    times = []
    for step in range(CALIBRATION_STEPS):
        idx = [(step * config.batch_size + i) % n for i in range(config.batch_size)]
        batch = collator([corpus.train[i] for i in idx], idx)
        batch = {k: v.to(acc.device) for k, v in batch.items()}
        t0 = time.perf_counter()
        with acc.autocast():
            loss, _ = loss_fn(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if acc.device.type == "cuda":
            torch.cuda.synchronize()  # kernels run asynchronously: wait for the step to end
        times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]  # the median, after one warm-up step


def _plan(config: PretrainConfig, work: Path, build_model, corpus, collator) -> int:
    """The number of steps: given, or from the time budget (fixed once in plan.json)."""
    if config.steps is not None:
        return config.steps
    plan = work / "plan.json"
    if plan.is_file():
        saved = read_json(plan, "pre-training plan")
        steps = saved.get("steps") if isinstance(saved, dict) else None
        if not is_int(steps) or steps < 1:
            raise TicketlabError(
                f"{plan}: corrupt pre-training plan (steps {steps!r}); delete it to plan again"
            )
        return steps
    per_step = _time_steps(build_model(), corpus, collator, config)
    steps = max(1, int(config.time_budget / per_step))
    atomic_write_json(plan, {"steps": steps, "seconds_per_step": per_step, "time_budget": config.time_budget})
    return steps


SETTINGS = "settings.json"  # the work directory's identity (`train.run_dir`)


def pretrain(
    config: PretrainConfig,
    corpus: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | PreTrainedTokenizerBase | None,
    vocab_size: int = 8192,
    dev: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    cache_dir: str | os.PathLike | None = None,
    tokenizer_kind: str = DEFAULT_KIND,
    init: str | os.PathLike | None = None,
) -> PretrainResult:
    """Pre-train a BERT with MLM from scratch on `corpus`, or go on pre-training the checkpoint `init`;
    write a checkpoint to `out_dir` (see module doc).

    `tokenizer`: a tokenizer or its directory; None trains a `tokenizer_kind` one ("wordpiece" or
    "word") of `vocab_size` entries on the corpus text (kept in the work directory, so a resumed
    run uses the same one), or with `init` uses that checkpoint's. With `config.max_minutes`, a
    piece that runs out of time returns a result with `stopped` set and writes no output.
    """
    started = time.monotonic()
    out = Path(out_dir)
    identity = pretrain_identity(config, corpus, dev, tokenizer, tokenizer_kind, vocab_size, init)
    if (out / RESULT_FILE).is_file():  # finished: its result, if it is this run's
        return finished_result(out, identity)
    check_before_work(config, corpus, dev, tokenizer, tokenizer_kind, vocab_size, init, out)
    quiet_transformers()
    # Deleted at the end: claimed first, so a user's own `<out>.work` is refused, never deleted.
    work_dir = RunDir(out.with_name(out.name + ".work"), "pre-training", identity=SETTINGS, result=RESULT)
    fresh = not work_dir.path.exists()
    work = work_dir.claim("pre-training work directory")
    with removed_if_refused(work, fresh):  # the inputs are read in the work directory (its tokenizer)
        work_dir.check(identity, PRETRAIN_INPUTS)
        tok, data, collator, steps, model = _read_inputs(
            config, (corpus, dev, cache_dir), (tokenizer, tokenizer_kind, vocab_size), init, work
        )
        eval_fn = _dev_eval(config, data, collator, listed(dev) or listed(corpus))
    entropy = unigram_entropy(data.train, tok.all_special_ids)
    limit = _time_left(config, started)
    result = train(
        model,
        model.parameters(),
        data.train,
        collator,
        pretraining_loss("mlm"),
        _train_config(config, steps, limit),
        out_dir=work,
        eval_fn=eval_fn,
    )
    summary = as_written(summarize(result, out, steps, entropy, model))  # as a finished run reads it
    if result.stopped:  # the checkpoint in `work` is where the next piece starts
        return summary
    write_output(model, tok, out, (config, identity), data, summary, work_dir)
    return summary


def _read_inputs(
    config: PretrainConfig,
    texts: tuple[Any, Any, str | os.PathLike | None],
    tokenizer_args: tuple[Any, str, int],
    init: str | os.PathLike | None,
    work: Path,
) -> tuple[PreTrainedTokenizerBase, LMCorpus, MLMCollator, int, PreTrainedModel]:
    """(tokenizer, corpus, collator, steps, model): the tokenizer given, `init`'s, or one trained on
    the corpus in `work`; the corpus (`texts`: train, dev, cache) read as far as the run needs; the
    number of steps (`_plan`) and the model to train, from scratch or from `init`."""
    corpus, dev, cache_dir = texts
    tokenizer, tokenizer_kind, vocab_size = tokenizer_args
    given = init if tokenizer is None and init is not None else tokenizer  # init's own tokenizer
    tok = get_tokenizer(given, corpus, tokenizer_kind, vocab_size, config.max_length, work)
    if tok.mask_token_id is None:
        raise ConfigError("the tokenizer has no mask token; MLM pre-training needs one")
    if init is None:  # a given tokenizer's ids size the embeddings: bounded before the corpus is read
        config.check_size(token_id_bound(tok))
    data = load_lm_corpus(
        corpus,
        tok,
        config.max_length,
        dev=dev,
        cache_dir=cache_dir,
        progress=config.progress,
        max_tokens=corpus_cap(config, carved=dev is None),
        max_dev_tokens=(config.eval_blocks + 1) * config.max_length,  # the blocks evaluations score
    )
    collator = MLMCollator(tok, config.mlm_probability)

    def build_model() -> PreTrainedModel:
        seed_everything(config.seed)  # the weights from scratch, or init's fresh MLM head
        if init is None:
            return BertForMaskedLM(bert_config(config, tok))
        return load_model(init, head="mlm", **dropout_overrides(load_config(init), config.dropout))

    steps = _plan(config, work, build_model, data, collator)
    return tok, data, collator, steps, build_model()


def _dev_eval(
    config: PretrainConfig, data: LMCorpus, collator: MLMCollator, sources: list[str | os.PathLike]
) -> EvalFn:
    """MLM loss and accuracy on the first `eval_blocks` dev blocks, refused before training where
    those blocks cannot be scored (`check_scorable`; `sources`: what the message names)."""
    dev_blocks = data.dev.take(config.eval_blocks)
    source = ", ".join(map(str, sources))
    check_scorable(dev_blocks, collator, mlm=True, seed=config.seed, source=source)

    def eval_fn(m) -> dict[str, float]:
        r = evaluate_pretraining(
            m, dev_blocks, collator, batch_size=64, seed=config.seed, kd=False, source=source
        )
        return {k: r[k] for k in ("mlm_loss", "mlm_acc")}

    return eval_fn


def _time_left(config: PretrainConfig, started: float) -> float | None:
    """Seconds left of this piece (`max_minutes`) after reading the data; None: no limit."""
    if config.max_minutes is None:
        return None
    return max(1e-3, 60 * config.max_minutes - (time.monotonic() - started))


def _train_config(config: PretrainConfig, steps: int, limit: float | None) -> TrainConfig:
    """The training loop's settings for `steps` steps of pre-training (6% warm-up unless set; fused
    AdamW on a GPU unless set; ten evaluations unless set)."""
    warmup = config.warmup_steps if config.warmup_steps is not None else round(0.06 * steps)
    return TrainConfig(
        max_steps=steps,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=min(warmup, steps - 1),
        max_grad_norm=config.max_grad_norm,
        mixed_precision=precision(config),
        fused=torch.cuda.is_available() if config.fused is None else config.fused,
        compile=config.compile,
        time_limit_s=limit,
        eval_every=config.eval_every or max(1, steps // 10),
        save_every=config.save_every,
        seed=config.seed,
        metric="mlm_loss",
        greater_is_better=False,
        progress=config.progress,
        desc="pretrain",
    )


def write_tokens(
    corpus: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | PreTrainedTokenizerBase | None,
    tokenizer_kind: str = DEFAULT_KIND,
    vocab_size: int = 8192,
    max_length: int = 128,
    dev: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Tokenize `corpus` (and `dev`) into `out_dir`: `corpus.tokens.safetensors` (and
    `dev.tokens.safetensors`) with the tokenizer's files beside them, so that
    `pretrain(..., corpus=out_dir/corpus.tokens.safetensors, tokenizer=out_dir)` trains on exactly
    these blocks on a machine that has neither the text nor the time to tokenize it."""
    check_inputs(corpus, dev, tokenizer, tokenizer_kind, vocab_size)
    reads = [*listed(corpus), *listed(dev), given_path(tokenizer)]
    check_output(out_dir, kind="token files", inputs=reads)  # before the work
    quiet_transformers()
    tok = get_tokenizer(tokenizer, corpus, tokenizer_kind, vocab_size, max_length, None)
    info: dict[str, Any] = {"tokenizer": type(tok).__name__, "vocab_size": len(tok)}
    with atomic_dir(out_dir, kind="token files", inputs=reads) as tmp:
        save_tokenizer(tok, tmp)
        for name, paths in (("corpus", corpus), ("dev", dev)):
            if paths is not None:
                file = tmp / f"{name}{TOKENS_SUFFIX}"
                role = "train" if name == "corpus" else "dev"
                info[name] = write_token_file(
                    file, listed(paths), tok, cache_dir=cache_dir, progress=progress, role=role
                )
                info[name]["file"] = file.name
        atomic_write_json(tmp / "tokens.json", info)
    return info
