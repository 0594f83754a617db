"""One plain training loop for every method: mask search, IMP, fine-tuning, pre-training.

No Trainer subclasses: a caller hands over the model, the parameters to optimise, a dataset, a
collate function and a loss function, plus optional hooks, and gets back the eval history with the
best and final scores. What the loop owns:

* AdamW (optionally torch's fused kernel) with linear (or constant) decay after an optional
  warm-up, gradient clipping, gradient accumulation, mixed precision and optional `torch.compile`,
  on CPU, one GPU or several processes under `accelerate launch` (DDP). The batch size is
  *global*: each process takes its slice of every batch, so a run gives the same batches whatever
  the number of processes.
* Deterministic data order: the batch at step t is a function of (seed, t) alone, and so is every
  per-example random choice (the `seeds` handed to `collate_fn`). Resuming or adding processes does
  not change what the model sees.
* Checkpoints (trainable parameters, buffers such as masks and thresholds, optimizer, scheduler,
  RNG, extra state from the caller) written atomically every `save_every` steps and at the end;
  `train` resumes from the last one on its own. A JSON-lines log and a progress bar.
* Evaluation every `eval_every` steps on the main process, with the best score tracked (the
  papers report the best dev score during fine-tuning). Tokens per second (non-padding tokens)
  in the log and on the console line of each evaluation.
* A time limit per piece (`time_limit_s`): when it is up, the loop saves a checkpoint and returns
  with `stopped` set, writing no result; the same call later goes on from there, to the weights an
  uninterrupted run gives (a long run in pieces on a machine lent for minutes at a time).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import json
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs, broadcast_object_list
from torch import Tensor, nn

from ..core.checks import LearningRate, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Seed, check_config
from ..core.errors import ConfigError, TicketlabError
from ..core.files import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    exclusive,
    make_dir,
    open_append,
    read_json,
    remove_stale,
    to_json,
)
from ..core.progress import logs_above_bars, progress_bar
from .optim import AdamW
from .run_dir import CHECKPOINT

log_ = logging.getLogger(__name__)

Batch = dict[str, Tensor]
LossFn = Callable[[nn.Module, Batch], "Tensor | tuple[Tensor, dict[str, float]]"]
CollateFn = Callable[[list[Any], list[int]], Batch]
EvalFn = Callable[[nn.Module], dict[str, float]]
# micro-step -> (dataset indices of its global micro-batch, its epoch): a function of the step alone
Sampler = Callable[[int], tuple[list[int], int]]
OptimizerFn = Callable[[Any, "TrainConfig"], torch.optim.Optimizer]  # (params, config) -> optimizer

LOG = "log.jsonl"
RESULT = "train_result.json"


@dataclass
class TrainConfig:
    max_steps: PositiveInt  # optimizer steps
    batch_size: PositiveInt = 16  # global batch per optimizer step (split over processes and accumulation)
    lr: LearningRate = 5e-5
    weight_decay: NonNegFloat = 0.0
    warmup_steps: NonNegInt = 0
    schedule: Literal["linear", "constant"] = "linear"
    # The linear schedule's horizon: the lr reaches 0 at this step (None: at max_steps). Beyond
    # max_steps, training stops part-way down one longer schedule, as TAMT's masks are checkpoints
    # of its 27,920-step run (`methods.tamt.paper_schedule_steps`).
    schedule_steps: PositiveInt | None = None
    grad_accum: PositiveInt = 1
    max_grad_norm: PositiveFloat | None = 1.0  # None: no clipping (0 would zero every gradient)
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
    time_limit_s: PositiveFloat | None = None  # seconds of this piece: then checkpoint and stop (see module)
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- determinism


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def example_seed(seed: int, epoch: int, index: int) -> int:
    """A per-example seed that depends only on (run seed, epoch, example index)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def batch_indices(n: int, batch_size: int, micro_step: int, seed: int) -> tuple[list[int], int]:
    """Example indices of global micro-batch `micro_step` and its epoch: reshuffled every epoch."""
    per_epoch = max(1, math.ceil(n / batch_size))
    epoch, k = divmod(micro_step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[k * batch_size : (k + 1) * batch_size].tolist(), epoch


# --------------------------------------------------------------------------- checkpoints


def _trainable_state(model: nn.Module) -> dict[str, Tensor]:
    state = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
    state.update({n: b.detach().cpu() for n, b in model.named_buffers()})
    return state


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": repr(random.getstate()),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(ast.literal_eval(state["python"]))


def load_trainable_state(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """Load a checkpoint's trainable parameters and buffers into `model`, refusing names it does not
    have (e.g. the stored masks of TAMT checkpoints written before the masks became thresholds)."""
    missing = set(state) - set(dict(model.named_parameters())) - set(dict(model.named_buffers()))
    if missing:
        raise TicketlabError(
            f"{path}: checkpoint does not match this model (e.g. {sorted(missing)[0]}); "
            "delete it to restart from scratch"
        )
    model.load_state_dict(state, strict=False)


@contextlib.contextmanager
def restoring(path: Path) -> Any:
    """Restoring what checkpoint `path` holds: a value of the wrong kind or shape in it (a Python
    RNG state that is no state, an optimizer state of other tensors) is one line naming the file."""
    try:
        yield
    except TicketlabError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, SyntaxError, AttributeError) as e:
        what = (str(e).splitlines() or [""])[0][:200]
        raise TicketlabError(
            f"{path}: corrupt checkpoint ({type(e).__name__}: {what}); delete it to restart from scratch"
        ) from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file: say which one
        raise TicketlabError(f"{path}: corrupt checkpoint, delete it to restart from scratch ({e})") from None


# --------------------------------------------------------------------------- the loop


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    warm, total = config.warmup_steps, config.schedule_steps or config.max_steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if config.schedule == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def restart_optimizer(state: TrainState) -> None:
    """Make the optimizer and schedule what a newly built pair would be, from the next step on:
    moments and step counts dropped, the schedule at its first step (IMP after each pruning, as
    its reference codes rebuild both). In place, so checkpoints and the loop's references hold."""
    inner = getattr(state.optimizer, "optimizer", state.optimizer)  # accelerate's wrapper
    inner.state.clear()
    sched = state.scheduler
    if sched is None:
        raise RuntimeError("restart_optimizer needs the TrainState's scheduler")
    sched.last_epoch = 0  # as a new LambdaLR after its constructor's first step
    for group, base, fn in zip(inner.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
        group["lr"] = base * fn(0)
    sched._last_lr = [g["lr"] for g in inner.param_groups]


def _adamw(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """The loop's own optimizer. bf16 parameters: stochastic rounding; `fused` is torch's kernel for
    the others."""
    return AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=config.fused or None)


class _LossModule(nn.Module):
    """The loss computation as one module, so that DDP wraps *it*: a `loss_fn` may then call any part
    of the model (e.g. the encoder, then the MLM head on the masked positions only) and DDP still
    synchronises the gradients. `loss_fn` receives the unwrapped model."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch):
        return self.loss_fn(self.model, batch)


def make_accelerator(config: TrainConfig | str = "no") -> Accelerator:
    """The one accelerator every training path uses (`config`: a TrainConfig or its mixed_precision).

    Every process derives the same masks from the same synchronised weights and scores, and
    BERT-like models keep no running statistics, so DDP need not re-broadcast the buffers (masks,
    thresholds, position ids) before every forward (a search checks at the end that the ranks agree). torch
    calls that option deprecated in favour of one accelerate cannot pass yet."""
    warnings.filterwarnings("ignore", message=".*broadcast_buffers. is deprecated", category=FutureWarning)
    precision = config if isinstance(config, str) else config.mixed_precision
    # accelerate keeps one mixed-precision setting per process and refuses another; a process that
    # trains twice (the demo: a bf16 pre-training, then fp32 searches) resets it. The process group
    # (PartialState) is kept.
    if AcceleratorState._shared_state.get("_mixed_precision", precision) != precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    acc = Accelerator(
        mixed_precision=precision,
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != acc.num_processes:  # e.g. CPU processes that accelerate did not join into one group
        raise ConfigError(
            f"{launched} processes were launched but accelerate sees {acc.num_processes}: on CPUs set "
            "ACCELERATE_USE_CPU=true (`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu "
            "--num_processes 2 --no_python ticketlab ...`)"
        )
    return acc


def train(
    model: nn.Module,
    params: Iterable[nn.Parameter] | Sequence[dict[str, Any]],
    dataset: Sequence[Any],
    collate_fn: CollateFn,
    loss_fn: LossFn,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    eval_fn: EvalFn | None = None,
    after_step: Callable[[TrainState], None] | None = None,
    extra_state: tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], None]] | None = None,
    accelerator: Accelerator | None = None,
    resume: bool = True,
    sampler: Sampler | None = None,
    optimizer: OptimizerFn | None = None,
) -> TrainResult:
    """Optimise `params` of `model` on `dataset` for `config.max_steps` steps; see the module docstring.

    `loss_fn(model, batch)` returns the loss (optionally with a dict of numbers to log). `after_step`
    runs after every optimizer step (TAMT re-thresholds its masks there, IMP prunes and rewinds).
    `extra_state` is a (get, set) pair for state outside the model that a resume must restore
    (restored before the model's tensors). `sampler(micro_step)` gives the batches instead of the
    loop's shuffled order (multi-task learning: each batch from one task; `train.batches.MultiTaskData`);
    `optimizer(params, config)` builds the optimizer instead of AdamW (ticket sharing's MaskedAdamW).
    With `out_dir`, a finished run is not repeated: its saved result is returned.
    """
    if len(dataset) == 0:
        raise TicketlabError("the training set is empty")
    out = Path(out_dir) if out_dir is not None else None
    if config.time_limit_s is not None and out is None:
        raise ConfigError("a time limit needs an out_dir: the checkpoint the next piece goes on from")
    if out is not None and resume and (out / RESULT).is_file():
        return TrainResult(**read_json(out / RESULT, "training result"))

    acc = accelerator or make_accelerator(config)
    owner = out is not None and acc.is_main_process
    if owner:  # only the main process writes: another one making `out` first races its claim
        make_dir(out)
    with exclusive(out, "run") if owner else contextlib.nullcontext():  # a second process is refused
        if owner:
            remove_stale(out)  # e.g. a checkpoint write a kill -9 interrupted
        hooks = (eval_fn, after_step, extra_state, optimizer)
        with logs_above_bars():  # dev evaluations print above the bar
            loop = _Loop(model, params, (dataset, collate_fn, loss_fn, sampler), config, out, hooks, acc)
            if resume:
                loop.resume()
            loop.open_log()
            return loop.run()


def _truncate_log(path: Path, step: int) -> None:
    """Drop the records of steps after `step` (the resumed run logs them again): each step once."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, AttributeError, RecursionError):
            record = json.loads(line)
            at = record.get("step", record.get("eval", {}).get("step"))
            if isinstance(at, int) and at > step:
                continue
        keep.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in keep))


def step_in_backward(optimizer: torch.optim.Optimizer) -> list[Any]:
    """Make every parameter of `optimizer` take its step the moment its gradient is complete (once
    per backward: the gradients of a tied weight's uses are summed first) and drop that gradient.

    The step is the optimizer's own (its state, its param group's current learning rate), so
    checkpoints and schedulers are unchanged; the loop's `optimizer.step()` then finds no gradient
    left and does nothing. Returns the hook handles (`.remove()` undoes it).
    """
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the torch optimizer

    def hook(param: Tensor) -> None:
        inner.step()  # `param` is the only one holding a gradient: the others were stepped and freed
        param.grad = None

    return [p.register_post_accumulate_grad_hook(hook) for g in inner.param_groups for p in g["params"]]


def _check_finite_loss(
    losses: list[float], step: int, config: TrainConfig, acc: Accelerator, ckpt: Path | None
) -> None:
    """Stop before the optimizer step when a loss is nan or inf: the step would write non-finite
    weights, and every later step would train a constant predictor whose score looks like a result.
    All processes agree first (one of them alone raising would leave the others in an all-reduce)."""
    bad = next((v for v in losses if not math.isfinite(v)), None)
    if acc.num_processes > 1:
        flag = torch.tensor([0.0 if bad is None else 1.0], device=acc.device)
        if float(acc.reduce(flag, reduction="sum")) and bad is None:
            bad = float("nan")  # another process saw it
    if bad is None:
        return
    kept = f"; the checkpoint in {ckpt.parent} is kept" if ckpt is not None and ckpt.is_file() else ""
    raise TicketlabError(
        f"{config.desc}: the training loss is {bad} at step {step} (lr {config.lr:g}): the run diverged; "
        f"try a lower --lr, or check the model and data for non-finite values{kept}"
    )


def _eval_line(desc: str, record: dict[str, Any], max_steps: int, tokens_per_s: float | None = None) -> str:
    """One short line per dev evaluation: `search tamt step 50/300 dev: mlm_loss 6.712, kd_loss 0.0612`
    (and the training throughput so far, e.g. `; 51,200 tokens/s`)."""
    shown = [f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float)]  # not step, counts
    speed = f"; {tokens_per_s:,.0f} tokens/s" if tokens_per_s else ""
    return f"{desc} step {record['step']}/{max_steps} dev: {', '.join(shown[:4])}{speed}"


def _batch_tokens(batch: Batch) -> int:
    """Non-padding tokens of a batch (all of `input_ids` when it has no attention mask)."""
    mask = batch.get("attention_mask")
    if isinstance(mask, Tensor):
        return int(mask.sum())
    ids = batch.get("input_ids")
    return ids.numel() if isinstance(ids, Tensor) else 0


def _time_up(started: float, config: TrainConfig, acc: Accelerator) -> bool:
    """Whether this piece's time limit has passed; every process follows the main one's clock."""
    if config.time_limit_s is None:
        return False
    up = [time.monotonic() - started >= config.time_limit_s]
    if acc.num_processes > 1:
        broadcast_object_list(up)
    return bool(up[0])


@dataclass
class _Window:
    """What the loop accumulates between two log lines (losses per key) or over one piece (tokens,
    time: the console's throughput)."""

    values: dict[str, list[float]] = field(default_factory=dict)
    tokens: int = 0
    time: float = 0.0

    def add(self, tokens: int, took: float) -> None:
        self.tokens, self.time = self.tokens + tokens, self.time + took

    def tokens_per_s(self) -> float | None:
        return self.tokens / self.time if self.time > 0 else None


class _Loop:
    """One call of `train`: the prepared model and optimizer, the checkpoint, the log and the loop.
    Each method is one part of a step; `run` strings them together."""

    def __init__(
        self,
        model: nn.Module,
        params: Iterable[Any],
        data: tuple[Sequence[Any], CollateFn, LossFn, Sampler | None],
        config: TrainConfig,
        out: Path | None,
        hooks: tuple[EvalFn | None, Callable[[TrainState], None] | None, Any, OptimizerFn | None],
        acc: Accelerator,
    ):
        self.dataset, self.collate_fn, loss_fn, self.sampler = data
        self.eval_fn, self.after_step, self.extra_state, make_optimizer = hooks
        self.config, self.out, self.acc = config, out, acc
        self.started = time.monotonic()
        seed_everything(config.seed)
        self.raw_model = model
        optimizer = (make_optimizer or _adamw)(params, config)
        self.scheduler = make_scheduler(optimizer, config)
        loss_module = _LossModule(model, loss_fn)
        if config.compile:  # in place: parameter names, hence checkpoints, stay those of the model
            loss_module.compile(dynamic=True)  # MLM's masked positions vary in number per batch
        self.model, self.optimizer = acc.prepare(loss_module, optimizer)
        if config.optimizer_in_backward:
            if acc.num_processes > 1:  # DDP averages the gradients only after the backward
                raise ConfigError("optimizer_in_backward does not work with several processes (DDP)")
            step_in_backward(self.optimizer)
        self.state = TrainState(0, model, self.optimizer, acc, config, self.scheduler)
        self.result = TrainResult(steps=0)
        self.ckpt = out / CHECKPOINT if out is not None else None
        self.log_file: Any = None
        self.window, self.piece = _Window(), _Window()  # since the last log line; this call

    # ------------------------------------------------------------------ checkpoint and log

    def resume(self) -> None:
        """Go on from the checkpoint, if there is one: weights, optimizer, schedule, RNG, result."""
        if self.ckpt is None or not self.ckpt.is_file():
            return
        saved = load_checkpoint(self.ckpt)
        missing = sorted({"step", "model", "optimizer", "scheduler", "rng", "result"} - set(saved))
        if missing:  # e.g. one written by ticket sharing's own loop, before it ran on this one
            raise TicketlabError(
                f"{self.ckpt}: not a checkpoint of this training loop (no {', '.join(missing)}); "
                "delete it to restart from scratch"
            )
        with restoring(self.ckpt):
            if self.extra_state is not None:  # first: it may say what the saved tensors are (which
                self.extra_state[1](saved.get("extra", {}))  # task's mask a model's buffers held)
            load_trainable_state(self.raw_model, saved["model"], self.ckpt)
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            _set_rng_state(saved["rng"])
            self.result = TrainResult(**saved["result"])
        self.result.stopped = False  # a new piece
        self.result.resumed_from = self.state.step = saved["step"]

    def open_log(self) -> None:
        if self.out is not None and self.acc.is_main_process:
            _truncate_log(self.out / LOG, self.state.step)
            self.log_file = open_append(self.out / LOG)  # closed by run

    def save_checkpoint(self) -> None:
        if self.ckpt is None or not self.acc.is_main_process:
            return
        payload = {
            "step": self.state.step,
            "model": _trainable_state(self.raw_model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
            "extra": self.extra_state[0]() if self.extra_state is not None else {},
            "result": self.result.to_dict(),
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write_bytes(self.ckpt, buf.getvalue())

    def log(self, record: dict[str, Any]) -> None:
        if self.log_file is not None:
            self.log_file.write(to_json(record) + "\n")
            self.log_file.flush()

    # ------------------------------------------------------------------ one step

    def micro_batch(self, micro_step: int) -> Batch:
        """This process's share of micro-batch `micro_step`, on the device."""
        config, n = self.config, len(self.dataset)
        rank, world = self.acc.process_index, self.acc.num_processes
        if self.sampler is not None:
            idx, epoch = self.sampler(micro_step)
        else:
            idx, epoch = batch_indices(n, config.batch_size // config.grad_accum, micro_step, config.seed)
        mine = [idx[i] for i in range(len(idx)) if i * world // len(idx) == rank] if world > 1 else idx
        batch = self.collate_fn(
            [self.dataset[i] for i in mine], [example_seed(config.seed, epoch, i) for i in mine]
        )
        return batch

    def accumulate(self) -> int:
        """Forward and backward over the step's micro-batches; returns the step's tokens (all
        processes). Gradients are all-reduced once per optimizer step, on the last micro-batch."""
        config, acc, tokens = self.config, self.acc, 0
        for a in range(config.grad_accum):
            batch = self.micro_batch(self.state.step * config.grad_accum + a)
            tokens += _batch_tokens(batch) * acc.num_processes
            batch = {k: v.to(acc.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            last = a == config.grad_accum - 1
            with contextlib.nullcontext() if last else acc.no_sync(self.model), acc.autocast():
                out = self.model(batch)
                loss, logs = out if isinstance(out, tuple) else (out, {})
                acc.backward(loss / config.grad_accum)
            for k, v in {"loss": float(loss.detach()), **logs}.items():
                self.window.values.setdefault(k, []).append(float(v))
        return tokens

    def optimizer_step(self) -> None:
        config = self.config
        _check_finite_loss(
            self.window.values["loss"][-config.grad_accum :], self.state.step + 1, config, self.acc, self.ckpt
        )
        if config.max_grad_norm is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            self.acc.clip_grad_norm_(params, config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        if self.after_step is not None:
            self.after_step(self.state)

    def log_window(self, bar: Any) -> None:
        """The mean training losses since the last line, the learning rate and the throughput."""
        means = {k: sum(v) / len(v) for k, v in self.window.values.items()}
        bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
        speed = self.window.tokens_per_s()
        self.log(
            {
                "step": self.state.step,
                "lr": self.scheduler.get_last_lr()[0],
                **means,
                "time_s": round(self.result.train_time_s, 3),
                "tokens_per_s": round(speed, 1) if speed is not None else None,
            }
        )
        self.window = _Window()

    def evaluate(self) -> dict[str, Any]:
        """Score on dev (main process; the others receive it), track the best, log it."""
        config, result = self.config, self.result
        self.raw_model.eval()
        metrics = [self.eval_fn(self.raw_model) if self.acc.is_main_process else None]
        self.raw_model.train()
        if self.acc.num_processes > 1:
            broadcast_object_list(metrics)
        record = {"step": self.state.step, **metrics[0]}
        result.history.append(record)
        if config.metric is not None:
            if config.metric not in record:
                raise TicketlabError(f"eval returned no metric '{config.metric}' (got {sorted(metrics[0])})")
            better = (lambda a, b: a > b) if config.greater_is_better else (lambda a, b: a < b)
            if result.best is None or better(record[config.metric], result.best[config.metric]):
                result.best = record
        self.log({"eval": record})
        if config.progress and self.acc.is_main_process:  # on the console too, not only in the log file
            log_.info(_eval_line(config.desc, record, config.max_steps, self.piece.tokens_per_s()))
        return record

    def after_eval(self, bar: Any, record: dict[str, Any]) -> None:
        metric, best = self.config.metric, self.result.best
        if metric is not None and best is not None:  # the last dev score and the best so far
            bar.set_description(f"{self.config.desc} {metric}={record[metric]:.4g} (best {best[metric]:.4g})")

    # ------------------------------------------------------------------ the loop

    def step(self, bar: Any) -> bool:
        """One optimizer step with its logging, evaluation and checkpoint; False when the piece's
        time is up (checkpointed, `result.stopped`)."""
        config, state, result = self.config, self.state, self.result
        t0 = time.perf_counter()
        tokens = self.accumulate()
        self.optimizer_step()
        took = time.perf_counter() - t0
        result.train_time_s += took
        result.tokens += tokens
        self.window.add(tokens, took)
        self.piece.add(tokens, took)
        result.steps = state.step
        bar.update(1)
        if state.step % config.log_every == 0 or state.step == config.max_steps:
            self.log_window(bar)
        if self.eval_fn is not None and config.eval_every and state.step % config.eval_every == 0:
            self.after_eval(bar, self.evaluate())
        if config.save_every and state.step % config.save_every == 0 and state.step < config.max_steps:
            self.save_checkpoint()
        if state.step < config.max_steps and _time_up(self.started, config, self.acc):
            result.stopped = True  # the next call goes on from this checkpoint
            self.save_checkpoint()
            return False
        return True

    def finish(self) -> None:
        """The last evaluation (unless the last step had one), the final checkpoint and the result."""
        result = self.result
        if self.eval_fn is not None and (not result.history or result.history[-1]["step"] != self.state.step):
            self.evaluate()
        result.final = result.history[-1] if result.history else None
        self.save_checkpoint()
        if self.out is not None and self.acc.is_main_process:
            atomic_write_json(self.out / RESULT, result.to_dict())

    def run(self) -> TrainResult:
        config = self.config
        bar = progress_bar(
            total=config.max_steps,
            initial=self.state.step,
            desc=config.desc,
            disable=not (config.progress and self.acc.is_local_main_process),
            dynamic_ncols=True,
        )
        self.model.train()
        try:
            while self.state.step < config.max_steps:
                if not self.step(bar):
                    break
            if not self.result.stopped:
                self.finish()
        finally:
            bar.close()
            if self.log_file is not None:
                self.log_file.close()
        self.acc.wait_for_everyone()
        return self.result
