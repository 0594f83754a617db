"""Compacted models in transformers' Auto classes: `AutoModel*.from_pretrained(compacted_dir)` after
`import ticketlab`; and PEFT's LoRA merge refused on a ticketed layer (`_guard_lora_merge`).

A compacted model's `config.json` says `model_type: "ticketlab-compact"` (its per-layer head and FFN
sizes fit no HF config; `ticketlab.models.compaction`). `import ticketlab` registers that type with
`AutoConfig` and an entry for it with `AutoModel`, `AutoModelForMaskedLM`,
`AutoModelForSequenceClassification` and `AutoModelForQuestionAnswering`, whose `from_pretrained` is
`ticketlab.models.load.load_compacted` with the head the Auto class names. What it returns is the
family's own class (a `BertForMaskedLM` with sliced layers), as `load_compacted` gives it.

`import ticketlab` stays light (no transformers, no torch, no PEFT): the registration is a
post-import hook that runs when transformers' auto modules (or PEFT's LoRA layers) are imported, or
at once when they already are. It uses only the module just imported (`configuration_auto`,
`modeling_auto`, `peft.tuners.lora.layer`), never `import transformers`, which may be
half-initialised at that moment.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

from ..core.errors import TicketlabError

MODEL_TYPE = "ticketlab-compact"  # as `ticketlab.models.compaction.MODEL_TYPE` (which imports torch)
CONFIGS = "transformers.models.auto.configuration_auto"
MODELS = "transformers.models.auto.modeling_auto"
LORA = "peft.tuners.lora.layer"  # PEFT's LoRA layers, whose merge is guarded
HEADS = {  # Auto class -> ticketlab's head (`models.load.Head`)
    "AutoModel": "base",
    "AutoModelForMaskedLM": "mlm",
    "AutoModelForSequenceClassification": "seq-cls",
    "AutoModelForQuestionAnswering": "qa",
}
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder")
TicketlabCompactConfig: type | None = None  # made on registration (it subclasses transformers' config)


def _register_config(module: ModuleType) -> None:
    """`AutoConfig.register` the compacted type: its config keeps every field of config.json."""
    global TicketlabCompactConfig
    if TicketlabCompactConfig is None:
        # loaded by `configuration_auto` (this hook runs as it is imported: no `import` of transformers)
        PretrainedConfig = sys.modules["transformers.configuration_utils"].PretrainedConfig
        TicketlabCompactConfig = type(
            "TicketlabCompactConfig", (PretrainedConfig,), {"model_type": MODEL_TYPE, "__module__": __name__}
        )
    if MODEL_TYPE not in module.CONFIG_MAPPING:
        module.AutoConfig.register(MODEL_TYPE, TicketlabCompactConfig)


class CompactedAuto:
    """The Auto classes' entry for a compacted model (one subclass per head; see the module docstring)."""

    head = "base"
    config_class: type | None = None

    @classmethod
    def from_pretrained(cls, path: Any, *args: Any, config: Any = None, **kwargs: Any) -> Any:
        # lazy: `import ticketlab` registers this entry without torch; the model loads when it is asked for
        from ..models.load import load_compacted

        dtype = kwargs.pop("dtype", None)
        dtype = kwargs.pop("torch_dtype", None) if dtype is None else dtype
        for name in ("trust_remote_code", "token", *HUB_KWARGS):
            kwargs.pop(name, None)  # a local folder: nothing to fetch
        kwargs.pop("adapter_kwargs", None)
        for name in [k for k in kwargs if k.startswith("_")]:
            kwargs.pop(name)  # the Auto classes' own markers (`_from_auto`, `_commit_hash`): no setting
        ignore = bool(kwargs.pop("ignore_mismatched_sizes", False))
        if args or kwargs:
            unknown = ", ".join([*(f"argument {i + 1}" for i in range(len(args))), *kwargs])
            raise TicketlabError(f"{path}: a compacted model loads with config overrides only, not {unknown}")
        overrides = {} if config is None else config.to_dict()  # config.json plus the Auto call's own
        for name in ("model_type", "transformers_version", "architectures", "dtype", "torch_dtype"):
            overrides.pop(name, None)  # the config's dtype is the file's: the call's `dtype` decides
        return load_compacted(path, cls.head, ignore_mismatched_sizes=ignore, dtype=dtype, **overrides)

    @classmethod
    def _from_config(cls, *args: Any, **kwargs: Any) -> Any:
        raise TicketlabError("a compacted model is rebuilt from its folder: AutoModel*.from_pretrained(dir)")


def _register_models(module: ModuleType) -> None:
    """`AutoModel*.register` one `CompactedAuto` per head (the config type first, if not yet)."""
    _register_config(sys.modules[CONFIGS])
    for auto, head in HEADS.items():
        entry = type(f"Compacted{auto.removeprefix('Auto')}", (CompactedAuto,), {"head": head})
        entry.config_class = TicketlabCompactConfig
        getattr(module, auto).register(TicketlabCompactConfig, entry, exist_ok=True)


def _guard_lora_merge(module: ModuleType) -> None:
    """PEFT's LoRA merge adds the update to `base_layer.weight.data`, which on a ticketed layer (a
    parametrization: the weight is computed, W ⊙ M) is a temporary: it merged nothing and said
    nothing. Wrapped to refuse in one line where the base layer is masked (`masks.peft_tickets`:
    `merge_under_mask` merges under the mask); every other layer merges as PEFT does."""
    for cls in (module.Linear, module.Embedding):
        if not getattr(cls.merge, "_ticketlab_guard", False):
            cls.merge = _guarded(cls.merge)


def _refuse_masked_merge(layer: Any) -> None:
    # lazy: `import ticketlab` installs the guard without torch; this runs inside PEFT's merge
    from .peft_tickets import refuse_masked_merge

    refuse_masked_merge(layer)


def _guarded(merge: Any) -> Any:
    def guarded_merge(self: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse_masked_merge(self)
        return merge(self, *args, **kwargs)

    guarded_merge._ticketlab_guard = True  # type: ignore[attr-defined]
    return guarded_merge


_AFTER = {CONFIGS: _register_config, MODELS: _register_models, LORA: _guard_lora_merge}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds the watched modules with the other finders and runs their registration once loaded."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in _AFTER:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return None
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            _AFTER[name](module)

        loader.exec_module = exec_module  # this loader is this module's own (one per spec)
        return spec


def install() -> None:
    """Register now where the watched modules are loaded, and when they are, where not."""
    for name, register in _AFTER.items():
        if name in sys.modules:
            register(sys.modules[name])
    if not any(isinstance(f, _AfterImport) for f in sys.meta_path) and not set(_AFTER) <= set(sys.modules):
        sys.meta_path.insert(0, _AfterImport())
