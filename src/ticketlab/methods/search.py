"""What every mask *search* (TAMT, IMP) shares: the run (`run_search`, into which a method plugs its
`SearchSpec`), the objective it trains on, saving masks on the way, and what it records. Its output
directory, resuming and publishing the mask, is `search_dir.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object
from torch import nn

from ..core.errors import ConfigError
from ..core.files.atomic import remove_stale
from ..masks import Mask, MaskConfig, current_mask, find_targets, load_mask
from ..masks.io import weights_hash
from ..train.checkpoint import check_step, load_checkpoint
from ..train.config import CollateFn, EvalFn, LossFn, TrainConfig, TrainResult, TrainState
from ..train.loop import train
from ..train.processes import make_accelerator
from .options import parse_steps
from .search_dir import SearchDir, publish_mask

log = logging.getLogger(__name__)


@dataclass
class SearchObjective:
    """What a search trains on: a dataset, its collate function and a loss (pluggable, e.g. a task)."""

    name: str  # "mlm", "kd", "mlm+kd" or a task id
    dataset: Sequence[Any]
    collate_fn: CollateFn
    loss_fn: LossFn
    eval_fn: EvalFn | None = None
    info: dict[str, Any] = field(default_factory=dict)  # corpus / task description for the mask config


class StepClock:
    """Optimisation time excluding evaluation and checkpoints, for masks saved along the way (Fig. 6).

    `collate` marks the start of a step (it is the first thing the loop does), `stop` its end.
    """

    def __init__(self, collate_fn: CollateFn):
        self._collate = collate_fn
        self._start: float | None = None
        self.seconds = 0.0

    def collate(self, examples, seeds):
        if self._start is None:
            self._start = time.perf_counter()
        return self._collate(examples, seeds)

    def stop(self) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None


def dropout_note(model: nn.Module, processes: int) -> str | None:
    """Several processes find exactly the mask one process finds only without dropout: the data
    order, the corruption and the loss normalisation do not depend on the process count, but each
    process draws its own dropout masks for its share of the batch (README, "Several processes")."""
    p = max((m.p for m in model.modules() if isinstance(m, nn.Dropout)), default=0.0)
    if processes < 2 or p == 0:
        return None
    return (
        f"note: the model has dropout {p:g}: each of the {processes} processes draws its own dropout "
        "masks, so the mask is close to, not exactly, the one a single process finds"
    )


def search_cost(step: int, batch_size: int, length: int | None) -> dict[str, int]:
    """A search's cost in the papers' units beside its seconds: gradient steps x tokens per step
    (TAMT Table 1 / Fig. 6: 22K steps of 16 x 512 tokens at 90%). Nominal: every block counted at
    the block length (a corpus's last block per source may be shorter); {} where blocks have no
    fixed length (a task)."""
    if not length:
        return {}
    return {"tokens_per_step": batch_size * length, "search_tokens": step * batch_size * length}


def ranks_agree(accelerator, mask: Mask) -> bool:
    """True when every process holds the same mask (checked with one small gather of digests)."""
    h = hashlib.sha256()
    for k in sorted(mask):
        h.update(k.encode())
        h.update(mask[k].cpu().numpy().tobytes())
    digests = gather_object([h.hexdigest()]) if accelerator.num_processes > 1 else [h.hexdigest()]
    return len(set(digests)) == 1


AfterStep = Callable[[TrainState], None]
ExtraState = tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], None]]


@dataclass
class SearchSpec:
    """What a search method plugs into `run_search`."""

    method: str  # e.g. "tamt-mlm", "imp"
    sparsity: float
    ranking: str
    targets: Any
    seed: int | None
    base_model: str
    params: Any  # parameters or parameter groups to optimise
    on_step: AfterStep  # runs after every optimizer step (TAMT: re-threshold; IMP: prune + rewind)
    describe: Callable[[], dict[str, Any]]  # method settings and state for the mask config
    settings: dict[str, Any] = field(default_factory=dict)  # a resumed run must match these
    extra_files: Callable[[], dict[str, dict[str, torch.Tensor]] | None] = lambda: None
    extra_state: ExtraState | None = None
    base_hash: Callable[[], str | None] = lambda: None  # None: hash the model's current dense weights
    finish: Callable[[Any], None] | None = None  # runs on every process once training is over
    sparsity_now: Callable[[], float] | None = None  # for the progress bar (default: the target)
    pattern: str | None = None  # N:M, recorded in the mask config
    # The dev losses whose sum is the search's own objective (TAMT-KD: kd_loss). With them, the initial
    # mask is evaluated before the first step, and a search that ends worse than it on that sum says so
    # (`worse_than_start`): a mask search starts from a mask (OMP), which the search should improve.
    objective_losses: tuple[str, ...] = ()
    # With the loop's `compile`: `on_step`'s part that runs inside the compiled whole step
    # (`train.whole_step.GraphHook`; TAMT: the re-threshold's fixed-shape part), or None
    graph_hook: Any = None


@dataclass
class SearchResult:
    mask: Mask
    config: MaskConfig
    out: Path
    train: TrainResult | None  # None when the search had finished before
    main_process: bool = True  # False in the other processes of a distributed search (they report nothing)


def worse_than_start(
    keys: Sequence[str], initial: dict[str, Any] | None, final: dict[str, Any] | None
) -> str | None:
    """One line when the final dev value of the objective (the sum of `keys`) is worse than the
    initial mask's; None when it is not, or when either evaluation lacks one of them."""
    if not keys or not initial or not final or any(k not in initial or k not in final for k in keys):
        return None
    start, end = sum(initial[k] for k in keys), sum(final[k] for k in keys)
    if end <= start:
        return None
    what = " + ".join(keys)
    return (
        f"warning: the search ended worse on its own objective than the mask it started from: dev "
        f"{what} {end:.4g} at step {final.get('step')} against {start:.4g} at step 0; its initial mask "
        "is the better one (more --steps may help, or a lower --lr where it still moves the mask)"
    )


def input_keys(model: nn.Module, objective: SearchObjective, targets: Any) -> dict[str, Any]:
    """What the search reads, by content: the target weights' hash and the corpus's content key."""
    keys = {"model_weights": weights_hash(model, list(find_targets(model, targets)))}
    content = getattr(objective.dataset, "content_key", None)
    if content is not None:
        keys["corpus_content"] = content
    return keys


def run_search(
    model: nn.Module,
    objective: SearchObjective,
    spec: SearchSpec,
    train_config: TrainConfig,
    out: str | os.PathLike,
    *,
    save_at: Sequence[int] = (),
    accelerator: Accelerator | None = None,
    keep_checkpoint: bool = False,
) -> SearchResult:
    """Train with `spec.on_step` after every step, save masks on the way and the final one in `out`.

    `out` may be new, empty or a search directory; one process (group) at a time works in it."""
    sd = SearchDir(out)
    acc = accelerator or make_accelerator(train_config)
    if acc.is_main_process:
        sd.run_dir.claim("search", inputs=_inputs(spec, objective, sd.out))
    acc.wait_for_everyone()  # the others read from `out` only once it is claimed (or refused)
    settings = {**spec.settings, **input_keys(model, objective, spec.targets)}
    with sd.run_dir.held() if acc.is_main_process else contextlib.nullcontext():
        return _run_search(model, objective, spec, train_config, sd, settings, save_at, acc, keep_checkpoint)


def _paths(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


def _inputs(spec: SearchSpec, objective: SearchObjective, out: Path) -> list[str]:
    """What the search reads, none of which its directory may be; its own files (IMP's rewound
    model, the base of a resumed search) aside."""
    info = objective.info
    given = [spec.base_model, *_paths(info.get("corpus")), *_paths(info.get("dev")), info.get("data_dir")]
    own = out.resolve()
    return [p for p in given if p is not None and own not in Path(p).resolve().parents]


def _run_search(
    model: nn.Module,
    objective: SearchObjective,
    spec: SearchSpec,
    train_config: TrainConfig,
    sd: SearchDir,
    settings: dict[str, Any],
    save_at: Sequence[int],
    acc: Accelerator,
    keep_checkpoint: bool,
) -> SearchResult:
    sd.check_settings(settings, acc.is_main_process)
    _check_saved_steps(sd, parse_steps(save_at, train_config.max_steps), train_config.max_steps)
    if sd.finished:
        if acc.is_main_process:  # killed while publishing the mask or after: what it left goes
            remove_stale(sd.out)
            sd.cleanup(keep_checkpoint)
        mask, mc = load_mask(sd.out)
        return SearchResult(mask, mc, sd.out, None, acc.is_main_process)
    if acc.is_main_process and sd.checkpoint_file.is_file():  # as finetune says it
        log.info(f"resuming from {sd.checkpoint_file}")
    if acc.is_main_process and (note := dropout_note(model, acc.num_processes)):
        log.warning(note)
    run = _Search(model, objective, spec, train_config, sd, parse_steps(save_at, train_config.max_steps), acc)
    result = run.train()
    if spec.finish is not None:
        spec.finish(acc)
    final: dict[str, Any] = {"ranks_agree": ranks_agree(acc, current_mask(model))}
    final.update(train_time_s=round(result.train_time_s, 3), final_eval=result.final)
    if run.initial is not None:
        final["initial_eval"] = run.initial
    if warning := worse_than_start(spec.objective_losses, run.initial, result.final):
        final["objective_warning"] = warning
        if acc.is_main_process:
            log.warning(warning)
    mask, mc = run.record(train_config.max_steps, final)
    if acc.is_main_process:
        if train_config.max_steps in run.steps:  # first: the final mask marks the search finished
            publish_mask(mask, mc, sd.step_dir(train_config.max_steps), extra=spec.extra_files())
        publish_mask(mask, mc, sd.out, extra=spec.extra_files())
        sd.log({"event": "mask_saved", "step": train_config.max_steps, "dir": str(sd.out), **final})
        sd.cleanup(keep_checkpoint)
    acc.wait_for_everyone()
    return SearchResult(mask, mc, sd.out, result, acc.is_main_process)


def _check_saved_steps(sd: SearchDir, steps: Sequence[int], max_steps: int) -> None:
    """A step asked for now (`save_at`) that the search has passed without saving its mask: no mask
    of it can come of this run, finished or resumed from a later checkpoint; refused before training."""
    if sd.finished:
        passed, done = max_steps, "finished"
    elif sd.checkpoint_file.is_file():
        at = check_step(load_checkpoint(sd.checkpoint_file).get("step"), sd.checkpoint_file, max_steps)
        passed, done = min(at, max_steps - 1), f"resumes at step {at}"  # the last step's mask is the end's
    else:
        return
    missing = [s for s in steps if s <= passed and not sd.step_dir(s).is_dir()]
    if missing:
        raise ConfigError(
            f"{sd.out}: {done}, past the steps {missing} (save_at) without their masks: no mask of them "
            "comes of this run; search into another output directory, or leave those steps out"
        )


class _Search:
    """One search's training with its hooks: the masks saved along the way, the search clock kept
    across a resume, the sparsity in every log line."""

    def __init__(
        self,
        model: nn.Module,
        objective: SearchObjective,
        spec: SearchSpec,
        train_config: TrainConfig,
        sd: SearchDir,
        steps: Sequence[int],
        acc: Accelerator,
    ):
        self.model, self.objective, self.spec, self.config = model, objective, spec, train_config
        self.sd, self.steps, self.acc = sd, steps, acc
        self.clock = StepClock(objective.collate_fn)
        self.initial: dict[str, Any] | None = None  # the initial mask's dev scores (objective_losses)

    def _sparsity(self) -> float:
        spec = self.spec
        return spec.sparsity_now() if spec.sparsity_now is not None else spec.sparsity

    def write(self, dest: Path, step: int, extra: dict[str, Any] | None = None) -> tuple[Mask, MaskConfig]:
        """Publish the model's current mask to `dest` with the search's record (main process)."""
        mask, mc = self.record(step, extra)
        if self.acc.is_main_process:
            publish_mask(mask, mc, dest, extra=self.spec.extra_files())
        return mask, mc

    def record(self, step: int, extra: dict[str, Any] | None = None) -> tuple[Mask, MaskConfig]:
        """The model's current mask at `step` and its config: the search's record."""
        spec, config, mask = self.spec, self.config, current_mask(self.model)
        search = {
            **spec.describe(),
            "step": step,
            "steps": config.max_steps,
            "schedule_steps": config.schedule_steps or config.max_steps,
            **search_cost(step, config.batch_size, self.objective.info.get("max_length")),
            "batch_size": config.batch_size,
            "grad_accum": config.grad_accum,
            "lr": config.lr,
            "seed": config.seed,
            "search_time_s": round(self.clock.seconds, 3),
            "processes": self.acc.num_processes,
            "mixed_precision": config.mixed_precision,
            "log": "run/log.jsonl",
            **self.objective.info,
            **(extra or {}),
        }
        mc = MaskConfig.for_model(
            self.model,
            mask,
            method=spec.method,
            sparsity=self._sparsity(),
            base_model=spec.base_model,
            targets=spec.targets,
            ranking=spec.ranking,
            seed=spec.seed,
            pattern=spec.pattern,
            search=search,
        )
        base_hash = spec.base_hash()
        if base_hash is not None:
            mc.base_model_hash = base_hash
        return mask, mc

    def after_step(self, state: TrainState) -> None:
        self.spec.on_step(state)
        self.clock.stop()
        if state.step in self.steps and state.step < self.config.max_steps:
            dest = self.sd.step_dir(state.step)
            self.write(dest, state.step)
            if self.acc.is_main_process:
                self.sd.log({"event": "mask_saved", "step": state.step, "dir": str(dest)})

    def get_state(self) -> dict[str, Any]:
        extra = self.spec.extra_state
        initial = {"initial_eval": self.initial} if self.initial is not None else {}
        return {"search_time_s": self.clock.seconds, **initial, **(extra[0]() if extra else {})}

    def set_state(self, d: dict[str, Any]) -> None:
        self.clock.seconds = float(d.get("search_time_s", 0.0))
        self.initial = d.get("initial_eval")
        if self.spec.extra_state:
            self.spec.extra_state[1](d)

    def loss_fn(self, m: nn.Module, batch: Any) -> tuple[Any, dict[str, float]]:
        out = self.objective.loss_fn(m, batch)
        loss, logs = out if isinstance(out, tuple) else (out, {})
        return loss, {**logs, "sparsity": round(self._sparsity(), 6)}

    def evaluate_initial(self) -> None:
        """The dev scores of the mask the search starts from (step 0), on every process (the main
        one evaluates); a resumed search has them from its checkpoint instead."""
        eval_fn = self.objective.eval_fn
        if not self.spec.objective_losses or eval_fn is None or self.sd.checkpoint_file.is_file():
            return
        self.model.to(self.acc.device).eval()
        scores = [{"step": 0, **eval_fn(self.model)} if self.acc.is_main_process else None]
        self.model.train()
        if self.acc.num_processes > 1:
            broadcast_object_list(scores)
        self.initial = scores[0]

    def train(self) -> TrainResult:
        """Train (or resume) the search; one that had trained before, stopped before its mask was
        written, has its weights, clock and initial scores restored from the last checkpoint."""
        self.evaluate_initial()
        return train(
            self.model,
            self.spec.params,
            self.objective.dataset,
            self.clock.collate,
            self.loss_fn,
            self.config,
            out_dir=self.sd.run,
            eval_fn=self.objective.eval_fn,
            after_step=self.after_step,
            extra_state=(self.get_state, self.set_state),
            accelerator=self.acc,
            graph_hook=self.spec.graph_hook,
        )
