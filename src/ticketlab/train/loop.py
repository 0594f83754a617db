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
* Evaluation every `eval_every` steps on the main process, with the best score tracked (the papers
  report the best dev score during fine-tuning) and the eval's `config.PAYLOAD` kept for the best and
  final records. Tokens per second (non-padding tokens) in the log and each evaluation's console line.
* A time limit per piece (`time_limit_s`): when it is up, the loop saves a checkpoint and returns
  with `stopped` set, writing no result; the same call later goes on from there, to the weights an
  uninterrupted run gives (a long run in pieces on a machine lent for minutes at a time).

Here: `train` and `_Loop`. Beside it: `config` (TrainConfig, TrainState, TrainResult), `schedule`,
`checkpoint`, `window` (what the loop reports: losses, throughput, the evaluations' lines),
`processes` (accelerate, DDP) and `determinism` (seeds, batch order).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from torch import Tensor, nn

from ..core.errors import ConfigError, TicketlabError
from ..core.files.atomic import atomic_write_json, make_dir, remove_stale, to_json
from ..core.files.inputs import read_json
from ..core.files.owned import exclusive, open_append
from ..core.progress import logs_above_bars, progress_bar
from .checkpoint import (
    check_loop_checkpoint,
    load_loop_checkpoint,
    load_trainable_state,
    restore_trained,
    restoring,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainable_state,
    truncate_log,
)
from .config import (
    Batch,
    CollateFn,
    EvalFn,
    LossFn,
    OptimizerFn,
    Sampler,
    TrainConfig,
    TrainResult,
    TrainState,
    eval_payload,
)
from .determinism import batch_indices, example_seed, seed_everything
from .processes import LossModule, check_finite_loss, make_accelerator, time_up
from .run_dir import CHECKPOINT
from .schedule import adamw, clip_gradients, make_scheduler, step_in_backward
from .whole_step import GraphHook, WholeStep, eligible
from .window import Window, eval_line

log_ = logging.getLogger(__name__)

LOG = "log.jsonl"
RESULT = "train_result.json"


# --------------------------------------------------------------------------- the loop


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
    graph_hook: GraphHook | None = None,
) -> TrainResult:
    """Optimise `params` of `model` on `dataset` for `config.max_steps` steps; see the module docstring.

    `loss_fn(model, batch)` returns the loss (optionally with a dict of numbers to log). `after_step`
    runs after every optimizer step (TAMT re-thresholds its masks there, IMP prunes and rewinds).
    `extra_state` is a (get, set) pair for state outside the model that a resume must restore
    (restored before the model's tensors). `sampler(micro_step)` gives the batches instead of the
    loop's shuffled order (multi-task learning: each batch from one task; `train.batches.MultiTaskData`);
    `optimizer(params, config)` builds the optimizer instead of AdamW (ticket sharing's MaskedAdamW).
    With `out_dir`, a finished run is not repeated: its saved result is returned, and `model` holds
    its trained weights again (`checkpoint.restore_trained`). With `graph_hook`
    and `config.compile`, each step is one compiled graph with the hook's work inside it
    (`whole_step.WholeStep`, where it can hold the run's settings; else the model and loss compiled).
    """
    if len(dataset) == 0:
        raise TicketlabError("the training set is empty")
    out = Path(out_dir) if out_dir is not None else None
    if config.time_limit_s is not None and out is None:
        raise ConfigError("a time limit needs an out_dir: the checkpoint the next piece goes on from")
    acc = accelerator or make_accelerator(config)
    owner = out is not None and acc.is_main_process
    if owner:  # only the main process writes: another one making `out` first races its claim
        make_dir(out)
    with exclusive(out, "run") if owner else contextlib.nullcontext():  # a second process is refused
        if out is not None and resume and (out / RESULT).is_file():  # trained: its caller did not finish
            restore_trained(model, out / CHECKPOINT, extra_state[1] if extra_state else None)
            return TrainResult(**read_json(out / RESULT, "training result"))
        if owner:
            remove_stale(out)  # e.g. a checkpoint write a kill -9 interrupted
        hooks = (eval_fn, after_step, extra_state, optimizer, graph_hook)
        with logs_above_bars():  # dev evaluations print above the bar
            loop = _Loop(model, params, (dataset, collate_fn, loss_fn, sampler), config, out, hooks, acc)
            if resume:
                loop.resume()
            loop.open_log()
            return loop.run()


