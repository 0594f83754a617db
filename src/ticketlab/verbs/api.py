"""One library call per verb: a config dataclass, validated when it is built, and one function.

    prune(PruneConfig)                        `ticketlab prune`              -> PruneResult
    search(SearchConfig)                      `ticketlab search tamt|imp`    -> SearchResult
    evaluate_pretraining(PretrainEvalConfig)  `ticketlab evaluate-pretrain`  -> one row per subnetwork
    finetune / finetune_seeds(FinetuneConfig) `ticketlab finetune`           (in `ticketlab.finetune`)

Each does everything its verb does (loading the model and its MLM head, the corpus or task, the
accelerator), so the command line is argument parsing -> config -> call, and the sweep calls the
same functions. Messages go to the `ticketlab` logger (the CLI shows them; a sweep writes them to
the run's log). The lower-level pieces (`methods.search_tamt`, `lm.evaluation.evaluate_pretraining`
on blocks) stay available for custom loops.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..core.checks import (
    BlockLength,
    FieldError,
    Fraction,
    LearningRate,
    NonNegFloat,
    NonNegInt,
    PositiveInt,
    Seed,
    check_config,
    check_one_of,
    option,
)
from ..core.digest import OMIT, run_identity
from ..core.errors import ConfigError
from ..core.files import atomic_write_json
from ..core.outputs import check_output
from ..lm.options import DECODER_HELP, KD_INPUT_HELP, Decoder, KdInput
from ..masks.pattern import parse_pattern, pattern_sparsity
from ..masks.targets import POOLER_HELP, Targets, resolve_targets
from ..methods.configs import DEFAULT_MAX_LENGTH
from ..methods.registry import Method, method_of_config, methods
from ..models.arch import arch_of
from ..models.load import check_model, fit_max_length, head_of, load_config, load_model, load_tokenizer

# The configs of `prune`, `search` and `evaluate-pretrain` are this module's, read when their
# `--help` is parsed: torch, transformers and the methods are imported by the functions that run
# (lazy start-up; tests/test_startup.py pins it).
if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import nn

    from ..masks import Mask, MaskConfig
    from ..methods.search import SearchResult
    from ..train.loop import TrainConfig

log = logging.getLogger(__name__)

Precision = Literal["no", "fp16", "bf16"]


# --------------------------------------------------------------------------- prune


@dataclass
class PruneConfig:
    """One-shot pruning of `model` into the mask directory `out`."""

    model: str  # local directory or hub id
    method: str  # a registered one-shot method (`methods.registry`, verb prune): omp, random
    sparsity: Fraction | None  # None with a pattern: the one it implies
    out: str | os.PathLike
    ranking: Literal["local", "global"] = option(
        "local",
        "rank weights per matrix (local, TAMT's OMP) or over all targets (global, Chen et al.'s one-shot "
        "pruning: without --targets, the layers' matrices only, the word embeddings left dense)",
    )
    seed: Seed = option(0, "seed for random pruning")
    # regexes over module names (default: TAMT §3.2's weights and the pooler; with global ranking
    # Chen et al.'s, the layers' six matrices without the word embeddings, `one_shot_targets`)
    targets: Targets = None
    pattern: str | None = None  # "N:M": keep N of every M consecutive weights along the input dim
    pooler: bool = option(True, POOLER_HELP)

    def __post_init__(self) -> None:
        check_config(self)  # types, sparsity in [0, 1), ranking
        check_one_of("method", self.method, sorted(methods("prune")))
        self.sparsity = pattern_sparsity(self.sparsity, self.pattern, self.ranking)
        self.pattern = self.pattern and str(parse_pattern(self.pattern))  # " 2:4" is recorded as "2:4"


@dataclass
class PruneResult:
    mask: Mask
    config: MaskConfig
    out: Path
    time_s: float  # the pruning itself, loading and saving excluded


def one_shot_targets(model: nn.Module, config: PruneConfig) -> Targets:
    """The weights one-shot pruning ranks: `config.targets` when given; under global ranking Chen et
    al.'s (BERT-Tickets' `pruning_model`: the layers' Q, K, V, attention-output and FFN matrices,
    the word embeddings dense, whose 7.8M weights would otherwise spare the encoder of a small model
    or take most of the pruning); else None, the family's default (TAMT §3.2: word embeddings too)."""
    if config.targets is not None or config.ranking != "global":
        return config.targets
    return arch_of(getattr(model.config, "model_type", "unknown")).encoder_targets()


