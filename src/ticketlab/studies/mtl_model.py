"""Ticket sharing's model (`mtl.py` trains it): one encoder shared by all tasks, one task model per
task, every task's ticket Ω^i a named mask on the encoder (`masks.named`, in its weight form, FFN-out's
bias included: exactly what gates compute), and what a step of task i may update (`MultiTask.step_mask`:
the entries inside Ω^i, everything no unit owns, task i's head), which `MaskedAdamW` asks for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..core.errors import ConfigError
from ..masks import MaskConfig
from ..masks.apply import dense_tensor, plain_name
from ..masks.named import active_tensors, add_mask, set_active_mask
from ..masks.unit_io import check_unit_fits, load_unit_mask
from ..masks.units import UnitMask, to_weight_mask
from ..models.arch import encoder_of
from ..models.compaction import head_extras
from ..models.structure import Structure, structure_of
from ..tasks.objective import load_task_model
from ..tasks.registry import get_task
from ..train.masked_adam import StepMask, StepMasks
from .mtl_config import MtlConfig

# --------------------------------------------------------------------------- tickets


def load_tickets(config: MtlConfig, model: nn.Module) -> list[UnitMask]:
    """Every task's ticket, checked against the model (structure, base weights) and its task; none
    for plain multi-task learning."""
    if config.tickets is None:
        return []
    units = []
    for task, path in zip(config.tasks, config.tickets, strict=True):
        u, mask_config = load_unit_mask(path)
        check_unit_fits(u, mask_config, model, source=path, check_hash=config.check_hash)
        _check_task(mask_config, task, config.data_dir, path)
        units.append(u)
    if len({u.granularity for u in units}) > 1:
        raise ConfigError(f"the tickets mix FFN granularities ({', '.join(u.granularity for u in units)})")
    return units


def _check_task(mask_config: MaskConfig, task: str, data_dir: str | None, path: str) -> None:
    """A ticket that records the task it was found on must be given for that task."""
    found_on = (mask_config.search or {}).get("task")
    want = get_task(task, data_dir).id
    if found_on is not None and found_on != want:
        raise ConfigError(
            f"the task list does not match the tickets: {path} was found on {found_on}, given for {want}"
        )


def shared_units(tickets: Sequence[UnitMask]) -> UnitMask:
    """The units some task keeps (the others are pruned for all)."""
    union = {n: t.clone() for n, t in tickets[0].tensors().items()}
    for u in tickets[1:]:
        for n, t in u.tensors().items():
            union[n] |= t
    return UnitMask(**union)


def ticket_param_masks(
    encoder: nn.Module, units: UnitMask, structure: Structure, weights: Mapping[str, Tensor] | None = None
) -> dict[nn.Parameter, StepMask]:
    """Which entries of the encoder's parameters a step of this ticket may update (True = all).

    Weights: the unit slices of `to_weight_mask` (`weights`: that mask, or the buffers of the named
    mask in force, used as they are). Biases: a head owns its Q/K/V bias entries, a neuron its FFN-in
    bias entry, an FFN sub-layer both FFN biases. Parameters no unit owns are shared. Keys are the
    Parameters an optimizer holds (a masked tensor's `original`).
    """
    out: dict[nn.Parameter, StepMask] = {p: True for p in encoder.parameters()}
    arch = structure.arch
    weights = to_weight_mask(units, structure) if weights is None else weights
    for layer in range(structure.num_layers):
        for name in arch.layer_modules:
            keep = weights[arch.layer_key(layer, name)]  # bool [rows, cols]
            module = encoder.get_submodule(f"{arch.layers}.{layer}.{name}")
            out[dense_tensor(module, "weight")] = keep
            bias = dense_tensor(module, "bias")
            if bias is None:  # a bias-free projection: its weight is all the unit owns
                continue
            if name in (*arch.qkv, arch.ffn_in):
                out[bias] = keep[:, 0].clone()  # rows: one per head dimension / neuron
            elif name == arch.ffn_out and units.ffn is not None and not bool(units.ffn[layer]):
                out[bias] = False  # a pruned FFN sub-layer's output bias goes with it
        out.update(_head_extras(encoder, arch, layer, units.head[layer], structure.head_size))
    return out


def _head_extras(encoder: nn.Module, arch, layer: int, heads: Tensor, head_size: int) -> dict:
    """The per-head rows outside Q/K/V a pruned head also owns (`models.compaction.head_extras`), by
    parameter."""
    rows = heads.repeat_interleave(head_size)  # [H·dh]
    out: dict[nn.Parameter, StepMask] = {}
    for _, _, extra in head_extras(encoder.get_submodule(f"{arch.layers}.{layer}"), arch):
        if isinstance(extra, nn.Parameter):  # q_bias, v_bias: [H·dh]
            out[extra] = rows.clone()
            continue
        out[extra.weight] = rows[:, None].expand_as(extra.weight).clone()
        if extra.bias is not None:
            out[extra.bias] = rows.clone()
    return out


# --------------------------------------------------------------------------- the model


@dataclass
class MultiTask:
    """One encoder, one task model per task sharing it, and each task's ticket as a named mask on it
    ("t0", "t1", ...: bits, one in force)."""

    models: nn.ModuleDict  # "t0", "t1", ...: task models whose encoder is the same module
    tickets: list[UnitMask]  # per task; empty without tickets (plain MTL: nothing masked)
    params: list[nn.Parameter]  # every parameter once, in the order of the unmasked model (optimizer)
    heads: list[list[nn.Parameter]]  # per task: its own parameters outside the encoder
    structure: Structure | None = None
    active: int = 0  # the task whose model ran last (its ticket in force; the first one after build)

    def task_model(self, i: int) -> nn.Module:
        """Task i's model, with its ticket in force."""
        if self.tickets:
            set_active_mask(self.models["t0"], f"t{i}")
        self.active = i
        return self.models[f"t{i}"]

    def active_step_mask(self) -> StepMasks:
        """The step mask of the task whose model ran last: the optimizer's, after that task's batch."""
        return self.step_mask(self.active)

    def step_mask(self, i: int) -> dict[nn.Parameter, StepMask]:
        """What a step of task i updates: its ticket's entries (the named mask in force, not a copy)
        and everything shared, its own head; made per step, so no task holds a byte per weight."""
        own = dict.fromkeys(self.heads[i], True)
        encoder = encoder_of(self.models["t0"])
        if not self.tickets:  # plain MTL: every task updates everything
            return {**dict.fromkeys(encoder.parameters(), True), **own}
        self.task_model(i)
        weights = active_tensors(encoder)
        return {**ticket_param_masks(encoder, self.tickets[i], self.structure, weights), **own}

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """By the names of the unmasked model (checkpoints and weights files keep them)."""
        return {plain_name(n): p for n, p in self.models.named_parameters()}  # the shared encoder once


def build(config: MtlConfig, seed: int, device: torch.device) -> MultiTask:
    models: dict[str, nn.Module] = {}
    encoder = None
    for i, task in enumerate(config.tasks):
        net, _ = load_task_model(config.model, get_task(task, config.data_dir), seed)
        if encoder is None:
            encoder = encoder_of(net)
        else:
            setattr(net, net.base_model_prefix, encoder)  # share: this task's own copy is dropped
        models[f"t{i}"] = net
    mt = nn.ModuleDict(models).to(device)
    params = list(mt.parameters())  # before masking: the optimizer's order (and its checkpoints') stays
    inside = {id(p) for p in encoder.parameters()}
    heads = [[p for p in mt[f"t{i}"].parameters() if id(p) not in inside] for i in range(len(mt))]
    tickets = load_tickets(config, mt["t0"])
    if not tickets:
        # Plain MTL: every task updates everything. No masks and no unit structure, so it runs on a
        # family without per-layer units too (ALBERT's one shared layer).
        return MultiTask(mt, [], params, heads)
    structure = structure_of(mt["t0"])
    for i, units in enumerate(tickets):
        add_mask(mt["t0"], f"t{i}", to_weight_mask(units, structure))
    return MultiTask(mt, tickets, params, heads, structure)
