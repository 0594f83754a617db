"""`ticketlab demo`: the whole pipeline on a fresh machine, offline, from nothing, in minutes.

1. **data** — the synthetic language (`data.synthetic`): an MLM corpus, three GLUE-like tasks
   (sentiment, acceptability, paraphrase) and a word-level tokenizer;
2. **pre-training** — a tiny BERT trained from scratch with MLM on that corpus (`pretrain`);
3. **sweep** — full, OMP, random, IMP (Chen et al.'s, `imp/chen`), TAMT-MLM, TAMT-KD at 50/70/90%
   sparsity, every mask fine-tuned on every task (`studies.run_sweep`), plus the pre-training
   loss of every mask;
4. **report** — markdown, CSV and figures (`studies.report.write_report`); the main table is
   printed.

Everything is cached under `out` (default `./demo-out`), keyed by what determines it: the data by
the generator's settings, the model by those and the pre-training settings, the sweep directory by
(model, corpus, tasks), whose store identifies each run by its full settings. A second run therefore
only re-renders the report, an interrupted run resumes, and a changed budget re-runs what it changes.
The budgets (`BUDGETS`) live in the torch-free `demo.config`, re-exported here. `model`, `corpus`
and `tasks` swap in real ones, each independently (the synthetic language is
plain English words, so any tokenizer reads it):

    run_demo(model="models/minilm-mlm", corpus=["data/corpus/train.txt"],
             tasks=["sst2", "cola"], data_dir="path/to/glue")
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..core.digest import digest
from ..core.errors import ConfigError, TicketlabError, did_you_mean
from ..core.files.inputs import read_json, read_text
from ..core.outputs import claim_dir
from ..data import synthetic
from ..data.sources import check_corpus_source, check_data_dir
from ..lm.pretrain import PretrainResult, pretrain
from ..models.source import check_source
from ..studies import run_sweep, spec_from_dict
from ..studies.report import write_report
from ..studies.sweep.launchers import usable_cores, usable_cpus
from ..tasks.glue import check_task_data
from ..tasks.registry import get_task
from .config import BUDGETS, Budget

Log = Callable[[str], None]


@dataclass
class DemoResult:
    report: Path  # the markdown report
    table: str  # the main table as printed
    sweep_dir: Path
    model: str
    pretrain: PretrainResult | None  # None when a model was given
    seconds: dict[str, float]  # wall time per stage
    ok: bool  # every run of the sweep finished
    ran: int  # runs done by this call (0 when everything was cached)


def busy_cores(before: str, after: str, cpus: Collection[int] | None = None) -> float | None:
    """The cores kept busy between two readings of /proc/stat: for each CPU of `cpus` (all where None),
    the share of its time between them that was not idle (idle and iowait count as idle), summed.
    None where the readings have no such CPU or no time passed between them."""

    def times(text: str) -> dict[str, tuple[int, int]]:  # cpuN -> (all its time, its idle time)
        out = {}
        for line in text.splitlines():
            name, *fields = line.split() or [""]
            if name[:3] == "cpu" and name[3:].isdigit() and (cpus is None or int(name[3:]) in cpus):
                t = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
                out[name] = (sum(t), t[3] + t[4])  # guest time is in user's already
        return out

    a, b = times(before), times(after)
    spans = [(b[c][0] - a[c][0], b[c][1] - a[c][1]) for c in a.keys() & b.keys()]
    spans = [(total, idle) for total, idle in spans if total > 0]
    return sum(1 - idle / total for total, idle in spans) if spans else None


def machine_load(sample_s: float = 1.0) -> float:
    """The cores other processes keep busy, for `demo_threads`: the 1-minute load average, or less
    where /proc/stat shows less work over the next `sample_s` seconds. The average lags a minute
    behind the machine: `make demo` on a fresh clone starts just after installing its virtual
    environment, which kept one core busy, and read a load of 1.1 on two otherwise idle cores (one
    torch thread where two were free). The lower reading is taken: a job that is still running keeps
    both readings up, and one that has ended lowers only the sample."""
    load = os.getloadavg()[0]
    cpus = usable_cpus()
    try:
        before = read_text("/proc/stat", "CPU counters")
        time.sleep(sample_s)
        busy = busy_cores(before, read_text("/proc/stat", "CPU counters"), cpus)
    except (TicketlabError, ValueError, IndexError):  # not Linux, or a /proc/stat of another layout
        return load
    return load if busy is None else min(load, busy)


def demo_threads(cores: int, load: float, what: str = "the demo") -> tuple[int, str | None]:
    """Torch threads for `what` (the demo, the test suite) on `cores` usable cores while other
    processes keep `load` of them busy (`machine_load`), and the line that says what the
    busy machine costs (None when it is idle). torch's default, a thread per core, beside other work
    oversubscribes the cores: pre-training ran at 1.4-2.9 steps/s instead of ~15-30, 43 minutes in all
    instead of 6-10 on a shared machine."""
    threads = max(1, min(cores, math.floor(cores - load + 0.5)))
    if threads == cores:
        return threads, None
    share = threads * min(1.0, cores / (load + threads))  # the cores our threads get, shared fairly
    return threads, (
        f"note: the machine is busy (load {load:.1f} on {cores} cores): {what} uses {threads} torch "
        f"thread{'s' if threads > 1 else ''}, and may take up to {cores / share:.0f}x as long as on an "
        "idle machine"
    )


@contextlib.contextmanager
def _threads(log: Log) -> Iterator[None]:
    """The demo's torch threads from the free cores (`demo_threads`), unless OMP_NUM_THREADS says."""
    before = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS") or not hasattr(os, "getloadavg"):
        yield
        return
    threads, note = demo_threads(usable_cores(), machine_load())
    if note is not None:
        log(note)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _key(obj: Any) -> str:
    return digest(obj, length=12)


