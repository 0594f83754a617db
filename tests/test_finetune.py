"""Fine-tuning a (model, mask) on a task: zeros stay zero, best-score bookkeeping, resume, CLI."""

from __future__ import annotations

import importlib
import json
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from conftest import make_model, tiny_bert_config, write_tokenizer
from families import FAMILIES, family_class, family_config, family_task_class
from test_squad import write_squad
from ticketlab.cli import main
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.masks import MaskConfig, current_mask, load_mask, save_mask
from ticketlab.methods import omp_mask
from ticketlab.models.load import load_model, load_tokenizer
from ticketlab.tasks.objective import load_task_model, reset_head, task_objective
from ticketlab.train.config import TrainConfig, eval_payload
from ticketlab.train.loop import train
from ticketlab.verbs.finetune import FinetuneConfig, FinetuneResult, finetune
from ticketlab.verbs.finetune_results import mean_std, summarize

ft = importlib.import_module("ticketlab.verbs.finetune")  # the module: `ticketlab.finetune` is the function

NOUNS = "cat dog bird fish man woman child king queen".split()
POS, NEG = ["good", "great", "happy"], ["bad", "awful", "sad"]


def sentiment_rows(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        adj = rng.choice(POS if label else NEG)
        rows.append(f"the {rng.choice(NOUNS)} is {rng.choice(['', 'very '])}{adj} .\t{label}")
    return rows


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory) -> Path:
    """SST-2 (a learnable keyword task), STS-B and RTE in the GLUE layout."""
    root = tmp_path_factory.mktemp("glue")
    (root / "SST-2").mkdir()
    for split, n, seed in (("train", 96, 0), ("dev", 32, 1)):
        (root / "SST-2" / f"{split}.tsv").write_text(
            "sentence\tlabel\n" + "\n".join(sentiment_rows(n, seed)) + "\n"
        )
    rng = random.Random(0)
    (root / "STS-B").mkdir()
    (root / "RTE").mkdir()
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    pair = "the {} runs .\ta {} runs ."
    sts = [
        f"{i}\tg\tf\t2012\t{i}\ts\ts\t" + pair.format(*rng.sample(NOUNS, 2)) + f"\t{rng.uniform(0, 5):.3f}"
        for i in range(24)
    ]
    nli = ["entailment", "not_entailment"]
    rte = [
        f"{i}\tthe {rng.choice(NOUNS)} sleeps .\tthe {rng.choice(NOUNS)} sleeps .\t{rng.choice(nli)}"
        for i in range(24)
    ]
    for split in ("train", "dev"):
        (root / "STS-B" / f"{split}.tsv").write_text(head + "\n" + "\n".join(sts) + "\n")
        (root / "RTE" / f"{split}.tsv").write_text(
            "index\tsentence1\tsentence2\tlabel\n" + "\n".join(rte) + "\n"
        )
    write_squad(root)
    return root


@pytest.fixture(scope="module")
def mask_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    model = load_model(tiny_bert_dir, head="base")
    mask = omp_mask(model, 0.7)
    config = MaskConfig.for_model(model, mask, method="omp", sparsity=0.7, base_model=str(tiny_bert_dir))
    return save_mask(mask, config, tmp_path_factory.mktemp("masks") / "omp70")


def quick(tiny_bert_dir, glue_dir, **kw) -> FinetuneConfig:
    base = dict(
        model=str(tiny_bert_dir),
        task="sst2",
        data_dir=str(glue_dir),
        lr=1e-3,
        batch_size=16,
        max_length=32,
        max_steps=6,
        eval_every=2,
        save_every=2,
        progress=False,
    )
    return FinetuneConfig(**{**base, **kw})


def test_pruned_weights_stay_exactly_zero_at_every_step(tiny_bert_dir, glue_dir, mask_dir):
    mask, _ = load_mask(mask_dir)
    model, cfg = load_task_model(tiny_bert_dir, "sst2", seed=1, mask=mask_dir)
    assert cfg is not None and current_mask(model).sparsity == pytest.approx(mask.sparsity)
    obj = task_objective("sst2", load_tokenizer(tiny_bert_dir), glue_dir, max_length=32)
    modules = dict(model.base_model.named_modules())
    before = {k: modules[k.removesuffix(".weight")].weight.detach().clone() for k in mask}
    checked = []

    def check(state):
        for k, keep in mask.items():
            w = modules[k.removesuffix(".weight")].weight
            assert torch.count_nonzero(w[~keep]) == 0, f"{k}: a pruned weight moved at step {state.step}"
        checked.append(state.step)

    cfg_t = TrainConfig(max_steps=5, batch_size=16, lr=1e-3, progress=False, metric=obj.metric)
    train(model, model.parameters(), obj.dataset, obj.collate_fn, obj.loss_fn, cfg_t, after_step=check)
    assert checked == [1, 2, 3, 4, 5]
    for k, keep in mask.items():  # ... while the kept weights did train
        w = modules[k.removesuffix(".weight")].weight.detach()
        assert not torch.equal(w[keep].cpu(), before[k][keep]), k  # (train moves the model to a GPU if any)


