"""The sweep runner: runs everything once, resumes after a kill between or inside runs, survives
failures, and shares the work with a second sweep process. Searches and fine-tunings are fast fakes
(tests/sweep_fakes.py) injected into the runner; OMP and random pruning are the real ones."""

from __future__ import annotations

import functools
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

import sweep_fakes as fakes
from ticketlab.core.errors import ConfigError, TicketlabError
from ticketlab.masks import load_mask
from ticketlab.studies import Store, expand, run_sweep, spec_from_dict
from ticketlab.studies.report import write_report
from ticketlab.studies.sweep.provenance import device
from ticketlab.studies.sweep.runner import Runner, mask_hash

TESTS = Path(__file__).resolve().parent


def sweep(root: Path, spec, **kw):
    kw.setdefault("finetune", fakes.fake_finetune)
    kw.setdefault("pretrain_eval", fakes.fake_pretrain_eval)
    return run_sweep(spec, root / "sweep", log=lambda s: None, **kw)


def no_repeats(sweep_dir: Path, allow: Counter | None = None) -> Counter:
    counts = Counter(fakes.calls(sweep_dir))
    repeated = {c: n for c, n in counts.items() if n > 1 + (allow or Counter())[c]}
    assert not repeated, f"repeated work: {repeated}"
    return counts


def test_sweep_runs_everything_once_and_records_it(tmp_path, tiny_bert_dir):
    spec = fakes.make_spec(tmp_path, tiny_bert_dir)
    runs = expand(spec)
    result = sweep(tmp_path, spec)
    assert result.ok and result.done == len(runs) == len(result.ran)
    sweep_dir = tmp_path / "sweep"
    calls = no_repeats(sweep_dir)
    # The fakes were called once per fake search / fine-tuning / evaluation; OMP and random are real.
    fake_searches = [r for r in runs if r.kind == "search" and r.config["method"] in ("imp", "tamt-mlm")]
    assert sum(c.startswith("search") for c in calls) == len(fake_searches)
    assert sum(c.startswith("finetune") for c in calls) == sum(r.kind == "finetune" for r in runs)
    with Store(sweep_dir) as st:
        for r in runs:
            rec = st.get(r.id)
            assert rec.status == "done" and rec.config == r.config
            assert rec.provenance["code"]["ticketlab"] and isinstance(rec.provenance["wall_s"], float)
            assert rec.provenance["device"] == device()  # which machine's scores these are
            if r.kind == "finetune":
                assert rec.metrics["score"] == fakes.expected_score(r.config)
                if r.config["mask"] is not None:  # the exact mask file a score came from
                    assert rec.provenance["mask_hash"] == mask_hash(sweep_dir / rec.provenance["mask_dir"])
            if r.kind == "search":
                mask_dir = sweep_dir / rec.metrics["mask_dir"]
                assert rec.provenance["mask_hash"] == mask_hash(mask_dir)
                assert rec.metrics["achieved_sparsity"] == pytest.approx(r.config["sparsity"], abs=1e-3)
                assert [i["step"] for i in rec.metrics["intermediate"]] == r.config["save_at"]
    assert (sweep_dir / "spec.json").is_file()
    # A second sweep finds everything done and runs nothing.
    again = sweep(tmp_path, spec)
    assert again.ok and again.ran == []
    assert Counter(fakes.calls(sweep_dir)) == calls


def test_transfer_sweep_fine_tunes_each_source_ticket_on_every_task(tmp_path, tiny_bert_dir):
    """imp-task (Chen et al. Table 3): a mask searched on each source task, fine-tuned on every task."""
    spec = fakes.make_spec(
        tmp_path,
        tiny_bert_dir,
        methods=["full", "imp", {"imp-task": {"sparsities": [0.5]}}],
        search_curve=None,
        data_curve=None,
    )
    runs = expand(spec)
    result = sweep(tmp_path, spec)
    assert result.ok and result.done == len(runs)
    sweep_dir = tmp_path / "sweep"
    calls = no_repeats(sweep_dir)
    assert {c for c in calls if c.startswith("search imp-task")} == {
        f"search imp-task 0.5 {seed} 20 {source}" for seed in (0, 1) for source in ("a", "b")
    }
    with Store(sweep_dir) as st:
        searches = [r for r in st.runs(kind="search", status="done") if r.config["method"] == "imp-task"]
        assert sorted(r.config["source"]["label"] for r in searches) == ["a", "a", "b", "b"]
        assert len({r.provenance["mask_hash"] for r in searches}) == 4  # a mask per source and seed
        fts = [r for r in st.runs(kind="finetune", status="done") if r.config["method"] == "imp-task"]
        # 2 sources x 2 search seeds, each on 2 tasks x 2 fine-tuning seeds.
        assert Counter((r.config["source"], r.config["task_label"]) for r in fts) == {
            (s, t): 4 for s in "ab" for t in "ab"
        }
        for r in fts:
            assert r.metrics["score"] == fakes.expected_score(r.config)
            assert r.provenance["mask_hash"] == mask_hash(sweep_dir / r.provenance["mask_dir"])
        others = [r for r in st.runs(kind="finetune") if r.config["method"] != "imp-task"]
        assert others and all("source" not in r.config for r in others)
        evals = [r for r in st.runs(kind="pretrain-eval") if r.config["method"] == "imp-task"]
        assert len(evals) == 4 and all(r.status == "done" and r.config["source"] for r in evals)


