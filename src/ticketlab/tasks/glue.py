"""GLUE-style text tasks: read a split from its TSV file (or the hub), tokenize it once, cache it.

The reader follows the files the standard GLUE download script writes: tab-separated, no quoting
(MNLI and QQP texts contain quote characters), an optional UTF-8 byte-order mark (MRPC), a header
row except for CoLA (columns by index there). Rows with the wrong number of fields or an empty
text, which QQP and a few other files contain, are skipped and counted; when more than half of a
file is malformed it is not that task's file and reading stops with a `DataError`. So does a
missing file, a missing column or a label outside the task's label set, each naming the file.

A file whose name ends in `.csv` is read as comma-separated instead, with the quoting of Python's
`csv` module (a text holding commas or quotes is quoted, as spreadsheets and pandas write it); a
task's `files` name them (`{"train": "train.csv", "dev": "dev.csv"}` in its task.json).

`--data-dir` is either a GLUE root (`DIR/SST-2/train.tsv`) or the task's own folder
(`DIR/train.tsv`); of a GLUE root a task reads only its folder (`task_data`). Without a data dir,
`load_examples` falls back to the `datasets` hub (online).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from transformers import PreTrainedTokenizerBase

from ..core.errors import ConfigError, DataError, prefixed
from ..core.files.inputs import check_regular, read_text
from ..core.hub import datasets_module
from ..data.features import Features, cached, file_digest, token_columns, tokenizer_digest
from ..data.sources import check_data_dir
from .metrics import check_split
from .registry import Column, TaskSpec, get_task, task_file

if TYPE_CHECKING:
    from datasets import Dataset  # imported where the hub is read (`core.hub.datasets_module`)

log = logging.getLogger(__name__)
MAX_MALFORMED = 0.5  # fraction of malformed rows above which a file is rejected outright


@dataclass
class Examples:
    """One split of a text task: the texts, the label ids (or float scores) and what was skipped."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list[int] | list[float]
    source: str  # the file (or hub dataset) it came from
    skipped: int = 0  # malformed rows left out

    def __len__(self) -> int:
        return len(self.text_a)


# --------------------------------------------------------------------------- locating files


def task_dir(spec: TaskSpec, data_dir: str | os.PathLike) -> Path:
    """The folder holding the task's files: `DIR/<folder>` of a GLUE root, or `DIR` itself."""
    root = check_data_dir(data_dir)
    names = dict.fromkeys([spec.folder, spec.id, spec.folder.lower()])
    candidates = [root / name for name in names] + [root]
    for d in candidates:
        if any((d / f).is_file() for f in spec.files.values()):
            return d
    wanted = ", ".join(spec.files.values())
    raise DataError(
        f"{root}: no {spec.id} data: expected {wanted} in {root / spec.folder} (a GLUE root) or in {root}"
    )


def task_data(task: str, data_dir: str | os.PathLike) -> list[Path]:
    """What loading the task `task` (a registry id or a task.json) reads of the data folder
    `data_dir`: the task's own folder (`task_dir`: a GLUE root's `<folder>`, or `data_dir` itself)
    and its task.json where that lies in `data_dir` outside the folder. Not the other tasks' folders
    beside it: a sweep keys a task's runs by the content of these (`sweep.plan.input_keys`)."""
    folder = task_dir(get_task(task, data_dir), data_dir)
    paths = [folder]
    described = task_file(task, data_dir)
    if described is not None:
        where, root = described.expanduser().resolve(), Path(data_dir).expanduser().resolve()
        if where.is_relative_to(root) and not where.is_relative_to(folder.resolve()):
            paths.append(described)
    return paths


def split_file(spec: TaskSpec, data_dir: str | os.PathLike, split: str) -> Path:
    if split not in spec.files:
        raise DataError(f"task '{spec.id}' has no split '{split}' (it has {sorted(spec.files)})")
    path = task_dir(spec, data_dir) / spec.files[split]
    return check_regular(path, f"{spec.id} {split} file", DataError)  # missing, a FIFO, a device


# --------------------------------------------------------------------------- reading TSV


