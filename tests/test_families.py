"""Every encoder family of `ticketlab.models.arch` on tiny random models of its own config class: default
targets, units (gates, their weight-mask equivalent, compaction), and every verb a new user tries on a
saved model of each family: each works or refuses in one line, as the families x verbs table of
docs/how-to/own-model.md (`families_table`) says.

The unit layout is checked against an independent computation: a pruned head's value rows (where
the family keeps them: separate V, the third block of ModernBERT's Wqkv, the third of each head's
triple in DeBERTa's in_proj) and value bias set to zero give a zero context for that head, which is
what a closed head gate gives. A layout read wrongly zeroes another head's rows and the outputs part.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import error_line, run, write_tokenizer
from families import FAMILIES, family_config, family_mlm_class
from ticketlab.core.errors import MaskMismatchError, TicketlabError
from ticketlab.masks import (
    apply_mask,
    attach_gates,
    compact,
    find_targets,
    load_compacted,
    remove_gates,
    save_compacted,
    save_unit_mask,
    unit_mask_config,
)
from ticketlab.masks.units import UnitMask, to_weight_mask
from ticketlab.models.arch import ARCHS, FUSED, INTERLEAVED, Arch, register_arch
from ticketlab.models.load import load_model
from ticketlab.models.structure import structure_of

FAMILIES_PAGE = Path(__file__).resolve().parents[1] / "docs" / "how-to" / "own-model.md"

STRUCTURED = [f for f in FAMILIES if f != "albert"]  # ALBERT's one shared layer: refused


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    model = family_mlm_class(family)(family_config(family)).eval()
    for p in model.parameters():  # random biases too: a bias a ticket forgets shows in the outputs
        if p.ndim == 1 and (p == 0).all():
            torch.nn.init.normal_(p, std=0.02)
    return model


def inputs(model) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def hidden(model) -> torch.Tensor:
    with torch.no_grad():
        return model.base_model(**inputs(model)).last_hidden_state  # [2, 9, d]


def units_of(model, seed: int = 0) -> UnitMask:
    """Head 0 of layer 0 and a third of the neurons of every layer pruned."""
    s = structure_of(model)
    g = torch.Generator().manual_seed(seed)
    head = torch.ones(s.num_layers, s.num_heads, dtype=torch.bool)
    head[0, 0] = False
    neuron = torch.rand(s.num_layers, s.intermediate_size, generator=g) > 1 / 3
    return UnitMask(head=head, neuron=neuron)


@pytest.mark.parametrize("family", FAMILIES)
def test_default_targets_are_the_word_embeddings_and_every_layers_matrices(family):
    model = tiny(family)
    arch = ARCHS[model.config.model_type]
    found = find_targets(model)
    layers = 1 if arch.shared else model.config.num_hidden_layers
    assert len(found) == 1 + layers * len(arch.layer_modules)
    assert f"{arch.embeddings}.weight" in found
    assert all(k == f"{arch.embeddings}.weight" or k.startswith(arch.layers + ".") for k in found)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_pooler_is_a_default_target_of_every_family_that_has_one(family):
    """Both papers prune `pooler.dense` (TAMT's maskers, BERT-Tickets' IMP and OMP): the default
    targets of a family's base model hold its pooler wherever the model has one."""
    import transformers

    config = family_config(family)
    base = getattr(transformers, FAMILIES[family][1].removesuffix("ForMaskedLM") + "Model")
    torch.manual_seed(0)
    model = base(config)
    poolers = {
        f"{name}.weight"
        for name, m in model.named_modules()
        if name.split(".")[0] == "pooler" and isinstance(m, torch.nn.Linear)
    }
    found = find_targets(model)
    assert poolers <= set(found)
    assert (ARCHS[config.model_type].pooler is not None) == bool(poolers)
    assert set(found) - poolers == set(find_targets(tiny(family)))  # the rest as the MLM model's
    # without it (the flag that gives ticketlab's earlier default targets)
    from ticketlab.masks.targets import default_targets

    assert not poolers & set(find_targets(model, default_targets(config.model_type, pooler=False)))