def prune(config: PruneConfig, *, model: nn.Module | None = None) -> PruneResult:
    """Prune and write the mask directory. `model`: the already loaded base model (not modified)."""
    from ..masks import MaskConfig, load_mask, save_mask  # lazy start-up (see the imports)

    check_output(config.out, kind="mask", inputs=[config.model])  # before any work
    model = model if model is not None else load_model(config.model, head="base")
    targets = resolve_targets(model, one_shot_targets(model, config), config.pooler)
    t0 = time.perf_counter()
    method = methods("prune")[config.method]
    mask = method.run(
        model,
        config.sparsity,
        ranking=config.ranking,
        targets=targets,
        seed=config.seed,
        pattern=config.pattern,
    )
    elapsed = time.perf_counter() - t0
    mc = MaskConfig.for_model(
        model,
        mask,
        method=config.method,
        sparsity=config.sparsity,
        base_model=str(config.model),
        targets=targets,
        ranking=config.ranking,
        seed=config.seed if method.seeded else None,
        pattern=config.pattern,
    )
    save_mask(mask, mc, config.out)
    return PruneResult(mask, load_mask(config.out)[1], Path(config.out), elapsed)  # config as saved


# --------------------------------------------------------------------------- search


@dataclass
class SearchConfig:
    """A mask search by training: `method` is a `TamtConfig` (mask training) or an `ImpConfig`.

    TAMT and IMP on MLM read `corpus`; task-specific IMP reads `task` (and `data_dir`) instead.
    `out` becomes the mask directory; it also holds the search's log, checkpoint and masks saved
    at `save_at`, and a rerun with the same config resumes there."""

    model: str
    method: Any  # a registered search method's config (`methods.registry`): TamtConfig, ImpConfig
    steps: PositiveInt | None = option(help="optimizer steps of the search (with --paper: TAMT Tab. 2's)")
    out: str | os.PathLike = option(help="output (mask) directory; resumed if it exists", metavar="DIR")
    corpus: Sequence[str | os.PathLike] | None = option(
        None, "text files or saved `datasets` dirs to train on", metavar="PATH"
    )
    dev: Sequence[str | os.PathLike] | None = option(
        None, "dev corpus (default: carved from --corpus)", metavar="PATH"
    )
    dev_fraction: Fraction = option(0.05, "tail of each source used as dev")
    text_column: str = option("text", "column of `datasets` sources")
    max_length: BlockLength | None = option(
        None, f"tokens per block (default {DEFAULT_MAX_LENGTH} for corpora, the task's for --task)"
    )
    cache_dir: str | os.PathLike | None = option(
        None, "tokenized-corpus cache (default ~/.cache/ticketlab)", metavar="DIR", result=False
    )
    task: str | None = option(None, "task-specific IMP: a task id or task.json (instead of --corpus)")
    data_dir: str | None = option(None, "GLUE root or task folder for --task", metavar="DIR")
    batch_size: PositiveInt = option(16, "global batch size")
    lr: LearningRate | None = option(None, "learning rate (default: TAMT Table 1)")
    warmup_steps: NonNegInt = option(0, "steps of linear warm-up")
    weight_decay: NonNegFloat = option(0.0, "AdamW weight decay")
    grad_accum: PositiveInt = option(1, "gradient accumulation micro-steps")
    max_grad_norm: NonNegFloat = option(1.0, "gradient clipping norm (0: none)")
    mixed_precision: Precision = option("no", "autocast precision")
    optimizer_in_backward: bool = option(
        False,
        "less memory: step each tensor inside the backward and free its gradient (no gradient "
        "clipping; one process, no fp16, no --grad-accum)",
        compat=(False,),  # a search's identity has it only when set: directories written before resume
    )
    seed: Seed = option(0, "data order, corruption, random init")
    schedule_steps: PositiveInt | None = option(
        None,
        "the linear lr schedule's horizon (lr 0 there), the search stopping at --steps part-way down it; "
        "default for TAMT: where TAMT (Liu et al. 2022, Tab. 2) stopped its 27,920-step schedule at "
        "this sparsity, --steps / (Tab. 2's step / 27,920), e.g. 17,000/27,920 at 70%; give --steps "
        "itself for a schedule that ends at the stop (ticketlab before issue 34); IMP: each round decays "
        "towards 0 here (the references' t_total, their whole epoch budget; default --steps)",
        metavar="N",
    )
    paper: bool = option(
        False,
        "TAMT's own budget (Liu et al. 2022, App. B.2): the 27,920-step schedule (2 WikiText-103 epochs "
        "at batch 16 x 512), stopped at Tab. 2's step for --sparsity (11,000 at 50%, 17,000 at 70%, "
        "22,000 at 90%): one run per sparsity, as the paper's masker holds one target",
    )
    save_at: Sequence[PositiveInt] = option(  # search-cost curves
        (), "also write the masks at these steps, e.g. 100,200", metavar="STEPS"
    )
    save_every: PositiveInt = option(100, "checkpoint every N steps", result=False)
    eval_every: PositiveInt | None = option(
        None, "dev evaluation every N steps (default: at the end only)", result=False
    )
    dev_blocks: PositiveInt = option(256, "dev blocks for evaluation during the search", result=False)
    eval_batch_size: PositiveInt = option(32, "batch size of dev evaluations", result=False)
    no_eval: bool = option(False, "skip dev evaluation entirely", result=False)
    keep_checkpoint: bool = option(False, "keep run/checkpoint.pt after finishing", result=False)
    log_every: PositiveInt = option(10, "steps between log lines", result=False)
    progress: bool = option(True, "no progress bar", result=False)

    def __post_init__(self) -> None:
        check_config(self)  # e.g. batch_size "16", lr nan, dev_fraction 5
        searches = methods("search").values()
        if not any(isinstance(self.method, m.config) for m in searches):
            names = " or ".join(m.config.__name__ for m in searches if m.config is not None)
            raise FieldError("method", f"must be {names}, got {self.method!r}", self.method)
        self._paper_budget()
        self.train_config(self.lr or 1.0)  # what training will refuse (batch vs grad_accum, ...), now
        if self.task is not None and not self.search_method.task:
            on_tasks = " / ".join(m.name.upper() for m in searches if m.task)
            raise ConfigError(
                f"a task objective is for {on_tasks} only ({self.verb.upper()} trains on a corpus)"
            )
        if self.task is not None and self.corpus:
            raise ConfigError("give either corpus (IMP on MLM) or task (task-specific IMP), not both")
        if self.task is None and not self.corpus:
            raise ConfigError("give corpus (text files or saved datasets) to search on")
        if self.search_method.resolve is not None:
            self.method = self.search_method.resolve(self.method, self)
        if self.search_method.check_steps is not None:  # e.g. IMP's rounds: said before any work
            self.search_method.check_steps(self.method, self.steps)
        from ..methods.search import parse_steps  # lazy start-up (see the imports)

        parse_steps(self.save_at, self.steps)  # a step past the end: refused before the directory is made
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(f"{self.out}: exists and is not a directory")

    def _paper_budget(self) -> None:
        """`paper`: the steps and schedule of the method's paper (TAMT Tab. 2); else steps are required."""
        if self.paper:
            budget = self.search_method.paper_budget
            if budget is None:
                raise FieldError("paper", f"{self.verb.upper()} has no paper budget to take", True)
            steps, horizon = budget(self.method)
            if self.steps not in (None, steps) or self.schedule_steps not in (None, horizon):
                raise ConfigError(
                    f"paper: the paper's budget is {steps} steps of a {horizon}-step schedule; "
                    "leave steps and schedule_steps out, or leave paper out"
                )
            self.steps, self.schedule_steps = steps, horizon
        elif self.steps is None:
            raise FieldError("steps", "required (or paper, for TAMT's own budget)", None)

    @property
    def horizon(self) -> int:
        """The lr schedule's horizon: `schedule_steps`, else the method's default for `steps`."""
        if self.schedule_steps is not None:
            return self.schedule_steps
        default = self.search_method.schedule
        return default(self.method, self.steps) if default is not None else self.steps

    @property
    def search_method(self) -> Method:
        """The registered search method whose config `method` is (`methods.registry.method_of_config`)."""
        return method_of_config(self.method)

    @property
    def verb(self) -> str:
        """The name of the search method whose config `method` is."""
        return self.search_method.name

    def settings(self, lr: float) -> dict[str, Any]:
        """What defines the search (a resumed run must match): the CLI's option names and values,
        as directories written before this API recorded them; the method's own from its registry
        entry (`methods.registry.Method.settings`). A key left out reads as null in a recorded run (`rundir`),
        so a method records none of another's (directories written then hold them as null)."""
        paths = lambda ps: [str(p) for p in ps] if ps else None  # noqa: E731
        method = self.search_method
        resolved = {
            "model": str(self.model),
            "corpus": paths(self.corpus),
            "dev": paths(self.dev),
            "lr": lr,
            # only when the schedule goes on past the stop: before issue 34 it always ended there
            "schedule_steps": self.horizon if self.horizon != self.steps else OMIT,
            **({} if method.task else {"task": OMIT, "data_dir": OMIT}),
        }
        # the method by its name and its config's own part; paper by the steps and schedule it sets
        skip = ("method", "out", "paper", "save_at")
        own = run_identity(self, leave_out=skip, values=resolved, options=True)
        return {"method": method.name, **own, **method.settings(self.method)}

    def train_config(self, lr: float, *, metric: str | None = None, greater: bool = True) -> TrainConfig:
        from ..train.loop import TrainConfig  # lazy start-up (see the imports)

        return TrainConfig(
            max_steps=self.steps,
            schedule_steps=self.horizon if self.horizon != self.steps else None,
            batch_size=self.batch_size,
            lr=lr,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            grad_accum=self.grad_accum,
            max_grad_norm=self.max_grad_norm
            if self.max_grad_norm > 0 and not self.optimizer_in_backward
            else None,
            optimizer_in_backward=self.optimizer_in_backward,
            eval_every=self.eval_every,
            save_every=self.save_every,
            log_every=self.log_every,
            seed=self.seed,
            mixed_precision=self.mixed_precision,
            metric=metric,
            greater_is_better=greater,
            progress=self.progress,
            desc=f"search {self.verb}",
        )


