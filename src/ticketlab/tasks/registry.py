"""The downstream task registry: one `TaskSpec` per task says where its data is and how to score it.

A spec names the files of each split (GLUE layout: `DIR/SST-2/train.tsv`), the columns that hold
the text(s) and the label, the label set (or regression), the metrics and the main one, and the
fine-tuning defaults of TAMT Table 1. The nine GLUE tasks and SQuAD v1.1 are built in. Adding a task
is one entry, in code:

    from ticketlab.tasks.registry import TaskSpec, register_task
    register_task(TaskSpec(id="sentiment", text_a="text", label="label", labels=("neg", "pos")))

or as a `task.json` with the same fields in the task's data folder, found by
`ticketlab finetune --task sentiment --data-dir DATA` (`DATA/sentiment/task.json` or
`DATA/task.json`) or `--task path/to/task.json`:

    {"id": "sentiment", "text_a": "text", "label": "label", "labels": ["neg", "pos"]}

Metric keys: the first eval split gives plain names (`accuracy`); another split adds its suffix
(MNLI's `dev_mm` split gives `accuracy_mm`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..core.checks import BlockLength, Epochs, FieldError, LearningRate, PositiveInt, check_fields
from ..core.errors import ConfigError, TicketlabError, did_you_mean, printable_strings
from ..core.files.inputs import read_json
from ..core.outputs import safe_component
from .metrics import DEFAULT_METRICS, KIND_METRICS, METRIC_NAMES

# How SQuAD's long contexts are cut into windows (`tasks.squad`): step (window k at k·doc_stride) or
# overlap (consecutive windows share doc_stride tokens); here, read by configs that import no torch
SquadWindows = Literal["step", "overlap"]

Kind = Literal["classification", "regression", "squad"]
Column = str | int  # a header name, or a 0-based field index for files without a header
TASK_FILE = "task.json"


# What `--data-dir` takes, where `task_dir` and `task_file` look, and the command line's default
# (`cli.common.data_dir_of`): the help of each verb reading one task's data.
DATA_DIR_HELP = (
    "a folder holding the task's folder (a GLUE root: DIR/SST-2/...; a task of yours: DIR/TASK/task.json) "
    "or that folder itself (default: a task.json's own folder, else the hub, online)"
)


@dataclass(frozen=True)
class TaskSpec:
    id: str
    kind: Kind = "classification"
    dir_name: str | None = None  # folder under a GLUE-style root (default: the id)
    files: dict[str, str] = field(default_factory=lambda: {"train": "train.tsv", "dev": "dev.tsv"})
    eval_splits: tuple[str, ...] = ("dev",)  # scored during fine-tuning; the first one decides "best"
    header: bool = True
    text_a: Column = "sentence"
    text_b: Column | None = None  # second sentence of pair tasks
    label: Column = "label"
    labels: tuple[str, ...] | None = None  # label strings as in the files (classification default: 0, 1)
    n_fields: int | None = None  # exact field count of a row in a headerless file (default: any enough)
    metrics: tuple[str, ...] | None = None  # default: the kind's (accuracy; Pearson and Spearman)
    main_metric: str | None = None  # decides the best dev score (default: the first metric)
    # fine-tuning defaults (TAMT Table 1)
    lr: LearningRate = 2e-5
    batch_size: PositiveInt = 32
    max_length: BlockLength = 128  # tokens per example: [CLS], [SEP] (pairs: two) and a few words
    epochs: Epochs = 3.0  # bounded as --epochs is: 1e300 passes would need a step count past 64 bits
    eval_every: PositiveInt = 50
    # `datasets` hub fallback when no local data dir is given (online only)
    hub: tuple[str, str | None] | None = None  # load_dataset(name, config)
    hub_columns: tuple[str, ...] = ()  # text_a[, text_b] column names in the hub dataset
    hub_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "validation"})
    description: str = ""

    def __post_init__(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"task '{self.id}': {msg}")

        if not self.id or not isinstance(self.id, str):
            raise ConfigError(f"task id must be a non-empty string, got {self.id!r}")
        printable_strings(dataclasses.asdict(self), "task")  # its id, labels, columns reach reports
        wrong = check_fields(self)  # a task.json may hold anything: every field is checked
        if wrong:
            raise bad(wrong)
        # The id and folder name directories (mtl's ft-<id>, a GLUE root's folder): never `../x`.
        for what, name in (("id", self.id), ("folder", self.folder)):
            safe_component(name, f"task {what}", ConfigError)
        if self.kind not in ("classification", "regression", "squad"):
            raise bad(f"kind must be classification, regression or squad, got {self.kind!r}")
        if "train" not in self.files or not self.eval_splits:
            raise bad("files needs a 'train' split and eval_splits at least one split")
        missing = [s for s in self.eval_splits if s not in self.files]
        if missing:
            raise bad(f"eval split(s) {missing} have no entry in files {sorted(self.files)}")
        if self.metrics is None:
            object.__setattr__(self, "metrics", DEFAULT_METRICS[self.kind])
        known = KIND_METRICS[self.kind]
        unknown = [m for m in self.metrics if m not in known]
        if not self.metrics or unknown:
            what = (
                "unknown metric(s)" if set(unknown) - METRIC_NAMES else "metric(s) for another kind of task"
            )
            raise bad(f"{what} {unknown or '(none given)'}; a {self.kind} task takes {', '.join(known)}")
        if self.main_metric is not None and self.main_metric not in self.metrics:
            raise bad(f"main_metric {self.main_metric!r} is not one of its metrics {list(self.metrics)}")
        if self.kind == "classification" and self.labels is None:
            object.__setattr__(self, "labels", ("0", "1"))  # the GLUE binary convention
        if self.kind == "classification" and len(set(self.labels)) < 2:
            raise bad("a classification task needs at least two distinct labels")
        if self.kind == "classification" and "f1" in self.metrics and len(self.labels) > 2:
            n = len(self.labels)
            raise bad(f"f1 is binary (of the second label, as GLUE's MRPC); {n} labels take accuracy or mcc")
        if self.kind != "classification" and self.labels is not None:
            raise bad(f"a {self.kind} task has no label list (labels must be null)")
        if self.kind != "squad" and not self.header:
            cols = [c for c in (self.text_a, self.text_b, self.label) if c is not None]
            if not all(isinstance(c, int) and c >= 0 for c in cols):
                raise bad("a file without a header needs 0-based integer columns")

    # ------------------------------------------------------------------ derived
    @property
    def main(self) -> str:
        return self.main_metric or self.metrics[0]

    @property
    def num_labels(self) -> int:
        """Output size of the head: 1 for regression, 2 (start/end) for SQuAD."""
        return 1 if self.kind == "regression" else 2 if self.kind == "squad" else len(self.labels or ())

    @property
    def folder(self) -> str:
        return self.dir_name or self.id

    def metric_keys(self) -> list[str]:
        return [metric_key(m, s, self.eval_splits) for s in self.eval_splits for m in self.metrics]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "task spec") -> TaskSpec:
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: a task spec must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown}; known: {sorted(names)}")
        if "id" not in d:
            raise ConfigError(f"{source}: missing field 'id'")
        tuples = ("eval_splits", "labels", "metrics", "hub", "hub_columns")
        d = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in d.items()}
        try:
            return cls(**d)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        except TypeError as e:
            raise ConfigError(f"{source}: {e}") from None


def metric_key(metric: str, split: str, eval_splits: tuple[str, ...]) -> str:
    """`accuracy` on the first eval split, `accuracy_mm` on MNLI's `dev_mm`."""
    if split == eval_splits[0]:
        return metric
    return f"{metric}_{split.removeprefix('dev_')}"


