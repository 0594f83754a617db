"""Ticket sharing for multi-task learning: the masked optimizer, the sharing step, the multi-task
batches, errors, tiny runs (one pinned against Algorithm 1 written out)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from test_finetune import sentiment_rows
from ticketlab.core.errors import ConfigError, MaskMismatchError, TicketlabError
from ticketlab.masks import UnitMask, structure_of
from ticketlab.masks.apply import dense_tensor
from ticketlab.masks.unit_io import save_unit_mask, unit_mask_config
from ticketlab.models.load import load_model
from ticketlab.studies.mtl import MtlConfig, run_mtl, task_objective
from ticketlab.studies.mtl_model import build, ticket_param_masks
from ticketlab.train.batches import TASK, MultiTaskData, epoch_batches
from ticketlab.train.masked_adam import MaskedAdamW

# --------------------------------------------------------------------------- MaskedAdamW


def _grads(params, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)


def test_masked_adamw_without_masks_is_adamw():
    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(5))]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    ours = MaskedAdamW(a, lr=1e-2, weight_decay=0.1)
    ref = torch.optim.AdamW(b, lr=1e-2, weight_decay=0.1)
    for step in range(5):
        _grads(a, step)
        _grads(b, step)
        ours.step()
        ref.step()
    for p, q in zip(a, b, strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_masked_step_leaves_everything_outside_bit_identical():
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(6, 4))
    opt = MaskedAdamW([p], lr=1e-2, weight_decay=0.5)
    _grads([p], 0)
    opt.step()  # every entry now has moments: plain AdamW would keep moving them
    mask = torch.zeros(6, 4, dtype=torch.bool)
    mask[:2] = True
    before = p.detach().clone()
    state = {k: v.clone() for k, v in opt.state[p].items()}
    for step in range(1, 4):
        _grads([p], step)
        opt.step({p: mask})
    assert torch.equal(p[~mask], before[~mask])
    for k, v in opt.state[p].items():
        assert torch.equal(v[~mask], state[k][~mask]), k
    assert not torch.equal(p[mask], before[mask])
    assert opt.state[p]["step"][mask].unique().tolist() == [4.0]  # per-entry step counts
    assert opt.state[p]["step"][~mask].unique().tolist() == [1.0]


# --------------------------------------------------------------------------- tiny tasks and tickets


def _rte_rows(n: int, seed: int) -> list[str]:
    """Pairs whose label is the first sentence's sentiment: learnable, and a second task."""
    out = []
    for i, row in enumerate(sentiment_rows(n, seed)):
        sentence, label = row.split("\t")
        out.append(f"{i}\t{sentence}\tthe dog sleeps .\t{'entailment' if label == '1' else 'not_entailment'}")
    return out


