"""The rows of `bench_mask_training.py`: one training step per method, as the library takes it.

A `Runner` is one method's step on its own model (loss, backward, clipping, AdamW and, for TAMT,
the re-threshold); `make_runner(name, model)` builds the row named in `METHODS`. The benchmark
times, profiles and measures these rows; the rows themselves time only the re-threshold's part.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM

import peer_tamt  # the benchmark's own peer, beside this file
from ticketlab.lm.objectives import MLMCollator, pretraining_loss
from ticketlab.methods.tamt.search import (
    Rethreshold,
    TamtConfig,
    make_thresholders,
    prepare_tamt,
    rethreshold,
)
from ticketlab.methods.tamt.thresholds import repair
from ticketlab.models.load import load_model
from ticketlab.train.config import TrainConfig
from ticketlab.train.optim import AdamW
from ticketlab.train.processes import LossModule
from ticketlab.train.schedule import step_in_backward
from ticketlab.train.whole_step import GraphHook, WholeStep

SHARED = Path(__file__).resolve().parents[2] / "shared"
MINI = SHARED / "models" / "bert-mini-ref"
WIKI = SHARED / "data" / "wikitext-2" / "valid.txt"
METHODS = (
    "dense",
    "tamt-mlm",
    "tamt-kd",
    "tamt-mlm-ib",
    "tamt-mlm-bf16",
    "tamt-mlm-ib-bf16",
    "tamt-mlm-flat",
    "tamt-kd-flat",
    "peer-mlm",
    "peer-mlm-1000",
)


def build_model(name: str):
    if name == "bert-base":
        torch.manual_seed(0)
        return BertForMaskedLM(BertConfig()).train()
    return load_model(name).train()


def make_batch(tokenizer, batch_size: int, length: int) -> dict[str, torch.Tensor]:
    """A real WikiText-2 batch when ../shared is there, else random tokens; MLM-corrupted, fixed seeds."""
    if WIKI.is_file():
        from ticketlab.data.corpus import load_lm_blocks

        blocks, _ = load_lm_blocks([WIKI], tokenizer, length, progress=False)
        examples = [blocks[i] for i in range(batch_size)]
    else:
        g = torch.Generator().manual_seed(0)
        low = min(1000, len(tokenizer) // 2)  # past BERT's special and unused ids; half a tiny vocabulary
        examples = [
            {"input_ids": torch.randint(low, len(tokenizer), (length,), generator=g)}
            for _ in range(batch_size)
        ]
    return MLMCollator(tokenizer, keep_clean=True)(
        examples, list(range(batch_size))
    )  # KD on clean ids (TAMT)


class Runner:
    """One method's step: loss, backward, clip, AdamW, then `after` (the re-threshold for TAMT)."""

    def __init__(self, model, params, loss_fn, lr: float, after=None, *, in_backward: bool = False):
        self.model, self.loss_fn, self.after, self.in_backward = model, loss_fn, after, in_backward
        self.params = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
        self.opt = AdamW(params, lr=lr)  # torch's, and stochastic rounding for bf16 scores
        if in_backward:
            step_in_backward(self.opt)
        self.rethreshold_s: list[float] = []
        self.thresholders: list = []  # TAMT's, for `to` and the fallback count
        self.steps = 0
        self.autocast = contextlib.nullcontext
        self.whole: WholeStep | None = None
        self.whole_ok = not in_backward  # the whole step needs the optimizer's step after the backward

    def to(self, device: torch.device, autocast: str, compile: bool = False) -> Runner:
        self.model.to(device)
        if compile and self.whole_ok:  # the whole step as one graph, as `search --compile` takes it
            self._whole(device, autocast)
            return self
        if compile:  # the model and its loss, compiled as `train.loop.train` compiles them
            module = LossModule(self.model, self.loss_fn)
            module.compile(dynamic=True)
            self.loss_fn = lambda model, batch: module(batch)
        if self.thresholders:  # the re-threshold's fixed-shape part compiled whole, as a search does
            rethreshold = Rethreshold(self.thresholders, compile=compile)
            self.after = lambda step: rethreshold()
        if autocast != "no":
            self.autocast = lambda: torch.autocast(device.type, dtype=getattr(torch, autocast))
        return self

    def _whole(self, device: torch.device, autocast: str) -> None:
        """`train.whole_step.WholeStep` over this row's loss, optimizer (clipped at 1.0, as `step`)
        and, for TAMT, the re-threshold's fixed-shape part inside the graph; its repair after."""
        precision = "bf16" if autocast == "bfloat16" else "no"
        config = TrainConfig(max_steps=1, mixed_precision=precision, compile=True, progress=False)
        hook = GraphHook()
        if self.thresholders:
            hook = Rethreshold(self.thresholders).graph_hook()
            self.after = lambda flags: repair(self.thresholders, flags)  # eager: reads the flags
        self.whole = WholeStep(LossModule(self.model, self.loss_fn), self.opt, config, hook, device)

    def step(self, batch) -> None:
        if self.whole is not None:
            flags = self.whole([batch])[2]
            if self.after is not None:
                t1 = time.perf_counter()  # the re-threshold's settle is inside the step: its repair only
                self.after(flags)
                self.rethreshold_s.append(time.perf_counter() - t1)
            self.steps += 1
            return
        with self.autocast():  # the forward only, as accelerate's mixed precision does it
            loss = self.loss_fn(self.model, batch)[0]
        loss.backward()
        if not self.in_backward:  # stepping inside the backward gives up clipping
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.after is not None:
            t0 = time.perf_counter()
            self.after(self.steps)
            self.rethreshold_s.append(time.perf_counter() - t0)
        self.steps += 1


def make_runner(method: str, model_name: str, lr: float | None = None) -> Runner:
    """Each method gets its own model (its masks and optimizer evolve on their own). The score
    learning rate sets how many scores cross the threshold per step, hence the re-threshold's
    cost: None is the search default (Table 1: 5e-5 MLM, 2e-5 KD)."""
    model = build_model(model_name)
    if method == "dense":
        return Runner(model, list(model.parameters()), pretraining_loss("mlm"), lr or 5e-5)
    if method.startswith("peer-"):
        masks, groups = peer_tamt.prepare_peer(model, 0.7, mlm=True)
        every = 1000 if method.endswith("-1000") else 1
        after = lambda step: step % every == 0 and peer_tamt.rethreshold(masks, 0.7)  # noqa: E731
        return Runner(model, groups, peer_tamt.peer_loss("mlm"), lr or 5e-5, after)
    _, objective, *flags = method.split("-")  # tamt-OBJECTIVE[-ib][-bf16][-flat]
    # a flat buffer's gradients are joined by an autograd callback a graph cannot hold
    config = TamtConfig(0.7, objective=objective, score_dtype="bfloat16" if "bf16" in flags else "float32")
    # as `search_tamt` does it: stepped inside the backward, no flat gradient
    masks, groups = prepare_tamt(model, config, flat="flat" in flags, flat_grads="ib" not in flags)
    # as `search_tamt`: the pruned count of the initial mask (a thresholder keeping one weight fewer than
    # the mask it starts from has a tie at its cut in the block of kept scores at α·φ, every step)
    thresholders = make_thresholders(masks, 0.7, count=config.count)
    after = lambda step: rethreshold(thresholders)  # noqa: E731
    lr = lr or config.paper_lr  # Table 1's: the rate of a search of the paper's length
    runner = Runner(model, groups, pretraining_loss(config.objective), lr, after, in_backward="ib" in flags)
    runner.thresholders = thresholders
    runner.whole_ok = runner.whole_ok and "flat" not in flags
    return runner
