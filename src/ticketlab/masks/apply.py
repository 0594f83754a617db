"""Attaching masks to a model with `torch.nn.utils.parametrize`, and taking them off again.

A masked module keeps its type (an `nn.Linear` stays an `nn.Linear`); its `weight` becomes
`original ⊙ mask`, computed on access. Because the product is recomputed at every forward, pruned
weights stay exactly zero through any later training, whatever the optimizer does to `original`.

Biases are masked the same way when a mask has a `X.bias` key: the one injection for both, so a unit
mask applied as tensors computes what its gates compute (a pruned FFN sub-layer takes FFN-out's bias
with it; `masks.units`). A key for a bias the module does not have (ModernBERT's bias-free FFN) is
left out when resolving: an absent bias adds nothing, which is what its mask says. This is how every
mask is used, structured tickets included (`masks.units.apply_unit_mask`); forward-hook gates
(`masks.gates`) exist only for gradients with respect to units (importance scores).

Tied weights: BERT's MLM decoder shares its weight with the word embeddings. When the embeddings are
masked, every module tied to the same Parameter gets the same parametrization, so the masked model
computes exactly what its exported checkpoint (zeros in the shared matrix) computes.

Saving: `attach` also gives the model (and each `PreTrainedModel` inside it) a `save_pretrained` that
writes what the model computes, W ⊙ M, under the plain key names (`...weight`), not the
parametrization's keys, which a plain `from_pretrained` would not know and silently replace with
random weights. A transformers `Trainer` saves through `save_pretrained` too. `state_dict()` itself
is left as torch makes it, so checkpoints and `load_state_dict` keep masks and scores.

Loading: a masked module also takes the plain keys back (a load-state-dict pre-hook): `X.weight` of a
checkpoint written by `save_pretrained` or a `Trainer` goes into `X.parametrizations.weight.original`,
and the mask in force stays, so `Trainer.train(resume_from_checkpoint=...)` on a ticketed model
resumes from the checkpoint's weights instead of silently keeping the pre-trained ones. Under the
mask those are the checkpoint's zeros, which the mask hides anyway; a checkpoint with non-zero
weights where the mask prunes (the dense model's, another ticket's) is loaded masked, with one
warning line. What cannot
be written as weights (closed importance gates, which are forward hooks) is refused in one line
(`SAVE_REFUSALS`); a ticket applied with `apply_unit_mask` is weights and saves with its zeros.

One switch: `masks_disabled(model)` runs the dense model (the KD teacher), whatever masks it: every
mask parametrization, named masks, and the kinds registered in `MASK_KINDS` (gates).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..core.errors import MaskMismatchError, TicketlabError
from ..models.arch import ARCHS, encoder_of
from .mask import Mask, is_bias_key

MASKABLE = ("weight", "bias")  # the tensors a mask key may name: `X.weight`, `X.bias`
NAMED_ATTR = "_ticketlab_named_masks"  # the named masks of a model (`masks.named`), on its encoder


class MaskParametrization(nn.Module):
    """Base class of every mask parametrization; `enabled = False` lets the dense weight through."""

    enabled: bool = True

    def __init__(self) -> None:
        super().__init__()
        # the instance's own from the start, as `masks_disabled` leaves it: a compiled step's guards
        # then see the same attributes before and after the first teacher forward (no recompile)
        self.enabled = True

    def current_mask(self) -> Tensor:
        """The binary mask in force now (bool, shape of the weight)."""
        raise NotImplementedError


class BinaryMask(MaskParametrization):
    """W -> W ⊙ M for a fixed boolean mask M (held as a buffer, so it moves with the model)."""

    def __init__(self, mask: Tensor):
        super().__init__()
        self.register_buffer("mask", mask.bool())

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask if self.enabled else weight

    def current_mask(self) -> Tensor:
        return self.mask


def split_key(key: str) -> tuple[str, str]:
    """`a.b.weight` -> (`a.b`, `weight`): the module and the tensor a mask key names."""
    module, _, tensor = key.rpartition(".")
    return module, tensor


def plain_name(name: str) -> str:
    """A parameter's name as an unmasked model has it: `X.parametrizations.bias.original` -> `X.bias`
    (name-based rules, e.g. no weight decay on biases, then hold for masked tensors too)."""
    if ".parametrizations." not in name or not name.endswith(".original"):
        return name
    return name.replace(".parametrizations.", ".").removesuffix(".original")


def _mask_param(module: nn.Module, tensor: str = "weight") -> MaskParametrization | None:
    if not parametrize.is_parametrized(module, tensor):
        return None
    found = [p for p in getattr(module.parametrizations, tensor) if isinstance(p, MaskParametrization)]
    return found[0] if found else None


def dense_weight(module: nn.Module) -> Tensor:
    """The unmasked weight tensor of a module, parametrized or not."""
    return dense_tensor(module, "weight")


def dense_tensor(module: nn.Module, tensor: str) -> Tensor | None:
    """The unmasked `weight` or `bias` of a module (the Parameter an optimizer holds), or None."""
    if parametrize.is_parametrized(module, tensor):
        return getattr(module.parametrizations, tensor).original
    return getattr(module, tensor, None)


def absent_pooler(model: nn.Module, keys: Iterable[str]) -> set[str]:
    """The keys of `keys` that name the family's pooler (`models.arch.Arch.pooler`) where `model` was built
    without one (transformers' *ForMaskedLM): nothing it computes reads a pooler, so a mask's pooler
    keys are left out there, as a bias key of a module without a bias is."""
    arch = ARCHS.get(getattr(getattr(model, "config", None), "model_type", None))
    if arch is None or arch.pooler is None:
        return set()
    if getattr(encoder_of(model), arch.pooler.split(".")[0], False) is not None:
        return set()
    return {k for k in keys if split_key(k)[0] == arch.pooler}


def resolve_modules(model: nn.Module, keys: list[str] | Mapping[str, object]) -> dict[str, nn.Module]:
    """Find the encoder module behind each key (`X.weight` or `X.bias`), or raise one error listing
    what is missing. Bias keys of modules without a bias, and pooler keys where the model has no pooler
    (`absent_pooler`), are left out (see the module docstring)."""
    modules = dict(encoder_of(model).named_modules())
    keys = [k for k in keys if k not in absent_pooler(model, keys)]
    missing = [k for k in keys if split_key(k)[1] not in MASKABLE or split_key(k)[0] not in modules]
    if missing:
        raise MaskMismatchError(
            f"{len(missing)} masked weight(s) do not exist in this model, e.g. {', '.join(missing[:3])}"
        )
    found = {k: modules[split_key(k)[0]] for k in keys}
    return {k: m for k, m in found.items() if not is_bias_key(k) or getattr(m, "bias", None) is not None}


def masked_tensor(module: nn.Module, key: str) -> Tensor:
    """The tensor a mask key names on its module (as the model computes it)."""
    return getattr(module, split_key(key)[1])


def _tied(model: nn.Module) -> dict[int, list[nn.Module]]:
    """Modules by the id of the weight or bias Parameter they hold (tied modules share one)."""
    tied: dict[int, list[nn.Module]] = {}
    for module in model.modules():
        for tensor in MASKABLE:
            t = module._parameters.get(tensor)
            if t is not None:
                tied.setdefault(id(t), []).append(module)
    return tied


def attach(model: nn.Module, parametrizations: Mapping[str, MaskParametrization]) -> nn.Module:
    """Register one mask parametrization per key, on its weight or bias (and on every module tied
    to that tensor)."""
    modules = resolve_modules(model, list(parametrizations))
    tied = _tied(model)
    for key, module in modules.items():
        tensor_name = split_key(key)[1]
        if _mask_param(module, tensor_name) is not None:
            raise MaskMismatchError(f"{key} is already masked; remove the mask first")
        p = parametrizations[key]
        tensor = getattr(module, tensor_name)
        shape = tuple(p.current_mask().shape)
        if tuple(tensor.shape) != shape:
            raise MaskMismatchError(
                f"{key}: mask shape {shape} does not match {tensor_name} shape {tuple(tensor.shape)}"
            )
        for m in tied.get(id(tensor), [module]):
            parametrize.register_parametrization(m, tensor_name, p)
            if not m.__dict__.get(LOAD_HOOK_ATTR):
                m.register_load_state_dict_pre_hook(_load_plain_keys)
                m.__dict__[LOAD_HOOK_ATTR] = True
    guard_saving(model)
    return model


LOAD_HOOK_ATTR = "_ticketlab_load_hook"  # set once the module takes plain keys back (`_load_plain_keys`)
PLAIN_UNDER_MASK = (
    "a checkpoint loaded onto a masked model has non-zero weights where the mask prunes (the dense "
    "model's, or another ticket's?): they are loaded masked, so the model does not compute the checkpoint"
)


def _load_plain_keys(module: nn.Module, state: dict[str, Tensor], prefix: str, *_: Any) -> None:
    """Load-state-dict pre-hook of a masked module: a plain `X.weight` / `X.bias` (what
    `save_pretrained` writes) loads into the parametrization's `original`; the mask's own tensors,
    which such a checkpoint lacks, stay as they are (see the module docstring)."""
    for tensor in MASKABLE:
        mask = _mask_param(module, tensor)  # None: unmasked now (the hook outlives `remove_mask`)
        plain, base = prefix + tensor, f"{prefix}parametrizations.{tensor}."
        if mask is None or plain not in state or base + "original" in state:
            continue
        value = state.pop(plain)
        state[base + "original"] = value
        for name, t in getattr(module.parametrizations, tensor).state_dict().items():
            state.setdefault(base + name, t)  # "0.mask": the mask in force
        m = mask.current_mask()
        if tuple(value.shape) == tuple(m.shape) and bool((value.to(m.device) != 0).logical_and(~m).any()):
            warnings.warn(PLAIN_UNDER_MASK, stacklevel=2)


def masked_state_dict(model: nn.Module, state: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """`state` (default: `model.state_dict()`) with each masked tensor as the model computes it,
    W ⊙ M, under its plain name (`X.weight`); the masks' own keys (`X.parametrizations.weight.*`)
    are left out. Tied weights stay one tensor, so a checkpoint writer can still de-duplicate them."""
    state = dict(model.state_dict() if state is None else state)
    done: dict[tuple, Tensor] = {}  # tied modules share the original and the parametrization
    for name, module in model.named_modules(remove_duplicate=False):
        if not parametrize.is_parametrized(module):
            continue
        for tensor_name, chain in module.parametrizations.items():
            prefix = f"{name}.parametrizations.{tensor_name}.".lstrip(".")
            original = state.get(prefix + "original")
            if original is None or not any(isinstance(p, MaskParametrization) for p in chain):
                continue  # not in this state dict, or not a mask's parametrization
            for key in [k for k in state if k.startswith(prefix)]:
                del state[key]
            ident = (original.data_ptr(), original.dtype, tuple(original.shape), *map(id, chain))
            if ident not in done:
                done[ident] = _through(chain, original)
            state[f"{name}.{tensor_name}".lstrip(".")] = done[ident]
    return state


def _through(chain: nn.ModuleList, original: Tensor) -> Tensor:
    """The value of a parametrized tensor for `original` (on the parametrizations' device)."""
    with torch.no_grad():
        value = original.to(chain.original.device)
        for p in chain:
            value = p(value)
    return value.detach().to(original.device).contiguous()


# Each returns why a model cannot be saved as plain weights, or None (registered by the modules
# whose masks are not weights: `masks.gates`, importance gates; a ticket in use is weights).
SAVE_REFUSALS: list[Callable[[nn.Module], str | None]] = []


def guard_saving(model: nn.Module) -> None:
    """Route `save_pretrained` of `model` and of every `PreTrainedModel` inside it through
    `SAVE_REFUSALS` and `masked_state_dict` (an instance attribute, like the fused forwards; with
    nothing masked it saves what the class's own would)."""
    for m in model.modules():
        if callable(getattr(type(m), "save_pretrained", None)):
            m.__dict__["save_pretrained"] = types.MethodType(_save_pretrained, m)


def _save_pretrained(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """The class's `save_pretrained`, given the masked weights as its `state_dict`."""
    for refusal in SAVE_REFUSALS:
        why = refusal(self)
        if why:
            raise TicketlabError(f"cannot save_pretrained this model: {why}")
    save = type(self).save_pretrained
    bound = inspect.signature(save).bind(self, *args, **kwargs)
    bound.arguments["state_dict"] = masked_state_dict(self, bound.arguments.get("state_dict"))
    return save(*bound.args, **bound.kwargs)


def apply_mask(model: nn.Module, mask: Mask) -> nn.Module:
    """Mask `model` in place: each tensor named in `mask` (weights, biases) becomes `tensor ⊙ mask`.
    Returns the model."""
    device_of = {k: masked_tensor(m, k).device for k, m in resolve_modules(model, list(mask)).items()}
    return attach(model, {k: BinaryMask(mask[k].to(device)) for k, device in device_of.items()})


def _masked_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module, MaskParametrization]]:
    """(key, module, parametrization) of every masked tensor, the key as a mask file names it."""
    for name, module in model.named_modules():
        for tensor in MASKABLE:
            p = _mask_param(module, tensor)
            if p is not None:
                yield f"{name}.{tensor}", module, p


def remove_mask(model: nn.Module, squash: bool = True) -> nn.Module:
    """Take every mask off. `squash=True` writes the zeros into the weights; False restores dense weights.

    The Parameter objects survive (torch sets their data in place), so ties and optimizer references
    stay valid.
    """
    for key, module, _ in list(_masked_modules(model)):
        _own_class(module)
        parametrize.remove_parametrizations(module, split_key(key)[1], leave_parametrized=squash)
        module.__dict__.pop("forward", None)  # a fused forward (pruning.scores) goes with its mask
    encoder_of(model).__dict__.pop(NAMED_ATTR, None)  # named masks (`masks.named`) go with them
    return model


def _own_class(module: nn.Module) -> None:
    """Give a parametrized module a class of its own (same bases, same attributes). A deep copy of a
    parametrized module shares torch's injected class with the original, and removing a
    parametrization deletes its property from that class: without this, taking the masks off a
    copy (`compact` of a masked model) would break the original."""
    cls = type(module)
    own = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, own)