def test_device_names_what_the_process_computed_on_and_starts_no_cuda(monkeypatch):
    """A run's provenance names its GPU where the process used one; a process that has not touched
    CUDA (a coordinator on a GPU node) says its CPU and does not start CUDA to find out."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: pytest.fail("CUDA started"))
    assert device() == f"cpu: {torch.backends.cpu.get_cpu_capability()}"
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    assert device() == "cuda: NVIDIA H200"


def test_mask_hash_names_the_mask_not_the_file(tmp_path):
    """A mask's hash is of its content: the same mask in a file of other bytes (its header's metadata
    in another order, as another writer may put it) is one hash; one bit flipped is another hash."""
    from ticketlab.masks import Mask, MaskConfig, save_mask

    gen = torch.Generator().manual_seed(0)
    mask = Mask(
        {"a.weight": torch.rand(8, 5, generator=gen) > 0.5, "b.weight": torch.rand(3, generator=gen) > 0.5}
    )
    config = MaskConfig(
        "omp", 0.5, base_model="x", base_model_hash="sha256:x", model_type="bert", targets="t"
    )
    saved = save_mask(mask, config, tmp_path / "m") / "masks.safetensors"
    raw = saved.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"] = dict(reversed(header["__metadata__"].items()))
    other = tmp_path / "other"
    other.mkdir()
    (other / "masks.safetensors").write_bytes(
        raw[:8] + json.dumps(header, separators=(",", ":")).encode().ljust(n) + raw[8 + n :]
    )
    assert (other / "masks.safetensors").read_bytes() != raw
    hashes = {mask_hash(saved.parent), mask_hash(other)}
    assert len(hashes) == 1
    flipped = Mask({**mask, "b.weight": ~mask["b.weight"]})
    assert mask_hash(save_mask(flipped, config, tmp_path / "flipped")) not in hashes


def test_a_store_carried_without_its_masks_re_searches_only_what_is_still_needed(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """results.sqlite alone on a new machine: a search runs again only when a pending run needs one
    of its lost masks; the same mask again is silent, another one is a warning."""
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, data_curve=None, pretrain_eval=None)
    sweep_dir = tmp_path / "sweep"
    assert sweep(tmp_path, spec).ok
    runs = expand(spec)
    tamt = next(
        r for r in runs if r.kind == "search" and r.config["method"] == "tamt-mlm" and r.config["save_at"]
    )
    uses_final = next(r for r in runs if tamt.id in r.deps and r.config["mask"]["step"] is None)
    imp = next(r for r in runs if r.kind == "search" and r.config["method"] == "imp")
    uses_imp = next(r for r in runs if imp.id in r.deps)
    with Store(sweep_dir) as st:
        tamt_hashes = st.get(tamt.id).provenance
        for r in (uses_final, uses_imp):
            st.db.execute("UPDATE runs SET status = 'pending' WHERE id = ?", (r.id,))

    def resume() -> tuple[list[str], list[str]]:
        log: list[str] = []
        result = run_sweep(spec, sweep_dir, finetune=fakes.fake_finetune, log=log.append)
        assert result.ok
        return result.ran, log

    def plan() -> str:  # what `sweep --dry-run` prints
        runner = Runner(spec, sweep_dir, log=lambda line: None)
        try:
            return runner.describe()
        finally:
            runner.store.close()

    # Masks saved along the search that no pending run needs: nothing runs again.
    for step_dir in (sweep_dir / "masks").glob(f"{tamt.dirname}.step*"):
        shutil.rmtree(step_dir)
    assert "will run again" not in plan()
    ran, log = resume()
    assert set(ran) == {uses_final.id, uses_imp.id} and not any("gone" in line for line in log)
    # The final mask: the search runs again (its stale result file must not stand in for it), finds
    # the very same masks, and the pending run uses them.
    shutil.rmtree(sweep_dir / "masks" / tamt.dirname)
    with Store(sweep_dir) as st:
        st.db.execute("UPDATE runs SET status = 'pending' WHERE id = ?", (uses_final.id,))
    assert "1 done search(es) will run again" in plan()
    ran, log = resume()
    assert set(ran) == {tamt.id, uses_final.id}
    assert any(f"masks of {tamt.name} are gone" in line for line in log)
    assert not any("warning" in line for line in log), log
    with Store(sweep_dir) as st:
        again = st.get(tamt.id).provenance
        assert (again["mask_hash"], again["intermediate_hashes"]) == (
            tamt_hashes["mask_hash"],
            tamt_hashes["intermediate_hashes"],
        )
        assert st.get(uses_final.id).provenance["mask_hash"] == again["mask_hash"]
    # A search that finds another mask the second time is reported.
    perturbed = fakes._perturbed
    monkeypatch.setattr(fakes, "_perturbed", lambda base, share, seed: perturbed(base, share, seed + 1))
    shutil.rmtree(sweep_dir / "masks" / tamt.dirname)
    with Store(sweep_dir) as st:
        st.db.execute("UPDATE runs SET status = 'pending' WHERE id = ?", (uses_final.id,))
    ran, log = resume()
    assert set(ran) == {tamt.id, uses_final.id}
    assert any(f"re-run of {tamt.name} found other masks" in line and "final" in line for line in log), log


def test_a_model_card_changes_no_run_id(tmp_path, tiny_bert_dir):
    """Editing the card beside a model's weights, or adding a script, runs nothing again (a model is
    keyed by what loading reads: `core.files.model_key`)."""
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    (model / "README.md").write_text("the card, first version")
    spec = fakes.make_spec(tmp_path, model, data_curve=None, pretrain_eval=None, search_curve=None)
    assert sweep(tmp_path, spec).ok
    before = fakes.calls(tmp_path / "sweep")
    (model / "README.md").write_text("the card, edited")
    (model / "check_accuracy.py").write_text("print('a script beside the weights')")
    assert sweep(tmp_path, spec).ran == [] and fakes.calls(tmp_path / "sweep") == before


def test_run_ids_hold_no_paths(tmp_path, tiny_bert_dir):
    """A sweep moved to other paths (the store carried to another machine) keeps its run ids;
    changing a task's data gives its runs new ids."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_bert_dir, a / "model")
    kw = dict(data_curve=None, pretrain_eval=None, search_curve=None)
    spec = fakes.make_spec(a, a / "model", **kw)
    assert sweep(a, spec).ok
    ids = [r.id for r in expand(spec)]
    shutil.copytree(a, b)
    moved = fakes.make_spec(b, b / "model", **kw)
    assert moved.model != spec.model and [r.id for r in expand(moved)] == ids
    assert sweep(b, moved).ran == []
    # Other data for task a: its fine-tunings are new runs; task b's and the searches keep theirs.
    by_id = {r.id: r for r in expand(moved)}
    (b / "data" / "a" / "train.jsonl").write_text('{"text": "more"}\n')
    changed = set(ids) - {r.id for r in expand(fakes.make_spec(b, b / "model", **kw))}
    assert changed
    assert {(by_id[i].kind, by_id[i].config["task_label"]) for i in changed} == {("finetune", "a")}


