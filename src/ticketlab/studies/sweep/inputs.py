"""What a sweep would refuse, refused before it starts (`ticketlab sweep`, its dry run included): the
sweep directory (a new or empty one, the sweep's own, or a store carried into an empty one, alone or
with its masks), a model ticketlab cannot prune by default or tokenize, a pre-training evaluation
longer than the model's positions, a corpus too short for a calibrated method's sequences, a task
folder without its data files. Then the spec's file is kept beside the store (`keep_spec_file`)."""

from __future__ import annotations

from pathlib import Path

from ...core.checks import defaults
from ...core.errors import TicketlabError, prefixed
from ...core.files.atomic import atomic_write_text
from ...core.files.inputs import read_text
from ...core.outputs import MARKER, check_output, claim_dir, is_output, mark_output, place
from ...data.sources import check_corpus_source, hub_dataset
from ...masks.targets import default_targets
from ...methods.calibration import full_blocks
from ...methods.prune_config import PruneConfig
from ...models.load import load_config, load_tokenizer
from ...models.source import fit_max_length
from ...tasks.glue import split_file
from ...tasks.registry import get_task
from ..store import DB_NAME, IdsSchemeError, Store
from .spec import load_spec, spec_json
from .sweep_spec import SweepSpec

PRUNE_DEFAULTS = defaults(PruneConfig)  # calibration's among them


def carried_store(out: Path) -> bool:
    """`out` holds a ticketlab results store, without our marker, and beside it at most the sweep's
    `masks/` folder holding only ticketlab masks: a store copied into an empty directory to carry a
    sweep to another machine (the README's way to resume), with the masks its pending runs read (a
    search's mask outlives the machine that made it). The store is ours by its content (it opens as
    a ticketlab store), not by its name, and each mask by its marker (a pruner's `mask`, or the
    `search` a searched mask was saved by); anything else beside them makes the directory the
    user's."""
    if not out.is_dir() or (out / MARKER).exists():
        return False
    names = {p.name for p in out.iterdir()}
    if any((out / n).is_symlink() for n in names):  # a link to someone's database is theirs
        return False
    store = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"}
    if names - store - {"masks"} or DB_NAME not in names:
        return False
    if "masks" in names and not (
        (out / "masks").is_dir() and all(is_output(m, "mask", "search") for m in (out / "masks").iterdir())
    ):
        return False
    try:
        Store(out, readonly=True).db.close()
    except IdsSchemeError:
        raise  # ours, of another ids scheme: said as such
    except TicketlabError:
        return False
    return True


def check_sweep_inputs(spec: SweepSpec, out: Path) -> None:
    """What the runs would refuse, refused now (the dry run included): the sweep directory, a model
    ticketlab cannot prune by default or without a tokenizer (every run tokenizes), a length a run
    asks beyond its positions, a corpus of no text, a task folder without its data files. A refusal of what
    the spec names begins with its file, one of the directory with the directory. Nothing is made:
    a sweep then claims its directory (`claim_sweep_dir`)."""
    try:
        _check_task_data(spec)  # before the directory is made
        _check_corpus(spec)
        _check_model(spec)  # every refusal before the directory is made or marked
        _check_calibration(spec)
    except TicketlabError as e:
        raise prefixed(e, spec.source) from None
    if not carried_store(out):
        check_output(out, kind="sweep", inputs=_inputs(spec))


def claim_sweep_dir(spec: SweepSpec, out: Path) -> None:
    """Make and mark the sweep directory `check_sweep_inputs` passed: a carried store is marked where
    it lies, any other directory claimed (checked again as it is made)."""
    if carried_store(out):
        mark_output(out, "sweep")
    else:
        claim_dir(out, kind="sweep", inputs=_inputs(spec))


def _inputs(spec: SweepSpec) -> list[str]:
    """What the sweep directory may not be, hold or lie inside: the model, the corpus's files and the
    tasks' data folders (a fine-tuning refuses an output inside what it reads, after the searches)."""
    corpus = [p for k in ("train", "dev") for p in (spec.corpus or {}).get(k) or []]
    return [spec.model, *corpus, *(t.data for t in spec.tasks.values() if t.data is not None)]


