"""Shared fixtures: tiny random BERT/RoBERTa models built from config objects, and a tiny tokenizer.

Everything here is offline and deterministic (fixed seeds). Tests that need ../shared skip when it
is absent.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast, RobertaConfig

from ticketlab.demo.pipeline import demo_threads, machine_load
from ticketlab.masks import io as mask_io
from ticketlab.models.load import quiet_transformers
from ticketlab.studies.sweep.launchers import usable_cores
from ticketlab.tasks import registry as task_registry

quiet_transformers()  # no per-load progress bars in test output


@functools.cache
def _free_cores() -> tuple[int, str | None]:
    """The cores the suite may use, counted as the demo counts them (`demo_threads`), and the line
    that says what a busy machine costs (None when it is idle)."""
    return demo_threads(usable_cores(), machine_load(), what="the test suite")


def _suite_threads() -> str:
    """Torch threads from the free cores, unless OMP_NUM_THREADS says: a thread per core beside other
    torch work oversubscribes the cores and makes the suite ~10x slower. Under pytest-xdist (the
    suite's default, `-n auto`) there is a worker per free core and each has one thread. The CLI
    processes some tests start inherit the choice."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        threads, note = 1, None
    elif os.environ.get("OMP_NUM_THREADS") or not hasattr(os, "getloadavg"):
        return f"torch threads: {torch.get_num_threads()} (OMP_NUM_THREADS)"
    else:
        threads, note = _free_cores()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    return note or f"torch threads: {threads}"


THREADS = _suite_threads()
# glibc's default trim threshold, named: `core.memory` then leaves the allocator of this process and
# of the processes the tests start as glibc has it (no test's memory depends on which tests ran first).
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(128 * 1024))


# Past 8 workers the suite's longest test (the pages' examples, about 75 s) bounds its time, and
# each worker holds its own torch and transformers (580 MB at its peak on the GLUE tests alone).
MAX_WORKERS = 8


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: a worker per free core, at most MAX_WORKERS. Tiny models spend their time in Python,
    so two one-thread workers finish the suite in about half the time of one process with two threads
    (288 s against 541 s on two idle cores)."""
    return min(_free_cores()[0], MAX_WORKERS)


def pytest_terminal_summary(terminalreporter) -> None:
    # at the end: `-q` hides the header. The controller of xdist's workers names them.
    workers = getattr(terminalreporter.config.option, "numprocesses", None)
    terminalreporter.write_line(f"test workers: {workers}, 1 torch thread each" if workers else THREADS)


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BERT_MINI = SHARED / "models" / "bert-mini-ref"

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an this that one two cat dog bird fish man woman child king queen house tree river city "
    "runs sees likes eats finds walks sleeps sings is are was good bad great awful happy sad big small "
    "red blue very not and or but with of in on to from by . , ! ?"
).split()
VOCAB = SPECIAL + WORDS


# A tiny encoder's shape, shared by every family's test config (tests/families.py).
TINY = dict(
    vocab_size=len(VOCAB),
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    pad_token_id=0,
)
TINY_ROBERTA = dict(TINY, max_position_embeddings=66, pad_token_id=1, bos_token_id=0, eos_token_id=2)


def tiny_bert_config(**kw) -> BertConfig:
    return BertConfig(**{**TINY, **kw})


def tiny_roberta_config(**kw) -> RobertaConfig:
    return RobertaConfig(**{**TINY_ROBERTA, **kw})


def make_model(cls, config, seed: int = 0):
    torch.manual_seed(seed)
    return cls(config).eval()


def write_tokenizer(path: Path) -> BertTokenizerFast:
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    # transformers 5 ignores `vocab_file=` (it would build a 5-token vocabulary): pass `vocab=`.
    tok = BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True, model_max_length=64)
    tok.save_pretrained(path)
    return tok


# Fields that hold the wall clock: a record's creation time, run times. No test compares them
# (tests/test_wall_clock.py reads every test for it); `record` gives a config without them.
WALL_CLOCK = ("created",)


def record(config) -> dict:
    """A config's fields (`to_dict`) without its wall-clock stamps: what two runs can agree on."""
    return {k: v for k, v in config.to_dict().items() if k not in WALL_CLOCK}


@pytest.fixture(autouse=True)
def _every_stamp_in_its_own_second(monkeypatch):
    """Every mask config made in a test is stamped one second after the one before, as on a machine
    so busy that no two calls share a second: a test comparing two records with their `created`
    fails every time, not once in a while on someone's first `make test`."""
    seconds = itertools.count()
    start = datetime(2000, 1, 1, tzinfo=UTC)
    stamp = lambda: (start + timedelta(seconds=next(seconds))).isoformat(timespec="seconds")  # noqa: E731
    monkeypatch.setattr(mask_io, "created_stamp", stamp)