@pytest.mark.parametrize("ids", [None, 6])
def test_a_store_of_another_ids_scheme_is_refused(tmp_path, tiny_bert_dir, ids):
    """A store whose run ids another scheme made (meta `ids` absent or another version) is refused
    by a sweep, a dry run and a report, in one line naming it, and left as it was: its finished runs
    would otherwise show as pending and run again (docs/explanation/run-ids.md)."""
    from ticketlab.studies.report.results import load_results

    spec = fakes.make_spec(tmp_path, tiny_bert_dir, data_curve=None, pretrain_eval=None, search_curve=None)
    assert sweep(tmp_path, spec).ok
    with Store(tmp_path / "sweep") as st:
        st.db.execute("DELETE FROM meta WHERE key = 'ids'")
        if ids is not None:
            st.db.execute("INSERT INTO meta VALUES ('ids', ?)", (str(ids),))
    before = (tmp_path / "sweep" / "results.sqlite").read_bytes()
    said = "no ids scheme" if ids is None else f"ids scheme {ids}"
    carried = tmp_path / "carried"  # the store alone, copied to carry the sweep elsewhere
    carried.mkdir()
    shutil.copy(tmp_path / "sweep" / "results.sqlite", carried / "results.sqlite")
    for open_it in (
        lambda: run_sweep(spec, carried, finetune=fakes.fake_finetune),
        lambda: Runner(spec, tmp_path / "sweep", dry_run=True),
        lambda: run_sweep(spec, tmp_path / "sweep", finetune=fakes.fake_finetune),
        lambda: load_results(tmp_path / "sweep"),
    ):
        with pytest.raises(
            TicketlabError, match=f"results.sqlite: its run ids are of {said}, this ticketlab"
        ):
            open_it()
    assert (tmp_path / "sweep" / "results.sqlite").read_bytes() == before