def _column_index(spec: TaskSpec, header: list[str] | None, col: Column, path: Path) -> int:
    if isinstance(col, int):
        return col
    assert header is not None
    names = [h.strip() for h in header]
    if col not in names:
        hint = ""
        if len(names) == 1 and "," in names[0] and path.suffix != ".csv":  # a CSV under a .tsv name
            hint = (
                "; this file is read as tab-separated and its header has commas, not tabs: a "
                "comma-separated file is read as CSV when its name ends in .csv (the task's `files`)"
            )
        raise DataError(f"{path}: no column '{col}' in the header (columns: {', '.join(names)}){hint}")
    if names.count(col) > 1:  # which one the task means is not for ticketlab to guess
        raise DataError(f"{path}: the header names column '{col}' {names.count(col)} times")
    return names.index(col)


def _label_value(spec: TaskSpec, raw: str, path: Path, line: int) -> int | float:
    raw = raw.strip()
    if spec.kind == "regression":
        try:
            value = float(raw)
        except ValueError:
            raise DataError(f"{path}, line {line}: label '{raw}' is not a number") from None
        if not math.isfinite(value):  # float() reads 'nan' and 'inf': a loss or score of nan follows
            raise DataError(f"{path}, line {line}: label '{raw}' is not a finite number")
        return value
    labels = spec.labels or ()
    if raw not in labels:
        what = "empty label" if not raw else f"label '{raw}'"
        raise DataError(f"{path}, line {line}: {what} is not one of {list(labels)} (task '{spec.id}')")
    return labels.index(raw)


# The longest text field of a task file: the csv module's own bound on a field (131072 characters),
# for tab-separated lines too. A longer one is no sentence; tokenizing it takes gigabytes.
FIELD_CHARS = csv.field_size_limit()


