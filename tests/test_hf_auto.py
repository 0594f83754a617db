"""A compacted model loads with transformers' Auto classes once ticketlab is imported
(`ticketlab.masks.hf_auto`), and `import ticketlab` still imports no transformers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
)

import ticketlab  # noqa: F401 (registers the compacted model type)
from conftest import make_model, tiny_bert_config
from ticketlab.core.errors import TicketlabError
from ticketlab.masks import UnitMask, compact, save_compacted, structure_of


@pytest.fixture(scope="module")
def compacted(tmp_path_factory):
    model = make_model(BertForMaskedLM, tiny_bert_config())
    units = UnitMask.ones(structure_of(model), "layer")
    units.head[0, 1], units.ffn[1] = False, False
    small = compact(model, units)
    return small, save_compacted(small, tmp_path_factory.mktemp("c") / "compact")


def test_auto_classes_load_a_compacted_model(compacted):
    small, path = compacted
    assert AutoConfig.from_pretrained(path).model_type == "ticketlab-compact"
    reloaded = AutoModelForMaskedLM.from_pretrained(path)
    assert type(reloaded) is BertForMaskedLM
    assert reloaded.bert.encoder.layer[0].attention.self.query.out_features == 16  # one head of two
    x = torch.randint(5, 40, (2, 9))
    with torch.no_grad():
        assert torch.equal(reloaded(x).logits, small(x).logits)
    assert type(AutoModel.from_pretrained(path)) is BertModel
    cls = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
    assert type(cls) is BertForSequenceClassification and cls.classifier.out_features == 3
    assert AutoModelForMaskedLM.from_pretrained(path, dtype=torch.float16).dtype == torch.float16


def test_the_auto_classes_own_markers_are_no_setting(compacted):
    """Auto classes pass markers of their own to the model class (`_from_auto` from transformers
    5.25): they name no setting, so a compacted model loads as without them."""
    from ticketlab.masks.hf_auto import CompactedAuto

    _, path = compacted
    model = CompactedAuto.from_pretrained(path, _from_auto=True, _commit_hash=None)
    assert type(model) is BertModel


def test_what_a_compacted_model_cannot_take_is_one_line(compacted):
    _, path = compacted
    with pytest.raises(TicketlabError, match="config overrides only, not device_map") as e:
        AutoModelForMaskedLM.from_pretrained(path, device_map="cpu")
    assert "\n" not in str(e.value)
    with pytest.raises(TicketlabError, match="rebuilt from its folder"):
        AutoModel.from_config(AutoConfig.from_pretrained(path))


def test_registration_waits_for_transformers(compacted):
    """`import ticketlab` first (no transformers yet), then the Auto classes: the hook registers."""
    _, path = compacted
    code = (
        "import sys, ticketlab\n"
        "assert 'transformers' not in sys.modules\n"
        "from transformers import AutoModelForMaskedLM\n"
        f"print(type(AutoModelForMaskedLM.from_pretrained({str(path)!r})).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["BertForMaskedLM"]


def test_a_config_its_weights_do_not_hold_is_refused_before_any_allocation(compacted, tmp_path):
    """A compacted model's `config.json` says how large the model built from it is: a `vocab_size` of
    4e8 was a 51 GB allocation (a traceback, or the machine's memory) before its weights were read.
    Each size is checked against the manifest and the safetensors headers first, in one line."""
    import json
    import shutil

    _, path = compacted
    for field, value, said in (
        ("vocab_size", 400_000_000, r"word_embeddings.weight the shape \(400000000, 32\)"),
        ("max_position_embeddings", 10**9, r"position_embeddings.weight the shape \(1000000000, 32\)"),
        ("num_hidden_layers", 100_000, "num_hidden_layers 100000, but its ticketlab_compact.json gives 2"),
        ("intermediate_size", 10**12, "intermediate_size 1000000000000, but"),
    ):
        bad = tmp_path / field
        shutil.copytree(path, bad)
        raw = json.loads((bad / "config.json").read_text())
        (bad / "config.json").write_text(json.dumps({**raw, field: value}))
        with pytest.raises(TicketlabError, match=f"config.json.*{said}") as e:
            AutoModelForMaskedLM.from_pretrained(bad)
        assert "\n" not in str(e.value) and str(e.value).startswith(str(bad))
    bad = tmp_path / "manifest"  # the layer sizes come of the manifest: both files are named
    shutil.copytree(path, bad)
    manifest = json.loads((bad / "ticketlab_compact.json").read_text())
    layer = next(layer for layer in manifest["layers"] if layer["intermediate_size"] > 1)
    layer["intermediate_size"] -= 1
    (bad / "ticketlab_compact.json").write_text(json.dumps(manifest))
    with pytest.raises(TicketlabError, match=f"^{bad}: its config.json and ticketlab_compact.json give "):
        AutoModelForMaskedLM.from_pretrained(bad)