def test_a_new_store_is_marked_with_todays_ids_scheme(tmp_path):
    from ticketlab.studies.run_ids import IDS_VERSION

    with Store(tmp_path) as st:
        assert st.get_meta("ids") == IDS_VERSION
    with Store(tmp_path / "absent", readonly=True) as st:  # read-only: nothing written, nothing refused
        assert st.get_meta("ids") is None


def test_kill_between_runs_loses_and_repeats_nothing(tmp_path, tiny_bert_dir):
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, data_curve=None, pretrain_eval=None)
    total = len(expand(spec))
    first = sweep(tmp_path, spec, max_runs=7)
    assert len(first.ran) == 7 and first.done == 7
    second = sweep(tmp_path, spec, max_runs=10)
    assert len(second.ran) == 10 and second.done == 17
    last = sweep(tmp_path, spec)
    assert last.ok and last.done == total and len(last.ran) == total - 17
    no_repeats(tmp_path / "sweep")


def test_kinds_run_only_their_runs_and_the_rest_later_repeats_nothing(tmp_path, tiny_bert_dir):
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, data_curve=None)
    runs = expand(spec)
    searches = sweep(tmp_path, spec, kinds=["search"])
    with Store(tmp_path / "sweep") as st:
        statuses = st.statuses()
    assert {r.kind for r in runs if statuses[r.id] == "done"} == {"search"}
    assert len(searches.ran) == sum(r.kind == "search" for r in runs)
    rest = sweep(tmp_path, spec, kinds=["pretrain-eval", "finetune"])
    assert rest.ok and rest.done == len(runs) and len(rest.ran) == len(runs) - len(searches.ran)
    no_repeats(tmp_path / "sweep")


def test_name_patterns_run_those_runs_first_and_the_rest_later_repeats_nothing(tmp_path, tiny_bert_dir):
    """`names`: the searches of seed 1 before the plan's order reaches them; their fine-tunings
    (another pattern) once their masks exist; the rest afterwards, nothing run twice."""
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, data_curve=None, search_curve=None, pretrain_eval=None)
    runs = expand(spec)
    first = sweep(tmp_path, spec, names=["*_seed1"])
    picked = {r.id for r in runs if r.name.endswith("_seed1")}
    assert picked and set(first.ran) == picked
    assert {r.kind for r in runs if r.id in picked} == {"search"}
    tuned = sweep(tmp_path, spec, names=["ft_*_seed1_*"], kinds=["finetune"])
    seed1_ft = {r.id for r in runs if r.kind == "finetune" and "_seed1_" in r.name}
    assert seed1_ft and set(tuned.ran) == seed1_ft
    rest = sweep(tmp_path, spec)
    assert rest.ok and set(rest.ran) == {r.id for r in runs} - picked - seed1_ft
    no_repeats(tmp_path / "sweep")


def test_chosen_runs_whose_inputs_were_not_chosen_are_named_not_left_silent(tmp_path, tiny_bert_dir):
    """Fine-tunings asked for before their searches: nothing runs, and the result says which run
    waits for which input; once the searches are done, the same command runs them."""
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, data_curve=None, search_curve=None, pretrain_eval=None)
    runs = {r.id: r for r in expand(spec)}
    waiting = sweep(tmp_path, spec, names=["ft_*_seed1_*"], kinds=["finetune"])
    chosen = {i for i, r in runs.items() if r.kind == "finetune" and "_seed1_" in r.name}
    assert not waiting.ran and set(waiting.unready) == chosen
    needs = waiting.unready.items()
    assert all(need in runs[run].deps and runs[need].kind == "search" for run, need in needs)
    run, need = next(iter(waiting.unready.items()))
    assert waiting.unready_line() == (
        f"{len(chosen)} chosen run(s) not run: a run they need is not done and was not chosen "
        f"(e.g. {runs[run].name} needs {runs[need].name}); run those first, or the whole sweep"
    )
    sweep(tmp_path, spec, kinds=["search"])
    tuned = sweep(tmp_path, spec, names=["ft_*_seed1_*"], kinds=["finetune"])
    assert set(tuned.ran) == chosen and not tuned.unready and tuned.unready_line() is None


def test_a_name_pattern_that_matches_no_run_is_refused_before_any_run(tmp_path, tiny_bert_dir):
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, data_curve=None)
    with pytest.raises(ConfigError, match="no run of this sweep is named like 'tamt_kd_\\*'"):
        sweep(tmp_path, spec, names=["tamt_kd_*"])
    # a search's name, asked of the fine-tunings: matches none of the kinds asked for
    with pytest.raises(ConfigError, match="no run of kind finetune of this sweep is named like 'omp_s50'"):
        sweep(tmp_path, spec, names=["omp_s50"], kinds=["finetune"])
    assert not fakes.calls(tmp_path / "sweep")