def _records(text: str, path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every line of a file's `text`: split at tabs as GLUE's files are
    (no quoting), or for a `.csv` file by the `csv` module (a quoted field may span lines)."""
    if path.suffix != ".csv":
        records = [(i, ln.removesuffix("\r").split("\t")) for i, ln in enumerate(text.split("\n"), start=1)]
        for i, fields in records:
            if (longest := max(map(len, fields))) > FIELD_CHARS:
                raise DataError(
                    f"{path}, line {i}: a field of {longest} characters, more than the {FIELD_CHARS} "
                    "a text field may hold (as for CSV); not a row of a task file"
                )
        return records
    reader = csv.reader(io.StringIO(text, newline=""))  # the csv module sees the line ends itself
    try:
        return [(reader.line_num, row) for row in reader]
    except csv.Error as e:
        raise DataError(f"{path}, line {reader.line_num}: not valid CSV ({e})") from None


def read_tsv(spec: TaskSpec, path: str | os.PathLike) -> Examples:
    """Read one GLUE-style TSV file of `spec` (or a CSV file, by its `.csv` name); see the module
    docstring for what is skipped or refused."""
    path = Path(path)
    text = read_text(path, "task data file", DataError, encoding="utf-8-sig")  # -sig: MRPC's byte-order mark
    if not text.strip():
        raise DataError(f"{path}: empty file (no header, no data rows)")
    records = _records(text, path)  # a row at least: the text is not blank
    header = records[0][1] if spec.header else None
    first = 1 if spec.header else 0
    cols = [c for c in (spec.text_a, spec.text_b, spec.label) if c is not None]
    idx = [_column_index(spec, header, c, path) for c in cols]
    n_fields = len(header) if header is not None else spec.n_fields
    need = max(idx) + 1
    ia, ib, il = idx[0], (idx[1] if spec.text_b is not None else None), idx[-1]

    text_a: list[str] = []
    text_b: list[str] = []
    labels: list[int | float] = []
    rows = skipped = 0
    for line_no, fields in records[first:]:
        if not "".join(fields).strip():
            continue
        rows += 1
        if (n_fields is not None and len(fields) != n_fields) or len(fields) < need:
            skipped += 1
            continue
        a = fields[ia].strip()
        b = fields[ib].strip() if ib is not None else ""
        if not a or (ib is not None and not b):  # QQP has a few pairs with an empty question
            skipped += 1
            continue
        labels.append(_label_value(spec, fields[il], path, line_no))
        text_a.append(a)
        text_b.append(b)
    if rows == 0:
        raise DataError(f"{path}: no data rows")
    if skipped > MAX_MALFORMED * rows:
        sep = "comma" if path.suffix == ".csv" else "tab"
        want = f"{n_fields} {sep}-separated fields" if n_fields else f"at least {need} fields"
        raise DataError(f"{path}: {skipped} of {rows} rows are malformed (expected {want}); wrong file?")
    if skipped:
        log.warning("%s: skipped %d malformed row(s) of %d", path, skipped, rows)
    return Examples(text_a, text_b if spec.text_b is not None else None, labels, str(path), skipped)


# --------------------------------------------------------------------------- the hub fallback (online only)


def hub_split(spec: TaskSpec, split: str, local: str) -> Dataset:
    """A task's split from the `datasets` hub (`spec.hub`): used only when no local data dir is given;
    offline, from datasets' cache alone, refused at once where it lacks the split. `local` names the
    files `--data-dir` holds instead, for the refusal."""
    if spec.hub is None or split not in spec.hub_splits:
        raise DataError(f"task '{spec.id}' has no hub dataset for split '{split}'; pass --data-dir")
    name, config = spec.hub
    try:
        return datasets_module().load_dataset(name, config, split=spec.hub_splits[split])
    except Exception as e:  # offline, unknown name, ...: one line the user can act on
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        where = name + (f"/{config}" if config else "")
        raise DataError(f"cannot load {where} from the hub ({why}); pass --data-dir with {local}") from None


def read_hub(spec: TaskSpec, split: str) -> Examples:
    """A GLUE-style task's split from the hub (`hub_split`)."""
    ds = hub_split(spec, split, "the files in the standard layout")
    name, config = spec.hub
    a, b = spec.hub_columns[0], (spec.hub_columns[1] if len(spec.hub_columns) > 1 else None)
    # Built-in label orders equal the hub's class ids (e.g. MNLI entailment, neutral, contradiction).
    labels = [float(x) for x in ds["label"]] if spec.kind == "regression" else [int(x) for x in ds["label"]]
    bad = next((i for i, x in enumerate(labels) if not math.isfinite(x)), None)
    if bad is not None:
        raise DataError(f"hub:{name}/{config}/{split}, row {bad}: label {labels[bad]} is not a finite number")
    return Examples(list(ds[a]), list(ds[b]) if b else None, labels, f"hub:{name}/{config}/{split}")


def load_examples(spec: TaskSpec, data_dir: str | os.PathLike | None, split: str) -> Examples:
    if data_dir is None:
        return read_hub(spec, split)
    return read_tsv(spec, split_file(spec, data_dir, split))


def check_task_data(
    spec: TaskSpec,
    data_dir: str | os.PathLike | None,
    select_fraction: float | None = None,
    eval_samples: int | None = None,
) -> None:
    """Read every local split a fine-tuning of `spec` reads (its train split and those it scores),
    so that an empty file, a bad label or a dev set too small for `select_fraction` (of its first
    `eval_samples`, as a run scores) is refused before a study makes its output folder. The hub is
    read when a run loads it; SQuAD's layout is its loader's to check."""
    if data_dir is None or spec.kind == "squad":
        return
    for split in dict.fromkeys(["train", *spec.eval_splits]):
        examples = load_examples(spec, data_dir, split)
        if select_fraction is not None and split in spec.eval_splits:
            n = min(len(examples.text_a), eval_samples or len(examples.text_a))
            try:
                check_split(n, select_fraction)
            except ConfigError as e:
                raise prefixed(e, str(split_file(spec, data_dir, split))) from None


# --------------------------------------------------------------------------- tokenizing


def tokenize(examples: Examples, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Features:
    """input_ids (+ token_type_ids where the tokenizer makes them) truncated to max_length, and labels."""
    args = (examples.text_a,) if examples.text_b is None else (examples.text_a, examples.text_b)
    enc = tokenizer(*args, truncation=True, max_length=max_length)
    columns = token_columns(enc)
    dtype = np.float32 if examples.labels and isinstance(examples.labels[0], float) else np.int64
    columns["labels"] = np.asarray(examples.labels, dtype=dtype)
    return Features(columns)


def load_features(
    spec: TaskSpec,
    data_dir: str | os.PathLike | None,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
) -> tuple[Features, Examples]:
    """Tokenized features of one split (cached on disk per file, tokenizer and max_length)."""
    examples = load_examples(spec, data_dir, split)
    source = examples.source
    key = {
        "kind": "glue",
        "file": file_digest(source) if data_dir is not None else source,
        "spec": [spec.kind, spec.header, spec.text_a, spec.text_b, spec.label, spec.labels, spec.n_fields],
        "tokenizer": tokenizer_digest(tokenizer),
        "max_length": max_length,
        "n": len(examples),
    }
    return cached(key, lambda: tokenize(examples, tokenizer, max_length)), examples
