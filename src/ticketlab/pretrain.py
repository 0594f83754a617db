"""Masked-LM pre-training of a small BERT from scratch: the demo's base model, or your own.

    config = PretrainConfig(size="tiny", steps=2000, max_length=64)
    result = pretrain(config, ["corpus.txt"], "out/model", tokenizer="tok/")   # or build_tokenizer=True
    result.dev["mlm_loss"], result.unigram_entropy                             # nats per masked token

Sizes follow the BERT miniatures of Turc et al. (2019): tiny (L2/H128), mini (L4/H256), small
(L4/H512), medium (L8/H512), base (L12/H768); any of hidden/layers/heads/intermediate can be
overridden. The corpus goes through `data.corpus` (tokenized once, cached, cut into blocks) and
the loss is `objectives.pretraining_loss("mlm")` (BERT's 80/10/10 corruption, the head applied to
the masked positions only), trained by `training.train`.

The output is a standard Hugging Face checkpoint (`BertForMaskedLM` + tokenizer) plus
`pretrain.json` (settings, dev MLM loss and accuracy, the corpus's unigram entropy as the
no-context baseline, history, time), written atomically. Training state lives in `<out>.work/`
while it runs, so an interrupted run resumes where its last checkpoint left it; a finished output
is not trained again. A `time_budget` is turned into a step count by timing a few steps first
(the count is then fixed in `<out>.work/plan.json`, so a resume keeps the same schedule).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerBase

from .data.corpus import BlockDataset, LMCorpus, load_lm_corpus
from .data.tokenizer import train_word_level_tokenizer
from .errors import ConfigError, TicketlabError
from .files import atomic_dir, atomic_write_json, check_output, claim_dir, read_json
from .modeling import load_tokenizer, quiet_transformers
from .objectives import MLMCollator, pretraining_loss
from .pretrain_eval import check_scorable, evaluate_pretraining
from .training import CHECKPOINT, RESULT, TrainConfig, load_checkpoint, seed_everything, train
from .validation import (
    BlockLength,
    Fraction,
    NonNegFloat,
    NonNegInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    check_config,
    check_fields,
)

# (hidden, layers, heads, intermediate): Turc et al. 2019, "Well-Read Students Learn Better".
SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (128, 2, 2, 512),
    "mini": (256, 4, 4, 1024),
    "small": (512, 4, 8, 2048),
    "medium": (512, 8, 8, 2048),
    "base": (768, 12, 12, 3072),
}
RESULT_FILE = "pretrain.json"
CALIBRATION_STEPS = 6


@dataclass
class PretrainConfig:
    size: str = "tiny"
    hidden: PositiveInt | None = None  # overrides of the size preset
    layers: PositiveInt | None = None
    heads: PositiveInt | None = None
    intermediate: PositiveInt | None = None
    max_length: BlockLength = 128  # block length
    positions: PositiveInt | None = None  # position embeddings (default max_length; more for longer inputs)
    steps: PositiveInt | None = None  # exactly one of steps / time_budget
    time_budget: PositiveFloat | None = None  # seconds of optimisation, turned into steps by timing a few
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 1e-3
    warmup_steps: NonNegInt | None = None  # default: 6% of the steps
    weight_decay: NonNegFloat = 0.01
    dropout: Fraction = 0.1
    mlm_probability: OpenFraction = 0.15
    eval_every: PositiveInt | None = None  # default: 10 evaluations per run
    eval_blocks: PositiveInt = 256  # dev blocks scored at each evaluation
    save_every: PositiveInt = 200
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        check_config(self)
        if self.size not in SIZES:
            raise ConfigError(f"size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if (self.steps is None) == (self.time_budget is None):
            raise ConfigError("give exactly one of steps and time_budget")
        hidden, _, heads, _ = self.shape
        if hidden % heads:
            raise ConfigError(f"hidden size {hidden} is not divisible by the number of heads {heads}")
        if self.positions is not None and self.positions < self.max_length:
            raise ConfigError(f"positions ({self.positions}) must be >= max_length ({self.max_length})")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(hidden, layers, heads, intermediate) after the overrides."""
        base = SIZES[self.size]
        given = (self.hidden, self.layers, self.heads, self.intermediate)
        return tuple(g if g is not None else b for g, b in zip(given, base, strict=True))  # type: ignore[return-value]

    def model_config(self, tokenizer: PreTrainedTokenizerBase) -> BertConfig:
        hidden, layers, heads, intermediate = self.shape
        return BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=intermediate,
            max_position_embeddings=self.positions or self.max_length,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        )


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

    def summary(self) -> str:
        return (
            f"{self.steps} steps in {self.train_time_s:.0f}s: dev MLM loss {self.dev['mlm_loss']:.3f} "
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
    """Seconds per optimizer step, measured on a few steps of a throwaway optimizer."""
    loss_fn = pretraining_loss("mlm")
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
    n = len(corpus.train)
    times = []
    for step in range(CALIBRATION_STEPS):
        idx = [(step * config.batch_size + i) % n for i in range(config.batch_size)]
        batch = collator([corpus.train[i] for i in idx], idx)
        t0 = time.perf_counter()
        loss, _ = loss_fn(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
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
) -> PretrainResult:
    """Pre-train a BERT with MLM from scratch on `corpus`; write a checkpoint to `out_dir` (see module doc).

    `tokenizer`: a tokenizer or its directory; None builds a word-level one of `vocab_size` words
    from the corpus text files (kept in the work directory, so a resumed run uses the same one).
    """
    out = Path(out_dir)
    if (out / RESULT_FILE).is_file():
        return _read_result(out / RESULT_FILE)
    reads = [
        *_listed(corpus),
        *_listed(dev),
        tokenizer if isinstance(tokenizer, (str, os.PathLike)) else None,
    ]
    check_output(out, kind="pre-trained model", inputs=reads)  # before any work
    quiet_transformers()
    # Deleted at the end: claimed first, so a user's own `<out>.work` is refused, never deleted.
    work = claim_dir(out.with_name(out.name + ".work"), kind="pre-training work directory")
    tok = _tokenizer(tokenizer, corpus, vocab_size, config.max_length, work)
    if tok.mask_token_id is None:
        raise ConfigError("the tokenizer has no mask token; MLM pre-training needs one")
    data = load_lm_corpus(
        corpus, tok, config.max_length, dev=dev, cache_dir=cache_dir, progress=config.progress
    )
    collator = MLMCollator(tok, config.mlm_probability)

    def build_model() -> BertForMaskedLM:
        seed_everything(config.seed)
        return BertForMaskedLM(config.model_config(tok))

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

    warmup = config.warmup_steps if config.warmup_steps is not None else round(0.06 * steps)
    finished_before = (work / RESULT).is_file()
    result = train(
        model,
        model.parameters(),
        data.train,
        collator,
        pretraining_loss("mlm"),
        TrainConfig(
            max_steps=steps,
            batch_size=config.batch_size,
            lr=config.lr,
            weight_decay=config.weight_decay,
            warmup_steps=min(warmup, steps - 1),
            eval_every=config.eval_every or max(1, steps // 10),
            save_every=config.save_every,
            seed=config.seed,
            metric="mlm_loss",
            greater_is_better=False,
            progress=config.progress,
            desc="pretrain",
        ),
        out_dir=work,
        eval_fn=eval_fn,
    )
    if finished_before:  # trained before the output was written: the weights are in the last checkpoint
        model.load_state_dict(load_checkpoint(work / CHECKPOINT)["model"], strict=False)
    summary = PretrainResult(
        out_dir=str(out),
        steps=result.steps,
        train_time_s=round(result.train_time_s, 2),
        dev={k: v for k, v in result.final.items() if k != "step"},
        unigram_entropy=entropy,
        params=sum(p.numel() for p in model.parameters()),
        history=result.history,
    )
    _write_output(model, tok, out, config, data, summary, work)
    return summary


def _write_output(model, tok, out: Path, config, data: LMCorpus, summary: PretrainResult, work: Path) -> None:
    with atomic_dir(out, kind="pre-trained model") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if (work / "log.jsonl").is_file():
            shutil.copy(work / "log.jsonl", tmp / "pretrain_log.jsonl")
        record = asdict(summary)
        record.pop("cached")
        atomic_write_json(
            tmp / RESULT_FILE,
            {"config": asdict(config), "corpus": {**data.info, "summary": data.summary()}, "result": record},
        )
    shutil.rmtree(work, ignore_errors=True)  # checkpoints are no longer needed


def _tokenizer(given, corpus, vocab_size: int, max_length: int, work: Path) -> PreTrainedTokenizerBase:
    if isinstance(given, PreTrainedTokenizerBase):
        return given
    if given is not None:
        return load_tokenizer(given)
    saved = work / "tokenizer"
    if not saved.is_dir():
        paths = [corpus] if isinstance(corpus, (str, os.PathLike)) else list(corpus)
        dirs = [str(p) for p in paths if Path(p).is_dir()]
        if dirs:
            raise ConfigError(
                f"{dirs[0]}: building a tokenizer reads text files; pass a tokenizer for datasets"
            )
        tok = train_word_level_tokenizer(paths, vocab_size=vocab_size, model_max_length=max_length)
        with atomic_dir(saved, kind="tokenizer") as tmp:
            tok.save_pretrained(tmp)
    return load_tokenizer(saved)
