"""Loading pre-trained models and tokenizers by local path or hub id, with errors a user can act on.

Every command takes `--model PATH_OR_ID`. A local directory is used as it is; anything else is
passed to the hub (which works only online). One mask fits every head: masks are keyed relative to
the encoder (`model.base_model`), so a mask found on `BertForMaskedLM` loads onto
`BertForSequenceClassification` of the same checkpoint.

Weights are read from safetensors only (`use_safetensors=True`; `models.weights.check_weights`):
unpickling a file can run its code, so a pickled `pytorch_model.bin` is refused in one line with the
command that converts it; a truncated safetensors file is one line too. What a checkpoint's weights
must be, and their keys as a model keys them, is `models.weights`.

The checks of a `--model` argument before anything loads, and what a config says of its head and
positions, are torch-free: `models.source`.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import torch
import transformers
from huggingface_hub.errors import StrictDataclassError  # a field of the wrong type in config.json
from torch import Tensor, nn
from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES
from transformers.utils import logging as hf_logging

from ..core.errors import MaskFileError, TicketlabError
from ..core.files.inputs import load_safetensors, read_json
from ..core.hub import cache_only
from .compaction import MANIFEST, MANIFEST_ATTR, flags_from_manifest, is_compacted, read_manifest, slice_units
from .source import Head, check_source, head_of, wrap_load_error
from .weights import align_keys, body_prefixes, check_finite, check_weights, disk_shapes

_AUTO = {
    "mlm": "AutoModelForMaskedLM",
    "seq-cls": "AutoModelForSequenceClassification",
    "qa": "AutoModelForQuestionAnswering",
    "base": "AutoModel",
}


def auto_class(head: Head) -> type:
    """transformers' Auto class of a head."""
    return getattr(transformers, _AUTO[head])


def quiet_transformers() -> None:
    """Silence transformers' per-load progress bars and 'newly initialised head' warnings."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _hub(name: str) -> dict[str, bool]:
    """A hub id's keyword: its cache alone where the hub cannot be reached (`core.hub`); nothing for a
    local directory, which never asks the hub."""
    return {} if Path(name).expanduser().is_dir() else cache_only()


def load_config(name_or_path: str | os.PathLike) -> PretrainedConfig:
    name = check_source(name_or_path)
    if is_compacted(name):
        return compacted_config(name)
    try:
        config = AutoConfig.from_pretrained(name, **_hub(name))
    except (OSError, ValueError, KeyError, TypeError, StrictDataclassError, RecursionError) as e:
        raise wrap_load_error(name, "config", e) from None
    _check_encoder(config, name)
    return config


def stored_dtype(model: str) -> torch.dtype:
    """The floating dtype a checkpoint's config records for its weights (float32 where it records
    none, or one that is not floating: transformers' default)."""
    dtype = load_config(model).dtype
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def _check_encoder(config: PretrainedConfig, name: str) -> None:
    """Refuse decoders and encoder-decoders (GPT-2, T5, BART) before any work: every verb assumes a
    BERT-like encoder with a masked-LM head, and they would fail late in a traceback."""
    model_type = getattr(config, "model_type", "")
    if (
        model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        or getattr(config, "is_encoder_decoder", False)
        or getattr(config, "is_decoder", False)
    ):
        raise TicketlabError(
            f"{name}: a {model_type or 'unknown'} model; ticketlab supports encoder models with a "
            "masked-LM head (BERT, RoBERTa, ELECTRA and relatives), not decoders or encoder-decoders"
        )


