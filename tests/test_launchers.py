"""Launched sweeps without a cluster: the Slurm launcher's code path (this process coordinating,
submitit jobs, results handed back, only the coordinator writing the store) with submitit's local
executor, whose jobs are real subprocesses; a worker killed mid-run is retried; the sbatch
parameters a spec asks for are the ones submitted."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import submitit
import torch
import yaml

import sweep_fakes as fakes
from ticketlab.cli import build_parser, main
from ticketlab.cli.sweep import launcher as launcher_from_flags
from ticketlab.core.errors import ConfigError
from ticketlab.core.outputs import claim_dir
from ticketlab.studies import Store, expand, load_spec, run_sweep
from ticketlab.studies.sweep import launched as launched_module
from ticketlab.studies.sweep import runner as runner_module
from ticketlab.studies.sweep.jobs import MethodSpec
from ticketlab.studies.sweep.launchers import Handle, Outcome, SubmititLauncher, usable_cores
from ticketlab.studies.sweep.resources import resources
from ticketlab.studies.sweep.runner import sweep_status

TESTS = Path(__file__).resolve().parent


def tiny_spec(root: Path, model: Path, registry=None, methods=("full", "omp")):
    """OMP (a real search) and the full model, fine-tuned with fakes on one task: 3 runs."""
    spec = fakes.make_spec(
        root,
        model,
        tasks={"a": {"data": "data/a"}},
        methods=list(methods),
        sparsities=[0.5],
        seeds={"search": [0], "finetune": [0]},
        search={"steps": 4},
        pretrain_eval=None,
        search_curve=None,
        data_curve=None,
    )
    spec.registry = registry or fakes.fake_registry()
    return spec


@pytest.mark.slow  # 4 jobs, each a fresh Python that imports torch: about a minute on 2 cores
def test_local_executor_runs_the_sweep_retries_a_killed_worker_and_resumes(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """Real subprocesses: the OMP search and the full model's fine-tuning start together; that
    fine-tuning kills its own process (as a time limit does) and is submitted again, while the OMP
    fine-tuning, which waited for its mask, runs."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    spec = tiny_spec(tmp_path, tiny_bert_dir)
    runs = expand(spec)
    sweep_dir = tmp_path / "sweep"
    finetune = functools.partial(fakes.fake_finetune, die_once="full")
    sweep = functools.partial(run_sweep, spec, sweep_dir, finetune=finetune, log=lambda s: None, poll=0.2)
    t0 = time.perf_counter()
    result = sweep(launcher=SubmititLauncher(sweep_dir / "jobs", cluster="local", jobs=2))
    elapsed = time.perf_counter() - t0
    assert result.ok and result.done == len(runs) == 3 and len(result.ran) == 3
    full = next(r for r in runs if r.kind == "finetune" and r.config["method"] == "full")
    with Store(sweep_dir) as st:
        assert st.get(full.id).attempts == 2 and st.get(full.id).status == "done"  # killed once, then done
        for r in runs:
            rec = st.get(r.id)
            assert rec.status == "done" and rec.provenance["job"] and Path(rec.log).is_file()
            assert rec.provenance["pid"] != os.getpid()  # made in a worker, recorded here
            if r.kind == "finetune":
                assert rec.metrics["score"] == fakes.expected_score(r.config)
        jobs = {st.get(r.id).job for r in runs}
    assert (sweep_dir / "runs" / full.dirname / "killed-once").is_file()
    calls = Counter(fakes.calls(sweep_dir))
    assert calls == Counter({f"finetune {r.dirname}": 1 + (r is full) for r in runs if r.kind == "finetune"})
    status = sweep_status(sweep_dir)
    assert "3 runs: 0 queued, 0 running, 3 done, 0 failed" in status
    print(f"local executor: {len(runs)} runs, 4 jobs {sorted(jobs)}, {elapsed:.1f}s")
    # Rerun: everything is done, nothing is submitted.
    again = sweep(launcher=SubmititLauncher(sweep_dir / "jobs", cluster="local", jobs=2))
    assert again.ok and again.ran == [] and Counter(fakes.calls(sweep_dir)) == calls


@dataclass
class FakeJob:
    """A finished job whose outcome is known at once (the coordinator's logic, without processes)."""

    job_id: str
    outcome: Outcome
    paths: SimpleNamespace


