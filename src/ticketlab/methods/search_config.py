"""The settings of one mask search by training, `SearchConfig` (`ticketlab search NAME`, the
`search` verb): the method's own config (`method`, a registered search method's) and what every
search shares (the data, the optimizer, the budget, the output). In a module that imports no torch:
`ticketlab search --help` reads it; the methods type their inputs with it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..core.checks import (
    BlockLength,
    FieldError,
    Fraction,
    LearningRate,
    NonNegFloat,
    NonNegInt,
    PositiveFloat,
    PositiveInt,
    Seed,
    WeightDecay,
    check_config,
    option,
)
from ..core.digest import OMIT, run_identity
from ..core.errors import ConfigError
from ..core.files.caches import CORPUS_CACHE_HELP
from ..core.files.keys import CORPUS_PATHS
from ..tasks.registry import DATA_DIR_HELP, readable_task
from ..train.config import TrainConfig
from .options import BERTADAM, DEFAULT_MAX_LENGTH, parse_steps
from .registry import Method, method_of_config, methods

Precision = Literal["no", "fp16", "bf16"]
Optimizer = Literal["adamw", "bertadam"]


@dataclass
class SearchConfig:
    """A mask search by training: `method` is a `TamtConfig` (mask training) or an `ImpConfig`.

    TAMT and IMP on MLM read `corpus`; task-specific IMP reads `task` (and `data_dir`) instead.
    `out` becomes the mask directory; it also holds the search's log, checkpoint and masks saved
    at `save_at`, and a rerun with the same config resumes there."""

    model: str
    method: Any  # a registered search method's config (`methods.registry`): TamtConfig, ImpConfig
    steps: PositiveInt | None = option(help="optimizer steps of the search (TAMT with --paper: Tab. 2's)")
    out: str | os.PathLike = option(help="output (mask) directory; resumed if it exists", metavar="DIR")
    corpus: Sequence[str | os.PathLike] | None = option(
        None,
        f"{CORPUS_PATHS} to train on",
        metavar="PATH",
    )
    dev: Sequence[str | os.PathLike] | None = option(
        None,
        "dev corpus (default: the datasets' validation splits, else carved from --corpus)",
        metavar="PATH",
    )
    dev_fraction: Fraction = option(0.05, "tail of each source used as dev")
    # Left out of a search's identity: the corpus's content key, which the search records and checks,
    # holds what a cap left out, so a cap that cuts the corpus is another search, one that does not the same.
    corpus_tokens: NonNegInt | None = option(
        None,
        "text tokens of --corpus to read, from its start (default: what the search needs, 2 x steps x "
        "batch x length, plus the dev part carved from it; 0: the whole corpus). --dev is read up to "
        "--dev-blocks",
        metavar="N",
    )
    text_column: str = option("text", "column of `datasets` sources")
    # TAMT tokenizes WikiText-103's wiki.*.raw as it is (its " @-@ " markup included); ticketlab undoes
    # the markup where it finds it (`data.sources.clean_wikitext`).
    wikitext_markup: Literal["undo", "keep"] = option(
        "undo",
        "WikiText's tokenized markup (' @-@ ', ' @,@ ', '<unk>'): undo it where a corpus has it (default: "
        "'1 @,@ 000' reads '1,000', '<unk>' the tokenizer's unknown token) or keep it, as TAMT's code "
        "tokenizes wiki.*.raw as it is",
    )
    max_length: BlockLength | None = option(
        None, f"tokens per block (default {DEFAULT_MAX_LENGTH}; IMP with --task: the task's)"
    )
    cache_dir: str | os.PathLike | None = option(
        None,
        CORPUS_CACHE_HELP,
        metavar="DIR",
        result=False,
    )
    task: str | None = option(None, "task-specific IMP: a task id or task.json (instead of --corpus)")
    data_dir: str | None = option(None, f"for --task: {DATA_DIR_HELP}", metavar="DIR")
    batch_size: PositiveInt = option(16, "global batch size")
    lr: LearningRate | None = option(
        None,
        "learning rate (default: TAMT Table 1's; IMP with --task: the task's fine-tuning lr; for a TAMT "
        "search too short for Table 1's to move a mask, the lr at which one score can cross the Eq. 5 gap "
        "on its own)",
    )
    warmup_steps: NonNegInt = option(0, "steps of linear warm-up")
    weight_decay: WeightDecay = option(0.0, "AdamW weight decay")
    grad_accum: PositiveInt = option(1, "gradient accumulation micro-steps")
    max_grad_norm: NonNegFloat = option(1.0, "gradient clipping norm (0: none)")
    # TAMT's train_kd.py steps with BertAdam (per-tensor clipping, eps 1e-6); TAMT's Tab. 1 names
    # AdamW, which is the default.
    clip_per_tensor: bool = option(
        False,
        "clip each tensor's gradient to --max-grad-norm on its own, as BertAdam (TAMT's train_kd.py) "
        "does; default: one global norm",
    )
    adam_eps: PositiveFloat = option(1e-8, "Adam's eps (BertAdam, TAMT's train_kd.py: 1e-6)", metavar="EPS")
    # BertAdam whole: the three options above at its values and no bias correction (`train.optim`)
    optimizer: Optimizer = option(
        "adamw",
        "adamw (torch's AdamW, TAMT's Tab. 1) or bertadam: BertAdam as TAMT's train_kd.py steps it, "
        "whole: each tensor's gradient clipped to --max-grad-norm on its own, eps 1e-6, weight decay "
        "0.01, no bias correction, a linear warm-up from lr 0 at the first step",
    )
    mixed_precision: Precision = option("no", "autocast precision")
    optimizer_in_backward: bool = option(
        False,
        "less memory: step each tensor inside the backward and free its gradient (no gradient "
        "clipping; one process, no fp16, no --grad-accum)",
    )
    seed: Seed = option(0, "data order, corruption, random init")
    # Left out of a search's identity, as `pretrain` leaves it out: it changes how the same steps
    # are computed (fused kernels, their rounding), not which steps are taken.
    compile: bool = option(
        False,
        "torch.compile TAMT's whole step (forward, loss, backward, clipping, optimizer, re-threshold) as "
        "one graph, its MLM head then over every position (one process, no fp16, no "
        "--optimizer-in-backward; else, and for other methods, the model and loss with dynamic shapes, "
        "and the re-threshold). On an H100, compiling the model and loss alone took a TAMT-MLM step at "
        "BERT-base 16 x 512 from 90 to 59 ms, after about 2.5 minutes of compiling per model; on a CPU "
        "compiled mask-training steps ran several times slower",
        result=False,
    )
    schedule_steps: PositiveInt | None = option(
        None,
        "the linear lr schedule's horizon (lr 0 there), the search stopping at --steps part-way down it; "
        "default for TAMT: where TAMT (Liu et al. 2022, Tab. 2) stopped its 27,920-step schedule at "
        "this sparsity, --steps / (Tab. 2's step / 27,920), e.g. 17,000/27,920 at 70%; give --steps "
        "itself for a schedule that ends at the stop; TAMT with --kd-data reference: train_kd.py's "
        "t_total on those data, int(2 epochs x sequences / --batch-size); IMP: each round decays "
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
        self._check_bertadam()
        self.train_config(self.lr or 1.0)  # what training will refuse (batch vs grad_accum, ...), now
        if self.task is not None and not self.search_method.task:
            on_tasks = " / ".join(m.name.upper() for m in searches if m.task)
            raise ConfigError(
                f"a task objective is for {on_tasks} only ({self.verb.upper()} trains on a corpus)"
            )
        if self.task is not None and self.corpus:
            raise ConfigError("give either corpus (IMP on MLM) or task (task-specific IMP), not both")
        if self.dev and self.dev_fraction != type(self).__dataclass_fields__["dev_fraction"].default:
            raise FieldError("dev_fraction", "carves dev text from the corpus: with dev given, leave it out")
        if self.task is None and not self.corpus:
            raise FieldError("corpus", "required: text files or saved datasets to search on (IMP: or a task)")
        if self.task is not None:  # a task that does not exist, or whose data has no source, said now
            readable_task(self.task, self.data_dir)
        if self.search_method.resolve is not None:
            self.method = self.search_method.resolve(self.method, self)
        if self.search_method.check_steps is not None:  # e.g. IMP's rounds: said before any work
            self.search_method.check_steps(self.method, self.steps)
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
                    f"paper: the paper's budget is {steps} steps of a {horizon or 'default'}-step schedule; "
                    "leave steps and schedule_steps out, or leave paper out"
                )
            self.steps, self.schedule_steps = steps, horizon
        elif self.steps is None:
            alt = " (or the paper's budget: paper, --paper)" if self.search_method.paper_budget else ""
            raise FieldError("steps", f"required{alt}", None)

    def _check_bertadam(self) -> None:
        """`optimizer: bertadam` is BertAdam whole: its eps, weight decay and per-tensor clipping are
        its own (an option at another value contradicts it), on float32 scores, clipped in the loop."""
        if self.optimizer != "bertadam":
            return
        own = {"adam_eps": (self.adam_eps, 1e-8, BERTADAM["adam_eps"])}
        own["weight_decay"] = (self.weight_decay, 0.0, BERTADAM["weight_decay"])
        for name, (value, default, bert) in own.items():
            if value not in (default, bert):
                raise FieldError(name, f"BertAdam's is {bert:g} (optimizer bertadam): leave it out", value)
        if self.optimizer_in_backward:
            raise ConfigError(
                "optimizer bertadam clips each gradient before its step: no optimizer_in_backward"
            )
        if getattr(self.method, "score_dtype", "float32") != "float32":
            raise ConfigError("optimizer bertadam steps float32 scores (score_dtype bfloat16 needs adamw)")

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
        each at the value the search uses; the method's own from its registry entry
        (`methods.registry.Method.settings`), so a method records none of another's."""
        paths = lambda ps: [str(p) for p in ps] if ps else None  # noqa: E731
        method = self.search_method
        resolved = {
            "model": str(self.model),
            "corpus": paths(self.corpus),
            "dev": paths(self.dev),
            "lr": lr,
            "schedule_steps": self.horizon,
            **({} if method.task else {"task": OMIT, "data_dir": OMIT}),
        }
        # the method by its name and its config's own part; paper by the steps and schedule it sets
        skip = ("method", "out", "paper", "save_at", "corpus_tokens")
        own = run_identity(self, leave_out=skip, values=resolved, options=True)
        return {"method": method.name, **own, **method.settings(self.method)}

    def train_config(self, lr: float, *, metric: str | None = None, greater: bool = True) -> TrainConfig:
        """The training loop's settings of this search at learning rate `lr` (`metric`: a task's dev
        metric for the best checkpoint). `optimizer: bertadam` brings BertAdam's own eps, weight decay
        and per-tensor clipping."""
        bert = self.optimizer == "bertadam"
        return TrainConfig(
            max_steps=self.steps,
            schedule_steps=self.horizon if self.horizon != self.steps else None,
            batch_size=self.batch_size,
            lr=lr,
            weight_decay=BERTADAM["weight_decay"] if bert else self.weight_decay,
            warmup_steps=self.warmup_steps,
            grad_accum=self.grad_accum,
            max_grad_norm=self.max_grad_norm
            if self.max_grad_norm > 0 and not self.optimizer_in_backward
            else None,
            clip="per-tensor" if self.clip_per_tensor or bert else "global",
            adam_eps=BERTADAM["adam_eps"] if bert else self.adam_eps,
            optimizer=self.optimizer,
            optimizer_in_backward=self.optimizer_in_backward,
            eval_every=self.eval_every,
            save_every=self.save_every,
            log_every=self.log_every,
            seed=self.seed,
            mixed_precision=self.mixed_precision,
            compile=self.compile,
            metric=metric,
            greater_is_better=greater,
            progress=self.progress,
            desc=f"search {self.verb}",
        )