def test_the_dry_run_lists_the_runs_a_pattern_chooses_in_their_order(tmp_path, tiny_bert_dir):
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, data_curve=None, search_curve=None, pretrain_eval=None)
    runner = Runner(spec, tmp_path / "sweep", log=lambda s: None, dry_run=True)
    try:
        text = runner.describe_chosen(["finetune"], ["ft_a_*_seed1_*"])
    finally:
        runner.store.close()
    fts = [r for r in expand(spec) if r.kind == "finetune"]
    chosen = [r for r in fts if r.name.startswith("ft_a_") and "_seed1_" in r.name]
    assert chosen and text.splitlines()[0] == f"chosen by --only / --runs: {len(chosen)} runs"
    assert [line.split()[2] for line in text.splitlines()[1:]] == [r.name for r in chosen]
    assert all(line.endswith("pending") for line in text.splitlines()[1:])


def test_an_unknown_kind_is_refused_before_any_run(tmp_path, tiny_bert_dir):
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, data_curve=None)
    with pytest.raises(ConfigError, match="unknown run kind.*'searches'"):
        sweep(tmp_path, spec, kinds=["searches"])
    assert not fakes.calls(tmp_path / "sweep")


def test_result_written_but_not_recorded_is_not_redone(tmp_path, tiny_bert_dir):
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, data_curve=None, search_curve=None, pretrain_eval=None)
    sweep(tmp_path, spec)
    before = fakes.calls(tmp_path / "sweep")
    ft = next(r for r in expand(spec) if r.kind == "finetune" and r.config["method"] == "tamt-mlm")
    with Store(tmp_path / "sweep") as st:
        metrics = st.get(ft.id).metrics
        # As if killed after the run wrote its result.json and before the store marked it done.
        st.db.execute(
            "UPDATE runs SET status = 'running', pid = 999999999, metrics = NULL WHERE id = ?", (ft.id,)
        )
    result = sweep(tmp_path, spec)
    assert result.ran == [ft.id] and fakes.calls(tmp_path / "sweep") == before
    with Store(tmp_path / "sweep") as st:
        assert st.get(ft.id).status == "done" and st.get(ft.id).metrics == metrics


CHILD = """
import sys, functools
sys.path.insert(0, {tests!r})
import sweep_fakes as fakes
from pathlib import Path
from ticketlab.studies import run_sweep
root = Path({root!r})
spec = fakes.make_spec(root, Path({model!r}), **fakes.SMALL)
ft = functools.partial(fakes.fake_finetune, sleep=float(sys.argv[1]))
run_sweep(spec, root / "sweep", finetune=ft, log=lambda s: None)
"""


def test_kill_inside_a_run_then_resume(tmp_path, tiny_bert_dir):
    code = textwrap.dedent(CHILD.format(tests=str(TESTS), root=str(tmp_path), model=str(tiny_bert_dir)))
    child = subprocess.Popen([sys.executable, "-c", code, "120"], stderr=subprocess.PIPE)
    sweep_dir = tmp_path / "sweep"
    # Until it is inside its first fine-tuning run (each sleeps 120 s there), or has died. No time
    # limit: the suite niced beside a 2-core study once took over 120 s to get there (its searches).
    while not list(sweep_dir.glob("runs/*/entered")):
        assert child.poll() is None, child.stderr.read().decode()
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    (entered,) = sweep_dir.glob("runs/*/entered")
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, **fakes.SMALL)
    runs = expand(spec)
    killed = next(r for r in runs if r.dirname == entered.parent.name)
    with Store(sweep_dir) as st:
        searches_done = {r.id for r in st.runs(kind="search", status="done")}
        assert st.get(killed.id).status == "running"  # claimed by a process that no longer exists
    assert searches_done == {r.id for r in runs if r.kind == "search"}
    result = sweep(tmp_path, spec)
    assert result.ok and result.done == len(runs)
    # Only the killed run was started twice; the searches finished before the kill were not redone.
    no_repeats(sweep_dir, allow=Counter({f"finetune {killed.dirname}": 1}))
    assert result.ran[0] == killed.id and killed.id in result.ran and not set(result.ran) & searches_done


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path, tiny_bert_dir):
    def broken_search(job):
        raise RuntimeError("search exploded")

    registry = fakes.fake_registry()
    registry["imp"] = type(registry["imp"])(**{**registry["imp"].__dict__, "search": broken_search})
    # IMP's masks and its search curve (at 70%) beside methods that do not fail: not the whole grid
    grid = dict(methods=["full", "omp", "random", "imp"], sparsities=[0.7])
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, **grid, data_curve=None, pretrain_eval=None)
    spec.registry = registry
    runs = expand(spec)
    result = sweep(tmp_path, spec, finetune=functools.partial(fakes.fake_finetune, fail_task="b"))
    assert not result.ok
    failed = {r.id for r in runs if r.id in result.failed}
    imp_searches = {r.id for r in runs if r.kind == "search" and r.config["method"] == "imp"}
    task_b = {
        r.id
        for r in runs
        if r.kind == "finetune" and r.config["task"] == "b" and not set(r.deps) & imp_searches
    }
    assert failed == imp_searches | task_b
    # Fine-tunings of the failed IMP masks were not attempted; everything else finished.
    assert set(result.blocked) == {r.id for r in runs if set(r.deps) & imp_searches}
    assert result.done == len(runs) - len(failed) - len(result.blocked)
    with Store(tmp_path / "sweep") as st:
        assert "search exploded" in st.get(next(iter(imp_searches))).error
    # Fixed: the next sweep retries the failures and runs what they blocked, nothing else.
    spec.registry = fakes.fake_registry()
    again = sweep(tmp_path, spec)
    assert again.ok and set(again.ran) == failed | set(result.blocked)
    by_id = {r.id: r for r in runs}
    no_repeats(tmp_path / "sweep", allow=Counter(f"finetune {by_id[i].dirname}" for i in task_b))