@pytest.mark.parametrize("family", STRUCTURED)
def test_a_closed_head_gate_is_the_head_without_its_values(family):
    model = tiny(family)
    s, arch = structure_of(model), ARCHS[model.config.model_type]
    units = UnitMask(head=torch.ones(s.num_layers, s.num_heads, dtype=torch.bool))
    h = 0  # not the last head: with two heads, the last one's value rows coincide in two layouts
    units.head[0, h] = False
    gated = tiny(family)
    attach_gates(gated, units=units)
    layer = model.base_model.get_submodule(arch.layers)[0]
    a, dh = s.all_head_size, s.head_size
    with torch.no_grad():
        if arch.qkv_layout == FUSED:  # [3, H, dh]
            module, rows = layer.get_submodule(arch.qkv[0]), slice(2 * a + h * dh, 2 * a + (h + 1) * dh)
        elif arch.qkv_layout == INTERLEAVED:  # [H, 3, dh]
            module, rows = layer.get_submodule(arch.qkv[0]), slice((3 * h + 2) * dh, (3 * h + 3) * dh)
        else:
            module, rows = layer.get_submodule(arch.qkv[2]), slice(h * dh, (h + 1) * dh)
        module.weight[rows] = 0
        if module.bias is not None:
            module.bias[rows] = 0
        attention = layer.get_submodule(arch.qkv[0].rpartition(".")[0])
        v_bias = getattr(attention, "v_bias", None)
        if v_bias is not None:  # DeBERTa keeps the value bias apart from in_proj
            v_bias[h * dh : (h + 1) * dh] = 0
    torch.testing.assert_close(hidden(model), hidden(gated), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", STRUCTURED)
def test_gates_weight_masks_and_compaction_compute_the_same(family, tmp_path):
    model = tiny(family)
    units = units_of(model)
    weights = to_weight_mask(units, structure_of(model))
    masked = tiny(family)
    apply_mask(masked, weights)
    gated = tiny(family)
    attach_gates(gated, units=units)
    torch.testing.assert_close(hidden(masked), hidden(gated), rtol=1e-4, atol=1e-5)
    remove_gates(gated)
    ffn_only = UnitMask(head=torch.ones_like(units.head), neuron=units.neuron)
    attach_gates(gated, units=ffn_only)
    small = compact(tiny(family), ffn_only)
    torch.testing.assert_close(hidden(small), hidden(gated), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    padded = compact(tiny(family), ffn_only, multiple=3)  # zero neurons, the same outputs
    torch.testing.assert_close(hidden(padded), hidden(gated), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in padded.parameters()) > sum(p.numel() for p in small.parameters())
    arch = ARCHS[model.config.model_type]
    if not arch.compact_heads:
        with pytest.raises(TicketlabError, match="compaction of attention heads"):
            compact(tiny(family), units)
        return
    empty = UnitMask(head=units.head.clone(), neuron=units.neuron)
    empty.head[-1] = False  # the last layer keeps no head
    for ticket in (units, empty):
        remove_gates(gated)
        attach_gates(gated, units=ticket)
        if ticket is empty and not arch.no_heads:
            with pytest.raises(TicketlabError, match="without heads"):
                compact(tiny(family), ticket)
            continue
        small = compact(tiny(family), ticket)
        torch.testing.assert_close(hidden(small), hidden(gated), rtol=1e-4, atol=1e-5)
        save_compacted(small, tmp_path / "small")  # and back: the manifest rebuilds every layer
        torch.testing.assert_close(hidden(load_compacted(tmp_path / "small")), hidden(small))


# Three unit layouts: separate Q/K/V (BERT), DeBERTa's interleaved in_proj, ModernBERT's fused Wqkv
# and gated Wi (with FFN biases, `mlp_bias`, and without: its default, where no bias entry applies).
LAYOUTS = {
    "bert": {},
    "deberta": {},
    "modernbert-bias": {"mlp_bias": True},
    "modernbert": {},
}


def unit_ticket(s, kind: str) -> UnitMask:
    """Heads, neurons, FFN sub-layers, or all three pruned (granularity "both" where FFN sub-layers are)."""
    head = torch.ones(s.num_layers, s.num_heads, dtype=torch.bool)
    neuron = torch.ones(s.num_layers, s.intermediate_size, dtype=torch.bool)
    ffn = torch.ones(s.num_layers, dtype=torch.bool)
    if kind in ("head", "all"):
        head[0, 0] = head[1, 1] = False
    if kind in ("neuron", "all"):
        g = torch.Generator().manual_seed(0)
        neuron[:, torch.randperm(s.intermediate_size, generator=g)[:20]] = False
    if kind in ("ffn", "all"):
        ffn[1] = False
    return UnitMask(head=head, neuron=neuron, ffn=ffn if kind in ("ffn", "all") else None)


@pytest.mark.parametrize("kind", ["head", "neuron", "ffn", "all"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_unit_mask_as_weights_equals_its_gates_ffn_bias_included(layout, kind):
    """One injection: a unit mask applied as weight and bias masks computes what its gates compute. A
    pruned FFN sub-layer leaves LayerNorm(attention output): FFN-out's bias goes with the sub-layer."""
    family = layout.removesuffix("-bias")

    def model():
        torch.manual_seed(0)
        m = family_mlm_class(family)(family_config(family, **LAYOUTS[layout])).eval()
        with torch.no_grad():  # large random biases: a bias the weight form forgets shows at once
            for name, p in m.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0.0, 0.5)
        return m

    base = model()
    s, arch = structure_of(base), ARCHS[base.config.model_type]
    units = unit_ticket(s, kind)
    weights = to_weight_mask(units, s)
    masked, gated = model(), model()
    apply_mask(masked, weights)
    attach_gates(gated, units=units)
    out = hidden(masked)
    torch.testing.assert_close(out, hidden(gated), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out, hidden(base), atol=1e-3)  # the ticket does prune something
    ffn_out = masked.base_model.get_submodule(f"{arch.layers}.1.{arch.ffn_out}")
    if units.ffn is not None and ffn_out.bias is not None:  # ... FFN-out's bias with its sub-layer
        assert not ffn_out.bias.any() and f"{arch.layers}.1.{arch.ffn_out}.bias" in weights


@pytest.mark.parametrize("family", ["roberta", "xlm-roberta", "camembert", "electra"])
def test_bert_layout_families_keep_bert_structures_whatever_their_mlm_head(family):
    """Their entries differ from BERT's in the MLM head only: their units are BERT's, and their ticket
    files name no family, as they did when the head was kept elsewhere."""
    assert ARCHS[family].mlm_heads != ARCHS["bert"].mlm_heads and ARCHS[family] == ARCHS["bert"]
    s = structure_of(tiny(family))
    assert s.family == "bert" and "family" not in s.to_dict()


def test_albert_units_are_refused_in_one_line():
    with pytest.raises(MaskMismatchError, match="one shared layer"):
        structure_of(tiny("albert"))


def test_a_family_of_your_own_is_registered_from_python():
    """A model type ticketlab does not know: refused naming --targets and register_arch; registered,
    every default works."""
    from ticketlab.masks.targets import default_targets

    with pytest.raises(TicketlabError, match="--targets.*register_arch"):
        default_targets("mybert")
    names = ("embeddings", "layers", "qkv", "attn_out", "ffn_in", "ffn_out")
    register_arch("mybert", Arch(**{f: getattr(ARCHS["distilbert"], f) for f in names}))
    try:
        model = tiny("distilbert")
        model.config.model_type = "mybert"
        assert len(find_targets(model)) == 1 + 6 * model.config.num_hidden_layers
        assert structure_of(model).family == "mybert"
        # its entry names no `attention` module: a ticket that prunes heads is refused as such (not
        # with another family's reason), one of FFN units only compacts
        units = UnitMask.ones(structure_of(model))
        units.head[0, 0] = False
        with pytest.raises(TicketlabError, match="not written for mybert: its entry names no `attention`"):
            compact(model, units)
        ffn_only = UnitMask.ones(structure_of(model))
        ffn_only.ffn[0] = False
        compact(model, ffn_only)
    finally:
        del ARCHS["mybert"]


# --------------------------------------------------------------------------- every verb, every family

# The verbs a new user tries, in the order the test runs them (docs/how-to/own-model.md has the table).
VERBS = (
    "prune omp",
    "prune random",
    "info",
    "compare",
    "export",
    "search tamt --objective kd",
    "search tamt --objective mlm",
    "search imp",
    "evaluate-pretrain",
    "evaluate-pretrain --mask",
    "finetune",
    "super",
    "compact",
    "mtl --tickets",
)
# (family, verb) -> its cell, "refused: GIST (note)": one line, exit 2, naming GIST, before any work;
# the note is checked too. Every other cell works (exit 0).
REFUSED = {
    ("albert", "super"): "refused: one shared layer",
    ("albert", "compact"): "refused: one shared layer",
    ("albert", "mtl --tickets"): "refused: one shared layer (plain `mtl` without tickets works)",
    ("mpnet", "compact"): "refused: per-head state outside its projections (tickets of FFN units only work)",
}
LABELS = {
    "electra": "electra (generator)",
    "deberta-v3": "deberta-v3 (`model_type` deberta-v2)",
    "deberta-v3-nonlegacy": "deberta-v3, `legacy=False` MLM head",
}


def cell(family: str, verb: str) -> str:
    return REFUSED.get((family, verb), "works")


def families_table() -> str:
    """The families x verbs table of docs/how-to/own-model.md, from the cells the test below checks."""
    rows = [
        "| family | " + " | ".join(f"`{v}`" for v in VERBS) + " |",
        "|---" * (len(VERBS) + 1) + "|",
        *(f"| {LABELS.get(f, f)} | " + " | ".join(cell(f, v) for v in VERBS) + " |" for f in FAMILIES),
    ]
    return "\n".join(rows)


@pytest.fixture(scope="module")
def verb_data(tmp_path_factory) -> Path:
    """A tiny corpus and a tiny SST-2 in the GLUE layout."""
    from test_finetune import sentiment_rows

    root = tmp_path_factory.mktemp("verb-data")
    (root / "corpus.txt").write_text("the cat sees the dog . a man walks to the river .\n" * 30)
    (root / "glue" / "SST-2").mkdir(parents=True)
    for split, n, seed in (("train", 16, 0), ("dev", 20, 1)):
        rows = "\n".join(sentiment_rows(n, seed))
        (root / "glue" / "SST-2" / f"{split}.tsv").write_text(f"sentence\tlabel\n{rows}\n")
    return root


def check_cell(capsys, family: str, verb: str, *argv, out: Path | None = None) -> str:
    """One cell as the table says it: exit 0, or one line naming why (and `out` not written)."""
    code, printed, err = run(capsys, *argv)
    want = cell(family, verb)
    if want == "works":
        assert code == 0, f"{family} {verb}: {err}"
        return printed
    gist = want.removeprefix("refused: ").split(" (")[0]
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert code == 2 and len(lines) == 1 and gist in lines[0], f"{family} {verb}: {err}"
    assert out is None or not out.exists(), f"{family} {verb}: refused after writing {out}"
    return printed


@pytest.mark.parametrize("family", FAMILIES)
def test_every_verb_works_or_refuses_in_one_line_on_every_family(family, verb_data, tmp_path, capsys):
    """Each verb on a tiny saved model of the family, sharing masks along the way."""
    model = tmp_path / "model"
    tiny(family).save_pretrained(model)
    write_tokenizer(model)
    corpus, glue = verb_data / "corpus.txt", verb_data / "glue"

    def verb(name: str, *argv, out: Path | None = None) -> str:
        return check_cell(capsys, family, name, *argv, *(("--out", out) if out else ()), out=out)

    omp, rnd = tmp_path / "omp", tmp_path / "random"
    verb("prune omp", "prune", "omp", "--model", model, "--sparsity", 0.5, out=omp)
    verb("prune random", "prune", "random", "--model", model, "--sparsity", 0.5, out=rnd)
    assert "50.0%" in verb("info", "info", omp)
    jaccard = json.loads(verb("compare", "compare", omp, rnd, "--json"))["jaccard"][0][1]
    assert 0.1 < jaccard < 0.9
    verb("export", "export", "--model", model, "--mask", omp, out=tmp_path / "exported")
    reloaded = family_mlm_class(family).from_pretrained(tmp_path / "exported")
    arch = ARCHS[reloaded.config.model_type]
    w = reloaded.base_model.get_submodule(f"{arch.layers}.0.{arch.ffn_in}").weight
    assert 0.3 < float((w == 0).float().mean()) < 0.7

    search = ["--model", model, "--corpus", corpus, "--sparsity", 0.5, "--max-length", 16]
    search += ["--batch-size", 4, "--dev-blocks", 1, "--no-progress"]
    for objective in ("kd", "mlm"):
        tamt = ["search", "tamt", *search, "--steps", 2, "--lr", 0.01, "--objective", objective]
        verb(f"search tamt --objective {objective}", *tamt, out=tmp_path / objective)
    verb("search imp", "search", "imp", *search, "--steps", 4, out=tmp_path / "imp")  # 5 rounds
    evaluate = ["evaluate-pretrain", "--model", model, "--corpus", corpus, "--max-length", 16]
    evaluate += ["--max-blocks", 2, "--json"]
    full = json.loads(verb("evaluate-pretrain", *evaluate))
    trained = ["--mlm-head", "trained"]  # TAMT-MLM's trained head loads on every family
    masked = json.loads(
        verb("evaluate-pretrain --mask", *evaluate, *trained, "--mask", omp, tmp_path / "mlm")
    )
    assert all(math.isfinite(r["mlm_loss"]) for r in full + masked)
    assert [r["name"] for r in masked] == ["omp", "mlm"] and masked[1]["mlm_head"] == "trained"

    task = ["--task", "sst2", "--data-dir", glue, "--max-steps", 2, "--eval-every", 2, "--batch-size", 4]
    task += ["--max-length", 32, "--lr", 1e-3, "--no-progress"]
    verb("finetune", "finetune", "--model", model, "--mask", omp, *task, out=tmp_path / "finetune")
    winning = ["--levels", 0.6, "--kinds", "winning", "--select-fraction", 0.25]
    verb("super", "super", "--model", model, *task, *winning, out=tmp_path / "super")
    tickets = sorted((tmp_path / "super" / "masks").glob("*"))
    ticket = tickets[0] if tickets else omp  # ALBERT has none: its weight mask is given
    verb("compact", "compact", "--model", model, "--mask", ticket, out=tmp_path / "compact")
    mtl = ["mtl", "--model", model, "--tasks", "sst2", *task[2:]]
    verb("mtl --tickets", *mtl, "--tickets", ticket, out=tmp_path / "mtl")

    if "without tickets works" in cell(family, "mtl --tickets"):
        assert run(capsys, *mtl, "--out", tmp_path / "plain-mtl")[0] == 0
    if "FFN units only work" in cell(family, "compact"):
        base = load_model(model, head="base")
        s = structure_of(base)
        units = UnitMask(
            head=torch.ones(s.num_layers, s.num_heads, dtype=torch.bool), neuron=units_of(base).neuron
        )
        config = unit_mask_config(base, units, method="ffn", level=0.3, base_model=str(model))
        save_unit_mask(units, config, tmp_path / "ffn-ticket")
        argv = ["compact", "--model", model, "--mask", tmp_path / "ffn-ticket", "--out", tmp_path / "ffn"]
        assert run(capsys, *argv)[0] == 0


def test_the_documented_table_is_the_one_measured():
    """The families x verbs table of docs/how-to/own-model.md is `families_table()`, whose cells the test
    above checks."""
    assert families_table() in FAMILIES_PAGE.read_text(encoding="utf-8")


def test_an_unregistered_family_prunes_with_targets(verb_data, tmp_path, capsys):
    """ERNIE is in no architecture map: refused naming --targets without it; with it, every weight-mask
    verb works (here prune, finetune and evaluate-pretrain); registered, it needs no --targets."""
    import transformers

    from conftest import TINY

    if not hasattr(transformers, "ErnieForMaskedLM"):
        pytest.skip(f"transformers {transformers.__version__} has no ErnieForMaskedLM")
    model = tmp_path / "ernie"
    torch.manual_seed(0)
    transformers.ErnieForMaskedLM(transformers.ErnieConfig(**TINY)).save_pretrained(model)
    write_tokenizer(model)
    prune = ["prune", "omp", "--model", model, "--sparsity", 0.5]
    assert "pass --targets" in error_line(capsys, *prune, "--out", tmp_path / "refused")
    targets = r"encoder\.layer\.\d+\..*(query|key|value|dense)"
    assert run(capsys, *prune, "--targets", targets, "--out", tmp_path / "omp")[0] == 0
    glue = verb_data / "glue"
    finetune = [
        "finetune",
        "--model",
        model,
        "--mask",
        tmp_path / "omp",
        "--task",
        "sst2",
        "--data-dir",
        glue,
    ]
    finetune += ["--max-steps", 2, "--batch-size", 4, "--max-length", 32, "--no-progress"]
    assert run(capsys, *finetune, "--out", tmp_path / "ft")[0] == 0
    evaluate = ["evaluate-pretrain", "--mask", tmp_path / "omp", "--corpus", verb_data / "corpus.txt"]
    assert run(capsys, *evaluate, "--max-length", 16, "--max-blocks", 2)[0] == 0
    names = ("embeddings", "layers", "qkv", "attn_out", "ffn_in", "ffn_out")  # ERNIE has BERT's layout
    register_arch("ernie", Arch(**{f: getattr(ARCHS["bert"], f) for f in names}))
    try:  # registered: the command line (in this process) needs no --targets
        assert run(capsys, *prune, "--out", tmp_path / "registered")[0] == 0
    finally:
        del ARCHS["ernie"]


@pytest.mark.parametrize("family", ["deberta", "deberta-v2"])
def test_ticket_sharing_keeps_a_pruned_heads_relative_position_rows(family):
    """A task's step may not touch the rows of heads its ticket prunes, DeBERTa's relative-position
    projections and split biases included (`Arch.head_extras`)."""
    from ticketlab.studies.mtl_model import ticket_param_masks

    model = tiny(family)
    s, arch = structure_of(model), ARCHS[model.config.model_type]
    units = UnitMask(head=torch.ones(s.num_layers, s.num_heads, dtype=torch.bool))
    units.head[0, 0] = False
    masks = ticket_param_masks(model.base_model, units, s)
    layer = model.base_model.get_submodule(arch.layers)[0]
    extras = []
    for name in arch.head_extras:
        owner, _, attr = name.rpartition(".")
        thing = getattr(layer.get_submodule(owner), attr, None)
        extras += (
            [thing] if isinstance(thing, torch.nn.Parameter) else [thing.weight] if thing is not None else []
        )
    assert extras, "the tiny config has per-head extras"
    for p in extras:
        rows = masks[p] if p.ndim == 1 else masks[p][:, 0]
        assert not rows[: s.head_size].any() and rows[s.head_size :].all()