class InlineLauncher:
    """Runs the worker function at submit time; `kill` names runs whose jobs end without a result."""

    cluster, free = "local", 1

    def __init__(self, folder: Path, kill: set[str] = frozenset(), refuse: set[str] = frozenset()):
        self.folder, self.kill, self.refuse, self.n, self.adoptable = folder, kill, refuse, 0, {}

    def submit(self, kind, fn, run, mask_dir):
        if run.name in self.refuse:
            raise RuntimeError("sbatch: error: invalid partition specified: gpux")
        self.n += 1
        log = self.folder / f"{self.n}_0_log.out"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"job {self.n}: {run.name}\n")
        if run.name in self.kill:
            outcome = Outcome(False, f"Job {self.n} has not produced any output", True, str(log))
        else:
            outcome = Outcome(True, fn(run, mask_dir), False, str(log))
        return Handle(FakeJob(str(self.n), outcome, SimpleNamespace(stdout=log)), kind)

    def poll(self, handle):
        return handle.job.outcome

    def unavailable(self):
        return None

    def close(self):
        pass

    def attach(self, kind, job_id):
        """A job of an earlier coordinator that is still running (Slurm); here: finished meanwhile."""
        outcome = self.adoptable.get(job_id)
        if outcome is None:
            return None
        return Handle(FakeJob(job_id, outcome, SimpleNamespace(stdout="x")), kind)


def test_failures_and_kills_past_the_retries_are_recorded_with_their_logs(tmp_path, tiny_bert_dir):
    broken = fakes.fake_registry()
    broken["tamt-mlm"] = MethodSpec(
        "tamt-mlm", fakes.broken_search, "fails", uses_corpus=True, uses_steps=True, curve="save_at"
    )
    spec = tiny_spec(tmp_path, tiny_bert_dir, broken, methods=("full", "omp", "tamt-mlm"))
    runs = expand(spec)
    sweep_dir = tmp_path / "sweep"
    full = next(r for r in runs if r.kind == "finetune" and r.config["method"] == "full")
    tamt = {r.kind: r for r in runs if r.config["method"] == "tamt-mlm"}
    launcher = InlineLauncher(sweep_dir / "jobs", kill={full.name})
    sweep = functools.partial(
        run_sweep, spec, sweep_dir, finetune=fakes.fake_finetune, log=lambda s: None, poll=0.01
    )
    first = sweep(launcher=launcher, retries=1)
    assert set(first.failed) == {full.id, tamt["search"].id} and first.blocked == [tamt["finetune"].id]
    assert launcher.n == 5  # omp search + fine-tuning, the failed search, the killed run twice
    with Store(sweep_dir) as st:
        killed, failed = st.get(full.id), st.get(tamt["search"].id)
        assert killed.attempts == 2 and "has not produced any output" in killed.error
        assert failed.attempts == 1 and "search exploded" in failed.error  # an error is not retried
        for rec in (killed, failed):
            assert f"(log: {rec.log})" in rec.error and Path(rec.log).is_file() and rec.job
    status = sweep_status(sweep_dir)
    assert "5 runs: 1 queued, 0 running, 2 done, 2 failed" in status
    assert f"job {killed.job}  attempt 2" in status and f"log: {failed.log}" in status
    # Fixed: the rerun runs the failures and what they blocked, nothing else.
    spec.registry = fakes.fake_registry()
    second = sweep(launcher=InlineLauncher(sweep_dir / "jobs2"))
    assert second.ok and set(second.ran) == {full.id, tamt["search"].id, tamt["finetune"].id}


SPEC_RESOURCES = {
    "default": {"time_min": 30, "cpus": 2},
    "search": {"gpus": 1, "cpus": 8, "mem_gb": 32, "time_min": 240, "partition": "gpu"},
    "finetune": {"gpus": 1, "mem_gb": 16, "slurm": {"account": "lab", "qos": "normal"}},
}


