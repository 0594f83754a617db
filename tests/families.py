"""Tiny random configs of every encoder family ticketlab meets, built from each family's config class.

`family_config(name)` skips the test (naming the family) when the installed transformers lacks the
class. Every config uses conftest's VOCAB, so conftest's tokenizer fits every family.
"""

from __future__ import annotations

import pytest
import transformers
from transformers import PretrainedConfig

from conftest import TINY, TINY_ROBERTA, VOCAB

_COMMON, _ROBERTA = TINY, TINY_ROBERTA
_DEBERTA_V3 = dict(  # deberta-v3-base's attention settings, tiny
    _COMMON,
    relative_attention=True,
    position_biased_input=False,
    pos_att_type=["p2c", "c2p"],
    max_relative_positions=-1,
    position_buckets=16,
    norm_rel_ebd="layer_norm",
    share_att_key=True,
)

# family -> (config class, *ForMaskedLM class, config kwargs)
FAMILIES: dict[str, tuple[str, str, dict]] = {
    "bert": ("BertConfig", "BertForMaskedLM", _COMMON),
    "roberta": ("RobertaConfig", "RobertaForMaskedLM", _ROBERTA),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaForMaskedLM", _ROBERTA),
    "camembert": ("CamembertConfig", "CamembertForMaskedLM", _ROBERTA),
    "electra": ("ElectraConfig", "ElectraForMaskedLM", dict(_COMMON, embedding_size=16)),
    "deberta": ("DebertaConfig", "DebertaForMaskedLM", dict(_COMMON, relative_attention=True)),
    "deberta-v2": (
        "DebertaV2Config",
        "DebertaV2ForMaskedLM",
        dict(_COMMON, relative_attention=True, pos_att_type=["p2c", "c2p"]),
    ),
    "deberta-v3": ("DebertaV2Config", "DebertaV2ForMaskedLM", _DEBERTA_V3),
    # transformers' newer DeBERTa-v2/v3 MLM head (`legacy=False`): the decoder is the word embeddings
    "deberta-v3-nonlegacy": ("DebertaV2Config", "DebertaV2ForMaskedLM", dict(_DEBERTA_V3, legacy=False)),
    "distilbert": (
        "DistilBertConfig",
        "DistilBertForMaskedLM",
        dict(
            vocab_size=len(VOCAB),
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=64,
            dropout=0.0,
            attention_dropout=0.0,
            pad_token_id=0,
        ),
    ),
    "albert": ("AlbertConfig", "AlbertForMaskedLM", dict(_COMMON, embedding_size=16)),
    "mpnet": ("MPNetConfig", "MPNetForMaskedLM", dict(_COMMON, pad_token_id=1)),
    "modernbert": (
        "ModernBertConfig",
        "ModernBertForMaskedLM",
        dict(
            vocab_size=len(VOCAB),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            pad_token_id=0,
            cls_token_id=2,
            sep_token_id=3,
            bos_token_id=2,
            eos_token_id=3,
        ),
    ),
}


def family_class(name: str, attr: str):
    """A transformers class by name, or skip the test naming the family that lacks it."""
    cls = getattr(transformers, attr, None)
    if cls is None:
        pytest.skip(f"{name}: transformers {transformers.__version__} has no {attr}")
    return cls


def family_config(name: str, **kw) -> PretrainedConfig:
    config_cls, _, base = FAMILIES[name]
    return family_class(name, config_cls)(**{**base, **kw})


def family_mlm_class(name: str):
    return family_class(name, FAMILIES[name][1])


def family_task_class(name: str, head: str):
    """The family's *ForSequenceClassification / *ForQuestionAnswering class (head 'seq-cls' / 'qa')."""
    prefix = FAMILIES[name][1].removesuffix("ForMaskedLM")
    suffix = {"seq-cls": "ForSequenceClassification", "qa": "ForQuestionAnswering"}[head]
    return family_class(name, prefix + suffix)