def _check_model(spec: SweepSpec) -> None:
    """The model's targets, positions and tokenizer, as every run would check them."""
    if not Path(spec.model).expanduser().exists():
        return  # a hub id: checked when it is loaded
    config = load_config(spec.model)
    searched = [m for m in spec.methods if spec.method_specs[m].search is not None]
    if any("targets" not in spec.search_settings(m) for m in searched):
        default_targets(config.model_type)
    for key, length in _lengths(spec):
        fit_max_length(config, length, length, what=key)
    try:
        load_tokenizer(spec.model)  # the vocabulary files only, no weights
    except TicketlabError as e:
        raise TicketlabError(
            f"model: {e} (every run tokenizes its text with the model's tokenizer)"
        ) from None


def _lengths(spec: SweepSpec) -> list[tuple[str, int]]:
    """(spec key, tokens) of every length a run asks of the model: past its positions each such run
    fails, after the runs before it (a calibrated method's default length included)."""
    asked = [("pretrain_eval.max_length", (spec.pretrain_eval or {}).get("max_length"))]
    for task in spec.tasks:
        asked.append((spec._finetune_key(task, "max_length"), spec.finetune_settings(task).get("max_length")))
    default = PRUNE_DEFAULTS["calibration_length"]
    for m, method in spec.method_specs.items():
        settings = spec.search_settings(m)
        asked.append((spec._search_key(m, "max_length"), settings.get("max_length")))
        if "calibration_length" in method.settings:
            key = spec._search_key(m, "calibration_length")
            if "calibration_length" not in settings:
                key = f"{key}: calibration_length (its default)"
            asked.append((key, settings.get("calibration_length", default)))
    return [(key, length) for key, length in asked if length is not None]


def _check_calibration(spec: SweepSpec) -> None:
    """Each calibrated method's sequences are full blocks of the corpus's start, as its search draws
    them (`methods.calibration.full_blocks`): too short a corpus failed those searches after the
    runs before them. The tokens read are cached where the searches read them again."""
    corpus = (spec.corpus or {}).get("train") or []
    local = Path(spec.model).expanduser().exists() and not any(hub_dataset(c) for c in corpus)
    asked: dict[tuple, str] = {}  # (sequences, tokens, cache) -> the first method's key asking them
    for m, method in spec.method_specs.items():
        if "calibration_length" in method.settings:
            given = {**PRUNE_DEFAULTS, **{k: v for k, v in spec.search_settings(m).items() if v is not None}}
            drawn = (given["calibration"], given["calibration_length"], given["cache_dir"])
            asked.setdefault(drawn, spec._search_key(m, "calibration"))
    if not (asked and local):
        return  # nothing calibrated, or read from the hub when a search loads it
    tokenizer = load_tokenizer(spec.model)
    column = (spec.corpus or {}).get("text_column") or PRUNE_DEFAULTS["text_column"]
    for (n, length, cache), key in asked.items():
        try:
            full_blocks(tokenizer, corpus, n, length, text_column=column, cache_dir=cache)
        except TicketlabError as e:
            raise prefixed(e, key) from None


def _check_corpus(spec: SweepSpec) -> None:
    """The corpus's files as a search reads them (a folder of no text, a binary file): the searches
    would fail one by one, after the runs before them."""
    for key in ("train", "dev"):
        for given in (spec.corpus or {}).get(key) or []:
            try:
                check_corpus_source(given)
            except TicketlabError as e:
                raise prefixed(e, f"corpus.{key}") from None


def _check_task_data(spec: SweepSpec) -> None:
    """Every task's data folder holds the files its fine-tunings read (the train split and the
    splits it scores): a folder holding only its task.json passed, and every run failed after."""
    for name, entry in spec.tasks.items():
        if entry.data is None:
            continue  # from the hub: checked when it is downloaded
        task = get_task(entry.task, entry.data)
        if task.kind == "squad":
            continue  # its own layout, read by its loader
        for split in dict.fromkeys(["train", *task.eval_splits]):
            try:
                split_file(task, entry.data, split)
            except TicketlabError as e:
                raise prefixed(e, f"tasks.{name}.data") from None


def keep_spec_file(spec: SweepSpec, out: Path) -> None:
    """The spec's file copied to `out/spec.yaml`: what a reader of the sweep directory sees it ran.
    Replaced, never written through (a link there is refused). Only a file that still reads as
    `spec`: a spec built or changed in Python has none, nor one whose file changed since."""
    source = Path(spec.source)
    if not source.is_file() or source.resolve() == (out / "spec.yaml").resolve():
        return
    text = read_text(source, "sweep spec")
    try:
        same = spec_json(load_spec(source, registry=spec.registry)) == spec_json(spec)
    except TicketlabError:
        same = False
    if same:
        atomic_write_text(place(out, "spec.yaml"), text)
