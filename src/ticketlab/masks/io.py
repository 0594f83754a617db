"""Mask files: a directory with `mask_config.json` and bit-packed `masks.safetensors`.

A mask file is the unit that travels between steps, like a PEFT adapter. It never holds model
weights, only ~1 bit per target weight plus the provenance needed to reuse it safely: the base
model, a hash of the base weights it was found on, the method and its settings, library versions.
Nothing is unpickled: the config is JSON, the masks are safetensors (uint8, `numpy.packbits` order).

A mask with bias entries (`X.bias`, the weight form of a unit mask with FFN sub-layers) is written
as format version 2, so an older ticketlab refuses it in one line instead of failing to place the
bias keys; every other file stays version 1, byte for byte. The hash and the sparsity are over the
weights alone, as they always were (structured tickets keep their recorded hash).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..core.checks import check_fields, required
from ..core.errors import ConfigError, MaskFileError, MaskMismatchError, TicketlabError, printable_strings
from ..core.files.atomic import atomic_write_bytes, atomic_write_text, to_json
from ..core.files.inputs import check_regular_unopened, open_safetensors, read_json
from ..core.files.tensors import safetensors_bytes
from ..core.hub import path_shaped
from ..core.outputs import atomic_dir
from ..models.arch import ARCHS
from .apply import absent_pooler, apply_mask, dense_weight, masked_tensor, resolve_modules
from .hub import mask_dir
from .mask import Mask, is_bias_key
from .nm import follows
from .pattern import parse_pattern
from .targets import targets_repr
from .units import Structure, UnitMask, check_structure_bound, to_weight_mask

CONFIG_NAME = "mask_config.json"
MASKS_NAME = "masks.safetensors"
FORMAT = "ticketlab-mask"
FORMAT_VERSION = 1  # what a mask of weights is written as
BIAS_FORMAT_VERSION = 2  # a mask with bias entries; also the newest this ticketlab reads
RANKINGS = ("local", "global")


def library_versions() -> dict[str, str]:
    return {
        "ticketlab": __version__,
        "torch": torch.__version__,
        "transformers": metadata.version("transformers"),  # not imported: `info` reads a mask without it
        "python": platform.python_version(),
    }


def created_stamp() -> str:
    """When a mask config is made (UTC, to the second). Looked up at each call, so that the test suite
    can give every stamp its own second, as a busy machine may (tests/conftest.py)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class MaskConfig:
    """What a mask is and where it came from. Validated on creation and on load."""

    method: str
    sparsity: float  # the target: fraction of target weights set to zero
    base_model: str  # path or hub id the mask was found on
    base_model_hash: str  # `weights_hash` of the target weights it was found on
    model_type: str
    targets: str | list[str]
    ranking: str | None = "local"
    seed: int | None = None
    achieved_sparsity: float | None = None
    search: dict[str, Any] = field(default_factory=dict)  # method-specific settings and log summary
    kind: Literal["weights", "structured"] = "weights"  # structured: a ticket of heads / FFN units
    units: dict[str, Any] | None = None  # structured: granularity, structure, kept units per layer
    pattern: str | None = None  # "N:M": N kept of every M along the input dim; None: elementwise
    # `weights_hash` without the pooler's keys, for a mask that prunes a pooler: what a model built
    # without one (*ForMaskedLM, `apply.absent_pooler`) is checked against. Written only when set.
    encoder_hash: str | None = None
    versions: dict[str, str] = field(default_factory=library_versions)
    created: str = field(default_factory=lambda: created_stamp())  # provenance, not what the mask is
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        wrong = check_fields(self)  # a file may hold anything: every field is checked
        if wrong:
            raise ValueError(wrong)
        if not 0.0 <= float(self.sparsity) < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity!r}")
        if self.achieved_sparsity is not None and not 0.0 <= self.achieved_sparsity <= 1.0:
            raise ValueError(f"achieved_sparsity must be in [0, 1], got {self.achieved_sparsity!r}")
        if isinstance(self.targets, str):  # a regex: compiled when the mask is applied or a model pruned
            try:
                re.compile(self.targets)
            except re.error as e:
                raise ValueError(f"targets is not a valid regex ({e}): {self.targets!r}") from None
        if self.ranking is not None and self.ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {RANKINGS} or None, got {self.ranking!r}")
        if not self.method:
            raise ValueError("method must be a non-empty string")
        if not self.base_model:  # read as the model to load when none is given: "" would be "."
            raise ValueError("base_model must be a non-empty string (the model the mask was found on)")
        if (self.kind == "structured") != (self.units is not None):
            raise ValueError("a structured mask needs a 'units' object, and only a structured mask has one")
        if self.pattern is not None:
            self._check_pattern()
        if self.format != FORMAT:
            raise ValueError(f"not a ticketlab mask (format {self.format!r})")
        if self.format_version > BIAS_FORMAT_VERSION:
            raise ValueError(f"format version {self.format_version} is newer than this ticketlab reads")
        if self.format_version < FORMAT_VERSION:
            raise ValueError(f"format version {self.format_version} is older than any ticketlab wrote")

    def _check_pattern(self) -> None:
        try:
            nm = parse_pattern(self.pattern)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        if self.kind != "weights":
            raise ValueError(f"pattern {nm} is for weight masks, not {self.kind} ones")
        if abs(float(self.sparsity) - nm.sparsity) > 1e-9:
            raise ValueError(f"sparsity {self.sparsity} disagrees with pattern {nm} ({nm.sparsity:g})")

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        mask: Mask,
        *,
        method: str,
        sparsity: float,
        base_model: str,
        targets: str | list[str] | None = None,
        **kw: Any,
    ) -> MaskConfig:
        """The config of `mask`, found on `model` (loaded from `base_model`): hash and targets filled in."""
        arch = ARCHS.get(model.config.model_type)
        pooler = [k for k in mask if arch is not None and arch.pooler and k.rpartition(".")[0] == arch.pooler]
        encoder = weights_hash(model, [k for k in mask if k not in pooler]) if pooler else None
        return cls(
            method=method,
            sparsity=sparsity,
            base_model=portable_path(base_model),
            base_model_hash=weights_hash(model, list(mask)),
            model_type=model.config.model_type,
            targets=targets_repr(targets, model),
            encoder_hash=encoder,
            **kw,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        # A mask without a pooler has no encoder hash: the key is left out, not written as null,
        # so its file (and every content key read from it) holds only the fields it uses.
        if d["encoder_hash"] is None:
            del d["encoder_hash"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MaskConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(set(required(cls)) - set(d))
        if missing:
            raise ValueError(f"missing field(s): {', '.join(missing)}")
        return cls(**{k: v for k, v in d.items() if k in names})


def units_of(raw: Mask, config: MaskConfig, path: str | os.PathLike) -> tuple[UnitMask, Structure]:
    """The units and structure of a structured file: its unit tensors checked against its config
    (`MaskFileError` when they disagree)."""
    where = Path(path)
    info = config.units or {}
    try:
        structure = Structure.from_dict(info["structure"])
    except (KeyError, TypeError, ValueError) as e:
        raise MaskFileError(f"{where}: invalid 'units.structure' in the mask config ({e})") from None
    check_structure_bound(structure, config.base_model, where)
    if set(raw) - {"head", "ffn", "neuron"} or "head" not in raw:
        raise MaskFileError(
            f"{where}: a structured mask holds 'head' and 'ffn'/'neuron' tensors, got {sorted(raw)}"
        )
    try:
        units = UnitMask(**dict(raw.items()))
        units.check_structure(structure, str(where))
    except (ValueError, MaskMismatchError) as e:
        raise MaskFileError(f"{where}: unit tensors do not fit the recorded structure ({e})") from None
    if info.get("granularity") != units.granularity or info.get("kept") != units.kept_per_layer():
        raise MaskFileError(f"{where}: the kept units in the mask config disagree with its tensors")
    if info.get("pruned") != pruned_record(units):  # what `info` prints: the tensors' own fractions
        raise MaskFileError(f"{where}: the pruned fractions in the mask config disagree with its tensors")
    return units, structure


def pruned_record(units: UnitMask) -> dict[str, float]:
    """The fraction of each kind of unit pruned, as a structured config records it (`units.pruned`)."""
    return {n: round(v, 6) for n, v in units.level().items()}


def weight_mask_of(raw: Mask, config: MaskConfig, path: str | os.PathLike) -> Mask:
    """The weight mask of a structured file's unit tensors (used by `masks.load_mask`)."""
    units, structure = units_of(raw, config, path)
    return to_weight_mask(units, structure)


def portable_path(name_or_path: str | os.PathLike) -> str:
    """A local model directory as an absolute path (it then resolves from anywhere), a hub id as is."""
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else str(name_or_path)


def recorded_base(mask_dir: str | os.PathLike) -> str:
    """The base model a mask records, or one line saying it is not found here (pass --model)."""
    base = load_mask(mask_dir)[1].base_model
    path = Path(base).expanduser()
    if path.exists():
        return base
    if path_shaped(base):
        raise MaskFileError(
            f"{mask_dir}: its base model {base} is not found here; pass the model (--model) explicitly"
        )
    return base  # a hub id (a relative path "org/name" not found here reads as one: tried on the hub)


def weights_hash(model: nn.Module, keys: list[str]) -> str:
    """sha256 over the names, shapes and float32 values of the given (dense) target weights (bias
    keys are left out: the hash names the weights a mask was found on, whether or not it masks biases)."""
    h = hashlib.sha256()
    for key, module in sorted(resolve_modules(model, [k for k in keys if not is_bias_key(k)]).items()):
        w = dense_weight(module).detach().to("cpu", torch.float32).contiguous()
        h.update(f"{key}:{tuple(w.shape)};".encode())
        h.update(w.numpy().tobytes())
    return "sha256:" + h.hexdigest()


def pack(mask: Mask) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {n: torch.from_numpy(np.packbits(t.cpu().numpy().ravel())) for n, t in mask.items()}
    meta = {"format": FORMAT, "shapes": json.dumps({n: list(t.shape) for n, t in mask.items()})}
    return tensors, meta


def unpack(tensors: dict[str, torch.Tensor], meta: dict[str, str], path: Path) -> Mask:
    try:
        shapes = json.loads(meta["shapes"])
    except (KeyError, TypeError, json.JSONDecodeError, RecursionError):
        raise MaskFileError(f"{path}: no valid 'shapes' metadata (not a ticketlab mask file?)") from None
    if not isinstance(shapes, dict) or not shapes:
        raise MaskFileError(f"{path}: 'shapes' metadata must map one or more weight names to shapes")
    for name, shape in shapes.items():  # a weight of no elements has no sparsity, nothing to mask
        if not (isinstance(shape, list) and all(type(d) is int and d >= 1 for d in shape)):
            raise MaskFileError(f"{path}: shape of '{name}' must be a list of positive sizes, got {shape!r}")
    if set(shapes) != set(tensors):
        raise MaskFileError(f"{path}: metadata and tensors name different weights")
    out = {}
    for name, shape in shapes.items():
        packed = tensors[name]
        n = math.prod(shape)
        if packed.dtype != torch.uint8 or packed.ndim != 1 or packed.numel() != (n + 7) // 8:
            raise MaskFileError(f"{path}: tensor '{name}' has the wrong size for shape {tuple(shape)}")
        bits = np.unpackbits(packed.numpy(), count=n).astype(bool)
        out[name] = torch.from_numpy(bits).reshape(shape)
    return Mask(out)


def save_mask(
    mask: Mask,
    config: MaskConfig,
    out_dir: str | os.PathLike,
    *,
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write a mask directory atomically. `extra` adds safetensors files (e.g. a trained MLM head)."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, kind="mask") as tmp:
        write_mask_files(mask, config, tmp)
        for fname, ts in (extra or {}).items():
            atomic_write_bytes(
                tmp / fname, safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in ts.items()})
            )
    return out_dir


def write_mask_files(mask: Mask, config: MaskConfig, directory: Path) -> None:
    """The two files of a mask directory, into `directory` (which the caller writes atomically)."""
    if config.achieved_sparsity is None:
        config = dataclasses.replace(config, achieved_sparsity=round(mask.sparsity, 6))
    if mask.biases() and config.format_version < BIAS_FORMAT_VERSION:
        config = dataclasses.replace(config, format_version=BIAS_FORMAT_VERSION)
    tensors, meta = pack(mask)
    atomic_write_bytes(directory / MASKS_NAME, safetensors_bytes(tensors, metadata=meta))
    atomic_write_text(directory / CONFIG_NAME, to_json(config.to_dict(), indent=2) + "\n")


def load_mask(path: str | os.PathLike, *, as_units: bool = False) -> tuple[Mask, MaskConfig]:
    """Read a mask directory, or raise `MaskFileError` naming the file and the problem.

    A structured ticket (`kind` "structured") loads as its equivalent weight mask, so every verb
    takes one; `as_units=True` gives its unit tensors instead (see `ticketlab.masks.unit_io`). A hub
    mask (`org/repo/sub/folder`) is fetched through the hub's cache (`masks.hub`).
    """
    path = mask_dir(path)
    if not path.is_dir():
        raise MaskFileError(f"{path}: mask directory not found")
    cfg_path, masks_path = path / CONFIG_NAME, path / MASKS_NAME
    if not cfg_path.is_file() and (path / "config.json").is_file():  # a model passed where a mask goes
        raise MaskFileError(
            f"{path}: a model directory, not a mask (no {CONFIG_NAME}); a mask is what "
            "`ticketlab prune` or `ticketlab search` writes"
        )
    try:
        raw = read_json(cfg_path, "mask config")
        printable_strings(raw, str(cfg_path), MaskFileError)  # `info` and reports show its fields
    except TicketlabError as e:
        raise MaskFileError(str(e)) from None
    try:
        config = MaskConfig.from_dict(raw if isinstance(raw, dict) else {})
    except (ValueError, TypeError) as e:
        raise MaskFileError(f"{cfg_path}: invalid mask config: {e}") from None
    check_regular_unopened(masks_path, "masks file", MaskFileError)  # missing, a folder or a device: said so
    try:
        with open_safetensors(masks_path, "masks file", MaskFileError) as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:  # safetensors raises its own error types for corrupt/truncated files
        raise MaskFileError(f"{masks_path}: corrupt or truncated safetensors file ({e})") from None
    mask = unpack(tensors, meta, masks_path)
    nm = parse_pattern(config.pattern)  # checked with the config; none: elementwise
    if nm is not None and (bad := next((k for k, t in mask.weights().items() if not follows(t, nm)), None)):
        raise MaskFileError(f"{masks_path}: '{bad}' does not keep {nm.n} of every {nm.m} weights ({nm})")
    recorded = config.achieved_sparsity  # written from these tensors: another value is another mask's
    if config.kind == "weights" and recorded is not None and abs(round(mask.sparsity, 6) - recorded) > 1e-6:
        raise MaskFileError(
            f"{path}: {CONFIG_NAME} records achieved sparsity {recorded:.6g}, {MASKS_NAME} holds "
            f"{mask.sparsity:.6g}: files of two masks? Copy both from one mask's folder"
        )
    if config.kind == "structured" and not as_units:
        mask = weight_mask_of(mask, config, path)
    return mask, config


def check_fits(
    mask: Mask,
    config: MaskConfig,
    model: nn.Module,
    *,
    source: str | os.PathLike = "mask",
    check_hash: bool = True,
) -> None:
    """Raise `MaskMismatchError` unless `mask` fits `model` (names, shapes and, optionally, base weights)."""
    try:
        modules = resolve_modules(model, list(mask))
    except MaskMismatchError as e:
        raise MaskMismatchError(f"{source}: {e} (mask found on {config.base_model})") from None
    for key, module in modules.items():
        have = tuple(masked_tensor(module, key).shape)
        if have != tuple(mask[key].shape):
            raise MaskMismatchError(
                f"{source}: {key} has shape {tuple(mask[key].shape)} in the mask but "
                f"{have} in the model (mask found on {config.base_model})"
            )
    if check_hash:
        have = weights_hash(model, list(mask))
        want = config.base_model_hash
        if absent_pooler(model, list(mask)):  # a model without the pooler the mask prunes
            if config.encoder_hash is None:
                raise MaskMismatchError(
                    f"{source}: prunes the pooler, which this model lacks (built without one, as "
                    "*ForMaskedLM), and records no hash without it; load the model with its pooler, or "
                    "pass --ignore-hash (check_hash=False)"
                )
            want = config.encoder_hash
        if have != want:
            raise MaskMismatchError(
                f"{source}: the model's weights differ from those the mask was found on "
                f"({config.base_model}); pass --ignore-hash (check_hash=False) to apply it anyway"
            )


def load_mask_onto(model: nn.Module, path: str | os.PathLike, *, check_hash: bool = True) -> MaskConfig:
    """Load a mask directory, check that it fits `model`, and apply it in place. Returns its config."""
    mask, config = load_mask(path)
    check_fits(mask, config, model, source=path, check_hash=check_hash)
    apply_mask(model, mask)
    return config