def _batch_tokens(batch: Batch) -> int:
    """Non-padding tokens of a batch (all of `input_ids` when it has no attention mask)."""
    mask = batch.get("attention_mask")
    if isinstance(mask, Tensor):
        return int(mask.sum())
    ids = batch.get("input_ids")
    return ids.numel() if isinstance(ids, Tensor) else 0


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
        hooks: tuple[EvalFn | None, Callable[[TrainState], None] | None, Any, OptimizerFn | None, Any],
        acc: Accelerator,
    ):
        self.dataset, self.collate_fn, loss_fn, self.sampler = data
        self.eval_fn, self.after_step, self.extra_state, make_optimizer, graph_hook = hooks
        self.config, self.out, self.acc = config, out, acc
        self.started = time.monotonic()
        seed_everything(config.seed)
        self.raw_model = model
        optimizer = (make_optimizer or adamw)(params, config)
        self.scheduler = make_scheduler(optimizer, config)
        loss_module = LossModule(model, loss_fn)
        whole = config.compile and graph_hook is not None and eligible(config, acc, optimizer)
        if config.compile and not whole:  # in place: parameter names (checkpoints) stay the model's
            loss_module.compile(dynamic=True)  # MLM's masked positions vary in number per batch
        self.model, self.optimizer = acc.prepare(loss_module, optimizer)
        if config.optimizer_in_backward:
            if acc.num_processes > 1:  # DDP averages the gradients only after the backward
                raise ConfigError("optimizer_in_backward does not work with several processes (DDP)")
            step_in_backward(self.optimizer)
        self.whole = WholeStep(self.model, self.optimizer, config, graph_hook, acc.device) if whole else None
        self.state = TrainState(0, model, self.optimizer, acc, config, self.scheduler)
        self.result = TrainResult(steps=0)
        self.ckpt = out / CHECKPOINT if out is not None else None
        self.log_file: Any = None
        self.window, self.piece = Window(), Window()  # since the last log line; this call

    # ------------------------------------------------------------------ checkpoint and log

    def resume(self) -> None:
        """Go on from the checkpoint, if there is one: weights, optimizer, schedule, RNG, result."""
        if self.ckpt is None or not self.ckpt.is_file():
            return
        saved = load_loop_checkpoint(self.ckpt)  # every field checked before anything is restored
        step = check_loop_checkpoint(saved, self.ckpt, self.optimizer, self.scheduler, self.config.max_steps)
        with restoring(self.ckpt):
            if self.extra_state is not None:  # first: it may say what the saved tensors are (which
                self.extra_state[1](saved.get("extra", {}))  # task's mask a model's buffers held)
            load_trainable_state(self.raw_model, saved["model"], self.ckpt)
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            set_rng_state(saved["rng"])
            self.result = TrainResult(**saved["result"])
            self.window = Window.from_state(saved.get("window"))
        self.result.stopped = False  # a new piece
        self.result.resumed_from = self.state.step = step

    def open_log(self) -> None:
        if self.out is not None and self.acc.is_main_process:
            truncate_log(self.out / LOG, self.state.step)
            self.log_file = open_append(self.out / LOG)  # closed by run

    def save_checkpoint(self) -> None:
        if self.ckpt is None or not self.acc.is_main_process:
            return
        payload = {
            "step": self.state.step,
            "model": trainable_state(self.raw_model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "extra": self.extra_state[0]() if self.extra_state is not None else {},
            "result": self.result.to_dict(),
            "window": self.window.state(),  # the losses since the last log line
        }
        save_checkpoint(self.ckpt, payload)

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

    def whole_step(self) -> int:
        """The step as one compiled graph (`whole_step.WholeStep`), its micro-batches all at once;
        returns its tokens as `accumulate` does."""
        acc, first = self.acc, self.state.step * self.config.grad_accum
        batches = [self.micro_batch(first + a) for a in range(self.config.grad_accum)]
        tokens = sum(_batch_tokens(b) for b in batches) * acc.num_processes
        self.whole.run(
            self,
            [{k: v.to(acc.device) if isinstance(v, Tensor) else v for k, v in b.items()} for b in batches],
        )
        return tokens

    def optimizer_step(self) -> None:
        config = self.config
        check_finite_loss(
            self.window.values["loss"][-config.grad_accum :], self.state.step + 1, config, self.acc, self.ckpt
        )
        if config.max_grad_norm is not None:
            clip_gradients(self.acc, self.optimizer, config)
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
        self.window = Window()

    def evaluate(self) -> dict[str, Any]:
        """Score on dev (main process; the others receive it and its payload), track the best, log it."""
        config, result, main = self.config, self.result, self.acc.is_main_process
        self.raw_model.eval()
        metrics = [self.eval_fn(self.raw_model), eval_payload(self.eval_fn)] if main else [None, None]
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
        result.keep_payload(record, metrics[1])
        self.log({"eval": record})
        # on the console too, not only in the log file; without a progress bar as well (--no-progress
        # hides the bar, not the evaluations: a log of a run in the background keeps them)
        if main:
            log_.info(eval_line(config.desc, record, config.max_steps, self.piece.tokens_per_s()))
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
        tokens = self.accumulate() if self.whole is None else self.whole_step()
        if self.whole is None:
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
        if state.step < config.max_steps and time_up(self.started, config, self.acc):
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
