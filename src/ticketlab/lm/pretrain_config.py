"""The settings of `pretrain` (masked-LM pre-training), in a module that imports neither torch nor
transformers: `ticketlab pretrain --help` and `ticketlab demo --help` build on `PretrainConfig`
(its field metadata is the CLI's help text, `core.checks.option`), and parsing must not wait seconds
for those imports. `lm/pretrain.py` trains; it re-exports these names (`ticketlab.lm.pretrain.PretrainConfig`
is this class).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from ..core.checks import (
    BlockLength,
    Fraction,
    LearningRate,
    Minutes,
    NonNegInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Range,
    Seconds,
    Seed,
    WeightDecay,
    check_config,
    check_one_of,
    option,
)
from ..core.errors import ConfigError

# (hidden, layers, heads, intermediate): Turc et al. 2019, "Well-Read Students Learn Better".
SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (128, 2, 2, 512),
    "mini": (256, 4, 4, 1024),
    "small": (512, 4, 8, 2048),
    "medium": (512, 8, 8, 2048),
    "base": (768, 12, 12, 3072),
}
PRECISIONS = ("auto", "no", "bf16")
SAVE_DTYPES = ("float32", "float16", "bfloat16")
SHAPE_OVERRIDES = ("hidden", "layers", "heads", "intermediate", "positions")
# The ceiling of a model made from scratch, checked before anything is allocated: BERT-large has
# 3.4e8 parameters, and ten times that is more than one machine pre-trains (`--layers 100000` or
# `--vocab-size 1e12` was an allocation of terabytes). Each size is bounded on its own too.
MAX_SCRATCH_PARAMETERS = 4 * 10**9
MAX_VOCAB = 2**20  # a tokenizer's ids (BERT's 30522; the largest multilingual vocabularies 2.5e5)
Width = Annotated[int, Range(ge=1, le=2**15)]  # hidden, heads, positions: the widest encoders have 4096
Depth = Annotated[int, Range(ge=1, le=1024)]


@dataclass
class PretrainConfig:
    size: str = option("tiny", "model size preset", flag="--config-size", choices=tuple(SIZES))
    hidden: Width | None = option(None, "override the preset's hidden size")
    layers: Depth | None = option(None, "override the preset's layers size")
    heads: Width | None = option(None, "override the preset's heads size")
    intermediate: Annotated[int, Range(ge=1, le=2**17)] | None = option(
        None, "override the preset's intermediate size"
    )
    max_length: BlockLength = option(128, "tokens per training block")
    positions: Width | None = option(
        None, "position embeddings (default: --max-length; more for longer inputs)"
    )
    steps: PositiveInt | None = option(None, "optimizer steps")  # exactly one of steps / time_budget
    time_budget: Seconds | None = option(
        None, "training time; steps are set by timing a few", metavar="SECONDS"
    )
    batch_size: PositiveInt = option(32, "blocks per optimizer step")
    # A cap changes the blocks trained on: in the identity
    corpus_tokens: NonNegInt | None = option(
        None,
        "text tokens of --corpus to read, from its start (default: what --steps train on, 2 x steps x "
        "batch x length, plus the dev part carved from it; with --time-budget, or 0, the whole corpus)",
        metavar="N",
    )
    lr: LearningRate = option(1e-3, "peak learning rate")
    warmup_steps: NonNegInt | None = option(None, "default: 6% of the steps")
    weight_decay: WeightDecay = 0.01  # AdamW weight decay (BERT's 0.01)
    dropout: Fraction = option(0.1, "dropout of hidden states and attention probabilities")
    mlm_probability: OpenFraction = 0.15  # share of tokens masked for MLM (80% [MASK], 10% random, 10% kept)
    eval_every: PositiveInt | None = option(None, "steps between dev evaluations (default: 10 per run)")
    eval_blocks: PositiveInt = 256  # dev blocks scored at each evaluation
    save_every: PositiveInt = field(default=200, metadata={"result": False})  # steps between checkpoints
    seed: Seed = option(0, "weight init, data order, masking")
    progress: bool = option(True, "no progress bar", result=False)
    max_grad_norm: PositiveFloat | None = option(1.0, "gradient clipping (0: none)")  # API: None
    mixed_precision: str = option(
        "auto",
        "autocast (auto: bf16 on a GPU that has it, else none)",
        choices=PRECISIONS,
    )
    fused: bool | None = None  # torch's fused AdamW; None: on a GPU
    compile: bool = option(False, "torch.compile the model and loss", result=False)
    max_minutes: Minutes | None = option(
        None,
        "this piece's time: checkpoint and stop; the same command goes on (e.g. 9 for 10-minute slots)",
        result=False,
    )
    save_dtype: str = option(
        "float32",
        "dtype of the written weights (float16/bfloat16 halve the file)",
        choices=SAVE_DTYPES,
    )

    def __post_init__(self) -> None:
        check_config(self)
        check_one_of("size", self.size, SIZES)
        if (self.steps is None) == (self.time_budget is None):
            raise ConfigError("give exactly one of steps and time_budget")
        hidden, _, heads, _ = self.shape
        if hidden % heads:
            raise ConfigError(f"hidden size {hidden} is not divisible by the number of heads {heads}")
        if self.positions is not None and self.positions < self.max_length:
            raise ConfigError(f"positions ({self.positions}) must be >= max_length ({self.max_length})")
        self.check_size(0)
        check_one_of("mixed_precision", self.mixed_precision, PRECISIONS)
        check_one_of("save_dtype", self.save_dtype, SAVE_DTYPES)

    def check_size(self, vocab: int) -> None:
        """Refuse (one line) a model from scratch of this shape and `vocab` embeddings (0: not known
        yet) beyond `MAX_SCRATCH_PARAMETERS`, before anything is allocated."""
        hidden, layers, _, intermediate = self.shape
        positions = self.positions or self.max_length
        if vocab > MAX_VOCAB:
            raise ConfigError(
                f"a vocabulary of {vocab} ids is more than a model made here may have ({MAX_VOCAB})"
            )
        n = (vocab + positions) * hidden + layers * (4 * hidden * hidden + 2 * hidden * intermediate)
        if n > MAX_SCRATCH_PARAMETERS:
            words = f"{vocab} ids, " if vocab else ""
            raise ConfigError(
                f"a model of {n:.2g} parameters ({words}hidden {hidden}, {layers} layers, intermediate "
                f"{intermediate}, {positions} positions): more than the {MAX_SCRATCH_PARAMETERS:.0e} a "
                "model made from scratch may have"
            )

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(hidden, layers, heads, intermediate) after the overrides."""
        base = SIZES[self.size]
        given = (self.hidden, self.layers, self.heads, self.intermediate)
        return tuple(g if g is not None else b for g, b in zip(given, base, strict=True))  # type: ignore[return-value]