# --------------------------------------------------------------------------- the registry

TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec, *, overwrite: bool = False) -> TaskSpec:
    """Add a task to the registry (an existing id needs overwrite=True). Returns the spec."""
    if spec.id in TASKS and not overwrite and TASKS[spec.id] != spec:
        raise ConfigError(f"task '{spec.id}' is already registered (pass overwrite=True to replace it)")
    TASKS[spec.id] = spec
    return spec


def _glue(id: str, dir_name: str, hub_columns: tuple[str, ...], **kw: Any) -> TaskSpec:
    return register_task(
        TaskSpec(id=id, dir_name=dir_name, hub=("nyu-mll/glue", id), hub_columns=hub_columns, **kw)
    )


_glue(
    "cola", "CoLA", ("sentence",), header=False, text_a=3, label=1, n_fields=4, metrics=("mcc",),
    description="linguistic acceptability (Matthews corr.)",
)  # fmt: skip
_glue("sst2", "SST-2", ("sentence",), description="sentiment (acc.)")
_glue(
    "mrpc", "MRPC", ("sentence1", "sentence2"), text_a="#1 String", text_b="#2 String", label="Quality",
    metrics=("accuracy", "f1"), description="paraphrase (acc. and F1)",
)  # fmt: skip
_glue(
    "stsb", "STS-B", ("sentence1", "sentence2"), kind="regression", text_a="sentence1", text_b="sentence2",
    label="score", metrics=("pearson", "spearman"), description="similarity 0-5 (Pearson, Spearman)",
)  # fmt: skip
_glue(
    "qqp", "QQP", ("question1", "question2"), text_a="question1", text_b="question2", label="is_duplicate",
    metrics=("accuracy", "f1"), description="duplicate questions (acc. and F1)",
)  # fmt: skip
_glue(
    "mnli", "MNLI", ("premise", "hypothesis"), text_a="sentence1", text_b="sentence2", label="gold_label",
    labels=("entailment", "neutral", "contradiction"),
    files={"train": "train.tsv", "dev": "dev_matched.tsv", "dev_mm": "dev_mismatched.tsv"},
    eval_splits=("dev", "dev_mm"), eval_every=500,
    hub_splits={"train": "train", "dev": "validation_matched", "dev_mm": "validation_mismatched"},
    description="NLI, matched and mismatched dev (acc.)",
)  # fmt: skip
_glue(
    "qnli", "QNLI", ("question", "sentence"), text_a="question", text_b="sentence",
    labels=("entailment", "not_entailment"), description="question-answer entailment (acc.)",
)  # fmt: skip
_glue(
    "rte", "RTE", ("sentence1", "sentence2"), text_a="sentence1", text_b="sentence2",
    labels=("entailment", "not_entailment"), description="textual entailment (acc.)",
)  # fmt: skip
_glue(
    "wnli", "WNLI", ("sentence1", "sentence2"), text_a="sentence1", text_b="sentence2",
    description="Winograd NLI (acc.)",
)  # fmt: skip
register_task(
    TaskSpec(
        id="squad",
        kind="squad",
        dir_name="SQuAD",
        files={"train": "train-v1.1.json", "dev": "dev-v1.1.json"},
        metrics=("exact_match", "f1"),
        main_metric="f1",
        lr=3e-5,
        batch_size=16,
        max_length=384,
        epochs=2.0,
        eval_every=1000,
        hub=("rajpurkar/squad", None),
        description="extractive QA, SQuAD v1.1 (EM and F1)",
    )
)
BUILTIN = tuple(TASKS)


