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
source's last block may be shorter) and the loss is `objectives.pretraining_loss("mlm")` (BERT's
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

import contextlib
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    BertForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..core.checks import (
    check_fields,
    check_one_of,
)
from ..core.digest import content_keys, run_identity
from ..core.errors import ConfigError, TicketlabError
from ..core.files import atomic_write_json, content_key, read_json
from ..core.outputs import atomic_dir, check_output
from ..data.corpus import BlockDataset, LMCorpus, load_lm_corpus
from ..data.sources import TOKENS_SUFFIX, is_dataset_dir, resolve_sources
from ..data.tokenizer import DEFAULT_KIND, KINDS, SPECIAL, train_tokenizer
from ..data.tokens import write_token_file
from ..models.load import load_config, load_model, load_tokenizer, quiet_transformers
from ..models.source import head_of, max_positions
from ..train.loop import (
    CHECKPOINT,
    LOG,
    RESULT,
    TrainConfig,
    TrainResult,
    load_checkpoint,
    make_accelerator,
    seed_everything,
    train,
)
from ..train.run_dir import RunDir, check_same_run
from .evaluation import check_scorable, evaluate_pretraining
from .objectives import MLMCollator, pretraining_loss
from .pretrain_config import (  # noqa: F401 (the settings, known here as before)
    PRECISIONS,
    SAVE_DTYPES,
    SHAPE_OVERRIDES,
    SIZES,
    PretrainConfig,
)

RESULT_FILE = "pretrain.json"
CALIBRATION_STEPS = 6

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    out_dir: str
    steps: int
    train_time_s: float
    dev: dict[str, float]  # final dev mlm_loss, mlm_acc, ...
    unigram_entropy: float  # nats: the loss of a model that ignores context
    params: int
    history: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False
    tokens: int = 0  # non-padding tokens trained on
    max_steps: int = 0  # the run's planned steps (0 in results written before it was recorded)
    stopped: bool = False  # this piece's time ran out first: run the same command again to go on

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_time_s if self.train_time_s > 0 else 0.0

    def summary(self) -> str:
        speed = f" ({self.tokens:,} tokens, {self.tokens_per_s:,.0f} tokens/s)" if self.tokens else ""
        if self.stopped:
            return (
                f"stopped at step {self.steps} of {self.max_steps} (time limit of this piece){speed}; "
                "run the same command again to go on"
            )
        return (
            f"{self.steps} steps in {self.train_time_s:.0f}s{speed}: dev MLM loss {self.dev['mlm_loss']:.3f} "
            f"(accuracy {self.dev['mlm_acc']:.1%}) vs {self.unigram_entropy:.3f} for unigram frequencies"
        )


def _read_result(path: Path) -> PretrainResult:
    """A finished pre-training's result, or one line naming the file (a corrupt one ended in a traceback)."""
    saved = read_json(path, "pre-training result")
    raw = saved.get("result") if isinstance(saved, dict) else None
    names = {f.name for f in dataclasses.fields(PretrainResult)} - {"cached"}
    if not isinstance(raw, dict) or set(raw) - names:
        raise TicketlabError(f"{path}: not a ticketlab pre-training result (no valid 'result' object)")
    try:
        result = PretrainResult(**raw, cached=True)
    except TypeError as e:  # a required field missing
        raise TicketlabError(f"{path}: corrupt pre-training result ({e})") from None
    wrong = check_fields(result) or (
        None if {"mlm_loss", "mlm_acc"} <= set(result.dev) else "dev must hold mlm_loss and mlm_acc"
    )
    if wrong:
        raise TicketlabError(f"{path}: corrupt pre-training result: {wrong}")
    return result


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
    acc = make_accelerator(config.precision())
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
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise TicketlabError(
                f"{plan}: corrupt pre-training plan (steps {steps!r}); delete it to plan again"
            )
        return steps
    per_step = _time_steps(build_model(), corpus, collator, config)
    steps = max(1, int(config.time_budget / per_step))
    atomic_write_json(plan, {"steps": steps, "seconds_per_step": per_step, "time_budget": config.time_budget})
    return steps


SETTINGS = "settings.json"  # the work directory's identity (`rundir`)
# Settings that do not change the weights a run ends with: a run goes on under new values of them.
PRETRAIN_INPUTS = {
    "corpus content": "the corpus",
    "dev content": "the dev text",
    "tokenizer content": "the tokenizer",
    "init content": "the initial checkpoint",
}


def _identity(
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
            "corpus content": _listed(corpus),
            "dev content": _listed(dev) if dev is not None else None,
            "tokenizer content": tokenizer if isinstance(tokenizer, (str, os.PathLike)) else None,
        }
    )
    if init is not None:  # a hub id is named by itself: another id is another start
        keys["init content"] = content_key([init]) or f"hub id {init}"
    return out | keys


