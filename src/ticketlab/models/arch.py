"""The architecture map: where each encoder family keeps what ticketlab prunes.

One entry per family (`ARCHS`, keyed by `config.model_type`), module names relative to the encoder
(`model.base_model`) and to one transformer layer:

- the word embeddings, the six matrices of every layer (Q, K, V, attention output, FFN in, FFN
  out) and the pooler where the family's base model has one: the default prunable targets (TAMT §3.2;
  both papers' code prunes `pooler.dense` too: TAMT's maskers, BERT-Tickets' IMP and OMP;
  `default_targets`);
- the unit layout: which rows of the attention projections a head owns (separate Q/K/V; one fused
  QKV matrix laid out [3, H, dh] as ModernBERT's `Wqkv`, or [H, 3, dh] as DeBERTa's `in_proj`), the
  columns of the attention output (per-head contexts concatenated head by head), and which rows of
  FFN-in an FFN neuron owns (one, or two in a gated FFN such as ModernBERT's `Wi`: input half, then
  gate half), with the same column of FFN-out;
- `shared`: ALBERT applies one layer `num_hidden_layers` times, so a per-layer unit has no weights
  of its own;
- `mlm_heads`: the whole MLM head of its *ForMaskedLM (transform, activation, norm, decoder), as
  children of the model applied in order (`HeadLayout`); families of one unit layout may differ here
  (BERT's `cls`, RoBERTa's `lm_head`). A family without one works when its head is one child.

A family of your own: `register_arch("mytype", Arch(...))` before calling ticketlab (the CLI's
`--targets` covers unstructured pruning without it); this one entry is all ticketlab knows of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..core.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

SEPARATE, FUSED, INTERLEAVED = "separate", "fused", "interleaved"  # how heads own QKV rows


@dataclass(frozen=True)
class HeadLayout:
    """How a family's *ForMaskedLM turns the encoder's last hidden state into logits, as its own
    `forward` does: children of the model (not of the encoder) applied in order; with
    `with_embeddings` the last one also takes the encoder's word embeddings (DeBERTa-v2/v3 without
    `legacy`: they are its decoder)."""

    parts: tuple[str, ...]
    with_embeddings: bool = False


@dataclass(frozen=True)
class Arch:
    """One family's layout (module names: `layers` relative to the encoder, `mlm_heads` to the
    model, the rest to a layer)."""

    embeddings: str  # the word embeddings
    layers: str  # the ModuleList of transformer layers
    qkv: tuple[str, ...]  # Q, K, V (three modules) or one fused module
    attn_out: str
    ffn_in: str
    ffn_out: str
    qkv_layout: str = SEPARATE  # SEPARATE, FUSED ([3, H, dh] rows) or INTERLEAVED ([H, 3, dh] rows)
    gated_ffn: bool = False  # FFN-in holds [2, I] rows: a neuron owns row i and row I + i
    shared: bool = False  # one layer applied num_hidden_layers times (ALBERT)
    # Compaction of heads (`masks.compacted`); None: this family's heads are not sliced (its
    # attention keeps per-head state elsewhere, e.g. MPNet's relative bias shared by every layer).
    attention: str | None = None  # the module whose head count attributes follow the slicing
    no_head_slicing: str = "its entry names no `attention` module"  # why heads are not sliced (None above)
    head_attrs: tuple[tuple[str, str], ...] = ()  # (attribute, "heads" | "width") set on `attention`
    head_extras: tuple[str, ...] = ()  # other per-head rows [H·dh] (modules or 1-D parameters)
    no_heads: bool = False  # a layer left without heads: `attention` becomes an empty context
    encoder_pattern: str | None = None  # `encoder_targets` as mask files store it (else built)
    # The pooler's matrix where the base model has one (BERT's `pooler.dense`, ALBERT's `pooler`),
    # relative to the encoder; a default target (`targets`). Not part of the unit layout.
    pooler: str | None = field(default=None, compare=False)
    # The MLM head: the first layout whose children the model has (DeBERTa's `cls`, or the newer
    # `lm_predictions`). Not part of the unit layout (`compare=False`): BERT and RoBERTa are one
    # layout, and mask files of BERT-layout families do not name their family (`Structure.to_dict`).
    mlm_heads: tuple[HeadLayout, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        want = 3 if self.qkv_layout == SEPARATE else 1
        if len(self.qkv) != want:
            raise ValueError(f"qkv_layout {self.qkv_layout!r} needs {want} qkv module(s), got {self.qkv}")
        if not isinstance(self.mlm_heads, tuple) or not all(
            isinstance(h, HeadLayout) for h in self.mlm_heads
        ):
            raise TypeError(f"mlm_heads must be a tuple of HeadLayout, got {self.mlm_heads!r}")

    @property
    def layer_modules(self) -> tuple[str, ...]:
        """The prunable matrices of one layer, in the order Q, K, V (or QKV), out, FFN in, FFN out."""
        return (*self.qkv, self.attn_out, self.ffn_in, self.ffn_out)

    @property
    def compact_heads(self) -> bool:
        return self.attention is not None

    def layer_key(self, layer: int, module: str, tensor: str = "weight") -> str:
        """The mask-file key of one layer's weight (or `tensor="bias"`: its bias), e.g.
        `encoder.layer.3.intermediate.dense.weight`."""
        return f"{self.layers}.{layer}.{module}.{tensor}"

    def encoder_targets(self) -> str:
        """The six matrices of every layer: a regex over module names relative to the encoder."""
        if self.encoder_pattern is not None:
            return self.encoder_pattern
        return rf"{re.escape(self.layers)}\.\d+\.({'|'.join(map(re.escape, self.layer_modules))})"

    def targets(self, pooler: bool = True) -> str:
        """The default targets (TAMT §3.2): the word embeddings, `encoder_targets` and, with `pooler`,
        the family's pooler (both papers' code prunes it; `pooler=False`: the pooler left dense)."""
        pattern = f"{re.escape(self.embeddings)}|{self.encoder_targets()}"
        return f"{pattern}|{re.escape(self.pooler)}" if pooler and self.pooler else pattern


# Q, K, V, attention output, FFN in, FFN out of every layer (Chen et al.'s IMP prunes these), written
# out as BERT's mask files and run settings have stored it.
BERT_LIKE_ENCODER = (
    r"encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense"
    r"|intermediate\.dense|output\.dense)"
)
_BERT = Arch(
    embeddings="embeddings.word_embeddings",
    layers="encoder.layer",
    qkv=("attention.self.query", "attention.self.key", "attention.self.value"),
    attn_out="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    attention="attention.self",
    head_attrs=(("num_attention_heads", "heads"), ("all_head_size", "width")),
    no_heads=True,
    encoder_pattern=BERT_LIKE_ENCODER,
    mlm_heads=(HeadLayout(("cls",)),),
    pooler="pooler.dense",
)
_LM_HEAD = (HeadLayout(("lm_head",)),)  # RoBERTa's and its descendants'
# DeBERTa's head: `cls` (legacy) or `lm_predictions`, whose decoder is the word embeddings
_DEBERTA_HEADS = (HeadLayout(("cls",)), HeadLayout(("lm_predictions",), with_embeddings=True))
_DEBERTA_V2 = Arch(
    embeddings="embeddings.word_embeddings",
    layers="encoder.layer",
    qkv=("attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj"),
    attn_out="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    attention="attention.self",
    head_attrs=(("num_attention_heads", "heads"), ("all_head_size", "width")),
    head_extras=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),  # without share_att_key
    no_heads=True,
    mlm_heads=_DEBERTA_HEADS,
)

ARCHS: dict[str, Arch] = {
    "bert": _BERT,
    "roberta": replace(_BERT, mlm_heads=_LM_HEAD),
    "xlm-roberta": replace(_BERT, mlm_heads=_LM_HEAD),
    "camembert": replace(_BERT, mlm_heads=_LM_HEAD),
    "electra": replace(  # ElectraModel has no pooler
        _BERT, mlm_heads=(HeadLayout(("generator_predictions", "generator_lm_head")),), pooler=None
    ),
    "deberta-v2": _DEBERTA_V2,  # DeBERTa-v2 and v3 (v3 is model_type deberta-v2)
    "deberta": Arch(
        embeddings="embeddings.word_embeddings",
        layers="encoder.layer",
        qkv=("attention.self.in_proj",),
        qkv_layout=INTERLEAVED,
        attn_out="attention.output.dense",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        attention="attention.self",
        head_attrs=(("num_attention_heads", "heads"), ("all_head_size", "width")),
        head_extras=(
            "attention.self.q_bias",
            "attention.self.v_bias",
            "attention.self.pos_proj",
            "attention.self.pos_q_proj",
        ),
        no_heads=True,
        mlm_heads=_DEBERTA_HEADS,
    ),
    "distilbert": Arch(
        embeddings="embeddings.word_embeddings",
        layers="transformer.layer",
        qkv=("attention.q_lin", "attention.k_lin", "attention.v_lin"),
        attn_out="attention.out_lin",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        # Its attention views Q/K/V as [..., -1, dh] and reads `n_heads` / `dim` only to build itself:
        # heads slice as BERT's do. `out_lin` lives inside `attention`, so a layer keeps a head.
        attention="attention",
        head_attrs=(("n_heads", "heads"), ("dim", "width")),
        mlm_heads=(HeadLayout(("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector")),),
    ),
    "mpnet": Arch(
        embeddings="embeddings.word_embeddings",
        layers="encoder.layer",
        qkv=("attention.attn.q", "attention.attn.k", "attention.attn.v"),
        attn_out="attention.attn.o",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        no_head_slicing="its attention keeps per-head state outside its projections (a relative bias "
        "shared by every layer)",
        mlm_heads=_LM_HEAD,
        pooler="pooler.dense",
    ),
    "albert": Arch(
        embeddings="embeddings.word_embeddings",
        layers="encoder.albert_layer_groups.0.albert_layers",
        qkv=("attention.query", "attention.key", "attention.value"),
        attn_out="attention.dense",
        ffn_in="ffn",
        ffn_out="ffn_output",
        shared=True,
        mlm_heads=(HeadLayout(("predictions",)),),
        pooler="pooler",
    ),
    "modernbert": Arch(
        embeddings="embeddings.tok_embeddings",
        layers="layers",
        qkv=("attn.Wqkv",),
        qkv_layout=FUSED,
        attn_out="attn.Wo",
        ffn_in="mlp.Wi",
        ffn_out="mlp.Wo",
        gated_ffn=True,
        attention="attn",  # reads its head count from Wqkv's rows
        mlm_heads=(HeadLayout(("head", "decoder")),),
    ),
}


def register_arch(model_type: str, arch: Arch) -> None:
    """Make a family known to every verb (default targets, structured tickets, its MLM head), e.g. a
    model of your own: `register_arch("mytype", Arch(embeddings=..., layers=..., qkv=(...), ...,
    mlm_heads=(HeadLayout(("transform", "norm", "decoder")),)))`."""
    if not isinstance(arch, Arch):
        raise TypeError(f"register_arch needs an Arch, got {type(arch).__name__}")
    ARCHS[model_type] = arch


def arch_of(model_type: str) -> Arch:
    """The family's layout, or one error naming the two ways forward."""
    try:
        return ARCHS[model_type]
    except KeyError:
        raise ConfigError(
            f"unknown model family '{model_type}' (known: {', '.join(sorted(ARCHS))}): pass --targets "
            "(a regex or module names) for unstructured pruning, or register its layout from Python "
            "with ticketlab.models.arch.register_arch"
        ) from None


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder masks are keyed against: `model.base_model` for HF models, else the module itself."""
    return getattr(model, "base_model", model)
