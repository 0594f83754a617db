"""Layer-by-layer pruning from calibration activations: the loop Wanda and SparseGPT share.

Both reference implementations (locuslab/wanda `prune_wanda`, IST-DASLab/sparsegpt's `*_sequential`)
prune a transformer one layer at a time: the inputs of every linear matrix of layer i are collected
in one pass of the dense layer i, all its matrices are pruned, and layer i+1 then reads the outputs
of the already-pruned layers below it. The same here, on any family, without calling a layer by
hand (each family's layer takes its own masks, positions and relative biases): pass i runs the
model's own forward on the calibration batches with layers < i already pruned, hooks on layer i's
target matrices collecting their inputs, and stops once layer i has run. An encoder of L layers
costs L(L+1)/2 layer applications instead of the reference's 2L (it keeps every layer's outputs
in memory instead); for 6 layers, 21 instead of 12.

Stages are found by the order in which the model first calls its target matrices: the matrices of
one layer (`models.arch`: `layers`) form one stage, any other matrix (the pooler, on the [CLS] vector
after the last layer) a stage of its own, stopped after itself. ALBERT applies its one shared layer
at every depth, so its stage runs the whole forward and its statistics cover every application.
Embedding targets have no input activations (their input is a token id): they are pruned by
magnitude first (`magnitude_embeddings`), so the layers see the pruned embeddings' outputs.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from ..core.errors import ConfigError
from ..masks import Mask, dense_weight, find_targets
from ..masks.targets import Targets
from ..models.arch import ARCHS, encoder_of
from .calibration import Calibration
from .ranking import keep_top

BATCH = 16  # calibration sequences per forward


class Statistic(Protocol):
    """What a method accumulates from one matrix's inputs over the calibration tokens."""

    def add(self, x: Tensor) -> None: ...  # x: [..., in_features], one call's inputs


# (mask key, dense weight [out, in], its statistic) -> (keep [out, in] bool, new weight [out, in])
Solver = Callable[[str, Tensor, Statistic], tuple[Tensor, Tensor]]


@dataclass
class Stage:
    name: str  # a layer ("encoder.layer.3") or a matrix's module name
    keys: list[str]  # the mask keys of its target matrices
    stop: nn.Module | None  # the module after whose forward a pass stops; None: the whole forward


class _Stop(Exception):
    """Raised by a hook once the stage's module has run: the rest of the forward is not needed."""


def _raise_stop(*_: object) -> None:
    raise _Stop


def _forward(model: nn.Module, ids: Tensor) -> None:
    with contextlib.suppress(_Stop):  # the stage has run: the rest of the forward is not needed
        model(input_ids=ids, attention_mask=torch.ones_like(ids))


def _first_calls(model: nn.Module, modules: dict[str, nn.Module], ids: Tensor) -> list[str]:
    """The keys of `modules` in the order the model's forward first calls them (on `ids`)."""
    order: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda *_, k=k: order.append(k) if k not in order else None)
        for k, m in modules.items()
    ]
    try:
        _forward(model, ids)
    finally:
        for h in hooks:
            h.remove()
    if missing := sorted(set(modules) - set(order)):
        raise ConfigError(f"targets {', '.join(missing)}: the model's forward never calls them (no inputs)")
    return order


def stages_of(model: nn.Module, linears: dict[str, nn.Module], ids: Tensor) -> list[Stage]:
    """The target matrices grouped by layer, in the order the forward reaches them."""
    encoder = encoder_of(model)
    arch = ARCHS.get(getattr(model.config, "model_type", None))
    layer = re.compile(rf"({re.escape(arch.layers)}\.\d+)\.") if arch is not None else None
    stages: dict[str, Stage] = {}
    for key in _first_calls(model, linears, ids):
        name = key.removesuffix(".weight")
        found = layer.match(name) if layer is not None else None
        where = found.group(1) if found else name
        if where not in stages:
            shared = found is not None and arch is not None and arch.shared
            stages[where] = Stage(where, [], None if shared else encoder.get_submodule(where))
        stages[where].keys.append(key)
    return list(stages.values())


def magnitude_embeddings(
    embeddings: dict[str, nn.Module], sparsity: float, pattern: str | None
) -> dict[str, Tensor]:
    """Keep masks of the embedding targets by |W| per matrix (OMP's rule): a token id is no
    activation to weigh them by. The tied MLM decoder shares the word embeddings' tensor, so it
    carries their mask (`masks.apply_mask` masks every module tied to a masked tensor)."""
    scores = {k: dense_weight(m).abs() for k, m in embeddings.items()}
    return dict(keep_top(scores, sparsity, "local", pattern).items()) if scores else {}


@torch.no_grad()
def prune_layerwise(
    model: nn.Module,
    targets: Targets,
    calibration: Calibration,
    *,
    sparsity: float,
    pattern: str | None,
    statistic: Callable[[nn.Module], Statistic],
    solve: Solver,
) -> tuple[Mask, dict[str, Tensor]]:
    """Prune `model`'s targets stage by stage (see the module's docstring) on a copy of it: (the
    keep mask of every target, the weights `solve` gave each linear target, zeros where pruned),
    by mask key. `model` is unchanged."""
    work = copy.deepcopy(model).eval()
    originals = {k: dense_weight(m).detach().clone() for k, m in find_targets(model, targets).items()}
    found = {k: encoder_of(work).get_submodule(k.removesuffix(".weight")) for k in originals}
    device = next(work.parameters()).device
    batches = [b.to(device) for b in calibration.batches(BATCH)]
    keep, weights = {}, {}
    embeddings = {k: m for k, m in found.items() if isinstance(m, nn.Embedding)}
    for key, k in magnitude_embeddings(embeddings, sparsity, pattern).items():
        keep[key] = k
        found[key].weight.copy_(originals[key] * k.to(originals[key].device))
    linears = {k: m for k, m in found.items() if k not in embeddings}
    for stage in stages_of(work, linears, batches[0][:1]):
        stats = {k: statistic(linears[k]) for k in stage.keys}
        hooks = [
            linears[k].register_forward_hook(lambda _m, i, _o, s=stats[k]: s.add(i[0])) for k in stage.keys
        ]
        if stage.stop is not None:
            hooks.append(stage.stop.register_forward_hook(_raise_stop))
        try:
            for batch in batches:
                _forward(work, batch)
        finally:
            for h in hooks:
                h.remove()
        for key in stage.keys:  # every matrix of the stage pruned on the dense stage's inputs
            kept, weight = solve(key, originals[key], stats[key])
            keep[key], weights[key] = kept, weight.to(originals[key].dtype)
            linears[key].weight.copy_(weights[key])  # what the next stages read
    return Mask({k: keep[k].cpu() for k in originals}), {k: weights[k].cpu() for k in weights}