def _finished(out: Path, identity: dict[str, Any]) -> PretrainResult:
    """The result of the pre-training finished in `out`, refused when it was made by other settings
    or inputs (outputs from before identities were recorded have none to compare)."""
    result = _read_result(out / RESULT_FILE)
    saved = read_json(out / RESULT_FILE, "pre-training result").get("identity")
    if isinstance(saved, dict):
        check_same_run(out, "pre-training", saved, identity, PRETRAIN_INPUTS)
    return result


def _listed(paths: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[str | os.PathLike]:
    return [] if paths is None else [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


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
    identity = _identity(config, corpus, dev, tokenizer, tokenizer_kind, vocab_size, init)
    if (out / RESULT_FILE).is_file():  # finished: its result, if it is this run's
        return _finished(out, identity)
    # With init and no tokenizer, init's own is used: nothing is built, so nothing to check for it.
    _check_inputs(corpus, dev, tokenizer if init is None else tokenizer or init, tokenizer_kind, vocab_size)
    if init is not None:
        _check_init(init, config, tokenizer)
    reads = [*_listed(corpus), *_listed(dev), given_path(tokenizer), given_path(init)]
    check_output(out, kind="pre-trained model", inputs=reads)  # before any work
    quiet_transformers()
    # Deleted at the end: claimed first, so a user's own `<out>.work` is refused, never deleted.
    work_dir = RunDir(out.with_name(out.name + ".work"), "pre-training", identity=SETTINGS, result=RESULT)
    fresh = not work_dir.path.exists()
    work = work_dir.claim("pre-training work directory")
    with _removed_if_refused(work, fresh):  # the inputs are read in the work directory (its tokenizer)
        work_dir.check(identity, PRETRAIN_INPUTS)
        given = init if tokenizer is None and init is not None else tokenizer  # init's own tokenizer
        tok = _tokenizer(given, corpus, tokenizer_kind, vocab_size, config.max_length, work)
        if tok.mask_token_id is None:
            raise ConfigError("the tokenizer has no mask token; MLM pre-training needs one")
        data = load_lm_corpus(
            corpus, tok, config.max_length, dev=dev, cache_dir=cache_dir, progress=config.progress
        )
        collator = MLMCollator(tok, config.mlm_probability)

        def build_model() -> PreTrainedModel:
            seed_everything(config.seed)  # the weights from scratch, or init's fresh MLM head
            if init is None:
                return BertForMaskedLM(config.model_config(tok))
            return load_model(init, head="mlm", **_dropout(load_config(init), config.dropout))

        steps = _plan(config, work, build_model, data, collator)
        model = build_model()
        dev_blocks = data.dev.take(config.eval_blocks)
        source = ", ".join(map(str, _listed(dev) or _listed(corpus)))
        check_scorable(dev_blocks, collator, mlm=True, seed=config.seed, source=source)  # before training
    entropy = unigram_entropy(data.train, tok.all_special_ids)

    def eval_fn(m) -> dict[str, float]:
        r = evaluate_pretraining(
            m, dev_blocks, collator, batch_size=64, seed=config.seed, kd=False, source=source
        )
        return {k: r[k] for k in ("mlm_loss", "mlm_acc")}

    finished_before = (work / RESULT).is_file()
    limit = None
    if config.max_minutes is not None:  # what is left of the piece after reading the data
        limit = max(1e-3, 60 * config.max_minutes - (time.monotonic() - started))
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
    if finished_before:  # trained before the output was written: the weights are in the last checkpoint
        model.load_state_dict(load_checkpoint(work / CHECKPOINT)["model"], strict=False)
    summary = _summary(result, out, steps, entropy, model)
    if result.stopped:  # the checkpoint in `work` is where the next piece starts
        return summary
    _write_output(model, tok, out, (config, identity), data, summary, work_dir)
    return summary


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
        mixed_precision=config.precision(),
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


def _summary(result: TrainResult, out: Path, steps: int, entropy: float, model: nn.Module) -> PretrainResult:
    last = result.final or (result.history[-1] if result.history else {})
    return PretrainResult(
        out_dir=str(out),
        steps=result.steps,
        train_time_s=round(result.train_time_s, 2),
        dev={k: v for k, v in last.items() if k != "step"},
        unigram_entropy=entropy,
        params=sum(p.numel() for p in model.parameters()),
        history=result.history,
        tokens=result.tokens,
        max_steps=steps,
        stopped=result.stopped,
    )


def _write_output(
    model, tok, out: Path, settings: tuple, data: LMCorpus, summary: PretrainResult, work_dir: RunDir
) -> None:
    """The model, its tokenizer, the log and pretrain.json (config, identity, corpus, result)."""
    config, identity = settings
    with atomic_dir(out, kind="pre-trained model") as tmp:
        model.to(getattr(torch, config.save_dtype)).save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if work_dir.file(LOG).is_file():
            shutil.copy(work_dir.file(LOG), tmp / "pretrain_log.jsonl")
        record = asdict(summary)
        record.pop("cached")
        record.pop("stopped")
        atomic_write_json(
            tmp / RESULT_FILE,
            {
                "config": asdict(config),
                "identity": identity,
                "corpus": {**data.info, "summary": data.summary()},
                "result": record,
            },
        )
    # Checkpoints are no longer needed; a file the user put in the work folder stays.
    kept = work_dir.cleanup([LOG, "plan.json", "tokenizer"])
    if kept:
        log.warning(
            "%s: kept %s (not written by ticketlab); delete the folder when done", work_dir.path, kept[0]
        )


def _tokenizer(given, corpus, kind: str, vocab_size: int, max_length: int, work: Path | None):
    """The given tokenizer, or one trained on the corpus text (kept in `work` for a resumed run)."""
    if isinstance(given, PreTrainedTokenizerBase):
        return given
    if given is not None:
        return load_tokenizer(given)
    saved = work / "tokenizer" if work is not None else None
    if saved is None or not saved.is_dir():
        tok = train_tokenizer(_listed(corpus), kind, vocab_size, model_max_length=max_length)
        if saved is None:
            return tok
        with atomic_dir(saved, kind="tokenizer") as tmp:
            tok.save_pretrained(tmp)
    return load_tokenizer(saved)


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
    _check_inputs(corpus, dev, tokenizer, tokenizer_kind, vocab_size)
    reads = [*_listed(corpus), *_listed(dev), given_path(tokenizer)]
    check_output(out_dir, kind="token files", inputs=reads)  # before the work
    quiet_transformers()
    tok = _tokenizer(tokenizer, corpus, tokenizer_kind, vocab_size, max_length, None)
    info: dict[str, Any] = {"tokenizer": type(tok).__name__, "vocab_size": len(tok)}
    with atomic_dir(out_dir, kind="token files", inputs=reads) as tmp:
        tok.save_pretrained(tmp)
        for name, paths in (("corpus", corpus), ("dev", dev)):
            if paths is not None:
                file = tmp / f"{name}{TOKENS_SUFFIX}"
                info[name] = write_token_file(
                    file, _listed(paths), tok, cache_dir=cache_dir, progress=progress
                )
                info[name]["file"] = file.name
        atomic_write_json(tmp / "tokens.json", info)
    return info


# Each family's names for its dropout probabilities (BERT-likes, DistilBERT, ModernBERT).
DROPOUT_NAMES = (
    *("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"),
    *("mlp_dropout", "embedding_dropout"),
)


def _dropout(model_config: PretrainedConfig, p: float) -> dict[str, float]:
    """`from_pretrained` overrides that set every dropout probability the family has to `p`."""
    return {k: p for k in DROPOUT_NAMES if isinstance(getattr(model_config, k, None), float)}


def _check_init(init: str | os.PathLike, config: PretrainConfig, tokenizer: Any) -> None:
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
    if tokenizer is not None:
        size = len(tokenizer if isinstance(tokenizer, PreTrainedTokenizerBase) else load_tokenizer(tokenizer))
        if size > model_config.vocab_size:
            raise ConfigError(
                f"{given_path(tokenizer) or 'the tokenizer'}: {size} tokens, more than the "
                f"{model_config.vocab_size} embeddings of {init}; use the checkpoint's own tokenizer"
            )
    if head_of(model_config) != "mlm":
        log.warning(f"note: {init} has no MLM head; a fresh one (seeded by --seed) trains with the body")


def _check_inputs(corpus, dev, tokenizer: Any, kind: str, vocab_size: int) -> None:
    """Refuse bad corpora and tokenizer settings before any work, so that no work folder is left
    behind by a run that could never start."""
    if tokenizer is None:
        check_one_of("tokenizer kind", kind, KINDS)
        if vocab_size <= len(SPECIAL):
            raise ConfigError(f"vocab_size must be > {len(SPECIAL)}, got {vocab_size}")
        for p in _listed(corpus):  # what a tokenizer cannot be trained on: say what to pass instead
            if str(p).endswith(TOKENS_SUFFIX):
                raise ConfigError(f"{p}: is tokenized already; pass the tokenizer written with it")
            if is_dataset_dir(Path(p).expanduser()):
                raise ConfigError(
                    f"{p}: building a tokenizer reads text files; pass a tokenizer for datasets"
                )
    resolve_sources(_listed(corpus), role="train")  # missing paths, empty folders, bad token files
    if dev is not None:
        resolve_sources(_listed(dev), role="dev")


def given_path(tokenizer: Any) -> str | os.PathLike | None:
    return tokenizer if isinstance(tokenizer, (str, os.PathLike)) else None


@contextlib.contextmanager
def _removed_if_refused(work: Path, fresh: bool) -> Iterator[None]:
    """A work directory this call made goes again when an input is refused before training (an empty
    corpus, a dev text too short to score): a refused input leaves nothing behind, as a search's."""
    try:
        yield
    except TicketlabError:
        if fresh:
            shutil.rmtree(work, ignore_errors=True)
        raise