def _parallel_worker(root: str, model: str, start) -> None:
    spec = fakes.make_spec(Path(root), Path(model), data_curve=None)
    start.wait()  # both processes have imported everything: start sweeping together
    run_sweep(
        spec,
        Path(root) / "sweep",
        finetune=functools.partial(fakes.fake_finetune, sleep=0.02),
        pretrain_eval=fakes.fake_pretrain_eval,
        log=lambda s: None,
        poll=0.2,
    )


def test_two_sweeps_share_the_work(tmp_path, tiny_bert_dir):
    """A second process and this one run the same sweep at the same time."""
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(2)
    child = ctx.Process(target=_parallel_worker, args=(str(tmp_path), str(tiny_bert_dir), start))
    child.start()
    _parallel_worker(str(tmp_path), str(tiny_bert_dir), start)
    child.join(timeout=300)
    assert child.exitcode == 0
    spec = fakes.make_spec(tmp_path, tiny_bert_dir, data_curve=None)
    runs = expand(spec)
    calls = no_repeats(tmp_path / "sweep")
    assert sum(c.startswith("finetune") for c in calls) == sum(r.kind == "finetune" for r in runs)
    with Store(tmp_path / "sweep") as st:
        assert all(st.get(r.id).status == "done" for r in runs)
        pids = {st.get(r.id).provenance["pid"] for r in runs}
        assert st.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert pids == {os.getpid(), child.pid}  # both processes did part of the work


# --------------------------------------------------------------------------- end to end, real code

WORDS = {1: ["good", "great", "happy"], 0: ["bad", "awful", "sad"]}


def write_sst2(root: Path, n_train: int = 48, n_dev: int = 16) -> None:
    (root / "SST-2").mkdir(parents=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [f"the {'cat dog bird'.split()[i % 3]} is {WORDS[i % 2][i % 3]} .\t{i % 2}" for i in range(n)]
        (root / "SST-2" / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")


def test_cli_sweep_end_to_end_with_real_pruning_and_finetuning(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    """`ticketlab sweep` with the shipped registry and fine-tuning: OMP and random masks of the tiny
    model, a few fine-tuning steps on a toy SST-2, one task whose data files do not read (its runs
    fail, the others finish, exit 1), the report, each run's predictions in the store; a second sweep
    repeats nothing finished."""
    from ticketlab.cli import main
    from ticketlab.tasks.scores import GLUE_METRICS

    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    write_sst2(tmp_path / "glue")
    (tmp_path / "empty" / "RTE").mkdir(parents=True)  # files there, but no row of them reads
    for split in ("train", "dev"):
        (tmp_path / "empty" / "RTE" / f"{split}.tsv").write_text("index\tsentence1\nnot a row\n")
    spec = {
        "name": "e2e",
        "model": str(tiny_bert_dir),
        "tasks": {"sst2": {"data": "glue"}, "rte": {"data": "empty"}},
        "methods": ["full", "omp", "random"],
        "sparsities": [0.5],
        "seeds": {"search": [0, 1], "finetune": [0]},
        "finetune": {"steps": 4, "batch_size": 8, "eval_every": 2, "lr": 1e-3, "max_length": 32},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "sweep"
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert (
        "7/11 runs done" in printed and "4 failed" in printed and f"report: {out}/report/report.md" in printed
    )
    with Store(out) as st:
        done = st.runs(kind="finetune", status="done")
        failed = st.runs(status="failed")
        assert {r.config["task"] for r in done} == {"sst2"} and len(done) == 4
        assert {r.config["task"] for r in failed} == {"rte"} and "RTE" in failed[0].error
        for r in done:  # real scores on the 0-100 scale, traceable to the exact mask file
            assert r.metrics["metric"] == "accuracy" and 0.0 <= r.metrics["score"] <= 100.0
            assert r.provenance["code"]["ticketlab"]
            assert (r.config["mask"] is None) == (r.config["method"] == "full")
            kept = st.predictions(r.id)  # the reported evaluation's, in the store's own table
            assert kept is not None and "predictions" not in r.metrics
            assert GLUE_METRICS["accuracy"](*kept) == r.metrics["score"]
        searches = st.runs(kind="search", status="done")
        assert sorted(r.config["method"] for r in searches) == ["omp", "random", "random"]
        assert all(r.metrics["achieved_sparsity"] == pytest.approx(0.5, abs=1e-3) for r in searches)
    assert (out / "report" / "figures" / "fig3_score_vs_sparsity.png").is_file()
    assert (out / "spec.yaml").is_file()
    # Again: the finished runs are kept, only the failed ones are retried (and fail again).
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(out), "--no-report"]) == 1
    printed = capsys.readouterr().out
    assert "7 already done, 4 to run" in printed and "7/11 runs done (0 in this sweep)" in printed
    # The plan, without running anything.
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(out), "--dry-run"]) == 0
    assert "finetune           8 runs  4 done, 4 failed" in capsys.readouterr().out