def load_model(name_or_path: str | os.PathLike, head: Head = "mlm", **kwargs) -> PreTrainedModel:
    """Load a pre-trained model with the given head; kwargs go to `from_pretrained` (e.g. num_labels).

    A model compacted by `ticketlab compact` (per-layer head and FFN sizes) loads too.
    """
    name = check_source(name_or_path)
    # transformers 5 loads in the file's dtype ("auto"): a float16 checkpoint would train and
    # compute scores in float16 on a CPU. ticketlab works in float32 (autocast where asked).
    kwargs.setdefault("dtype", torch.float32)
    if is_compacted(name):  # written in its base's dtype (`compact`): cast as from_pretrained does
        return check_finite(load_compacted(name, head, **kwargs), name)
    config = load_config(name)  # a decoder or encoder-decoder is refused here, before its weights load
    if Path(name).expanduser().is_dir():
        check_weights(Path(name).expanduser())
        check_config_fits(Path(name).expanduser(), config)
    quiet_transformers()
    try:  # a hub repository with pickled weights only: refused by transformers, as OSError
        model = auto_class(head).from_pretrained(name, use_safetensors=True, **_hub(name), **kwargs)
    except (OSError, ValueError, KeyError, RecursionError) as e:
        raise wrap_load_error(name, f"model ({head} head)", e) from None
    except RuntimeError as e:  # transformers' state-dict report: tensors of other shapes than config.json
        if "state_dict" not in str(e) and "mismatched_sizes" not in str(e):
            raise
        raise TicketlabError(
            f"{name}: cannot load model ({head} head): its weights' shapes do not match its config.json"
        ) from None
    return check_finite(model, name)


@functools.lru_cache(maxsize=1)
def shared_base_model(name: str) -> PreTrainedModel:
    """The dense encoder of `name` (no head), loaded once per process and shared by callers that only
    read it: one-shot pruning in a sweep, and the weights hash of structured tickets. Not to be
    modified: a caller that trains loads its own copy (`load_model`)."""
    return load_model(name, head="base")