def search(config: SearchConfig, *, accelerator: Accelerator | None = None) -> SearchResult:
    """Run (or resume, or return the finished) mask search `config` describes; see `SearchConfig`.

    Under `accelerate launch` every process calls it; the global batch is split between them and
    the mask is the one a single process finds."""
    from ..methods.search import SearchDir  # lazy start-up (see the imports)
    from ..train.loop import make_accelerator

    config = dataclasses.replace(config)  # the run fits max_length to the model: not the caller's copy
    reads = [config.model, *(config.corpus or []), *(config.dev or []), config.data_dir]
    check_output(config.out, kind="search", inputs=reads)  # before any work
    check_model(config.model)  # its config and weights' files, before the search directory is made
    acc = accelerator or make_accelerator(config.mixed_precision)
    if acc.is_main_process:  # a second process on this search is refused before it loads anything
        SearchDir(config.out).run_dir.refuse_held()  # its lock is run/.lock
    # The directory is claimed and locked by `run_search` once the model and corpus are read: a
    # refused input (an empty corpus) leaves no output behind.
    return config.search_method.run(config, acc)


# --------------------------------------------------------------------------- pre-training evaluation


@dataclass
class PretrainEvalConfig:
    """MLM dev loss / accuracy and KD dev loss of the full model and of subnetworks (TAMT Fig. 5).

    Every block of `corpus` is scored, 15% of its tokens corrupted with a fixed seed per block, so
    every row sees the same masked positions. Without `model`, each mask is evaluated on the base
    model it records (e.g. IMP's rewound weights)."""

    corpus: Sequence[str | os.PathLike] = option(help="dev text files or datasets", metavar="PATH")
    model: str | None = None
    masks: Sequence[str | os.PathLike] = option(
        factory=list, help="mask directories to evaluate", flag="--mask", metavar="MASK_DIR"
    )
    full: bool = option(False, "also evaluate the full model (default without --mask)")
    max_length: BlockLength | None = option(
        None, "tokens per block (default 512, or the model's positions if fewer)"
    )
    max_blocks: PositiveInt | None = option(None, "evaluate only the first N blocks")
    batch_size: PositiveInt = option(32, "blocks per forward pass")
    seed: Seed = option(0, "seed of the corruption")
    no_kd: bool = option(False, "skip the KD loss (halves the time)")
    mlm_head: Literal["original", "trained"] = option(
        "original",
        "the MLM head a mask's MLM loss is made with: the original pre-trained head for every method (TAMT, "
        "Liu et al. 2022: eval_mlm.py --load_mlm_head false, its Fig. 4/5) or TAMT-MLM's trained head "
        "where its mask directory has one (ticketlab before issue 34)",
    )
    ignore_mlm_head: bool = option(
        False, "the original MLM head for every mask: what --mlm-head original (the default) gives"
    )
    decoder: Decoder = option("dense", DECODER_HELP)
    kd_input: KdInput = option("clean", KD_INPUT_HELP)
    ignore_hash: bool = option(False, "apply masks found on other weights")
    text_column: str = option("text", "column of `datasets` sources")
    cache_dir: str | os.PathLike | None = option(None, "tokenized-corpus cache", metavar="DIR")
    out: str | os.PathLike | None = option(None, "also write the results as JSON to FILE", metavar="FILE")
    progress: bool = True

    def __post_init__(self) -> None:
        check_config(self)
        if not self.corpus:
            raise ConfigError("give a corpus to evaluate on")
        if self.model is None and not self.masks:
            raise ConfigError("give model (or masks, whose base model is used)")

    @property
    def uses_trained_head(self) -> bool:
        """Whether a TAMT-MLM mask is scored with the head it trained (`mlm_head="trained"`)."""
        return self.mlm_head == "trained" and not self.ignore_mlm_head

    @property
    def targets(self) -> list[str | None]:
        """None (the full model) and the mask directories, in the order of the rows."""
        return ([None] if self.full or not self.masks else []) + [str(m) for m in self.masks]


