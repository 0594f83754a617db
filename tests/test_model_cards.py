"""Model cards: `export`, `compact` and `push` (and `export --base`'s ticket) write a README.md whose
YAML front matter the Hub reads (base model, library, tags, licence where the base model's card gives
one, pipeline tag) with the method and the sparsity the mask achieved, and whose body says how to load
it and what to cite. One writer, `masks.card`."""

from __future__ import annotations

import shutil

import pytest
from transformers import BertForMaskedLM

from conftest import run
from ticketlab.masks import UnitMask, load_mask, save_unit_mask, structure_of, unit_mask_config
from ticketlab.masks.card import BIBTEX, front_matter, model_card
from ticketlab.masks.io import MaskConfig


@pytest.fixture(scope="module")
def base(tiny_bert_dir, tmp_path_factory):
    """The tiny model with a card of its own that declares a licence, as a hub model's does."""
    path = tmp_path_factory.mktemp("base") / "bert"
    shutil.copytree(tiny_bert_dir, path)
    (path / "README.md").write_text("---\nlicense: apache-2.0\nlanguage: en\n---\n\n# A tiny BERT\n")
    return path


@pytest.fixture()
def omp(base, tmp_path, capsys):
    out = tmp_path / "omp70"
    assert run(capsys, "prune", "omp", "--model", base, "--sparsity", "0.7", "--out", out)[0] == 0
    return out


def card_of(text: str) -> tuple[dict, str]:
    meta = front_matter(text)
    assert meta, "no front matter"
    return meta, text.split("\n---\n", 1)[1]


def check_card(meta: dict, body: str, base, sparsity: float, method: str) -> None:
    assert meta["base_model"] == str(base)
    assert meta["ticketlab"]["method"] == method
    assert meta["ticketlab"]["sparsity"] == pytest.approx(sparsity, abs=1e-6)
    assert meta["license"] == "apache-2.0" and "ticketlab" in meta["tags"]
    assert "## How to load" in body and BIBTEX["ticketlab"] in body


def test_export_writes_a_card_with_the_base_model_and_the_sparsity_achieved(base, omp, tmp_path, capsys):
    code, _, err = run(capsys, "export", "--model", base, "--mask", omp, "--out", tmp_path / "exported")
    assert code == 0, err
    meta, body = card_of((tmp_path / "exported" / "README.md").read_text())
    mask, config = load_mask(omp)
    check_card(meta, body, base, mask.sparsity, "omp")
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "fill-mask"
    assert "AutoModelForMaskedLM.from_pretrained" in body and BIBTEX["liu2022tamt"] in body
    exported = tmp_path / "exported"
    argv = ("export", "--model", exported, "--mask", omp, "--base", base, "--out", tmp_path / "t")
    code, _, err = run(capsys, *argv)
    assert code == 0, err  # a ticket (here the exported one) beside its base: the card, loaded by load_ticket
    meta, body = card_of((tmp_path / "t" / "README.md").read_text())
    check_card(meta, body, base, mask.sparsity, "omp")
    assert "ticketlab.load_ticket" in body and "pipeline_tag" not in meta


def test_compact_writes_a_card_with_the_units_pruned(base, tmp_path, capsys):
    model = BertForMaskedLM.from_pretrained(base).eval()
    units = UnitMask.ones(structure_of(model), "both")
    units.head[1, 0], units.neuron[1, :16] = False, False
    config = unit_mask_config(model, units, method="st-random", level=0.25, base_model=str(base), seed=0)
    ticket = save_unit_mask(units, config, tmp_path / "ticket")
    code, _, err = run(capsys, "compact", "--model", base, "--mask", ticket, "--out", tmp_path / "small")
    assert code == 0, err
    meta, body = card_of((tmp_path / "small" / "README.md").read_text())
    check_card(meta, body, base, config.achieved_sparsity, "st-random")
    assert meta["ticketlab"]["units_pruned"] == config.units["pruned"]
    assert meta["pipeline_tag"] == "fill-mask" and "import ticketlab" in body
    assert BIBTEX["liang2021super"] in body
    small = sum(p.numel() for p in model.parameters())
    assert "parameters: " in body and f"{small:,}" not in body  # the compacted model's, not the base's


def test_push_sends_a_card_and_leaves_the_folder_alone(base, omp, commits):
    from ticketlab.masks import push_mask

    push_mask(omp, "me/tickets/omp70")
    meta, body = card_of(commits[0]["omp70/README.md"].decode())
    check_card(meta, body, base, load_mask(omp)[0].sparsity, "omp")
    assert meta["library_name"] == "ticketlab" and f"--model {base} --mask PATH" in body
    assert not (omp / "README.md").exists()
    (omp / "README.md").write_text("# my own card\n")  # a folder's own card goes up as it is
    push_mask(omp, "me/tickets/omp70")
    assert commits[1]["omp70/README.md"] == str(omp / "README.md")


def test_the_cards_bibtex_is_the_citing_pages():
    """The card cites as the docs' Citing page does (one BibTeX, two places)."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "citing.md").read_text(encoding="utf-8")
    for entry in BIBTEX.values():
        assert entry in page


def test_every_registered_methods_card_cites_its_paper():
    """A mask of each registered method (a search method's under each of its names in a sweep)
    cites its paper beside ticketlab: a method added to the registry needs its row in `PAPERS`."""
    from ticketlab.masks.card import papers
    from ticketlab.methods.registry import methods

    facts = {"base_model": "org/model", "base_model_hash": "x", "model_type": "bert", "targets": "q"}
    registered = [m for m in methods().values() if m.name != "full"]
    names = [n for m in registered for n in (m.name, *(p.name for p in m.presets))]
    for name in names:
        cited = papers(MaskConfig(method=name, sparsity=0.5, **facts))
        assert len(cited) == 1 and cited[0] in BIBTEX, name
    wanda = MaskConfig(method="wanda", sparsity=0.5, **facts)
    assert BIBTEX["sun2024wanda"] in card_of(model_card(wanda, kind="mask"))[1]


def test_a_card_of_an_unknown_method_cites_ticketlab_only():
    facts = {"base_model": "org/model", "base_model_hash": "x", "model_type": "bert", "targets": "q"}
    config = MaskConfig(method="mine", sparsity=0.5, **facts)
    meta, body = card_of(model_card(config, kind="mask"))
    assert meta["base_model"] == "org/model" and "license" not in meta
    assert body.count("@inproceedings") == 0 and "@software{ticketlab" in body


def test_a_card_of_reconstructed_weights_says_they_are_not_a_ticket():
    """`export --reconstructed` records that its weights are SparseGPT's reconstruction, not θ0's:
    its card says so where another checkpoint's says it is the base model with zeros."""
    from ticketlab.masks.reconstructed import NOT_A_TICKET

    facts = {"base_model": "org/model", "base_model_hash": "x", "model_type": "bert", "targets": "q"}
    config = MaskConfig(method="sparsegpt", sparsity=0.5, search={"exported_weights": NOT_A_TICKET}, **facts)
    _, body = card_of(model_card(config, kind="checkpoint", head="mlm"))
    assert f"A sparse checkpoint: {NOT_A_TICKET}" in body
    assert "pruned checkpoint of the base model" not in body
