"""What the one training loop (`train.loop.train`) takes and gives: its settings (`TrainConfig`), what
its hooks see (`TrainState`), its result (`TrainResult`) and the types of the functions a caller
hands over. Torch-free (the types are named, not imported): verbs' configs build a `TrainConfig`
when their options are parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..core.checks import (
    LearningRate,
    NonNegInt,
    PositiveFloat,
    PositiveInt,
    Seconds,
    Seed,
    WeightDecay,
    check_config,
)
from ..core.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from torch import Tensor, nn

Batch = dict[str, "Tensor"]
LossFn = Callable[["nn.Module", Batch], "Tensor | tuple[Tensor, dict[str, float]]"]
CollateFn = Callable[[list[Any], list[int]], Batch]
EvalFn = Callable[["nn.Module"], dict[str, float]]
# An eval_fn may also leave, at each call, JSON-ready data about that evaluation in its `payload`
# attribute (a task's per-example predictions: `tasks.objective`): the loop keeps it for the best and
# the final records (`TrainResult.payload`), so that the caller has the one of the record it reports.
PAYLOAD = "payload"
# micro-step -> (dataset indices of its global micro-batch, its epoch): a function of the step alone
Sampler = Callable[[int], tuple[list[int], int]]
OptimizerFn = Callable[[Any, "TrainConfig"], "torch.optim.Optimizer"]  # (params, config) -> optimizer


@dataclass
class TrainConfig:
    max_steps: PositiveInt  # optimizer steps
    batch_size: PositiveInt = 16  # global batch per optimizer step (split over processes and accumulation)
    lr: LearningRate = 5e-5
    weight_decay: WeightDecay = 0.0
    warmup_steps: NonNegInt = 0
    schedule: Literal["linear", "constant"] = "linear"
    # The linear schedule's horizon: the lr reaches 0 at this step (None: at max_steps). Beyond
    # max_steps, training stops part-way down one longer schedule, as TAMT's masks are checkpoints
    # of its 27,920-step run (`methods.tamt.config.paper_schedule_steps`).
    schedule_steps: PositiveInt | None = None
    grad_accum: PositiveInt = 1
    max_grad_norm: PositiveFloat | None = 1.0  # None: no clipping (0 would zero every gradient)
    # "global": one norm over all parameters (torch's clip_grad_norm_); "per-tensor": each tensor
    # clipped to max_grad_norm on its own, as BertAdam does (TAMT's train_kd.py optimizer)
    clip: Literal["global", "per-tensor"] = "global"
    adam_eps: PositiveFloat = 1e-8  # AdamW's eps (torch's default; BertAdam's is 1e-6)
    # "adamw": torch's AdamW (`train.optim.AdamW`); "bertadam": `train.optim.BertAdam` (TAMT-KD's);
    # "adamax": `train.optim.MtdnnAdamax` (MT-DNN's). The last two have no bias correction and their
    # warmup_linear schedule: the warm-up at k/W on step k, lr 0 at the first
    optimizer: Literal["adamw", "bertadam", "adamax"] = "adamw"
    eval_every: PositiveInt | None = None  # steps; None: only at the end (if an eval_fn is given)
    save_every: PositiveInt | None = 100  # steps between checkpoints; None: only at the end
    log_every: PositiveInt = 10
    seed: Seed = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    # Step each parameter inside the backward, as soon as its gradient is complete, and free that
    # gradient: the gradients never exist all at once (less peak memory), at the price of gradient
    # clipping (the global norm is not known yet), accumulation, fp16 loss scaling and DDP.
    optimizer_in_backward: bool = False
    fused: bool = False  # torch's fused AdamW kernel (one launch for all parameters: GPU speed)
    compile: bool = False  # torch.compile the loss computation (model + loss), in place
    time_limit_s: Seconds | None = None  # seconds of this piece: then checkpoint and stop (see module)
    metric: str | None = None  # key of eval_fn's dict that decides the best checkpoint
    greater_is_better: bool = True
    progress: bool = True
    desc: str = "train"

    def __post_init__(self) -> None:
        check_config(self)  # types and ranges, and no nan / inf (AdamW would raise a ValueError)
        if self.schedule_steps is not None and self.schedule_steps < self.max_steps:
            raise ConfigError(
                f"schedule_steps {self.schedule_steps} ends before max_steps {self.max_steps}: the "
                "schedule's horizon is at or after the last step"
            )
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}"
            )
        if self.optimizer_in_backward and (
            self.max_grad_norm is not None or self.grad_accum > 1 or self.mixed_precision == "fp16"
        ):
            raise ConfigError(
                "optimizer_in_backward steps each parameter before the others have gradients: it needs "
                "max_grad_norm None (no clipping), grad_accum 1 and no fp16 loss scaling"
            )


@dataclass
class TrainState:
    """What hooks see. `step` counts finished optimizer steps."""

    step: int
    model: nn.Module  # unwrapped (not the DDP wrapper)
    optimizer: torch.optim.Optimizer
    accelerator: Accelerator
    config: TrainConfig
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    in_graph: Any = None  # what a compiled whole step's in-graph hook returned (`whole_step.GraphHook`)


@dataclass
class TrainResult:
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)  # [{"step": s, **metrics}]
    best: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    train_time_s: float = 0.0  # optimisation only, evaluation excluded
    resumed_from: int = 0
    tokens: int = 0  # non-padding input tokens trained on (this process's share times the processes)
    stopped: bool = False  # the piece's time limit came first: checkpointed, not finished
    # the eval_fn's payloads (`PAYLOAD`) by step (a string: JSON's keys), of the best record and the
    # last one only: checkpointed and saved with the rest, not inside the records (one copy each)
    payloads: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def payload(self, record: dict[str, Any] | None) -> Any:
        """The eval_fn's payload at eval `record` (the best or the final one); None: it left none."""
        return self.payloads.get(str(record["step"])) if record else None

    def keep_payload(self, record: dict[str, Any], payload: Any) -> None:
        """Keep `payload` of `record`, the latest evaluation, and drop those of records that can no
        longer be reported (neither the best nor the latest): at most two, a few KB in all."""
        if payload is not None:
            self.payloads[str(record["step"])] = payload
        kept = {str(r["step"]) for r in (self.best, record) if r is not None}
        self.payloads = {k: v for k, v in self.payloads.items() if k in kept}


def eval_payload(eval_fn: EvalFn) -> Any:
    """What `eval_fn` left at its last call (`PAYLOAD`); None when it leaves nothing."""
    return getattr(eval_fn, PAYLOAD, None)