def test_finetune_learns_and_reports_best_and_final(tiny_bert_dir, glue_dir, tmp_path):
    r = finetune(
        quick(tiny_bert_dir, glue_dir, lr=1e-2, epochs=10, max_steps=30, eval_every=5), tmp_path / "run"
    )
    scores = [h["accuracy"] for h in r.history]
    assert [h["step"] for h in r.history] == [5, 10, 15, 20, 25, 30]
    assert r.best_score == max(scores) and r.best == r.history[scores.index(max(scores))]
    assert r.final == r.history[-1] and r.metric == "accuracy"
    assert r.best_score >= 75.0  # a keyword task the tiny model learns in 30 steps
    losses = [
        json.loads(x)["loss"]
        for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
        if '"loss"' in x
    ]
    assert losses[-1] < losses[0]
    assert (r.n_train, r.steps, r.n_dev) == (96, 30, {"dev": 32})
    assert r.epochs == pytest.approx(30 * 16 / 96)
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["best"] == r.best and not (tmp_path / "run" / "checkpoint.pt").exists()
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["resolved"]["max_steps"] == 30
    # the held-out protocol by default, in the fingerprint: the score no dev step was chosen for
    assert recorded["fingerprint"]["config"]["checkpoint"] == "held-out" and r.checkpoint == "held-out"
    assert r.reported_score == r.final_score


def test_the_reported_score_is_never_chosen_on_the_data_that_scores_it():
    """held-out: the last evaluation, or the step a selection part of dev picked (scored on the rest);
    best-dev: the papers' best dev score. A result that does not say which is refused in one line
    naming its file: its score could be either."""
    from ticketlab.verbs.finetune_results import FinetuneResult

    base = dict(task="sst2", metric="accuracy", seed=1, history=[], steps=2, epochs=1.0, n_train=8)
    base |= dict(n_dev={}, skipped={}, sparsity=0.0, mask=None, train_time_s=0, eval_time_s=0, wall_time_s=0)
    best, final = {"step": 1, "accuracy": 80.0}, {"step": 2, "accuracy": 70.0}
    assert FinetuneResult(**base, best=best, final=final, checkpoint="held-out").reported_score == 70.0
    assert FinetuneResult(**base, best=best, final=final, checkpoint="best-dev").reported_score == 80.0
    selected = FinetuneResult(
        **base, best=best, final=final, selected_by="select_accuracy", checkpoint="held-out"
    )
    assert selected.reported_score == 80.0  # the step the selection part picked, scored on the rest
    assert selected.reported == best  # the record whose predictions the run keeps
    missing = r"^run/result.json: not a fine-tuning result \(missing checkpoint\)$"
    with pytest.raises(TicketlabError, match=missing):
        FinetuneResult.from_dict({**base, "best": best, "final": final}, "run/result.json")
    wrong = {**base, "best": [], "final": final, "checkpoint": "held-out"}
    with pytest.raises(TicketlabError, match=r"^run/result.json: .*best"):
        FinetuneResult.from_dict(wrong, "run/result.json")


def test_epochs_give_the_step_count(tiny_bert_dir, glue_dir, tmp_path):
    r = finetune(quick(tiny_bert_dir, glue_dir, max_steps=None, epochs=0.5, train_samples=40), tmp_path / "r")
    assert r.steps == 2 and r.n_train == 40  # ceil(0.5 * 40 / 16)


def test_max_steps_beyond_the_epochs_is_a_cap_and_says_so(tiny_bert_dir, glue_dir, tmp_path, caplog):
    config = quick(tiny_bert_dir, glue_dir, max_steps=50, epochs=0.5, train_samples=40)
    with caplog.at_level("WARNING"):
        r = finetune(config, tmp_path / "r")
    assert r.steps == 2 and "fewer than max_steps 50" in caplog.text