@pytest.fixture(autouse=True)
def _tasks_as_they_were():
    """The tasks a test registers, in code or by reading a task.json, are forgotten after it: a test
    never finds another's task under its id, whichever tests ran before it in its worker."""
    tasks, from_files = dict(task_registry.TASKS), set(task_registry._FROM_FILES)
    yield
    task_registry.TASKS.clear()
    task_registry.TASKS.update(tasks)
    task_registry._FROM_FILES.clear()
    task_registry._FROM_FILES.update(from_files)


@pytest.fixture(autouse=True)
def _accelerate_as_in_a_new_process():
    """accelerate's per-process state is forgotten after each test: on a machine with a GPU a test's
    `Accelerator(cpu=True)` is refused after another test in its worker made one on the GPU, and
    which tests share a worker changes from run to run."""
    yield
    if (state := sys.modules.get("accelerate.state")) is not None:
        state.AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(autouse=True, scope="session")
def _no_hub():
    """The tests never ask the network: the hub is unreachable to them (`core.hub`), so a hub id is
    read from huggingface_hub's cache alone, as on a machine offline; a test that needs the other
    case sets it."""
    mp = pytest.MonkeyPatch()
    mp.setattr("ticketlab.core.hub._reachable", lambda: False)
    yield
    mp.undo()


@pytest.fixture(autouse=True, scope="session")
def _ticketlab_cache(tmp_path_factory):
    """Tokenized corpora and features go to a temporary cache, never the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TICKETLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    """The tiny tokenizer on its own (tiny_bert_dir holds the same one)."""
    return write_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A saved tiny BertForMaskedLM with its tokenizer: a stand-in for a pre-trained checkpoint."""
    path = tmp_path_factory.mktemp("tiny-bert")
    make_model(BertForMaskedLM, tiny_bert_config(), seed=0).save_pretrained(path)
    write_tokenizer(path)
    return path


@pytest.fixture()
def bert_mini() -> Path:
    if not (BERT_MINI / "config.json").is_file():
        pytest.skip("../shared/models/bert-mini-ref is absent")
    return BERT_MINI


# The CLI as a user meets it: its exit code and what it printed; a refusal is one line, no traceback.
def run(capsys, *argv) -> tuple[int, str, str]:
    from ticketlab.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


_PROGRESS = re.compile(r"%\||\[\d+:\d+(:\d+)?, ")  # tqdm's bars, with a total or without one


def error_line(capsys, *argv) -> str:
    code, _, err = run(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip() and not _PROGRESS.search(line)]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


HUB_TRAIN = ["the cat runs .", "the dog sleeps ."] * 40
HUB_DEV = ["a bird sings ."] * 20


@pytest.fixture
def fake_hub(monkeypatch):
    """`datasets`' hub calls answered from memory as the hub would: `hub:org/tiny-wiki:raw` (HUB_TRAIN,
    HUB_DEV; its config is required), `hub:org/train-only` (HUB_TRAIN alone), `hub:org/offline` (no
    network), anything else unknown. The tests stay offline, and each call is recorded."""
    datasets = pytest.importorskip("datasets")
    from ticketlab.data import sources

    splits = {
        "train": datasets.Dataset.from_dict({"text": HUB_TRAIN}),
        "validation": datasets.Dataset.from_dict({"text": HUB_DEV}),
    }
    calls = []

    def split_names(name, config):
        calls.append(("splits", name, config))
        if name == "org/offline":
            raise ConnectionError(f"Couldn't reach '{name}' on the Hub (OfflineModeIsEnabled)")
        if name == "org/tiny-wiki" and config is None:
            raise ValueError("Config name is missing.\nPlease pick one among the available configs: ['raw']")
        if (name, config) == ("org/train-only", None):
            return ["train"]
        if (name, config) != ("org/tiny-wiki", "raw"):
            raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub or cannot be accessed.")
        return list(splits)

    def load_dataset(name, config, split):
        calls.append(("load", name, config, split))
        return splits[split]

    monkeypatch.setattr(datasets, "get_dataset_split_names", split_names)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    sources._hub_splits.cache_clear()
    sources._hub_load.cache_clear()
    yield calls
    sources._hub_splits.cache_clear()
    sources._hub_load.cache_clear()


@pytest.fixture()
def commits(monkeypatch) -> list[dict]:
    """What each commit to a fake hub sent: {path in the repo: a local path, or bytes}."""
    import huggingface_hub

    monkeypatch.setattr("ticketlab.core.hub._reachable", lambda: True)  # the hub answers
    sent: list[dict] = []

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kw):
            pass

        def create_commit(self, **kw):
            sent.append({op.path_in_repo: op.path_or_fileobj for op in kw["operations"]})
            return "url"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return sent