def check_model(name_or_path: str | os.PathLike) -> None:
    """What `load_model` refuses in a model's files (its config, its weights' format and integrity),
    refused without loading the weights: verbs call it before they make their output directory."""
    config = load_config(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and not is_compacted(str(path)):
        check_weights(path)
        check_config_fits(path, config)


def check_config_fits(path: Path, config: PretrainedConfig) -> None:
    """The one size policy of every verb's model (`check_model`, `load_model`; a compacted one's is
    `_check_sizes`): before any allocation, a config.json may give no more layers than its weights
    hold, and the encoder it makes on the meta device (no memory) each header's shape."""
    disk = disk_shapes(path)
    held = {int(m.group(1)) for k in disk if (m := re.search(r"\.layers?\.(\d+)\.", k))}
    layers = getattr(config, "num_hidden_layers", None)
    if held and isinstance(layers, int) and layers > max(held) + 1:
        raise TicketlabError(
            f"{path / 'config.json'}: num_hidden_layers {layers}, but the weights hold {max(held) + 1} layers"
        )
    with torch.device("meta"):
        meta = auto_class("base").from_config(config)
    own = {k: tuple(t.shape) for k, t in meta.state_dict().items()}
    for key, shape in align_keys(disk, meta).items():
        if key in own and own[key] != shape:
            raise TicketlabError(
                f"{path / 'config.json'}: gives {key} the shape {own[key]}, but the weights hold {shape}"
            )


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """A tokenizer from a model directory, a tokenizer-only directory, or a hub id; from a model
    directory, refused in one line unless its ids fit the model's embeddings (`check_token_ids`)."""
    name = check_source(name_or_path, needs="*token*")
    # a compacted model's config.json names no transformers type: give its original config instead
    config = {"config": load_config(name)} if is_compacted(name) else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **_hub(name), **config)
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise wrap_load_error(name, "tokenizer", e) from None
    if (Path(name).expanduser() / "config.json").is_file():  # a model's folder, not a tokenizer's only
        check_token_ids(tokenizer, name, name)
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: str | os.PathLike) -> None:
    """Save `tokenizer` beside a model as it was loaded: without the truncation and padding its last
    call left on the fast backend (each call sets its own). Else a saved folder would depend on
    which encodings ran (none where features came from the cache), and would load with that
    call's `max_length` as its default."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    tokenizer.save_pretrained(directory)


def token_id_bound(tokenizer: PreTrainedTokenizerBase) -> int:
    """One more than the largest id `tokenizer` gives: the embeddings a model needs for it. Not
    `len(tokenizer)`: a `vocab.txt` that lists a word twice has 108 words of ids up to 108."""
    ids = tokenizer.get_vocab().values()
    return max(len(tokenizer), max(ids, default=-1) + 1)


def check_token_ids(tokenizer: PreTrainedTokenizerBase, tokenizer_name: Any, model: Any) -> None:
    """Refuse, before any work, a tokenizer whose ids reach past model `model`'s embeddings: the
    first such token would stop a run midway (an index out of range)."""
    need, rows = token_id_bound(tokenizer), load_config(model).vocab_size
    if need > rows:
        raise TicketlabError(
            f"{tokenizer_name}: the tokenizer gives ids up to {need - 1}, past the {rows} embeddings "
            f"of {model}; use the tokenizer the model was trained with"
        )


# --------------------------------------------------------------------------- compacted checkpoints


def _config(path: Path, manifest: dict[str, Any], **overrides: Any) -> PretrainedConfig:
    raw = read_json(path / "config.json", "model config")
    model_type = manifest.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise MaskFileError(f"{path / 'ticketlab_compact.json'}: unknown model type {model_type!r}")
    raw = {**raw, **overrides, "model_type": model_type}
    return CONFIG_MAPPING[model_type].from_dict(raw)


def _state_dict(path: Path) -> dict[str, Tensor]:
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise MaskFileError(f"{path}: no model*.safetensors weights")
    state: dict[str, Tensor] = {}
    for f in files:
        try:
            state.update(load_safetensors(f))
        except Exception as e:  # safetensors raises its own error types
            raise MaskFileError(f"{f}: corrupt or truncated safetensors file ({e})") from None
    return state


def compacted_config(path: str | os.PathLike, **overrides: Any) -> PretrainedConfig:
    """The config of a compacted model with its original model type (its head counts are the original's)."""
    path = Path(path).expanduser()
    if not is_compacted(path):
        raise MaskFileError(f"{path}: not a compacted model (no {MANIFEST})")
    return _config(path, read_manifest(path), **overrides)


def load_compacted(
    path: str | os.PathLike,
    head: Head | None = None,
    *,
    ignore_mismatched_sizes: bool = False,
    dtype: torch.dtype | str | None = None,
    **config_overrides: Any,
) -> PreTrainedModel:
    """Rebuild a model written by `save_compacted`.

    `head`: the saved one unless given (a new head starts from a fixed seed); keyword arguments
    override config fields (e.g. `num_labels`), as with `from_pretrained`; `ignore_mismatched_sizes`
    lets a saved task head of another shape be replaced by a new one (never the encoder's tensors).
    `dtype`: the floating-point type of the parameters (`torch.float32` or "float32"), as with
    `from_pretrained`; None or "auto" keeps the file's (a compacted model is written in its base's
    dtype, often float16: time or compare it with its base in one dtype).
    """
    if "torch_dtype" in config_overrides:  # transformers' older name: a dtype, not a config field
        alias = config_overrides.pop("torch_dtype")
        dtype = alias if dtype is None else dtype
    cast = _float_dtype(dtype, "dtype")  # before any work: a wrong dtype costs nothing
    path = Path(path).expanduser()
    config = compacted_config(path, **config_overrides)
    quiet_transformers()
    manifest = read_manifest(path)
    head = head or head_of(config)
    flags = flags_from_manifest(manifest, path)
    _check_sizes(path, config, head, flags, body_only=ignore_mismatched_sizes)  # before any allocation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a head the checkpoint lacks (a new classifier) starts the same every time
        model = auto_class(head).from_config(config)
    slice_units(model, *flags)
    state = align_keys(_state_dict(path), model)
    if ignore_mismatched_sizes:  # a task head of another shape: drop it, the new one stays
        own = model.state_dict()
        body = body_prefixes(model)
        state = {
            k: t
            for k, t in state.items()
            if k.startswith(body) or k not in own or tuple(own[k].shape) == tuple(t.shape)
        }
    _load_strict(model, state, path, allow_missing=head != head_of(config) or ignore_mismatched_sizes)
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if cast is not None:
        model.to(cast)
    elif len(dtypes) == 1:
        model.to(dtypes.pop())
    setattr(model, MANIFEST_ATTR, {k: v for k, v in manifest.items() if k != "mask"})
    return model.eval()


def _float_dtype(dtype: torch.dtype | str | None, name: str) -> torch.dtype | None:
    """A floating-point torch dtype from a dtype or its name ("float32", "torch.bfloat16"); None for
    None and "auto" (the file's own); anything else refused in one line."""
    if dtype is None or dtype == "auto":
        return None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), dtype)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        kinds = 'torch.float32, "bfloat16" or "auto"'
        raise TicketlabError(f"{name}: a floating-point torch dtype ({kinds}), got {dtype!r}")
    return dtype