def test_registry_settings_are_options_of_the_verbs():
    """The settings a spec may give a method are options of the verb the sweep runs for it."""
    from ticketlab.cli import build_parser
    from ticketlab.studies.sweep.adapters import PRETRAIN_EVAL_SETTINGS
    from ticketlab.studies.sweep.methods import sweep_methods

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # argparse keeps sub-parsers here

    def dests(p) -> set[str]:
        return {a.dest for a in p._actions}

    search = verbs["search"]._subparsers._group_actions[0].choices
    for name in ("imp", "imp-task", "tamt-mlm", "tamt-kd", "tamt-mlm+kd"):
        m = sweep_methods()[name]
        assert m.settings <= dests(search[name.split("-")[0]]), name
        assert m.non_result <= m.settings
    assert dests(verbs["evaluate-pretrain"]) >= PRETRAIN_EVAL_SETTINGS


def test_real_task_imp_end_to_end(tmp_path, tiny_bert_dir, monkeypatch):
    """imp-task through the shipped registry: `ticketlab search imp --task` on the source task, its
    mask fine-tuned on every task of the sweep."""
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    write_sst2(tmp_path / "glue", n_train=16, n_dev=8)
    spec = spec_from_dict(
        {
            "model": str(tiny_bert_dir),
            "tasks": {"sst2": {"data": "glue"}, "again": {"task": "sst2", "data": "glue"}},
            "methods": [{"imp-task": {"sparsities": [0.2], "sources": ["sst2"]}}],
            "seeds": {"search": [0]},  # one mask (three is the default)
            "search": {"steps": 2, "batch_size": 4, "max_length": 16},
            "finetune": {"steps": 2, "batch_size": 4, "eval_every": 2, "max_length": 32},
        },
        base_dir=tmp_path,
    )
    result = run_sweep(spec, tmp_path / "sweep", log=lambda s: None)
    assert result.ok, result.failed
    with Store(tmp_path / "sweep") as st:
        (search,) = st.runs(kind="search")
        assert search.metrics["achieved_sparsity"] == pytest.approx(0.2, abs=1e-3)
        mask = load_mask(tmp_path / "sweep" / search.metrics["mask_dir"])[1]
        assert mask.search["task"] == "sst2"  # searched on the task, not on a corpus
        fts = st.runs(kind="finetune", status="done")
        assert sorted((r.config["source"], r.config["task_label"]) for r in fts) == [
            ("sst2", "again"),
            ("sst2", "sst2"),
        ]