def _evaluate_one(config: PretrainEvalConfig, mask_dir: str | None, blocks_cache: dict) -> dict[str, Any]:
    from ..data.corpus import load_lm_blocks  # lazy start-up (see the imports)
    from ..lm.evaluation import HEAD_FILE, load_head_state
    from ..lm.evaluation import evaluate_pretraining as evaluate_blocks
    from ..lm.objectives import MLMCollator
    from ..masks import apply_mask, check_fits, load_mask
    from ..masks.hub import mask_dir as hub_mask_dir
    from ..masks.io import recorded_base

    base = config.model or recorded_base(mask_dir)
    model_config = load_config(base)
    has_head = head_of(model_config) == "mlm"
    model = load_model(base, head="mlm" if has_head else "base")
    row: dict[str, Any] = {
        "name": Path(mask_dir).name if mask_dir else "full",
        "mask": mask_dir,
        "model": base,
    }
    if mask_dir is not None:
        mask, mc = load_mask(mask_dir)
        check_fits(mask, mc, model, source=mask_dir, check_hash=not config.ignore_hash)
        apply_mask(model, mask)
        row.update(method=mc.method, sparsity=round(mask.sparsity, 6))
        head = hub_mask_dir(mask_dir) / HEAD_FILE  # a hub mask: its cached folder
        if has_head and head.is_file() and config.uses_trained_head:
            load_head_state(model, head)
            row["mlm_head"] = "trained"
    else:
        row.update(method="full", sparsity=0.0)
    length = fit_max_length(model_config, config.max_length, DEFAULT_MAX_LENGTH)
    row["max_length"] = length
    key = (base, length)
    if key not in blocks_cache:
        tokenizer = load_tokenizer(base)
        blocks, _ = load_lm_blocks(
            config.corpus,
            tokenizer,
            length,
            cache_dir=config.cache_dir,
            text_column=config.text_column,
            progress=config.progress,
        )
        blocks_cache[key] = (blocks.take(config.max_blocks), MLMCollator(tokenizer))
    blocks, collator = blocks_cache[key]
    metrics = evaluate_blocks(
        model,
        blocks,
        collator,
        batch_size=config.batch_size,
        seed=config.seed,
        mlm=has_head,
        kd=not config.no_kd,
        progress=config.progress,
        source=", ".join(map(str, config.corpus)),
        decoder=config.decoder,
        kd_input=config.kd_input,
    )
    return {**row, **metrics}


EVAL_KEYS = frozenset({"name", "mask", "model", "method", "sparsity", "max_length"})  # in every row


def _is_evaluation(path: Path) -> bool:
    """An earlier `evaluate_pretraining` output (its rows), which a new one may replace; any other
    file at `--out` is the user's."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return (
        isinstance(rows, list)
        and bool(rows)
        and all(isinstance(r, dict) and set(r) >= EVAL_KEYS for r in rows)
    )


def evaluate_pretraining(config: PretrainEvalConfig) -> list[dict[str, Any]]:
    """One row per subnetwork (`config.targets`): name, mask, model, method, sparsity, mlm_loss,
    mlm_acc, mlm_ppl, kd_loss and the block / token counts; written to `config.out` if given."""
    if config.out:
        reads = [config.model, *config.masks, *config.corpus]
        check_output(config.out, kind="evaluation", is_file=True, inputs=reads, ours=_is_evaluation)
    blocks_cache: dict = {}  # the corpus is tokenized once per base model
    rows = [_evaluate_one(config, m, blocks_cache) for m in config.targets]
    if config.out:
        atomic_write_json(config.out, rows)
    return rows