def read_task_file(path: str | os.PathLike) -> TaskSpec:
    """Read a `task.json` (not registering it)."""
    return TaskSpec.from_dict(read_json(path, "task spec"), source=str(path))


_FROM_FILES: set[str] = set()  # ids registered from a task.json (a later one may replace them)


def _register_file(spec: TaskSpec, path: Path) -> TaskSpec:
    """Register the task a task.json describes. Its id may not be a built-in task's or one registered
    in code: that task would be replaced for the whole process (a sweep's real SST-2 runs scored with
    another file's labels)."""
    if spec.id in TASKS and spec.id not in _FROM_FILES and TASKS[spec.id] != spec:
        where = "a built-in task" if spec.id in BUILTIN else "a task registered in code"
        raise ConfigError(f"{path}: task id {spec.id!r} is {where}; give the file another id")
    _FROM_FILES.add(spec.id)
    return register_task(spec, overwrite=True)


def _task_files(task: str, data_dir: str | os.PathLike | None) -> list[tuple[Path, bool]]:
    """Where a task.json describing `task` is looked for, in order: (path, whether it is a data
    folder's: DATA/TASK/task.json must be this task's, DATA/task.json may describe another)."""
    candidates = [(Path(task), False)] if task.endswith(".json") else []
    if data_dir is not None:
        candidates += [(Path(data_dir) / task / TASK_FILE, True), (Path(data_dir) / TASK_FILE, True)]
    return candidates