def test_real_search_methods_end_to_end(tmp_path, tiny_bert_dir, monkeypatch):
    """IMP, TAMT-MLM and TAMT-KD through the shipped registry, with masks saved along TAMT's search,
    the pre-training evaluation of every mask and real fine-tuning: a few steps each, then the report."""
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    write_sst2(tmp_path / "glue", n_train=16, n_dev=8)
    words = (
        "the a cat dog bird man woman king queen runs sees likes eats good bad big small red blue .".split()
    )
    for name, n in (("train.txt", 48), ("dev.txt", 8)):
        lines = [" ".join(words[(7 * i + j) % len(words)] for j in range(12)) for i in range(n)]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    spec = spec_from_dict(
        {
            "model": str(tiny_bert_dir),
            "corpus": {"train": "train.txt", "dev": "dev.txt"},
            "tasks": {"sst2": {"data": "glue"}},
            "methods": ["full", "omp", "imp", "tamt-mlm", "tamt-kd"],
            "sparsities": [0.2],
            "seeds": {"search": [0]},  # one mask per method (three is the default)
            "search": {"steps": 2, "batch_size": 4, "max_length": 16, "save_every": 1},
            "finetune": {"steps": 2, "batch_size": 4, "eval_every": 2, "max_length": 32},
            "pretrain_eval": {"max_blocks": 4},
            "search_curve": {"steps": [1], "methods": ["tamt-mlm"]},
        },
        base_dir=tmp_path,
    )
    runs = expand(spec)
    result = run_sweep(spec, tmp_path / "sweep", log=lambda s: None)
    assert result.ok, result.failed
    with Store(tmp_path / "sweep") as st:
        searches = {r.config["method"]: r for r in st.runs(kind="search")}
        tamt = searches["tamt-mlm"]
        assert [i["step"] for i in tamt.metrics["intermediate"]] == [1]
        assert tamt.metrics["steps"] == 2 and "time_s" in tamt.metrics
        assert "dev_mlm_loss" in tamt.metrics and "dev_kd_loss" in searches["tamt-kd"].metrics
        for r in searches.values():
            assert r.metrics["achieved_sparsity"] == pytest.approx(0.2, abs=1e-3)
        evals = st.runs(kind="pretrain-eval")
        assert len(evals) == 1 + 4 + 1 and all(
            "mlm_loss" in r.metrics and "kd_loss" in r.metrics for r in evals
        )
        full = next(r for r in evals if r.config["method"] == "full")
        assert full.metrics["kd_loss"] == pytest.approx(0.0, abs=1e-6)  # the dense model is its own teacher
        assert len(st.runs(kind="finetune", status="done")) == sum(r.kind == "finetune" for r in runs) == 6
    report = write_report(tmp_path / "sweep")
    assert "fig5_pretrain_loss_vs_score.png" in report.figures and "fig6_search_cost.png" in report.figures


def _seeds_by_mask(runs) -> dict[str, set[int]]:
    """Each mask's fine-tuning seeds (the full model's as 'full'), from finished runs' configs."""
    out: dict[str, set[int]] = {}
    for r in runs:
        mask = r.config.get("mask") or {}
        out.setdefault(f"{mask.get('search', 'full')}@{mask.get('step')}", set()).add(r.config["seed"])
    return out


def test_a_default_sweep_fine_tunes_no_two_masks_with_one_seed(tmp_path, tiny_bert_dir):
    """Seeds drawn per mask by default: the store's fine-tunings use no seed in two masks, and the full
    model and OMP's one mask get seeds of their own; `seeds: finetune: k` draws k per mask, and a
    pinned list is every mask's."""
    small = fakes.SMALL | {"seeds": {"search": [0, 1]}}
    sweep(tmp_path, fakes.make_spec(tmp_path, tiny_bert_dir, **small))
    with Store(tmp_path / "sweep") as st:
        runs = st.runs("finetune", "done")
    by_mask = _seeds_by_mask(runs)
    assert len(by_mask) == 4 and all(len(s) == 1 for s in by_mask.values())  # full, omp, random × 2
    seeds = [f for s in by_mask.values() for f in s]
    assert len(seeds) == len(set(seeds))
    three = fakes.make_spec(
        tmp_path / "k", tiny_bert_dir, **(small | {"seeds": {"search": [0, 1], "finetune": 3}})
    )
    by_mask = _seeds_by_mask(r for r in expand(three) if r.kind == "finetune")
    seeds = [f for s in by_mask.values() for f in s]
    assert all(len(s) == 3 for s in by_mask.values()) and len(seeds) == len(set(seeds)) == 12
    pinned = fakes.make_spec(
        tmp_path / "p", tiny_bert_dir, **(small | {"seeds": {"search": [0, 1], "finetune": [0, 1]}})
    )
    assert all(
        s == {0, 1} for s in _seeds_by_mask(r for r in expand(pinned) if r.kind == "finetune").values()
    )


def test_a_sweep_and_its_report_never_open_the_store_beside_sqlite(tmp_path, tiny_bert_dir, monkeypatch):
    """Nothing but SQLite opens the store's files while a sweep or a report runs: closing any
    descriptor of a file releases every POSIX lock the process holds on it, so one Python open of
    `results.sqlite` would leave this process's connections unlocked, and another process closing
    the store could delete the write-ahead log they write to."""
    import builtins
    import io
    import os

    opened = []

    def watch(real):
        def wrapper(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and Path(file).name.startswith("results.sqlite"):
                opened.append(str(file))
            return real(file, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(os, "open", watch(os.open))
    monkeypatch.setattr(builtins, "open", watch(builtins.open))
    monkeypatch.setattr(io, "open", watch(io.open))
    spec = fakes.make_spec(tmp_path, tiny_bert_dir)
    assert sweep(tmp_path, spec).ok
    write_report(tmp_path / "sweep")
    assert opened == []
