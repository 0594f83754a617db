"""One store-row executor: a sweep run in its process, a super-ticket study and ticket sharing all
execute their rows through `studies.rows.execute` (DESIGN: one store kit), so claiming, heartbeats,
provenance and failures are recorded one way."""

from __future__ import annotations

import sweep_fakes as fakes
from test_mtl import _config, glue, tickets  # noqa: F401  (fixtures)
from test_super import _super_config, sst2_root  # noqa: F401  (fixtures)
from ticketlab.studies import Store, expand, rows, run_sweep


def _count(monkeypatch) -> list[str]:
    """The run ids `rows.execute` is asked to execute, in order."""
    seen: list[str] = []
    real = rows.execute

    def spy(store, run, work, **kw):
        seen.append(run.id)
        return real(store, run, work, **kw)

    monkeypatch.setattr(rows, "execute", spy)
    return seen


def _ids(out) -> set[str]:
    with Store(out, readonly=True) as store:
        return {r.id for r in store.runs()}


def test_a_sweep_executes_every_run_through_the_one_executor(tmp_path, tiny_bert_dir, monkeypatch):
    seen = _count(monkeypatch)
    spec = fakes.make_spec(tmp_path, tiny_bert_dir)
    out = tmp_path / "sweep"
    result = run_sweep(
        spec, out, finetune=fakes.fake_finetune, pretrain_eval=fakes.fake_pretrain_eval, log=lambda s: None
    )
    assert result.ok
    assert sorted(seen) == sorted(r.id for r in expand(spec)) and set(seen) == _ids(out)


def test_super_tickets_execute_every_row_through_the_one_executor(
    tiny_bert_dir,
    sst2_root,  # noqa: F811  (the fixture imported above)
    tmp_path,
    monkeypatch,
):
    from ticketlab.studies.supertickets import run_super

    seen = _count(monkeypatch)
    out = tmp_path / "study"
    run_super(_super_config(tiny_bert_dir, sst2_root, seeds=[1], kinds=["winning"]), out)
    assert len(seen) == len(set(seen)) == 3  # the full model, the ticket, its rewinding
    assert set(seen) == _ids(out)


def test_ticket_sharing_executes_every_row_through_the_one_executor(
    tiny_bert_dir,
    glue,  # noqa: F811  (the fixtures imported above)
    tickets,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    from ticketlab.studies.mtl import run_mtl

    seen = _count(monkeypatch)
    out = tmp_path / "mtl"
    run_mtl(_config(tiny_bert_dir, glue, tickets, finetune_after=True, finetune_max_steps=2), out)
    assert len(seen) == len(set(seen)) == 4  # per task: sharing, then fine-tuning alone
    assert set(seen) == _ids(out)