def test_sbatch_parameters_are_the_ones_asked_for(tmp_path, tiny_bert_dir, monkeypatch):
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # no srun here
    d = fakes.spec_dict(tmp_path, tiny_bert_dir, resources=SPEC_RESOURCES)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(d))
    spec = load_spec(tmp_path / "spec.yaml")
    launcher = SubmititLauncher(tmp_path / "jobs", cluster="slurm", resources=resources(spec.resources))
    search = launcher.sbatch_script("search")
    for line in ("--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB", "--time=240", "--partition=gpu"):
        assert f"#SBATCH {line}\n" in search
    assert "#SBATCH --job-name=ticketlab-search\n" in search
    finetune = launcher.sbatch_script("finetune")
    for line in ("--gpus-per-node=1", "--cpus-per-task=2", "--mem=16GB", "--time=30", "--account=lab"):
        assert f"#SBATCH {line}\n" in finetune
    assert "#SBATCH --qos=normal\n" in finetune and "--partition" not in finetune
    evaluate = launcher.sbatch_script("pretrain-eval")  # only the defaults
    assert "#SBATCH --time=30\n" in evaluate and "gpus" not in evaluate
    # Flags override the spec for every kind.
    args = build_parser().parse_args(
        ["sweep", str(tmp_path / "spec.yaml"), "--launcher", "slurm", "--partition", "short", "--time", "60"]
    )
    flagged = launcher_from_flags(args, spec, tmp_path)
    for kind in ("search", "finetune"):
        script = flagged.sbatch_script(kind)
        assert "#SBATCH --partition=short\n" in script and "#SBATCH --time=60\n" in script
    assert "#SBATCH --cpus-per-task=8\n" in flagged.sbatch_script("search")
    # Locally, --jobs defaults to one run per GPU, each run seeing its own (CUDA_VISIBLE_DEVICES).
    local = SubmititLauncher(tmp_path / "jobs", cluster="local", gpus=[4, 5, 6])
    assert local.capacity == 3
    assert [local.executor("finetune", slot).parameters["visible_gpus"] for slot in range(3)] == [
        (4,),
        (5,),
        (6,),
    ]
    assert (
        SubmititLauncher(tmp_path / "jobs", cluster="local").executor("search").parameters["visible_gpus"]
        == ()
    )
    # Local runs without GPUs split the cores between them; with GPUs or on Slurm, torch's default.
    cores = usable_cores()
    assert SubmititLauncher(tmp_path / "jobs", cluster="local", jobs=2).threads == max(1, cores // 2)
    assert SubmititLauncher(tmp_path / "jobs", cluster="local", jobs=10 * cores).threads == 1
    assert local.threads is None and flagged.threads is None
    # What a worker's run sees: submit through an executor that runs the job at once, here.
    monkeypatch.setattr(
        SubmititLauncher,
        "executor",
        lambda self, kind, slot=None: SimpleNamespace(submit=lambda fn, *a: SimpleNamespace(value=fn(*a))),
    )
    before = torch.get_num_threads()
    try:
        crowded = SubmititLauncher(tmp_path / "jobs", cluster="local", jobs=10 * cores)
        assert crowded.submit("finetune", torch.get_num_threads).job.value == 1
    finally:
        torch.set_num_threads(before)
    # A typo in the spec is refused when it is read.
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({**d, "resources": {"search": {"gpu": 1}}}))
    with pytest.raises(ConfigError, match="resources: resources.search: unknown key 'gpu'"):
        load_spec(tmp_path / "spec.yaml")


def test_nothing_breaks_out_of_its_line_in_a_slurm_job_script(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    """A newline in a partition, an account or an sbatch option's name started a new line of the
    job script, which every job ran as a shell command; shell lines come only from `setup:` or
    --setup, and the dry run shows them."""
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # no srun here
    d = fakes.spec_dict(tmp_path, tiny_bert_dir, methods=["full", "omp"])
    d.update(pretrain_eval=None, search_curve=None, data_curve=None)
    spec_file = tmp_path / "spec.yaml"
    dry = ["sweep", str(spec_file), "--out", str(tmp_path / "sw"), "--dry-run", "--launcher", "slurm"]
    injected = {
        "partition": ({"partition": "gpu\ntouch INJECTED"}, "partition"),
        "account": ({"slurm": {"account": "lab\ntouch INJECTED"}}, "slurm.account"),
        "key": ({"slurm": {"additional_parameters": {"x\ntouch INJECTED": 1}}}, "additional_parameters"),
        "setup": ({"slurm": {"setup": ["touch INJECTED"]}}, "slurm.setup: shell lines"),
        "a setup line": ({"setup": ["module load x\rtouch INJECTED"]}, "setup[0]"),
    }
    for given, named in injected.values():
        spec_file.write_text(yaml.safe_dump({**d, "resources": {"default": given}}))
        assert main(dry) == 2
        err = capsys.readouterr().err
        assert named in err and len(err.strip().splitlines()) == 1, err
    spec_file.write_text(yaml.safe_dump(d))
    assert main([*dry, "--partition", "gpu\ntouch INJECTED"]) == 2
    assert "newline or control character" in capsys.readouterr().err
    assert main([*dry, "--out", str(tmp_path / "sw\ntouch INJECTED")]) == 2  # the logs' paths
    assert "command-line argument" in capsys.readouterr().err  # refused as every argument is
    # A setup line asked for by name is written into the script and shown by the dry run.
    spec_file.write_text(yaml.safe_dump({**d, "resources": {"default": {"setup": ["module load cuda"]}}}))
    assert main(dry) == 0
    assert "setup line run in every job: module load cuda" in capsys.readouterr().out
    spec = load_spec(spec_file)
    script = SubmititLauncher(tmp_path / "jobs", cluster="slurm", resources=resources(spec.resources))
    assert "\n# setup\nmodule load cuda\n" in script.sbatch_script("search")
    assert main([*dry, "--setup", "module load gcc"]) == 0  # the flag replaces the spec's lines
    printed = capsys.readouterr().out
    assert "module load gcc" in printed and "module load cuda" not in printed


def test_slurm_resources_have_ceilings(tmp_path, tiny_bert_dir, capsys):
    """`--mem 1e30` was planned as `1e+30GB`, `--mem 1e-6` as `1e-06GB` (no size sbatch takes), and
    a million CPUs or a thousand GPUs per run queued forever: memory, CPUs, GPUs and time have
    stated bounds, flag and spec; a fraction of a GB is asked in whole megabytes."""
    d = fakes.spec_dict(tmp_path, tiny_bert_dir, methods=["full"])
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(d))
    dry = ["sweep", str(spec_file), "--dry-run", "--launcher", "slurm"]
    flags = (
        ["--mem", "1e30"],
        ["--mem", "1e-6"],
        ["--time", "10000000"],
        ["--cpus", "1000000"],
        ["--gpus", "1000"],
    )
    for flag in flags:
        with pytest.raises(SystemExit) as e:  # argparse's refusal: usage and one line, exit 2
            main([*dry, *flag])
        assert e.value.code == 2
        assert f"argument {flag[0]}: expected a number in" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"mem_gb must be in \[0.001, 65536\]"):
        resources({"default": {"mem_gb": 1e30}})
    for key, value in (("mem_gb", 1e-300), ("cpus", 10**30), ("gpus", 10**9)):
        with pytest.raises(ConfigError, match=f"{key} must be in "):
            resources({"default": {key: value}})
    assert resources({"default": {"mem_gb": 0.5}})["search"].sbatch("search")["mem"] == "512M"