def task_file(task: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The task.json that describes `task` (`get_task` reads it), or None: a task built in or
    registered in code, or no such file."""
    if task in TASKS and task not in _FROM_FILES:
        return None
    found, _ = _described(task, data_dir)
    return found[0] if found else None


def _described(
    task: str, data_dir: str | os.PathLike | None
) -> tuple[tuple[Path, TaskSpec] | None, str | None]:
    """(the first task.json that describes `task` and its spec, or None; where none does, the last
    one found that describes another task, in words, for the refusal)."""
    other = None
    for path, in_data in _task_files(task, data_dir):
        if path.is_file():
            spec = read_task_file(path)
            if not in_data or task in (spec.id, spec.folder, spec.folder.lower()):
                return (path, spec), None
            if path.parent.name == task:  # the task's own folder: its data would be looked for elsewhere
                fix = f'give it the id {json.dumps(task)}, or "dir_name": {json.dumps(task)}'
                return None, f"{path} describes task {spec.id!r}, not the {task!r} of its folder: {fix}"
            other = f"{path} describes task {spec.id!r}, not {task!r}: give its id as the task, or its path"
    return None, other


def get_task(task: str | TaskSpec, data_dir: str | os.PathLike | None = None) -> TaskSpec:
    """A spec by id (built in or registered in code, then `task.json` in the data dir) or by the path
    of a task.json. A task.json is read on every call that finds one: two data folders may describe
    one id differently, and each run reads its own (a task read from a file before, where none is
    found now, is the one read last)."""
    if isinstance(task, TaskSpec):
        return task
    if task in TASKS and task not in _FROM_FILES:
        return TASKS[task]
    found, other = _described(task, data_dir)
    if found:
        return _register_file(found[1], found[0])
    if task in TASKS:
        return TASKS[task]
    if task.endswith(".json"):
        raise TicketlabError(f"{task}: task spec file not found")
    if other is not None:
        raise TicketlabError(other)
    raise TicketlabError(
        f"unknown task '{task}'{did_you_mean(task, TASKS)}: choose one of {', '.join(sorted(TASKS))}, "
        f"register one in code, or put a {TASK_FILE} in its data folder"
    )


def readable_task(task: str, data_dir: str | os.PathLike | None) -> TaskSpec:
    """`get_task(task, data_dir)`, refused on `data_dir` when the task's data has nowhere to come
    from: no folder given and no hub dataset. Said when a config is built, not once a model is loaded."""
    spec = get_task(task, data_dir)
    if data_dir is None and spec.hub is None:
        own = f" (a task.json's data sits with it: {Path(task).parent})" if task.endswith(".json") else ""
        why = f"not given, and task '{spec.id}' has no hub dataset: give its folder{own}"
        raise FieldError("data_dir", why)
    return spec
