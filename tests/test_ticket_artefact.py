"""A fine-tuned ticket as a small artefact beside its base (`ticketlab.masks.ticket`): it reloads
exactly in one call, records its base, stores only what changed, and is refused on another base."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertForMaskedLM

from conftest import error_line, make_model, run, tiny_bert_config
from ticketlab.core.errors import MaskMismatchError, TicketlabError
from ticketlab.masks import Mask, apply_mask, export_pretrained, find_targets, load_mask, save_mask
from ticketlab.masks.io import MaskConfig
from ticketlab.masks.ticket import TICKET_NAME, WEIGHTS_NAME, load_ticket, save_ticket
from ticketlab.models.arch import encoder_of
from ticketlab.models.load import load_model

X = torch.randint(5, 40, (4, 9), generator=torch.Generator().manual_seed(3))


def omp70(model) -> Mask:
    params = dict(encoder_of(model).named_parameters())
    keys = find_targets(model)
    cut = {k: params[k].detach().abs().flatten().kthvalue(int(0.7 * params[k].numel())).values for k in keys}
    return Mask({k: params[k].detach().abs() > cut[k] for k in keys})


def fine_tune(model, steps: int = 3, frozen: str | None = "word_embeddings", x=X, lr: float = 1e-3) -> None:
    """A few AdamW steps on every tensor but `frozen` (the pruned weights stay zero: the mask);
    no weight decay, as `ticketlab finetune` (decay would move every row of the embeddings)."""
    params = [p for n, p in model.named_parameters() if frozen is None or frozen not in n]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        model(x, labels=torch.arange(len(x)) % 2).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


@pytest.fixture()
def base(tmp_path):
    make_model(BertForMaskedLM, tiny_bert_config(), seed=0).save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def ticketed(base):
    torch.manual_seed(5)  # a fresh task head, not the one the artefact's base is loaded with
    model = load_model(base, "seq-cls", num_labels=2)
    return apply_mask(model, omp70(model))


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(X).logits


def test_a_fine_tuned_ticket_reloads_exactly_in_one_call(base, tmp_path):
    model = ticketed(base)
    fine_tune(model)
    save_ticket(model, tmp_path / "ticket", base=base)
    record = json.loads((tmp_path / "ticket" / TICKET_NAME).read_text())
    assert (
        record["base_model"] == str(base.resolve()) and "bert.pooler.dense.weight" in record["base_tensors"]
    )
    stored = record["forms"]
    assert "bert.embeddings.word_embeddings.weight" not in stored  # frozen: not stored
    assert stored["bert.encoder.layer.0.attention.self.query.weight"]["kept"]  # surviving weights only
    reloaded = load_ticket(tmp_path / "ticket")
    assert (logits(reloaded) - logits(model)).abs().max().item() == 0.0
    mask, _ = load_mask(tmp_path / "ticket")  # also a mask directory: --mask takes it
    weights = {k: reloaded.bert.get_submodule(k.rpartition(".")[0]).weight for k in mask}
    assert all(not weights[k][~m].any() for k, m in mask.items())


def test_only_the_rows_training_touched_are_stored(base, tmp_path):
    model = ticketed(base)
    fine_tune(model, frozen=None, x=X[:, :3])  # a few tokens: a few rows of the word embeddings
    save_ticket(model, tmp_path / "ticket", base=base)
    form = json.loads((tmp_path / "ticket" / TICKET_NAME).read_text())["forms"]
    assert form["bert.embeddings.word_embeddings.weight"] == {"rows": True, "kept": True, "codec": "diff-xz"}
    assert (logits(load_ticket(tmp_path / "ticket")) - logits(model)).abs().max().item() == 0.0


def test_another_base_is_refused_in_one_line(base, tmp_path):
    model = ticketed(base)
    fine_tune(model)
    save_ticket(model, tmp_path / "ticket", base=base)
    make_model(BertForMaskedLM, tiny_bert_config(), seed=1).save_pretrained(tmp_path / "other")
    with pytest.raises(
        MaskMismatchError,
        match=r"the base's bert\.\S+ differs from the one the ticket was saved",
    ) as e:
        load_ticket(tmp_path / "ticket", base=tmp_path / "other")
    assert "\n" not in str(e.value)


def test_a_ticket_found_on_other_weights_is_refused_naming_the_way_past(base, tmp_path):
    mask = omp70(load_model(base, "mlm"))
    make_model(BertForMaskedLM, tiny_bert_config(), seed=1).save_pretrained(tmp_path / "other")
    mc = MaskConfig.for_model(load_model(base), mask, method="omp", sparsity=0.7, base_model=str(base))
    model = ticketed(base)
    with pytest.raises(MaskMismatchError, match=r"other: its weights differ .* pass --ignore-hash"):
        save_ticket(model, tmp_path / "ticket", base=tmp_path / "other", mask_config=mc)
    save_ticket(model, tmp_path / "ticket", base=tmp_path / "other", mask_config=mc, check_hash=False)


def test_a_base_of_another_architecture_is_named_so(base, tmp_path):
    """A base of other shapes than the fine-tuned model: one line saying which, not a weight-loading error."""
    model = ticketed(base)
    wide = tiny_bert_config(intermediate_size=2 * tiny_bert_config().intermediate_size)
    make_model(BertForMaskedLM, wide, seed=1).save_pretrained(tmp_path / "wide")
    with pytest.raises(MaskMismatchError, match="wide: another architecture than the fine-tuned model"):
        save_ticket(model, tmp_path / "ticket", base=tmp_path / "wide")


def test_export_base_writes_the_artefact_from_a_fine_tuned_checkpoint(base, tmp_path, capsys):
    """The CLI path: `finetune --save-model` wrote a plain checkpoint (zeros in place) and the mask."""
    model = ticketed(base)
    mask = omp70(load_model(base, "mlm"))
    save_mask(
        mask,
        MaskConfig.for_model(load_model(base), mask, method="omp", sparsity=0.7, base_model=str(base)),
        tmp_path / "m",
    )
    fine_tune(model)
    want = logits(model)
    export_pretrained(model, tmp_path / "ft")
    code, out, _ = run(
        capsys,
        "export",
        "--model",
        tmp_path / "ft",
        "--mask",
        tmp_path / "m",
        "--base",
        base,
        "--out",
        tmp_path / "t",
    )
    assert code == 0 and "MB" in out and (tmp_path / "t" / WEIGHTS_NAME).is_file()
    assert (logits(load_ticket(tmp_path / "t")) - want).abs().max().item() == 0.0
    # the same command again leaves the ticket as it is (its record's stamp included)
    record = json.loads((tmp_path / "t" / TICKET_NAME).read_text())
    stamped = json.dumps({**record, "created": "2000-01-01T00:00:00+00:00"})  # not what a rewrite stamps
    (tmp_path / "t" / TICKET_NAME).write_text(stamped)
    again = ["--model", tmp_path / "ft", "--mask", tmp_path / "m", "--base", base, "--out", tmp_path / "t"]
    assert run(capsys, "export", *again)[0] == 0
    assert (tmp_path / "t" / TICKET_NAME).read_text() == stamped
    other = Mask({k: ~v for k, v in mask.items()})  # zeros of the checkpoint where this one keeps
    save_mask(
        other,
        MaskConfig.for_model(load_model(base), other, method="omp", sparsity=0.3, base_model=str(base)),
        tmp_path / "o",
    )
    line = error_line(
        capsys,
        "export",
        "--model",
        tmp_path / "ft",
        "--mask",
        tmp_path / "o",
        "--base",
        base,
        "--out",
        tmp_path / "t2",
    )
    assert (
        line.startswith(f"ticketlab export: error: {tmp_path / 'ft'}: ")
        and "non-zero weights where the mask prunes" in line
    )


@pytest.mark.shared
@pytest.mark.slow
def test_a_70_ticket_of_bert_mini_is_under_a_tenth_of_its_checkpoint(bert_mini, tmp_path):
    """Under a tenth of the dense checkpoint on the real shape (embeddings are most of a small BERT):
    three steps at a fine-tuning learning rate, every tensor trained; against the dense checkpoint
    with zeros."""
    torch.manual_seed(0)
    model = load_model(bert_mini, "seq-cls", num_labels=2)
    apply_mask(model, omp70(model))
    x = torch.randint(1000, 30000, (8, 32), generator=torch.Generator().manual_seed(0))
    fine_tune(model, steps=3, frozen=None, x=x, lr=2e-5)
    with torch.no_grad():
        want = model(x).logits
    save_ticket(model, tmp_path / "ticket", base=bert_mini)
    export_pretrained(model, tmp_path / "dense")
    small = sum(f.stat().st_size for f in (tmp_path / "ticket").iterdir())
    dense = (tmp_path / "dense" / "model.safetensors").stat().st_size
    assert small < 0.1 * dense, (small, dense)
    with torch.no_grad():
        assert (load_ticket(tmp_path / "ticket")(x).logits - want).abs().max().item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64])
def test_the_difference_codec_is_exact(dtype):
    from ticketlab.masks.ticket import _diff_pack, _diff_unpack

    g = torch.Generator().manual_seed(0)
    ref = (torch.randn(1000, generator=g) * 3).to(dtype)
    values = (ref.float() + torch.randn(1000, generator=g)).to(dtype)  # sign flips, far moves
    if dtype.is_floating_point:
        values[:4] = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0])
    out = _diff_unpack(_diff_pack(values, ref), ref)
    assert out.dtype == dtype and torch.equal(out.view(torch.uint8), values.view(torch.uint8))


def test_a_ticket_is_not_written_over_a_users_files(base, tmp_path):
    model = ticketed(base)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(TicketlabError):
        save_ticket(model, tmp_path / "mine", base=base)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    with pytest.raises(TicketlabError, match="input"):
        save_ticket(model, base, base=base)  # the base itself