def test_finished_run_returns_its_result_and_other_config_is_refused(
    tiny_bert_dir, glue_dir, tmp_path, monkeypatch
):
    config = quick(tiny_bert_dir, glue_dir, max_steps=2)
    first = finetune(config, tmp_path / "run")
    monkeypatch.setattr(ft, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = finetune(config.replace(progress=True, eval_batch_size=7), tmp_path / "run")
    assert again.to_dict() == first.to_dict()
    with pytest.raises(TicketlabError, match=r"holds a run with other settings \(differs in: lr .*, seed "):
        finetune(config.replace(lr=2e-3, seed=5), tmp_path / "run")


def test_interrupted_run_resumes_to_the_same_result(tiny_bert_dir, glue_dir, tmp_path, monkeypatch):
    config = quick(tiny_bert_dir, glue_dir, max_steps=6, eval_every=2, save_every=2)
    straight = finetune(config, tmp_path / "straight")

    real_train = ft.train

    def interrupted(*args, **kw):
        def stop(state):
            if state.step == 3:
                raise KeyboardInterrupt

        return real_train(*args, **kw, after_step=stop)

    monkeypatch.setattr(ft, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        finetune(config, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file()
    monkeypatch.setattr(ft, "train", real_train)
    resumed = finetune(config, tmp_path / "resumed")
    assert resumed.resumed_from == 2
    assert [h["step"] for h in resumed.history] == [2, 4, 6]
    for a, b in zip(resumed.history, straight.history, strict=True):
        assert a["accuracy"] == pytest.approx(b["accuracy"])
    assert resumed.best == straight.best


def test_masked_run_saves_squashed_model(tiny_bert_dir, glue_dir, mask_dir, tmp_path):
    r = finetune(
        quick(tiny_bert_dir, glue_dir, mask=str(mask_dir), save_model=True, max_steps=3), tmp_path / "m"
    )
    assert r.sparsity == pytest.approx(0.7, abs=0.01) and r.mask == str(mask_dir)
    saved = AutoModelForSequenceClassification.from_pretrained(r.model_dir)
    mask, _ = load_mask(mask_dir)
    modules = dict(saved.base_model.named_modules())
    for k, keep in mask.items():
        w = modules[k.removesuffix(".weight")].weight
        assert torch.count_nonzero(w[~keep]) == 0 and torch.count_nonzero(w[keep]) > 0.99 * keep.sum()


def test_a_run_killed_after_training_saves_the_trained_model_on_its_rerun(
    tiny_bert_dir, glue_dir, mask_dir, tmp_path, monkeypatch
):
    """Killed after the loop's result and before the model was exported: the rerun exports the
    trained weights (from the last checkpoint), not the ones it loaded."""
    from safetensors.torch import load_file

    config = quick(tiny_bert_dir, glue_dir, mask=str(mask_dir), save_model=True, max_steps=3)
    straight = finetune(config, tmp_path / "straight")
    real = ft.export_pretrained

    def killed(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(ft, "export_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        finetune(config, tmp_path / "cut")
    assert (tmp_path / "cut" / "train_result.json").is_file() and not (tmp_path / "cut" / "model").exists()
    monkeypatch.setattr(ft, "export_pretrained", real)
    again = finetune(config, tmp_path / "cut")
    assert again.final == straight.final
    a, b = (load_file(Path(r.model_dir) / "model.safetensors") for r in (straight, again))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()  # its result written: no longer needed


def test_a_checkpoint_a_kill_left_beside_the_result_goes_on_the_rerun(
    tiny_bert_dir, glue_dir, tmp_path, monkeypatch
):
    """Killed between the result and the checkpoint's removal: the rerun returns the result, trains
    nothing and removes the checkpoint; `keep_checkpoint` keeps it."""
    from ticketlab.train.run_dir import RunDir

    config = quick(tiny_bert_dir, glue_dir, max_steps=2)
    real = RunDir.tidy

    def killed(*a, **kw):
        raise KeyboardInterrupt

    for out, keep in ((tmp_path / "one", False), (tmp_path / "kept", True)):
        monkeypatch.setattr(RunDir, "tidy", killed)
        with pytest.raises(KeyboardInterrupt):
            finetune(config, out)
        assert (out / "result.json").is_file() and (out / "checkpoint.pt").is_file()
        monkeypatch.setattr(RunDir, "tidy", real)
        monkeypatch.setattr(ft, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
        finetune(config.replace(keep_checkpoint=keep), out)
        assert (out / "checkpoint.pt").is_file() == keep
        monkeypatch.undo()
    seeds = tmp_path / "seeds"
    monkeypatch.setattr(RunDir, "tidy", killed)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune_seeds(config, [0], seeds)
    monkeypatch.undo()
    ft.finetune_seeds(config, [0], seeds)
    assert not (seeds / "seed-0" / "checkpoint.pt").exists()


def test_a_run_another_process_works_in_is_refused_before_its_inputs_are_read(
    tiny_bert_dir, glue_dir, tmp_path, monkeypatch
):
    """A second `finetune` on a seed folder another process holds: one line naming the holder, and
    nothing there written (it rewrote the folder's config and exported a model beside the first
    one's training)."""
    import subprocess
    import sys
    import textwrap

    def killed(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(ft, "train", killed)  # a run begun: its folder claimed and recorded
    with pytest.raises(KeyboardInterrupt):
        ft.finetune_seeds(quick(tiny_bert_dir, glue_dir), [0], tmp_path / "ft")
    monkeypatch.undo()
    seed = tmp_path / "ft" / "seed-0"
    before = {p.name: p.read_bytes() for p in seed.iterdir() if p.is_file()}
    hold = textwrap.dedent(
        f"""
        import fcntl, os, sys
        fd = os.open({str(seed / ".lock")!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, b"pid 1 on elsewhere")
        print("held", flush=True)
        sys.stdin.read()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(ft, "_load", killed)  # refused before the run's inputs are read
        with pytest.raises(
            TicketlabError, match=r"another process \(pid 1 on elsewhere\) is running this run"
        ):
            ft.finetune_seeds(quick(tiny_bert_dir, glue_dir), [0], tmp_path / "ft")
    finally:
        holder.communicate("")
    after = {p.name: p.read_bytes() for p in seed.iterdir() if p.is_file()}
    assert after.keys() == before.keys() and all(after[k] == before[k] for k in before if k != ".lock")


def test_head_is_fresh_and_seeded(tiny_bert_dir, tmp_path):
    a, _ = load_task_model(tiny_bert_dir, "sst2", seed=3)
    b, _ = load_task_model(tiny_bert_dir, "sst2", seed=3)
    c, _ = load_task_model(tiny_bert_dir, "sst2", seed=4)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    # a checkpoint that already has a (trained) head does not keep it
    trained = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2), seed=9)
    with torch.no_grad():
        trained.classifier.weight.fill_(0.5)
    trained.save_pretrained(tmp_path / "with-head")
    d, _ = load_task_model(tmp_path / "with-head", "stsb", seed=3)
    assert d.classifier.weight.shape == (1, 32) and d.classifier.weight.abs().max() < 0.2
    assert torch.equal(
        d.bert.encoder.layer[0].attention.self.query.weight,
        trained.bert.encoder.layer[0].attention.self.query.weight,
    )


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", ["seq-cls", "qa"])
def test_reset_head_of_every_family_is_seeded_and_complete(family, head):
    """Every task-head parameter is re-drawn from the seed (bias-free norms included: ModernBERT)."""
    cls = family_task_class(family, head)
    a = make_model(cls, family_config(family, num_labels=2), seed=1)
    b = make_model(cls, family_config(family, num_labels=2), seed=2)
    reset_head(a, seed=5)
    reset_head(b, seed=5)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    inside = {id(p) for p in a.base_model.parameters()}
    for name in (n for n, p in a.named_parameters() if id(p) not in inside):
        assert torch.equal(pa[name], pb[name]), name


def test_reset_head_refuses_a_head_module_it_cannot_reinitialise():
    model = make_model(BertForSequenceClassification, tiny_bert_config(num_labels=2))
    model.extra = torch.nn.Embedding(3, 4)  # a trained table outside the encoder would be kept silently
    with pytest.raises(TicketlabError, match="cannot re-initialise its task head's extra \\(Embedding\\)"):
        reset_head(model, seed=1)


def test_finetune_runs_on_a_full_modernbert(glue_dir, tmp_path):
    """ModernBERT's task head holds a LayerNorm without bias: fine-tuning the full model crashed."""
    path = tmp_path / "modernbert"
    make_model(
        family_class("modernbert", "ModernBertForMaskedLM"), family_config("modernbert")
    ).save_pretrained(path)
    write_tokenizer(path)
    r = finetune(quick(path, glue_dir, max_steps=2), tmp_path / "run")
    assert r.best["step"] == 2 and 0.0 <= r.best["accuracy"] <= 100.0


def test_regression_pair_task_and_train_subset(tiny_bert_dir, glue_dir, tmp_path):
    r = finetune(quick(tiny_bert_dir, glue_dir, task="stsb", max_steps=2), tmp_path / "sts")
    assert set(r.best) == {"step", "pearson", "spearman"} and r.metric == "pearson"
    tok = load_tokenizer(tiny_bert_dir)
    a = task_objective("rte", tok, glue_dir, train_samples=10, data_seed=0)
    b = task_objective("rte", tok, glue_dir, train_samples=10, data_seed=0)
    c = task_objective("rte", tok, glue_dir, train_samples=10, data_seed=1)
    ids = [[x["input_ids"].tolist() for x in o.dataset] for o in (a, b, c)]
    assert a.n_train == 10 and ids[0] == ids[1] and ids[0] != ids[2]


def test_squad_end_to_end(tiny_bert_dir, glue_dir, tmp_path):
    config = quick(
        tiny_bert_dir, glue_dir, task="squad", max_length=32, doc_stride=8, max_steps=2, batch_size=4
    )
    r = finetune(config, tmp_path / "squad")
    assert set(r.best) == {"step", "exact_match", "f1"} and r.metric == "f1"
    assert 0.0 <= r.best["f1"] <= 100.0 and r.n_dev == {"dev": 3}


def test_mean_std_and_summary():
    assert mean_std([80.0, 82.0, 84.0]) == {"mean": 82.0, "std": 2.0, "n": 3, "values": [80.0, 82.0, 84.0]}
    runs = [
        FinetuneResult(
            task="mrpc", metric="accuracy", seed=s, best={"step": 5, "accuracy": acc, "f1": f},
            final={"step": 9, "accuracy": acc - 1, "f1": f - 1}, history=[], steps=9, epochs=1.0,
            n_train=10, n_dev={"dev": 4}, skipped={}, sparsity=0.7, mask="m", train_time_s=1.0,
            eval_time_s=0.5, wall_time_s=2.0, checkpoint="held-out",
        )
        for s, acc, f in ((1, 70.0, 80.0), (2, 74.0, 84.0))
    ]  # fmt: skip
    s = summarize(runs)
    assert s["best"]["accuracy"]["mean"] == 72.0 and s["best"]["f1"]["std"] == pytest.approx(2**0.5 * 2)
    assert s["final"]["accuracy"]["values"] == [69.0, 73.0] and s["seeds"] == [1, 2]


def test_the_pieces_still_import_from_finetune():
    """`from ticketlab.verbs.finetune import X` (the README's task objectives, user code) keeps working for
    the names that live in `tasks.evaluation`, `tasks.objective`, `finetune_config` and
    `finetune_results`, as the same objects."""
    import ticketlab.tasks.evaluation as evaluation
    import ticketlab.tasks.objective as downstream
    import ticketlab.verbs.finetune_config as finetune_config
    import ticketlab.verbs.finetune_results as finetune_results

    homes = (evaluation, downstream, finetune_config, finetune_results)
    for name in ft.__all__:
        home = next((m for m in homes if hasattr(m, name)), ft)
        assert getattr(ft, name) is getattr(home, name), name
    assert {"task_objective", "load_task_model", "TaskObjective", "mean_std", "Hyper"} <= set(ft.__all__)


def test_cli_seeds_mean_std(tiny_bert_dir, glue_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "finetune",
        "--model",
        str(tiny_bert_dir),
        "--task",
        "sst2",
        "--data-dir",
        str(glue_dir),
        "--out",
        str(out),
    ]
    opts = "--seeds 1 2 --max-steps 2 --eval-every 1 --max-length 32 --lr 1e-3 --no-progress".split()
    assert main(args + opts) == 0
    text = capsys.readouterr().out
    assert "seed 1: best accuracy" in text and "over 2 seeds" in text and "±" in text
    summary = json.loads((out / "results.json").read_text())
    assert summary["best"]["accuracy"]["n"] == 2 and (out / "seed-2" / "result.json").is_file()
    # the score results.json reports, under its name there and with what it is
    assert summary["checkpoint"] == "held-out" and "reported (held-out) accuracy" in text
    reported = f"{summary['reported']['mean']:.2f} ± {summary['reported']['std']:.2f} over 2 seeds"
    assert (
        f"reported (held-out: the last evaluation: no step chosen on the dev set): accuracy {reported}"
        in text
    )
    assert main(args + opts) == 0  # finished: returned from disk


def test_cli_runs_a_task_dropped_in_by_the_user(tiny_bert_dir, glue_dir, tmp_path, capsys):
    # RTE given as its own folder (no GLUE root)
    args = ["finetune", "--model", str(tiny_bert_dir), "--task", "rte", "--data-dir", str(glue_dir / "RTE")]
    assert (
        main(
            args + ["--out", str(tmp_path / "rte"), "--max-steps", "1", "--max-length", "32", "--no-progress"]
        )
        == 0
    )
    assert "rte full model" in capsys.readouterr().out


def test_cli_bad_data_gives_one_clear_error(tiny_bert_dir, tmp_path, capsys):
    d = tmp_path / "glue" / "SST-2"  # not the output's parent: an output inside an input is refused
    d.mkdir(parents=True)
    (d / "train.tsv").write_text("sentence\tlabel\nfine\tmaybe\n")
    (d / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    args = ["finetune", "--model", str(tiny_bert_dir), "--task", "sst2", "--data-dir", str(d.parent)]
    assert main(args + ["--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (
        f"{d / 'train.tsv'}, line 2: label 'maybe' is not one of ['0', '1']" in err and "Traceback" not in err
    )


def test_max_length_beyond_positions_is_refused(tiny_bert_dir, glue_dir, tmp_path):
    # An explicit length beyond the positions is refused before any work; the task's default (128)
    # would be fitted to them (modeling.fit_max_length, tests/test_hardening.py).
    with pytest.raises(TicketlabError, match="max_length 128 exceeds the model.s 64 positions"):
        finetune(quick(tiny_bert_dir, glue_dir, max_length=128), tmp_path / "long")
    assert not (tmp_path / "long" / "log.jsonl").exists()


def test_the_reported_score_is_chosen_from_the_cli_too():
    """A CLI user can do what a Python user can: `--checkpoint` and `--select-fraction` reach the
    config (they were Python-only); `super` keeps its own selection fraction."""
    from ticketlab.cli import build_parser
    from ticketlab.cli.finetune import finetune_config

    argv = ["finetune", "--model", "m", "--task", "sst2", "--out", "o", "--checkpoint", "best-dev"]
    args = build_parser(only="finetune").parse_args([*argv, "--select-fraction", "0.1", "--select-seed", "3"])
    config = finetune_config(args)
    assert (config.checkpoint, config.select_fraction, config.select_seed) == ("best-dev", 0.1, 3)
    default = finetune_config(build_parser(only="finetune").parse_args(argv[:7]))
    assert (default.checkpoint, default.select_fraction) == ("held-out", None)


def test_compile_traces_a_masked_fine_tuning_and_stays_out_of_its_identity(
    tiny_bert_dir, glue_dir, mask_dir, tmp_path, monkeypatch
):
    """`finetune --compile` compiles the model and loss once, with dynamic shapes (batches are padded
    to their longest example), through the mask's parametrization: traced for real here (the
    `aot_eager` backend: Dynamo's graphs and AOT autograd's backward, without inductor's minutes of
    C++ compiling), pruned weights stay zero and the scores are the eager run's. A compiled run
    resumes an eager one's directory: compiling changes no step."""
    from ticketlab.core.checks import not_result

    real_compile, calls = torch.nn.Module.compile, []

    def traced(self, **kw):
        calls.append(kw)
        real_compile(self, backend="aot_eager", **kw)

    monkeypatch.setattr(torch.nn.Module, "compile", traced)
    torch._dynamo.reset()
    config = quick(tiny_bert_dir, glue_dir, mask=str(mask_dir))
    eager = finetune(config, tmp_path / "eager")
    compiled = finetune(replace(config, compile=True, save_model=True), tmp_path / "compiled")
    torch._dynamo.reset()
    assert calls == [{"dynamic": True}]
    assert [h["step"] for h in compiled.history] == [h["step"] for h in eager.history] == [2, 4, 6]
    for a, b in zip(compiled.history, eager.history, strict=True):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1 / 32)  # 32 dev examples
    saved = AutoModelForSequenceClassification.from_pretrained(compiled.model_dir)  # the model's own names
    mask, _ = load_mask(mask_dir)
    modules = dict(saved.base_model.named_modules())
    for k, keep in mask.items():
        assert torch.count_nonzero(modules[k.removesuffix(".weight")].weight[~keep]) == 0, k
    assert "compile" in not_result(FinetuneConfig)
    assert finetune(replace(config, compile=True), tmp_path / "eager").history == eager.history  # resumed
    assert len(calls) == 1  # a finished run is read back, not trained (nor compiled) again


@pytest.mark.parametrize("task", ["sst2", "stsb"])
def test_a_run_keeps_its_reported_predictions_and_a_bootstrap_over_them_starts_at_its_score(
    tiny_bert_dir, glue_dir, tmp_path, task
):
    """The reported evaluation's per-example predictions are kept with the run (int8 class ids or
    float32 outputs, a few KB), go into the sweep's store, and resampling them over the dev examples
    gives the run's score exactly at the identity resample."""
    import numpy as np

    from ticketlab.studies.rows import finish
    from ticketlab.studies.run_ids import make_run
    from ticketlab.studies.stats import example_bootstrap
    from ticketlab.studies.store import Store
    from ticketlab.tasks.predictions import decode_predictions
    from ticketlab.tasks.scores import GLUE_METRICS

    r = finetune(quick(tiny_bert_dir, glue_dir, task=task, max_steps=4), tmp_path / "run")
    preds, labels = decode_predictions(r.predictions)
    assert preds.dtype == (np.int8 if task == "sst2" else np.float32) and len(preds) == r.n_dev["dev"]
    metric = GLUE_METRICS[r.metric]
    assert metric(preds, labels) == r.reported_score
    again = finetune(quick(tiny_bert_dir, glue_dir, task=task, max_steps=4), tmp_path / "run")
    assert again.predictions == r.predictions  # a finished run's result keeps them
    (tmp_path / "sweep").mkdir()
    run = make_run("finetune", "f", {"task": task, "seed": 0})
    with Store(tmp_path / "sweep") as st:
        st.add_runs([run])
        assert st.claim(run.id)
        stored = finish(st, run.id, r.to_dict(), {})
        kept = st.predictions(run.id)
    assert "predictions" not in stored and kept is not None
    draws = example_bootstrap(metric, *kept, 20, seed=1)
    assert draws[0] == r.reported_score and len(set(draws.tolist())) > 1
    assert Store(tmp_path / "sweep", readonly=True).predictions("no-such-run") is None


def earliest_best(seen: list) -> Callable:
    """`ft.train` whose selection score falls at every evaluation: the first step is the best one,
    earlier than the last. `seen` gets each evaluation's scores and predictions, in order."""
    real_train = ft.train

    def train_(*args, eval_fn, **kw):
        def selecting(model):
            scores = eval_fn(model)
            selecting.payload = eval_payload(eval_fn)
            seen.append((scores, selecting.payload))
            return {**scores, **{k: 100.0 - len(seen) for k in scores if k.startswith("select_")}}

        return real_train(*args, eval_fn=selecting, **kw)

    return train_


def test_a_run_that_reports_an_earlier_step_keeps_its_predictions_across_a_resume(
    tiny_bert_dir, glue_dir, tmp_path, monkeypatch
):
    """With `select_fraction` the run reports the step the selection part picked, here the first of
    three: it keeps that step's per-example predictions, not the last one's, and they give the
    reported score exactly; a run interrupted after that step keeps the same ones when it resumes
    from its checkpoint, though the step is not evaluated again. STS-B: a regression's outputs move
    at every step (the toy SST-2's class ids stay one class for the first steps)."""
    from ticketlab.tasks.predictions import decode_predictions
    from ticketlab.tasks.scores import GLUE_METRICS

    config = quick(tiny_bert_dir, glue_dir, task="stsb", select_fraction=0.5)  # 5 steps: 3 epochs of 24
    seen: list = []
    selecting = earliest_best(seen)
    monkeypatch.setattr(ft, "train", selecting)
    r = finetune(config, tmp_path / "straight")
    assert [h["step"] for h in r.history] == [2, 4, 5] and r.reported == r.best and r.best["step"] == 2
    assert r.predictions is not None and r.predictions == seen[0][1] != seen[-1][1]
    preds, labels = decode_predictions(r.predictions)
    assert len(preds) == r.n_dev["dev"] == 12  # the reported half of 24 dev examples
    assert GLUE_METRICS[r.metric](preds, labels) == r.reported_score == seen[0][0]["pearson"]

    def interrupted(*args, **kw):
        def stop(state):
            if state.step == 3:
                raise KeyboardInterrupt

        return selecting(*args, **kw, after_step=stop)

    seen.clear()
    monkeypatch.setattr(ft, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        finetune(config, tmp_path / "resumed")
    monkeypatch.setattr(ft, "train", selecting)
    resumed = finetune(config, tmp_path / "resumed")
    assert resumed.resumed_from == 2 and resumed.best == r.best and len(seen) == 3  # steps 2, 4, 5
    assert resumed.predictions == r.predictions


def test_prune_then_finetune_each_run_twice_resumes(tiny_bert_dir, tmp_path, capsys):
    """`prune` then `finetune --mask` on it, and both commands again: the second `prune` stamped a
    new `created` into the mask's config, and the fine-tuning refused the mask as changed. A mask's
    identity is its bits and what they cover: the second `prune` leaves the folder as it is, and a
    rewrite of the same mask (another time stamp) is still the same mask; other bits are not."""
    from conftest import run
    from test_runner import write_sst2

    write_sst2(tmp_path / "glue")
    mask, out = tmp_path / "masks" / "random30", tmp_path / "runs" / "b"
    prune = ["prune", "random", "--seed", 3, "--model", tiny_bert_dir, "--sparsity", 0.3, "--out", mask]
    finetune = ["finetune", "--model", tiny_bert_dir, "--mask", mask, "--task", "sst2", "--data-dir"]
    finetune += [tmp_path / "glue", "--max-length", 32, "--max-steps", 2, "--out", out]
    written = []
    for _ in range(2):
        assert run(capsys, *prune)[0] == 0
        written.append((mask / "mask_config.json").read_text())
        code, _, err = run(capsys, *finetune)
        assert code == 0, err
    assert written[0] == written[1]  # the second prune wrote nothing
    saved_mask, config = load_mask(mask)
    save_mask(saved_mask, replace(config, created="2001-01-01T00:00:00+00:00"), mask)  # the same bits
    assert run(capsys, *finetune)[0] == 0
    other, _ = load_mask(tmp_path / "masks" / "random30")
    flipped = {k: v.clone() for k, v in other.items()}
    name = next(iter(flipped))
    flipped[name].view(-1)[0] = not bool(flipped[name].view(-1)[0])
    save_mask(type(other)(flipped), config, mask)
    code, _, err = run(capsys, *finetune)
    assert code == 2 and "the mask at" in err and "changed since this run started" in err


def test_the_mt_dnn_recipe_is_liang_et_als_fine_tuning_whole(tiny_bert_dir, glue_dir, tmp_path):
    """`recipe: mt-dnn` (super tickets' train_rewind.py and scripts/rewind_*.sh): lr 5e-5, batch 32,
    3 epochs, 10% warm-up, decay 0.01, length 512 (fitted to the model), MT-DNN's Adamax, the head's
    dropout per task (glue_task_def.yml); an option given wins; by hand, Adamax's first two updates of
    one weight, the first at lr 0 (warmup_linear), and the run's recorded settings."""
    from ticketlab.train.optim import MtdnnAdamax
    from ticketlab.train.schedule import adamw, make_scheduler
    from ticketlab.verbs.finetune import _load, _plan
    from ticketlab.verbs.finetune_config import with_recipe

    base = dict(model=str(tiny_bert_dir), task="sst2", data_dir=str(glue_dir), progress=False)
    plain = FinetuneConfig(**base, recipe="mt-dnn")
    mt = with_recipe(plain)
    assert (mt.lr, mt.batch_size, mt.epochs) == (5e-5, 32, 3.0)
    assert (mt.warmup_ratio, mt.weight_decay, mt.max_grad_norm) == (0.1, 0.01, 1.0)
    assert with_recipe(FinetuneConfig(**base, recipe="mt-dnn", lr=1e-4)).lr == 1e-4  # given: it wins
    assert with_recipe(FinetuneConfig(**base)).lr is None  # ticketlab's recipe: the task's defaults
    run = _plan(FinetuneConfig(**{**base, "task": "rte"}, recipe="mt-dnn"), None)
    assert run.hyper.max_length == 64  # 512, fitted to the tiny model's 64 positions
    loaded = _load(run)
    assert loaded.train_config.optimizer == "adamax" and loaded.model.dropout.p == 0.1
    assert loaded.train_config.warmup_steps == round(0.1 * loaded.train_config.max_steps)
    cola = load_task_model(str(tiny_bert_dir), "cola", classifier_dropout=0.05)[0]
    assert cola.dropout.p == 0.05  # glue_task_def.yml's CoLA (MNLI: 0.2)
    with pytest.raises(ConfigError, match="recipe MT-DNN's recipe is GLUE's"):
        FinetuneConfig(**{**base, "task": "squad"}, recipe="mt-dnn")
    # MT-DNN's Adamax: m = 0.1 g, u = max(0.999 u, |g| + eps), p -= lr (m / (u + eps) + wd p)
    p = torch.nn.Parameter(torch.tensor([2.0]))
    config = TrainConfig(max_steps=4, lr=0.1, warmup_steps=1, weight_decay=0.01, optimizer="adamax")
    opt = adamw([p], config)
    assert isinstance(opt, MtdnnAdamax)
    sched = make_scheduler(opt, config)
    m = u = 0.0
    expected = 2.0
    for k, g in enumerate((0.5, -0.2)):
        p.grad = torch.tensor([g])
        opt.step()
        sched.step()
        lr = 0.1 * (k / 1 if k < 1 else (4 - k) / (4 - 1))  # warmup_linear: k/W, then (T-k)/(T-W)
        m = 0.9 * m + 0.1 * g
        u = max(0.999 * u, abs(g) + 1e-6)
        expected -= lr * (m / (u + 1e-6) + 0.01 * expected)
        assert p.item() == pytest.approx(expected, rel=1e-6)
        assert k > 0 or p.item() == 2.0  # warmup_linear's first step: lr 0
    assert expected < 2.0