def current_mask(model: nn.Module) -> Mask:
    """The mask in force on the model's encoder, keyed like a mask file."""
    encoder = encoder_of(model)
    return Mask({key: p.current_mask().detach().cpu().clone() for key, _, p in _masked_modules(encoder)})


def is_masked(model: nn.Module) -> bool:
    return any(True for _ in _masked_modules(model))


# Other kinds of mask a model can carry (importance gates, `masks.gates`) register how to tell
# they are there and how to switch them off, so that `masks_disabled` is the one switch (the KD teacher
# is the dense model, whatever masks it) and `has_masks` the one question.
@dataclasses.dataclass(frozen=True)
class MaskKind:
    present: Callable[[nn.Module], bool]
    disabled: Callable[[nn.Module], contextlib.AbstractContextManager]


MASK_KINDS: list[MaskKind] = []


def has_masks(model: nn.Module) -> bool:
    """Whether anything masks `model`: weight masks or a registered kind (unit gates)."""
    return is_masked(model) or any(kind.present(model) for kind in MASK_KINDS)


@contextlib.contextmanager
def masks_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run the dense model: the KD teacher is the same model with every mask switched off (weight
    masks and every kind registered in `MASK_KINDS`)."""
    params = {id(p): p for _, _, p in _masked_modules(model)}.values()
    before = [p.enabled for p in params]
    with contextlib.ExitStack() as others:
        for kind in MASK_KINDS:
            others.enter_context(kind.disabled(model))
        for p in params:
            p.enabled = False
        try:
            yield model
        finally:
            for p, e in zip(params, before, strict=True):
                p.enabled = e