def test_cli_dry_run_shows_the_resources_and_status_the_runs(tmp_path, tiny_bert_dir, capsys):
    d = fakes.spec_dict(tmp_path, tiny_bert_dir, resources=SPEC_RESOURCES, methods=["full", "omp"])
    d.update(pretrain_eval=None, search_curve=None, data_curve=None)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(d))
    out = tmp_path / "sweep"
    flags = ["--launcher", "slurm", "--partition", "short"]
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(out), "--dry-run", *flags]) == 0
    printed = capsys.readouterr().out
    assert "launcher slurm, per run:" in printed and "'partition': 'short'" in printed
    assert "'gpus_per_node': 1, 'cpus_per_task': 8, 'mem': '32GB'" in printed  # the search's
    assert not out.exists()  # a dry run writes nothing: no directory, no store
    assert main(["sweep", "--status", str(out)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err
    spec = load_spec(tmp_path / "spec.yaml")
    n = len(expand(spec))
    claim_dir(out, kind="sweep")  # what a sweep makes: a marked directory with its store
    with Store(out) as st:
        st.add_runs(expand(spec))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["sweep", "--status", str(out)]) == 0
    assert f"{n} runs: {n} queued, 0 running, 0 done, 0 failed" in capsys.readouterr().out
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(out), "--dry-run"]) == 0
    assert "finetune          12 runs  12 pending" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # read, not written
    # A running search shows the last step its log holds, of its steps (a log's torn last line skipped).
    search = next(r for r in expand(spec) if r.kind == "search")
    with Store(out) as st:
        assert st.claim(search.id)
        config = json.dumps({**search.config, "steps": 40})  # an iterative search's budget
        st.db.execute("UPDATE runs SET config = ? WHERE id = ?", (config, search.id))
    log = out / "masks" / search.dirname / "run" / "log.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text('{"step": 10, "loss": 5.0}\n{"step": 20, "loss": 4.0}\n{"step": 3')
    assert main(["sweep", "--status", str(out)]) == 0
    assert f"{search.name}  for " in (text := capsys.readouterr().out)
    assert ", step 20 of 40\n" in text
    with Store(out) as st:  # a budget that is no count (a bool is an int to Python) is left unsaid
        st.db.execute(
            "UPDATE runs SET config = ? WHERE id = ?",
            (json.dumps({**search.config, "steps": True}), search.id),
        )
    assert main(["sweep", "--status", str(out)]) == 0
    assert ", step 20\n" in capsys.readouterr().out
    # A running fine-tuning: its steps are in the config.json the fine-tuning wrote beside its log.
    ft = next(r for r in expand(spec) if r.kind == "finetune")
    with Store(out) as st:
        assert st.claim(ft.id)
    (out / "runs" / ft.dirname).mkdir(parents=True)
    (out / "runs" / ft.dirname / "log.jsonl").write_text('{"step": 7, "loss": 0.6}\n')
    (out / "runs" / ft.dirname / "config.json").write_text('{"resolved": {"max_steps": 115}}')
    assert main(["sweep", "--status", str(out)]) == 0
    assert f"{ft.name}  for " in (text := capsys.readouterr().out) and ", step 7 of 115\n" in text
    # A claim whose process is gone (another machine's, silent since 1970) is said to be taken over.
    with Store(out) as st:
        st.db.execute("UPDATE runs SET host = 'gone-host', heartbeat = 0 WHERE id = ?", (ft.id,))
    assert main(["sweep", "--status", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{ft.name}  claimed on gone-host, its process gone (heartbeat " in text
    assert "a sweep takes it over" in text and f"{search.name}  for " in text


def test_a_rerun_adopts_the_jobs_of_a_coordinator_that_died(tmp_path, tiny_bert_dir):
    spec = tiny_spec(tmp_path, tiny_bert_dir)
    runs = expand(spec)
    sweep_dir = tmp_path / "sweep"
    sweep = functools.partial(
        run_sweep, spec, sweep_dir, finetune=fakes.fake_finetune, log=lambda s: None, poll=0.01
    )
    assert sweep(launcher=InlineLauncher(sweep_dir / "jobs")).ok
    full = next(r for r in runs if r.kind == "finetune" and r.config["method"] == "full")
    with Store(sweep_dir) as st:
        metrics = st.get(full.id).metrics
        # As if the coordinator died while Slurm job 77 ran this fine-tuning.
        st.db.execute(
            "UPDATE runs SET status = 'running', pid = 999999999, job = '77', metrics = NULL WHERE id = ?",
            (full.id,),
        )
    launcher = InlineLauncher(sweep_dir / "jobs2")
    launcher.adoptable["77"] = Outcome(
        True, {"metrics": metrics, "host": "node7", "device": "cuda: A100", "pid": 7}, False, "x"
    )
    again = sweep(launcher=launcher)
    assert again.ok and again.ran == [full.id] and launcher.n == 0  # waited for job 77, submitted nothing
    with Store(sweep_dir) as st:
        rec = st.get(full.id)
        assert rec.status == "done" and rec.job == "77" and rec.provenance["host"] == "node7"
        assert rec.provenance["device"] == "cuda: A100"  # the worker's, not the coordinator's


def test_a_refused_submission_fails_its_run_and_the_sweep_goes_on(tmp_path, tiny_bert_dir):
    spec = tiny_spec(tmp_path, tiny_bert_dir)
    runs = expand(spec)
    omp = next(r for r in runs if r.kind == "search")
    launcher = InlineLauncher(tmp_path / "jobs", refuse={omp.name})
    result = run_sweep(
        spec,
        tmp_path / "sweep",
        finetune=fakes.fake_finetune,
        log=lambda s: None,
        poll=0.01,
        launcher=launcher,
    )
    assert result.failed == [omp.id] and len(result.blocked) == 1 and result.done == 1
    with Store(tmp_path / "sweep") as st:
        assert "submission failed" in st.get(omp.id).error and "invalid partition" in st.get(omp.id).error


@pytest.mark.parametrize("launched", [False, True])
def test_start_for_zero_starts_nothing_and_the_next_sweep_runs_it_all(tmp_path, tiny_bert_dir, launched):
    """`start_for`: no run starts once its time is up (0 s: none; `<` on a clock that never goes
    back), the sweep returns, and a later sweep runs everything once."""
    spec = tiny_spec(tmp_path, tiny_bert_dir)
    sweep = functools.partial(
        run_sweep, spec, tmp_path / "sweep", finetune=fakes.fake_finetune, log=lambda s: None, poll=0.01
    )
    launcher = (lambda: InlineLauncher(tmp_path / "jobs")) if launched else (lambda: None)
    first = sweep(launcher=launcher(), start_for=0.0)
    assert first.ran == [] and first.done == 0 and not first.failed
    assert sweep(launcher=launcher(), start_for=3600.0).ok
    assert not [c for c, n in Counter(fakes.calls(tmp_path / "sweep")).items() if n > 1]


def test_cli_only_and_start_for(tmp_path, tiny_bert_dir, capsys):
    d = fakes.spec_dict(tmp_path, tiny_bert_dir, methods=["full", "omp"])
    d.update(pretrain_eval=None, search_curve=None, data_curve=None)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(d))
    out, spec = tmp_path / "sweep", str(tmp_path / "spec.yaml")
    args = ["sweep", spec, "--out", str(out), "--no-report", "--only", "search", "--start-for", "60"]
    assert main(args) == 0  # part of the sweep, as asked: not a failure
    with Store(out) as st:
        done = {r.kind for r in expand(load_spec(spec)) if st.statuses()[r.id] == "done"}
    assert done == {"search"}
    with pytest.raises(SystemExit) as e:  # argparse's one line, exit 2
        main(["sweep", spec, "--out", str(out), "--only", "searches"])
    assert e.value.code == 2
    assert "invalid choice: 'searches'" in capsys.readouterr().err


HOLD = """
import sys, time
from ticketlab.core.files.owned import exclusive
with exclusive(sys.argv[1], "sweep run"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@contextlib.contextmanager
def holding(run_dir: Path, seconds: float):
    """A live process holding `run_dir` as a sweep's worker does, for at most `seconds`; it is
    ended on the way out."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@contextlib.contextmanager
def another_sweep_holds(spec, sweep_dir: Path, run):
    """`run` claimed in the store by a live process that holds its directory, as a second sweep
    process running it does (claim, then its pid); the process is ended on the way out."""
    claim_dir(sweep_dir, kind="sweep")  # the directory the other sweep made and marked
    with holding(sweep_dir / "runs" / run.dirname, 60) as holder:
        with Store(sweep_dir) as st:
            st.add_runs(expand(spec))
            st.claim(run.id)
            st.db.execute("UPDATE runs SET pid = ? WHERE id = ?", (holder.pid, run.id))
        yield holder


def test_a_rerun_collects_finished_work_and_waits_for_a_run_held_elsewhere(tmp_path, tiny_bert_dir):
    """The coordinator died: one run had finished (its result file is there, the store says
    running), another one's directory is still held by a live process (its orphaned worker). The
    rerun collects the first without launching anything and waits for the second, failing nothing."""
    spec = tiny_spec(tmp_path, tiny_bert_dir)
    runs = expand(spec)
    sweep_dir = tmp_path / "sweep"
    logged: list[str] = []
    sweep = functools.partial(
        run_sweep, spec, sweep_dir, finetune=fakes.fake_finetune, log=logged.append, poll=0.05
    )
    assert sweep(launcher=InlineLauncher(sweep_dir / "jobs")).ok
    search = next(r for r in runs if r.kind == "search")
    fts = [r for r in runs if r.kind == "finetune"]
    with Store(sweep_dir) as st:
        st.db.execute("UPDATE runs SET status = 'running', pid = 999999999, metrics = NULL, job = NULL")
        # The search's worker is still running: its result is not written yet.
        (sweep_dir / "runs" / search.dirname / "sweep_result.json").unlink()
    for r in fts:  # the fine-tunings' workers ran on another machine
        path = sweep_dir / "runs" / r.dirname / "sweep_result.json"
        saved = json.loads(path.read_text())
        saved.update(where={"host": "node3", "device": "cuda: H100"})
        path.write_text(json.dumps(saved))
    before = fakes.calls(sweep_dir)
    with holding(sweep_dir / "runs" / search.dirname, 3) as holder:
        launcher = InlineLauncher(sweep_dir / "jobs2")
        again = sweep(launcher=launcher)
    assert again.ok and not again.failed and set(again.ran) == {r.id for r in runs}
    assert launcher.n == 1  # the search, once its directory was free; the fine-tunings collected
    assert any(f"in use by pid {holder.pid}" in line for line in logged)
    assert fakes.calls(sweep_dir) == before  # nothing fine-tuned again
    with Store(sweep_dir) as st:
        for r in fts:
            assert st.get(r.id).provenance["collected"].endswith("sweep_result.json")
            # where the worker made it, from its result file, not this coordinator's machine
            made = {"host": "node3", "device": "cuda: H100"}
            assert {k: st.get(r.id).provenance.get(k) for k in made} == made


def test_a_run_another_live_sweep_holds_is_waited_for_without_a_word(tmp_path, tiny_bert_dir):
    """Two sweep processes share the work: a run the other one has claimed (its pid alive, its
    heartbeat fresh) and holds is left to it quietly; "in use by" is for a directory held by a
    process the store does not name as running it (an orphaned worker, above)."""
    spec = tiny_spec(tmp_path, tiny_bert_dir)
    sweep_dir = tmp_path / "sweep"
    search = next(r for r in expand(spec) if r.kind == "search")
    logged: list[str] = []
    with another_sweep_holds(spec, sweep_dir, search):
        run_sweep(spec, sweep_dir, finetune=fakes.fake_finetune, log=logged.append, poll=0.01, start_for=1.0)
    assert not any("in use by" in line for line in logged), logged
    with Store(sweep_dir) as st:
        assert st.get(search.id).status == "running"  # still the other process's


def returns_without_waiting(spec, sweep_dir: Path, held, monkeypatch, launcher=None, **choice):
    """Part of a sweep (`choice`: kinds, names, max_runs) run while another live sweep holds `held`:
    it must return without sleeping (a wait fails the test), run nothing and leave `held` running."""

    def refuse(_seconds: float) -> None:
        raise AssertionError("waited, though nothing this process chose needs the other one's run")

    no_wait = SimpleNamespace(monotonic=time.monotonic, sleep=refuse)
    monkeypatch.setattr(runner_module, "time", no_wait)
    monkeypatch.setattr(launched_module, "time", no_wait)
    with another_sweep_holds(spec, sweep_dir, held):
        result = run_sweep(
            spec,
            sweep_dir,
            finetune=fakes.fake_finetune,
            log=lambda _: None,
            poll=0.01,
            launcher=launcher,
            **choice,
        )
    assert result.ran == [] and not result.failed
    with Store(sweep_dir) as st:
        assert st.get(held.id).status == "running"  # still the other process's


def test_part_of_a_sweep_leaves_a_run_held_elsewhere_to_its_process(tmp_path, tiny_bert_dir, monkeypatch):
    """`--only search --max-runs 1` where the one search left is another live sweep's: nothing here
    needs its result, so this process returns without waiting for it and leaves the search to its
    process."""
    spec = tiny_spec(tmp_path, tiny_bert_dir)
    search = next(r for r in expand(spec) if r.kind == "search")
    returns_without_waiting(spec, tmp_path / "sweep", search, monkeypatch, kinds=["search"], max_runs=1)


@pytest.mark.parametrize("through", ["here", "launcher"])
def test_part_of_a_sweep_does_not_wait_on_an_input_nobody_is_making(
    tmp_path, tiny_bert_dir, monkeypatch, through
):
    """`--only finetune --runs <OMP's>` while another live sweep holds the full model's fine-tuning:
    OMP's search is pending and nobody runs it, so this process (its own loop, or a launcher's
    coordinator) has nothing to wait for and returns, leaving the other process its run."""
    spec = tiny_spec(tmp_path, tiny_bert_dir)
    sweep_dir = tmp_path / "sweep"
    runs = expand(spec)
    full_ft = next(r for r in runs if r.kind == "finetune" and not r.deps)
    omp_ft = next(r for r in runs if r.kind == "finetune" and r.deps)
    launcher = InlineLauncher(sweep_dir / "jobs") if through == "launcher" else None
    returns_without_waiting(
        spec, sweep_dir, full_ft, monkeypatch, launcher, kinds=["finetune"], names=[omp_ft.name]
    )
    with Store(sweep_dir) as st:
        assert st.get(omp_ft.id).status == "pending"


def test_slurm_without_slurm_is_refused_before_any_work(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    d = fakes.spec_dict(tmp_path, tiny_bert_dir, methods=["full"], pretrain_eval=None)
    d.update(search_curve=None, data_curve=None)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(d))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no sbatch, no srun
    out = tmp_path / "sweep"
    argv = ["sweep", str(tmp_path / "spec.yaml"), "--out", str(out), "--launcher", "slurm"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--launcher slurm: no sbatch or srun on PATH" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing planned, nothing recorded as failed
    assert main([*argv, "--dry-run"]) == 0  # the plan can still be read here
    with pytest.raises(ConfigError, match="no sbatch or srun"):  # the API refuses it too
        run_sweep(
            load_spec(tmp_path / "spec.yaml"),
            out,
            launcher=launcher_from_flags(
                build_parser().parse_args(argv), load_spec(tmp_path / "spec.yaml"), out
            ),
        )
    with Store(out, readonly=True) as st:
        assert st.statuses() == {}


def test_without_submitit_a_launched_sweep_says_which_extra_to_install(
    tmp_path, tiny_bert_dir, monkeypatch, capsys
):
    """submitit is the `slurm` extra: missing, --jobs N is refused in one line naming it, before any
    work, and a sweep that runs here one run at a time does not need it."""
    d = fakes.spec_dict(tmp_path, tiny_bert_dir, methods=["full"], pretrain_eval=None)
    d.update(search_curve=None, data_curve=None)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(d))
    monkeypatch.setitem(sys.modules, "submitit", None)  # what an environment without submitit imports
    out = tmp_path / "sweep"
    argv = ["sweep", str(tmp_path / "spec.yaml"), "--out", str(out), "--jobs", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "needs submitit, which is not installed: pip install 'ticketlab[slurm]'" in err
    assert len(err.splitlines()) == 1 and not out.exists()
    here = build_parser().parse_args(argv[:4])  # one run at a time, here: no launcher, no submitit
    assert launcher_from_flags(here, load_spec(tmp_path / "spec.yaml"), out) is None


COORDINATOR = """
import functools, sys
from pathlib import Path
import sweep_fakes as fakes
from test_launchers import tiny_spec
from ticketlab.studies import run_sweep
from ticketlab.studies.sweep.launchers import SubmititLauncher
root, model = Path(sys.argv[1]), Path(sys.argv[2])
ft = functools.partial(fakes.fake_finetune, sleep=120)
launcher = SubmititLauncher(root / "sweep" / "jobs", cluster="local", jobs=2)
run_sweep(tiny_spec(root, model), root / "sweep", finetune=ft, launcher=launcher, log=print, poll=0.2)
"""


@pytest.mark.slow  # two workers, each a fresh Python that imports torch
def test_workers_die_with_a_killed_coordinator_and_the_rerun_finishes(tmp_path, tiny_bert_dir):
    """kill -9 of `sweep --jobs 2`'s process: its workers end too (they would otherwise hold their
    runs' directories), and the rerun finishes every run, failing and skipping none."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    coordinator = subprocess.Popen(
        [sys.executable, "-c", COORDINATOR, str(tmp_path), str(tiny_bert_dir)], env=env
    )
    spec = tiny_spec(tmp_path, tiny_bert_dir)
    full = next(r for r in expand(spec) if r.kind == "finetune" and r.config["method"] == "full")
    entered = tmp_path / "sweep" / "runs" / full.dirname / "entered"
    # A bound against hanging only, not a timing: generous, since on a starved machine (a study on
    # every core) the coordinator's imports and first runs took over 4 minutes.
    deadline = time.monotonic() + 900
    while not entered.is_file() and time.monotonic() < deadline and coordinator.poll() is None:
        time.sleep(0.2)
    assert entered.is_file(), f"the coordinator never reached its fine-tuning (exit {coordinator.poll()})"
    worker = int(entered.read_text())  # the fine-tuning's worker sleeps in its run
    coordinator.kill()
    coordinator.wait()
    deadline = time.monotonic() + 120  # the same: a bound, not a timing
    while time.monotonic() < deadline and Path(f"/proc/{worker}").exists():
        state = Path(f"/proc/{worker}/stat").read_text().split(") ")[-1][:1]
        if state == "Z":  # ended, not yet reaped by submitit's controller
            break
        time.sleep(0.1)
    else:
        if Path(f"/proc/{worker}").exists():
            os.kill(worker, 9)
            pytest.fail("the worker outlived its coordinator")
    again = run_sweep(
        spec,
        tmp_path / "sweep",
        finetune=fakes.fake_finetune,
        log=lambda s: None,
        poll=0.05,
        launcher=InlineLauncher(tmp_path / "sweep" / "jobs2"),
    )
    assert again.ok and not again.failed and not again.blocked and again.done == 3


def test_status_of_a_running_run_never_fails_on_what_its_directory_holds(tmp_path):
    """`sweep --status` reads a running run's newest log: a log that vanished between listing and
    reading (a link to nowhere stands for one), a directory named like a log, or a run name that is
    no file name (a corrupt row) shows no step; the status is still printed, never a traceback."""
    from ticketlab.studies.run_ids import make_run

    out = tmp_path / "sweep"
    claim_dir(out, kind="sweep")
    search = make_run("search", "tamt-mlm_s70_seed0", {"method": "tamt-mlm", "steps": 40})
    odd = make_run("search", "../odd", {"method": "tamt-kd", "steps": 40})
    with Store(out) as st:
        st.add_runs([search, odd])
        assert st.claim(search.id) and st.claim(odd.id)
    run = out / "masks" / search.dirname / "run"
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text('{"step": 10}\n')
    (run / "old").mkdir()
    (run / "old" / "log.jsonl").symlink_to(tmp_path / "gone.jsonl")  # newer, and not there
    text = sweep_status(out)
    assert f"{search.name}  for " in text and ", step 10 of 40" in text  # the log that is there
    assert f"{odd.name}  for " in text and text.count("step") == 1
    (run / "log.jsonl").write_text('{"step": 20}\n' + "[" * 3000 + "\n")  # nested past json's depth
    assert ", step 20 of 40" in sweep_status(out)
    (run / "old" / "log.jsonl").unlink()
    (run / "old" / "log.jsonl").mkdir()  # a directory is no log: the file is read
    assert ", step 20 of 40" in sweep_status(out)