@pytest.fixture(scope="module")
def glue(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("glue")
    (root / "SST-2").mkdir()
    (root / "RTE").mkdir()
    for split, n, seed in (("train", 24, 0), ("dev", 20, 1)):
        (root / "SST-2" / f"{split}.tsv").write_text(
            "sentence\tlabel\n" + "\n".join(sentiment_rows(n, seed)) + "\n"
        )
        (root / "RTE" / f"{split}.tsv").write_text(
            "index\tsentence1\tsentence2\tlabel\n" + "\n".join(_rte_rows(n, seed)) + "\n"
        )
    return root


def _ticket(model_dir: Path, out: Path, heads: list[list[bool]], ffn: list[bool], task: str | None) -> str:
    model = load_model(model_dir, head="base")
    units = UnitMask(head=torch.tensor(heads), ffn=torch.tensor(ffn))
    found = {"task": task} if task else {}
    config = unit_mask_config(
        model, units, method="st-winning", level=0.5, base_model=str(model_dir), search=found
    )
    save_unit_mask(units, config, out)
    return str(out)


@pytest.fixture(scope="module")
def tickets(tiny_bert_dir, tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("tickets")
    # 2 layers x 2 heads; the tickets overlap in head (0, 0) and FFN 0
    t_sst = _ticket(tiny_bert_dir, root / "sst2", [[True, True], [False, False]], [True, False], "sst2")
    t_rte = _ticket(tiny_bert_dir, root / "rte", [[True, False], [True, False]], [True, False], "rte")
    return [t_sst, t_rte]


def _config(tiny_bert_dir, glue, tickets, **kw) -> MtlConfig:
    base = dict(
        model=str(tiny_bert_dir),
        tasks=["sst2", "rte"],
        tickets=tickets,
        data_dir=str(glue),
        batch_size=4,
        max_length=32,
        max_steps=6,
        eval_every=3,
        lr=1e-3,
        weight_decay=0.1,
        progress=False,
    )
    return MtlConfig(**{**base, **kw})


# --------------------------------------------------------------------------- the sharing step


def _objectives(model_dir, glue, tasks, seed: int = 0) -> list:
    from ticketlab.models.load import load_tokenizer

    tok = load_tokenizer(model_dir)
    return [task_objective(t, tok, str(glue), max_length=32, data_seed=seed) for t in tasks]


def sharing_step(mt, i: int, batch: dict, obj, optimizer: MaskedAdamW) -> None:
    """A step as the training loop takes it: task i's loss through its model (its ticket in force),
    then `optimizer.step()`, whose masks come from the model (`step_masks=mt.active_step_mask`)."""
    obj.loss_fn(mt.task_model(i), batch).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_sharing_step_moves_nothing_outside_the_ticket(tiny_bert_dir, glue, tickets):
    config = _config(tiny_bert_dir, glue, tickets)
    mt = build(config, seed=1, device=torch.device("cpu"))
    objs = _objectives(tiny_bert_dir, glue, config.tasks)
    opt = MaskedAdamW(mt.models.parameters(), lr=1e-2, weight_decay=0.5, step_masks=mt.active_step_mask)

    def batch(i: int) -> dict:
        return objs[i].collate_fn([objs[i].dataset[j] for j in range(4)], list(range(4)))

    sharing_step(mt, 1, batch(1), objs[1], opt)  # task 1 first: moments everywhere in its ticket
    params = mt.named_parameters()
    before = {n: p.detach().clone() for n, p in params.items()}
    state = {n: {k: v.clone() for k, v in opt.state[p].items()} for n, p in params.items() if p in opt.state}
    sharing_step(mt, 0, batch(0), objs[0], opt)  # then a step of task 0

    masks = mt.step_mask(0)
    moved_inside = 0
    for n, p in params.items():
        inside = masks.get(p, False)
        inside = torch.full_like(p, inside, dtype=torch.bool) if isinstance(inside, bool) else inside
        assert torch.equal(p[~inside], before[n][~inside]), n
        for k, v in opt.state[p].items() if n in state else ():
            assert torch.equal(v[~inside], state[n][k][~inside]), (n, k)
        moved_inside += int((p[inside] != before[n][inside]).sum())
    assert moved_inside > 0
    # concretely: task 1's head, layer 1's heads and layer 1's FFN (with its output bias) stayed put
    enc = mt.models["t0"].bert.encoder.layer
    assert not masks.get(mt.models["t1"].classifier.weight, False)
    query, ffn_out = (
        dense_tensor(enc[1].get_submodule(m), t)
        for m, t in (("attention.self.query", "weight"), ("output.dense", "bias"))
    )
    assert not masks[query].any() and masks[ffn_out] is False
    assert masks[dense_tensor(enc[0].attention.self.query, "weight")].all()


def test_each_tasks_ticket_is_a_named_mask_computing_what_its_gates_compute(tiny_bert_dir, glue, tickets):
    """Per-task tickets are named masks on the shared encoder: bits, one in force; task i's forward
    is its ticket's (the gated model's, FFN-out's bias of a pruned sub-layer included)."""
    from ticketlab.masks import active_mask, attach_gates, load_unit_mask, mask_names

    mt = build(_config(tiny_bert_dir, glue, tickets), seed=1, device=torch.device("cpu"))
    assert mask_names(mt.models["t0"]) == ["t0", "t1"]
    ids = torch.randint(5, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    for i, path in enumerate(tickets):
        model = mt.task_model(i)
        assert active_mask(model) == f"t{i}"
        gated = build(_config(tiny_bert_dir, glue, None), seed=1, device=torch.device("cpu")).models[f"t{i}"]
        attach_gates(gated, units=load_unit_mask(path)[0])
        with torch.no_grad():
            torch.testing.assert_close(model(input_ids=ids).logits, gated(input_ids=ids).logits)
    named = mt.models["t0"].bert._ticketlab_named_masks
    weights = sum(p.mask.numel() for p in named.buffers.values())  # the mask in force: a byte per entry
    assert sum(b.numel() for per in named.bits.values() for b in per.values()) <= 2 * (weights / 8 + 64)


def test_ticket_masks_of_bias_free_projections(tiny_bert_dir):
    """A bias-free Q or FFN-in (ModernBERT-style linears) gets a weight mask and no bias entry."""
    encoder = load_model(tiny_bert_dir, head="base")
    for layer in encoder.encoder.layer:
        layer.attention.self.query.bias = None
        layer.intermediate.dense.bias = None
    structure = structure_of(encoder)
    units = UnitMask(head=torch.tensor([[True, False], [False, True]]), ffn=torch.tensor([True, False]))
    masks = ticket_param_masks(encoder, units, structure)
    assert None not in masks and set(masks) <= set(encoder.parameters())
    q = encoder.encoder.layer[0].attention.self.query.weight
    assert masks[q][:16].all() and not masks[q][16:].any()  # head 0 kept, head 1 pruned (dh = 16)


def test_batches_mix_tasks_and_cover_every_example():
    batches = epoch_batches([10, 7], batch_size=4, seed=1, epoch=0)
    assert len(batches) == 3 + 2
    for task, n in ((0, 10), (1, 7)):
        assert sorted(j for t, idx in batches if t == task for j in idx) == list(range(n))
    assert batches == epoch_batches([10, 7], batch_size=4, seed=1, epoch=0)


def test_multi_task_data_samples_the_epoch_batches_and_collates_per_task():
    """The flat view the training loop sees: step t's batch is `epoch_batches`' t-th (epochs on), its
    examples are that task's, and its collate is that task's with the task recorded."""
    sets = [[f"a{j}" for j in range(10)], [], [f"c{j}" for j in range(7)]]  # an empty task is skipped
    collates = [lambda ex, seeds, t=t: {"examples": ex, "collated_by": t} for t in range(3)]
    data = MultiTaskData(sets, collates, batch_size=4, seed=1)
    assert len(data) == 17 and data.steps_per_epoch == 5
    for step in (0, 4, 5, 12, 3):  # out of order too: a function of the step alone
        epoch, k = divmod(step, 5)
        task, idx = epoch_batches([10, 0, 7], 4, seed=1, epoch=epoch)[k]
        flat, got_epoch = data.sample(step)
        assert got_epoch == epoch
        batch = data.collate([data[f] for f in flat], [0] * len(flat))
        assert batch == {"examples": [sets[task][j] for j in idx], "collated_by": task, TASK: task}
    with pytest.raises(ValueError, match="one task's examples"):
        data.collate([data[0], data[16]], [0, 0])


# --------------------------------------------------------------------------- bad input


def test_task_list_not_matching_the_tickets(tiny_bert_dir, glue, tickets):
    with pytest.raises(ConfigError, match="the task list does not match the tickets: 2 tasks"):
        _config(tiny_bert_dir, glue, tickets[:1])
    config = _config(tiny_bert_dir, glue, list(reversed(tickets)))  # a ticket found on sst2 given for rte
    with pytest.raises(ConfigError, match="was found on rte, given for sst2"):
        build(config, seed=1, device=torch.device("cpu"))


def test_ticket_for_another_model(tiny_bert_dir, glue, tickets, tmp_path):
    from transformers import BertForMaskedLM

    from conftest import make_model, tiny_bert_config, write_tokenizer

    other = tmp_path / "other"
    make_model(BertForMaskedLM, tiny_bert_config(), seed=7).save_pretrained(other)
    write_tokenizer(other)
    with pytest.raises(MaskMismatchError):
        build(_config(other, glue, tickets), seed=1, device=torch.device("cpu"))


# --------------------------------------------------------------------------- a tiny run


def test_ticket_sharing_run_writes_rows_per_task(tiny_bert_dir, glue, tickets, tmp_path):
    from ticketlab.studies.report.results import load_results

    out = tmp_path / "mtl"
    config = _config(
        tiny_bert_dir, glue, tickets, finetune_after=True, finetune_max_steps=2, select_fraction=0.2
    )
    summary = run_mtl(config, out)
    assert set(summary) == {"ticket-share", "ticket-share+ft"}
    assert set(summary["ticket-share"]) == {"sst2", "rte"}
    res = load_results(out)
    assert {(s.method, s.task) for s in res.main_scores()} == {
        (m, t) for m in ("ticket-share", "ticket-share+ft") for t in ("sst2", "rte")
    }
    assert all(s.sparsity == 0.25 for s in res.scores)  # head (1, 1) is kept by no task
    # resumable: nothing runs again
    again = run_mtl(config, out)
    assert again == summary
    # the shared structure kept its shape (units are gated, not removed)
    assert structure_of(load_model(tiny_bert_dir, head="base")).num_heads == 2


def test_interrupted_sharing_resumes_to_the_same_weights(tiny_bert_dir, glue, tickets, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    config = _config(tiny_bert_dir, glue, tickets, save_every=2, seeds=[3])
    whole = tmp_path / "whole"
    run_mtl(config, whole)

    calls, real = [], MultiTaskData.collate

    def dies_at_step_5(*a, **kw):  # one collate per step
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(MultiTaskData, "collate", dies_at_step_5)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_mtl(config, cut)
    # saved at step 4, a step of task 1 (seed 3: tasks 0, 0, 0, 1, 1, ...): the ticket in force in
    # the saved buffers is not the one a fresh build puts in force
    assert (cut / "seed-3" / "mtl" / "checkpoint.pt").is_file()
    monkeypatch.setattr(MultiTaskData, "collate", real)
    assert run_mtl(config, cut) == run_mtl(config, whole)
    a, b = (load_file(d / "seed-3" / "mtl" / "weights.safetensors") for d in (whole, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_killed_after_the_loop_finished_ends_with_the_same_weights(
    tiny_bert_dir, glue, tickets, tmp_path, monkeypatch
):
    """Killed between the loop's result and the weights file: the loop returns its result with the
    final weights restored from its checkpoint (no step, no evaluation again), written from there."""
    import importlib

    from safetensors.torch import load_file

    mtl = importlib.import_module("ticketlab.studies.mtl")
    config = _config(tiny_bert_dir, glue, tickets, seeds=[3])
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_mtl(config, whole)

    def killed(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(mtl, "atomic_write_bytes", killed)
    with pytest.raises(KeyboardInterrupt):
        run_mtl(config, cut)
    assert (cut / "seed-3" / "mtl" / "train_result.json").is_file()
    monkeypatch.undo()
    assert run_mtl(config, cut) == run_mtl(config, whole)
    a, b = (load_file(d / "seed-3" / "mtl" / "weights.safetensors") for d in (whole, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_a_kill_left_beside_the_sharing_result_goes_on_the_rerun(
    tiny_bert_dir, glue, tickets, tmp_path, monkeypatch
):
    from ticketlab.train.run_dir import RunDir

    config = _config(tiny_bert_dir, glue, tickets, seeds=[3])
    out = tmp_path / "cut"

    def killed(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "tidy", killed)
    with pytest.raises(KeyboardInterrupt):
        run_mtl(config, out)
    stage = out / "seed-3" / "mtl"
    assert (stage / "train_result.json").is_file() and (stage / "checkpoint.pt").is_file()
    monkeypatch.undo()
    run_mtl(config, out)
    assert not (stage / "checkpoint.pt").exists()


def test_a_checkpoint_of_another_shape_is_refused_in_one_line(tiny_bert_dir, glue, tickets, tmp_path):
    """A checkpoint that is not the training loop's ("state", no "result") is refused, not resumed."""
    from ticketlab.studies.mtl import train_shared

    old = tmp_path / "checkpoint.pt"
    state = {"step": 2, "history": [[], []], "best": [None, None], "train_time_s": 0.1}
    torch.save(
        {
            "step": 2,
            "model": {},
            "optimizer": {},
            "scheduler": {},
            "rng": torch.get_rng_state(),
            "state": state,
        },
        old,
    )
    with pytest.raises(TicketlabError, match="not a checkpoint of this training loop") as e:
        train_shared(_config(tiny_bert_dir, glue, tickets), 1, tmp_path, torch.device("cpu"))
    assert str(old) in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- the stages' run directories


def _interrupted(config: MtlConfig, out: Path, monkeypatch) -> Path:
    """Run the study into `out` and kill it at step 5 (a checkpoint at step 4); the shared stage's
    directory."""
    calls, real = [], MultiTaskData.collate

    def dies_at_step_5(*a, **kw):  # one collate per step
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **kw)

    with monkeypatch.context() as m:
        m.setattr(MultiTaskData, "collate", dies_at_step_5)
        with pytest.raises(KeyboardInterrupt):
            run_mtl(config, out)
    stage = out / f"seed-{config.seeds[0]}" / "mtl"
    assert (stage / "checkpoint.pt").is_file()
    return stage


def test_interrupted_sharing_with_changed_task_data_is_refused(
    tiny_bert_dir, glue, tickets, tmp_path, monkeypatch
):
    """New bytes at the same data path since the shared training started: its checkpoint was trained
    on the old ones, so a resume is refused in one line naming the directory and what changed (it
    went on silently)."""
    import shutil

    data = tmp_path / "glue"
    shutil.copytree(glue, data)
    config = _config(tiny_bert_dir, data, tickets, save_every=2, seeds=[3])
    stage = _interrupted(config, tmp_path / "out", monkeypatch)
    train = data / "SST-2" / "train.tsv"
    train.write_text(train.read_text().replace("\t1\n", "\t0\n", 1))
    with pytest.raises(ConfigError) as e:
        run_mtl(config, tmp_path / "out")
    msg = str(e.value)
    assert msg.startswith(f"{stage}: the task data at {data / 'SST-2'} changed since this ticket-sharing run")
    assert "\n" not in msg


def test_interrupted_sharing_with_other_settings_is_refused(
    tiny_bert_dir, glue, tickets, tmp_path, monkeypatch
):
    """Its checkpoint and result belong to the first settings (they were taken for the new ones)."""
    config = _config(tiny_bert_dir, glue, tickets, save_every=2, seeds=[3])
    stage = _interrupted(config, tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="differs in: lr 0.001 -> 0.002") as e:
        run_mtl(_config(tiny_bert_dir, glue, tickets, save_every=2, seeds=[3], lr=2e-3), tmp_path)
    assert str(e.value).startswith(f"{stage} holds a ticket-sharing run with other settings")


def test_fine_tuning_added_later_reuses_the_shared_stage(tiny_bert_dir, glue, tickets, tmp_path):
    """The settings of the fine-tuning after sharing are not the shared stage's: adding that stage
    (or changing its settings) reruns only it."""
    from safetensors.torch import load_file

    config = _config(tiny_bert_dir, glue, tickets, seeds=[3])
    shared = run_mtl(config, tmp_path)["ticket-share"]
    weights = tmp_path / "seed-3" / "mtl" / "weights.safetensors"
    before = load_file(weights)
    after = run_mtl(
        _config(tiny_bert_dir, glue, tickets, seeds=[3], finetune_after=True, finetune_max_steps=2), tmp_path
    )
    assert after["ticket-share"] == shared and set(after) == {"ticket-share", "ticket-share+ft"}
    assert all(torch.equal(before[k], v) for k, v in load_file(weights).items())
    with pytest.raises(ConfigError, match="differs in: finetune_max_steps 2 -> 3"):
        run_mtl(
            _config(tiny_bert_dir, glue, tickets, seeds=[3], finetune_after=True, finetune_max_steps=3),
            tmp_path,
        )


def test_one_task_twice_a_small_dev_set_and_an_output_in_a_ticket_are_refused(
    tiny_bert_dir, glue, tickets, tmp_path
):
    """Two task.json files of one id would share a head, a row and a score (one task, n counted
    twice); a dev set too small for select_fraction would fail its first run; a study written inside
    a ticket folder it reads changes that ticket's content key. Each refused before anything is
    made."""
    import json
    import shutil

    from ticketlab.core.errors import TicketlabError

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    (one / "task.json").write_text(json.dumps({"id": "same", "text_a": "sentence"}))
    shutil.copytree(one, two)
    files = [str(one / "task.json"), str(two / "task.json")]
    with pytest.raises(ConfigError, match=f"{files[0]} and {files[1]} are one task, 'same'"):
        _config(tiny_bert_dir, glue, None, tasks=files, data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="select_fraction 0.01 of a dev set of .* leaves 0"):
        run_mtl(_config(tiny_bert_dir, glue, tickets, select_fraction=0.01), tmp_path / "s")
    assert not (tmp_path / "s").exists()
    inside = Path(tickets[0]) / "study"
    with pytest.raises(TicketlabError, match="inside"):
        run_mtl(_config(tiny_bert_dir, glue, tickets), inside)
    assert not inside.exists()


def test_directories_written_before_they_recorded_their_settings_resume(
    tiny_bert_dir, glue, tickets, tmp_path, monkeypatch
):
    """The layout the code before `RunDir` wrote (no settings.json in a stage's directory; nothing
    else differs): an interrupted one resumes to the same weights, a finished one returns its
    result (and records its settings from then on)."""
    from safetensors.torch import load_file

    config = _config(
        tiny_bert_dir, glue, tickets, save_every=2, seeds=[3], finetune_after=True, finetune_max_steps=2
    )
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    summary = run_mtl(config, whole)
    stage = _interrupted(config, cut, monkeypatch)
    (stage / "settings.json").unlink()
    assert run_mtl(config, cut) == summary
    a, b = (load_file(d / "seed-3" / "mtl" / "weights.safetensors") for d in (whole, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for old in (whole / "seed-3").glob("*/settings.json"):
        old.unlink()
    assert run_mtl(config, whole) == summary
    # the shared stage's weights are read again; the fine-tunings' rows are done (not run)
    assert [p.parent.name for p in (whole / "seed-3").glob("*/settings.json")] == ["mtl"]


def test_sharing_is_algorithm_1_written_out(tiny_bert_dir, glue, tickets, tmp_path):
    """Pins the run on the training loop bit for bit to Algorithm 1 as a plain loop (ticket
    sharing's own loop before it ran on `train.loop.train`): weights and every dev score. Over an
    epoch boundary, with gradient clipping at work on every step (max norm 0.05)."""
    # One intra-op thread: with two, a reduction's split differs between the loop's and this plain
    # loop's calls in the last bits (bit-for-bit holds on one thread; the scores agree either way).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_algorithm_1(tiny_bert_dir, glue, tickets, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check_algorithm_1(tiny_bert_dir, glue, tickets, tmp_path) -> None:
    import json

    from safetensors.torch import load_file

    from ticketlab.train.config import TrainConfig
    from ticketlab.train.schedule import make_scheduler

    config = _config(tiny_bert_dir, glue, tickets, max_steps=15, eval_every=4, max_grad_norm=0.05, seeds=[2])
    run_mtl(config, tmp_path)
    got = load_file(tmp_path / "seed-2" / "mtl" / "weights.safetensors")
    result = json.loads((tmp_path / "seed-2" / "mtl" / "result.json").read_text())

    mt = build(config, seed=2, device=torch.device("cpu"))
    objs = _objectives(tiny_bert_dir, glue, config.tasks, seed=2)
    sizes = [len(o.dataset) for o in objs]
    per_epoch = sum(-(-n // 4) for n in sizes)
    opt = MaskedAdamW(mt.params, lr=1e-3, weight_decay=0.1)
    sched = make_scheduler(opt, TrainConfig(max_steps=15, lr=1e-3, warmup_steps=round(0.1 * 15)))
    history: list[list[dict]] = [[], []]
    for step in range(1, 16):
        epoch, k = divmod(step - 1, per_epoch)
        i, idx = epoch_batches(sizes, 4, seed=2, epoch=epoch)[k]
        batch = objs[i].collate_fn([objs[i].dataset[j] for j in idx], idx)
        objs[i].loss_fn(mt.task_model(i).train(), batch).backward()
        # the loop clips over its optimizer's parameters in their order: the norm's sum runs in that order
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 0.05)
        opt.step(mt.step_mask(i))
        opt.zero_grad(set_to_none=True)
        sched.step()
        if step % 4 == 0 or step == 15:
            for t, obj in enumerate(objs):
                history[t].append({"step": step, **obj.eval_fn(mt.task_model(t))})
    assert result["steps"] == 15 and result["history"] == history
    assert result["best"] == [max(h, key=lambda r: r["accuracy"]) for h in history]
    want = {n: p.detach() for n, p in mt.named_parameters().items()}
    assert got.keys() == want.keys(), set(got) ^ set(want)
    assert all(torch.equal(got[n], want[n]) for n in want)


def test_without_tickets_every_task_shares_everything(tiny_bert_dir, glue):
    config = _config(tiny_bert_dir, glue, None)
    assert config.method == "mtl"
    mt = build(config, seed=1, device=torch.device("cpu"))
    enc = mt.models["t0"].bert
    assert all(mt.step_mask(i)[p] is True for i in (0, 1) for p in enc.parameters())
    assert not any(".parametrizations." in n for n, _ in mt.models.named_parameters())  # nothing masked


def test_cli_errors_are_one_line(tiny_bert_dir, glue, tickets, tmp_path, capsys):
    from ticketlab.cli import main

    common = ["--model", str(tiny_bert_dir), "--data-dir", str(glue), "--out", str(tmp_path / "o")]
    assert main(["mtl", "--tasks", "sst2", "rte", "--tickets", tickets[0], *common]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("ticketlab mtl: error: the task list does not match the tickets") and "\n" not in err
    )
    assert main(["super", "--task", "sst2", "--levels", "0.2", "1.5", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ticketlab super: error: level must be a fraction in (0, 1)") and "\n" not in err