# A structure's sizes, and the config fields that give them (other families' names map onto these).
_STRUCTURE_FIELDS = {
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
}


def _check_sizes(path: Path, config: PretrainedConfig, head: Head, flags: tuple, body_only: bool) -> None:
    """Refuse, in one line and before any allocation, a compacted model's config.json whose sizes its
    weights do not hold (a `vocab_size` of 4e8 was a 51 GB allocation): the layer sizes must be the
    manifest's (bounded when it was read), and the model they make, built on the meta device (no
    memory) and sliced, must have the shape of every tensor the safetensors headers list (`body_only`:
    of the encoder's, when a task head of another shape is to be replaced)."""
    structure = flags[0]
    for size, field in _STRUCTURE_FIELDS.items():
        if getattr(config, field, getattr(structure, size)) != getattr(structure, size):
            raise MaskFileError(
                f"{path / 'config.json'}: {field} {getattr(config, field)!r}, but its "
                f"{MANIFEST} gives {getattr(structure, size)}"
            )
    with torch.device("meta"):
        meta = auto_class(head).from_config(config)
    slice_units(meta, *flags)
    body = body_prefixes(meta) if body_only else ("",)
    own = {k: tuple(t.shape) for k, t in meta.state_dict().items() if k.startswith(body)}
    for key, shape in align_keys(disk_shapes(path), meta).items():
        if key in own and own[key] != shape:  # the shape comes of both files: the manifest sizes layers
            raise MaskFileError(
                f"{path}: its config.json and {MANIFEST} give {key} the shape {own[key]}, but the weights "
                f"hold {shape}"
            )


def _load_strict(model: nn.Module, state: dict[str, Tensor], path: Path, allow_missing: bool) -> None:
    """Load every tensor with its shape; only tied copies (and, for another head, its head) may be absent."""
    own = model.state_dict()
    for key, t in state.items():
        if key in own and tuple(own[key].shape) != tuple(t.shape):
            raise MaskFileError(
                f"{path}: {key} has shape {tuple(t.shape)} but the manifest gives {tuple(own[key].shape)}"
            )
    missing, unexpected = model.load_state_dict(state, strict=False)
    loaded = {own[k].data_ptr() for k in state if k in own}
    missing = [k for k in missing if own[k].data_ptr() not in loaded]  # tied to a loaded tensor: fine
    if allow_missing:  # another head (and maybe a pooler) than saved: embeddings and layers must be complete
        body = body_prefixes(model)
        missing = [k for k in missing if k.startswith(body)]
        unexpected = [k for k in unexpected if k.startswith(body)]
    if missing or unexpected:
        raise MaskFileError(
            f"{path}: weights do not match the manifest (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