def _stage(log: Log, n: int, what: str) -> float:
    log(f"\n[{n}/4] {what}")
    return time.perf_counter()


def build_spec(
    budget: Budget, model: str, corpus: dict[str, list[str]], tasks: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """The sweep spec (as the YAML would hold it) of a demo run."""
    return {
        "name": "demo",
        "model": model,
        "corpus": corpus,
        "tasks": tasks,
        "methods": [
            {m: budget.method_settings[m]} if m in budget.method_settings else m for m in budget.methods
        ],
        "sparsities": list(budget.sparsities),
        "seeds": {"search": list(budget.search_seeds), "finetune": list(budget.finetune_seeds)},
        "search": dict(budget.search),
        "finetune": dict(budget.finetune),
        **({"pretrain_eval": dict(budget.pretrain_eval)} if budget.pretrain_eval is not None else {}),
        **budget.extra,
    }


def run_demo(
    out: str | os.PathLike = "demo-out",
    budget: str | Budget = "default",
    *,
    model: str | None = None,
    corpus: Sequence[str] | None = None,
    dev_corpus: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    data_dir: str | None = None,
    log: Log = print,
) -> DemoResult:
    """Run (or resume, or just re-render) the demo under `out`; see the module docstring."""
    if isinstance(budget, str):
        if budget not in BUDGETS:
            near = did_you_mean(budget, BUDGETS)
            raise ConfigError(f"unknown demo budget {budget!r}{near}; choose from {', '.join(BUDGETS)}")
        budget = BUDGETS[budget]
    if tasks is not None and data_dir is None:
        raise ConfigError("--tasks needs --data-dir (the folder holding the tasks' data)")
    _check_inputs(model, [*(corpus or []), *(dev_corpus or [])], tasks or [], data_dir)
    inputs = [model, *(corpus or []), *(dev_corpus or []), data_dir]
    out = claim_dir(out, kind="demo", inputs=inputs).resolve()  # never a user's folder, nor inside an input
    with _threads(log):
        return _run_stages(out, budget, model, corpus, dev_corpus, tasks, data_dir, log)


def _check_inputs(
    model: str | None, corpora: Sequence[str], tasks: Sequence[str], data_dir: str | None
) -> None:
    """A mistyped model, corpus, task or data folder refused in one line before the synthetic data
    and the pre-training (minutes), from Python as on the command line; a hub id is read where it is
    loaded."""
    if model is not None:
        check_source(model)
    for corpus in corpora:
        check_corpus_source(corpus)
    if data_dir is not None:
        check_data_dir(data_dir)
    for task in tasks:  # its files too: an empty split or a bad label
        check_task_data(get_task(task, data_dir), data_dir)


def _run_stages(
    out: Path,
    budget: Budget,
    model: str | None,
    corpus: Sequence[str] | None,
    dev_corpus: Sequence[str] | None,
    tasks: Sequence[str] | None,
    data_dir: str | None,
    log: Log,
) -> DemoResult:
    """`run_demo`'s four stages, each timed."""
    seconds: dict[str, float] = {}

    t = _stage(log, 1, "data")
    needs_synthetic = model is None or corpus is None or tasks is None
    data = None
    if needs_synthetic:
        data = synthetic.write_dataset(budget.data, out / "data" / f"synthetic-{budget.data.key()}")
        log(f"synthetic language -> {data}")
    else:
        log("nothing to generate: model, corpus and tasks are given")
    corpus_block = _corpus(corpus, dev_corpus, data)
    task_block = _tasks(tasks, data_dir, data)
    seconds["data"] = time.perf_counter() - t

    t = _stage(log, 2, "pre-training")
    model, pre = _model(out, budget, model, data, log)
    if pre is not None and tasks is not None:
        log("note: the pre-trained model only knows the synthetic language's words; pass --model too")
    seconds["pretrain"] = time.perf_counter() - t

    t = _stage(log, 3, "sweep")
    if budget.pretrain_eval is not None and "dev" not in corpus_block:
        log("note: no --dev-corpus, so the masks' pre-training losses (Fig. 5) are not measured")
        budget = replace(budget, pretrain_eval=None)
    raw = build_spec(budget, str(model), corpus_block, task_block)
    spec = spec_from_dict(raw, source="the demo's sweep spec", base_dir=out)
    # One directory per (model, corpus, tasks): the store keeps every finished run, so a changed
    # budget re-runs only what it changes, and the report shows the runs of the last spec.
    sweep_dir = out / "sweeps" / f"demo-{_key([str(model), corpus_block, task_block])}"
    with _cache_env(out / "cache"):  # tokenized corpora and task features go under `out` too
        result = run_sweep(spec, sweep_dir, log=log)
    log(
        f"{result.done}/{result.total} runs done ({len(result.ran)} in this run), {len(result.failed)} failed"
    )
    seconds["sweep"] = time.perf_counter() - t

    t = _stage(log, 4, "report")
    report = write_report(sweep_dir)
    seconds["report"] = time.perf_counter() - t
    return DemoResult(
        report.path, report.main_table, sweep_dir, str(model), pre, seconds, result.ok, len(result.ran)
    )


def _model(
    out: Path, budget: Budget, model: str | None, data: Path | None, log: Log
) -> tuple[str, PretrainResult | None]:
    """The model the sweep prunes: the given one (a local folder, absolute, else a hub id), or one
    pre-trained on the synthetic corpus (cached under `out/models`), with its result."""
    pre: PretrainResult | None = None
    if model is None:
        pconfig = replace(budget.pretrain, progress=True)
        name = f"bert-{_key({'data': budget.data.key(), 'pretrain': asdict(budget.pretrain)})}"
        pre = pretrain(
            pconfig,
            data / "corpus" / "train.txt",
            out / "models" / name,
            tokenizer=data / "tokenizer",
            dev=data / "corpus" / "dev.txt",
            cache_dir=out / "cache" / "corpus",
        )
        model = pre.out_dir
        log(("(cached) " if pre.cached else "") + pre.summary())
    else:
        model = str(Path(model).resolve()) if Path(model).exists() else model  # a local dir, else a hub id
        log(f"using the given model {model}")
    return model, pre


@contextlib.contextmanager
def _cache_env(path: Path) -> Iterator[None]:
    """Point `TICKETLAB_CACHE` at `path` for the block, unless the user has set it."""
    if os.environ.get("TICKETLAB_CACHE"):
        yield
        return
    os.environ["TICKETLAB_CACHE"] = str(path)
    try:
        yield
    finally:
        del os.environ["TICKETLAB_CACHE"]


def _corpus(corpus: Sequence[str] | None, dev: Sequence[str] | None, data: Path | None) -> dict[str, Any]:
    if corpus is not None:
        block: dict[str, Any] = {"train": [str(Path(p).resolve()) for p in corpus]}
        if dev:
            block["dev"] = [str(Path(p).resolve()) for p in dev]
        return block
    assert data is not None
    return {"train": [str(data / "corpus" / "train.txt")], "dev": [str(data / "corpus" / "dev.txt")]}


def _tasks(tasks: Sequence[str] | None, data_dir: str | None, data: Path | None) -> dict[str, dict[str, str]]:
    if tasks is not None:
        root = str(Path(data_dir).resolve())
        return {t: {"task": t, "data": root} for t in tasks}
    assert data is not None
    names = read_json(data / "synthetic.json", "synthetic data description")["tasks"]
    return {t.removeprefix(synthetic.TASK_PREFIX): {"task": t, "data": str(data / "tasks")} for t in names}
