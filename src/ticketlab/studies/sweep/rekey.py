"""Re-keying a store whose run ids an earlier identity made (meta `ids` below `IDS_VERSION`):
version 1 hashed the inputs' absolute paths; version 4 names in a search's settings the retired
defaults it ran under (`_retired_defaults`), so a run under today's defaults never reuses it; version
5 keys a model by what loading it reads (`core.files.model_key`: not its card), so a run recorded
under its folder's whole content (`_model_keys`) gets the model's key where the folder is unchanged;
version 6 keys a task's data by what loading it reads (`plan.data_key`: of a GLUE root the task's
own folder, not the task folders beside it), so a run recorded under its data folder's whole content
(`_data_keys`) gets the task's key where it is proven that the task's files are the ones it read.
A report re-keys nothing: it finds a spec's runs in a store of before by the ids a re-key would
give them (`rekeyed_ids`), and a store committed with its report stays as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.errors import TicketlabError
from ...core.files import busy, content_key, entry_keys, exclusive, lock_holder, model_key, read_json
from ...models.arch import ARCHS
from ...tasks.glue import task_data
from ..records import owner_gone
from ..run_ids import IDS_VERSION, run_dirname, run_id
from .methods import LEGACY_IMP


def _retired_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that name, in a search run stored before ids version 4, the defaults it was
    searched under and that are no longer the defaults (the reference code's defaults replaced them):

    - IMP without `variant` ran `legacy` (ticketlab's first IMP, now retired: readable, never run);
    - IMP on a task pruned θ0 at step 0 and rewound the task head (now LT_glue.py's: after each
      round, only the encoder rewound);
    - a sweep's random structured ticket counted round(p·n) units (now Liang et al.'s counts);
    - one-shot pruning with global ranking ranked the word embeddings too (now Chen et al.'s: the
      layers' matrices only), which explicit targets, the family's default, reproduce.
    """
    if config.get("kind") != "search" or not isinstance(config.get("settings"), dict):
        return {}
    settings, base = config["settings"], str(config.get("method", "")).split("/", 1)[0]
    add: dict[str, Any] = {}
    if base in ("imp", "imp-task") and "variant" not in settings:
        add["variant"] = LEGACY_IMP
    elif base == "imp-task":
        add.update(
            {k: v for k, v in (("first_pruning", "start"), ("rewind_head", True)) if k not in settings}
        )
    elif base == "st-random" and "units" not in settings:
        add["units"] = "round"
    elif (
        base in ("omp", "random") and settings.get("ranking") == "global" and settings.get("targets") is None
    ):
        targets = _family_targets(config.get("model"))
        if targets is not None:
            add["targets"] = targets
    return add


def _family_targets(model: Any) -> str | None:
    """The default targets (word embeddings included) of the model family at `model`, or None where
    its config cannot be read here (the run keeps its id, and shows as pending)."""
    try:
        model_type = read_json(Path(model) / "config.json", "model config")["model_type"]
        return ARCHS[model_type].targets()
    except (TicketlabError, TypeError, KeyError):
        return None


def ids_outdated(store: Any) -> bool:
    """Whether a store's run ids were made by an earlier identity (meta `ids` below `IDS_VERSION`)."""
    return (store.get_meta("ids") or 1) < IDS_VERSION


def _model_keys(rows: list[Any], models: Iterable[str | os.PathLike]) -> tuple[dict[str, str], set[str]]:
    """Each model folder's key from before version 5 (every file in it) -> its key now, for `models`
    (the spec's: where the model is here) and the folders the runs name, where they still are; and
    the folders the runs name that are not here (their keys now cannot be told)."""
    paths = {str(m) for m in models}
    for row in rows:
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            if isinstance(model := json.loads(row["config"]).get("model"), str):
                paths.add(model)
    keys = {p: model_key(p) for p in paths}
    known = {k.legacy: str(k) for k in keys.values() if k is not None and k.legacy is not None}
    return known, {p for p, k in keys.items() if k is None}


def _task_data(config: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """(task, data folder, data key) a run recorded: a fine-tuning's, a per-task search's (its
    source task's); None for a run that reads no task's data, or from the hub."""
    source = config.get("source")
    of = source if isinstance(source, dict) else config
    task, data = of.get("task"), of.get("data")
    key = config["inputs"].get("data") if isinstance(config.get("inputs"), dict) else None
    return (task, data, key) if isinstance(task, str) and isinstance(data, str) else None


DataKeys = dict[tuple[str, str], str]  # (data key of before, task) -> its key now

# Why a run that reads task data keeps its id (`_proven`), most telling first: the note a sweep
# prints names the first that applies to each run.
SYMLINK = "their task's folder is a symbolic link, which the old key did not read through"
CROWDED = "their data folder has more than 16 entries (which of them the old key covered cannot be told)"
CHANGED = "their task's files changed since"
MISSING = "their task's files are not here"
MASKED = "the mask they start from was searched on such a run"  # a search's dependents
_WHY = (SYMLINK, CROWDED, CHANGED, MISSING, MASKED)


def _data_keys(
    rows: list[Any], data: Iterable[str | os.PathLike]
) -> tuple[DataKeys, set[str], dict[tuple[str, str], str]]:
    """Each task's data key from before version 6 (its data folder's whole content: of a GLUE root
    every task's folder) -> its key now (`plan.data_key`), by (old key, task), where it is proven
    that the task's files the run read are the ones here: the old key is the content key of a data
    folder here over some of its entries (`core.files.entry_keys`: the folder gained others since,
    as a GLUE root gains a task), the task's own among them (its folder, and its task.json where that
    lies outside it). Tried on the folder the run names, where it still is, then on `data` (the
    spec's folders: the proof is by content, wherever they lie); the folders the runs name that
    are not here; and why each (old key, task) not proven is not (`_WHY`). A run whose task's files
    changed since keeps its key, and so does one whose data folder was the task's own (its whole
    content is the key now too)."""
    read: dict[tuple[str, str], str] = {}  # (old key, task) -> the data folder the run names
    for row in rows:
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            found = _task_data(json.loads(row["config"]))
            if found is not None:
                task, where, key = found
                # version 1 recorded no key: the folder's now, as `_retired_and_data` gives it
                key = key if key is not None else content_key([where])
                if key is not None:
                    read.setdefault((key, task), where)
    here = [str(d) for d in dict.fromkeys([*read.values(), *map(str, data)]) if Path(d).expanduser().is_dir()]
    entries: dict[str, dict[str, frozenset[str]] | None] = {}  # a folder's `entry_keys`, once
    known: DataKeys = {}
    unproven: dict[tuple[str, str], str] = {}
    for (old, task), where in read.items():
        why = []
        for root in dict.fromkeys([where, *here]):
            new, reason = _proven(old, task, root, entries)
            if new is not None:
                known[(old, task)] = new
                break
            why.append(reason)
        else:
            unproven[(old, task)] = min(why or [MISSING], key=_WHY.index)
    return known, {w for w in read.values() if not Path(w).expanduser().exists()}, unproven


def _proven(
    old: str, task: str, root: str, entries: dict[str, dict[str, frozenset[str]] | None]
) -> tuple[str, None] | tuple[None, str]:
    """(the data key of `task` at the data folder `root` now, None) where `old`, the key of a data
    folder a run read, is proven to hold the same files of the task (`_data_keys`); else (None, why:
    `_WHY`). Never raises: what cannot be told proves nothing (the run keeps its id).

    The task's entries are told as the old key saw the folder (`content_key` over `root`): by their
    names in it, symbolic links not followed (`root / "a"`, a link, is the entry `a`, wherever it
    points). That key walked no linked folder (`Path.rglob` does not descend into one), so a task
    whose folder is a link was never in it: no proof, whatever the entry keys say."""
    try:
        paths = task_data(task, root)
        new = content_key(paths)
        if new is None:
            return None, MISSING
        if new == old:
            return new, None
        base = Path(os.path.abspath(Path(root).expanduser()))
        own = [Path(os.path.abspath(Path(p).expanduser())).relative_to(base).parts for p in paths]
        if any(not parts for parts in own):
            return None, CHANGED  # the folder is the task's own: its whole content is the key
        if any((base / parts[0]).is_symlink() and (base / parts[0]).is_dir() for parts in own):
            return None, SYMLINK
        if root not in entries:
            entries[root] = entry_keys(root)  # None: too many entries to tell which (no proof)
        found = entries[root]
        if found is None:
            return None, CROWDED
        covered = found.get(old)
    except (TicketlabError, OSError, ValueError):
        return None, MISSING  # not the task's data (another task's folder, a task.json gone, a file outside)
    return (new, None) if covered is not None and {parts[0] for parts in own} <= covered else (None, CHANGED)


@dataclass
class _Keys:
    """What re-keying reads of the inputs, hashed before the store is locked (a model's weights take
    a while to read): each model folder's key from before version 5 -> its key now (`_model_keys`),
    each task's data key from before version 6 -> its key now (`_data_keys`) and why the others are
    not (`unproven`), and the folders the runs name that are not here and so leave the store to be
    re-keyed where they are (`gone`: none where the spec's inputs are given)."""

    models: dict[str, str]
    data: DataKeys
    gone: set[str]
    unproven: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def read(
        cls, rows: list[Any], models: Iterable[str | os.PathLike], data: Iterable[str | os.PathLike]
    ) -> _Keys:
        models, data = list(models), list(data)
        model_keys, gone_models = _model_keys(rows, models)
        data_keys, gone_data, unproven = _data_keys(rows, data)
        return cls(model_keys, data_keys, set() if models or data else gone_models | gone_data, unproven)


Update = tuple[str, str, dict[str, Any], list[str]]  # old id, new id, config, deps


@dataclass
class _NewIds:
    """What re-keying a store does (`_new_ids`): `updates`, (old id, new id, config, deps) of each
    run that gets a new id; `kept`, the runs that keep their old ids beside the run that has the id
    they would get (earlier generations of one run: history); `unproven`, how many runs that read
    task data keep their old data key, by why (`_WHY`; `stuck`: their ids), and the runs of masks
    searched on such a run (which name it still)."""

    updates: list[Update] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    unproven: Counter[str] = field(default_factory=Counter)
    stuck: set[str] = field(default_factory=set)


def _first(row: Any) -> tuple[bool, float]:
    """Which of the runs that would get one id takes it (the least first): a done run, the most
    recent to finish; else the one last at work. The others keep their old ids as history."""
    done = row["status"] == "done"
    when = [row["finished"]] if done else [row["heartbeat"], row["started"], row["created"]]
    return not done, -max((t for t in when if t is not None), default=0.0)


def _new_ids(rows: list[Any], before: int, keys: _Keys) -> _NewIds | None:
    """The new ids of a store whose ids version `before` made (`_rekeyed`, `_NewIds`); None where
    the store cannot be re-keyed here (`_Unkeyable`). Where runs would get one id (two generations of
    one run: recorded before and after a task folder was added beside theirs, or under a spec naming
    the task's folder and one naming the GLUE root), or a run keeps that id already, one has it: the
    run there already, else `_first`'s; the others keep their old ids (history, never lost), and so
    do the runs whose new id one of them keeps, and the runs of a search's mask kept as history (a
    run of another search's mask than today's). A done run is kept over one not done: never re-run
    what is done. Searches first: the other runs name them."""
    out = _NewIds()
    by_id = {r["id"]: r for r in rows}
    new: dict[str, str] = {}  # old id -> new id
    labels: dict[str, str] = {}  # old id of a search -> its new method label
    kept: set[str] = set()
    for group in ([r for r in rows if r["kind"] == "search"], [r for r in rows if r["kind"] != "search"]):
        moved: dict[str, tuple[str, dict[str, Any], list[str]]] = {}
        for row in group:
            try:
                found = _rekeyed(row, new, labels, before, keys, out)
            except _Unkeyable:
                return None
            if found is not None:
                moved[row["id"]] = found
        while True:
            taken = (set(by_id) - set(new) - set(moved)) | set(new.values())  # ids runs keep or got
            claims: dict[str, list[str]] = {}
            for old, (to, *_) in moved.items():
                claims.setdefault(to, []).append(old)
            history = [
                old
                for to, olds in claims.items()
                for old in (olds if to in taken else sorted(olds, key=lambda i: (*_first(by_id[i]), i))[1:])
            ]
            history += [old for old, (*_, deps) in moved.items() if old not in history and set(deps) & kept]
            if not history:
                break
            for old in history:
                del moved[old]
            out.kept += history
            kept.update(history)
        for old, found in moved.items():
            new[old] = found[0]
            out.updates.append((old, *found))
    return out


def rekeyed_ids(
    store: Any, models: Iterable[str | os.PathLike] = (), data: Iterable[str | os.PathLike] = ()
) -> dict[str, str]:
    """Old id -> new id of each run `rekey_store` would give a new id (with the same `models` and
    `data`), told without writing the store: how a report of a spec finds its runs in a store of
    before (a store committed with its report stays as it is). {} where nothing would be re-keyed."""
    if not ids_outdated(store):
        return {}
    rows = store.db.execute("SELECT * FROM runs").fetchall()
    found = _new_ids(rows, store.get_meta("ids") or 1, _Keys.read(rows, models, data))
    return {old: new for old, new, *_ in found.updates} if found is not None else {}


@dataclass
class Rekeyed:
    """What `rekey_store` did. `count`: the runs that got a new id (0: the store was left as it
    was, or needed nothing); `moved`: the directories of the runs under way moved to their new id's
    names; `held`: those left where they were (a live process holds them); `kept`: the runs that
    kept their old ids beside a run that has the id they would get (earlier generations of one run,
    kept as history: `_new_ids`); `unproven`: how many runs that read task data keep their old data
    key (it is not proven that their task's files are the ones here), by why (`_WHY`): today's runs
    do not take them, and run again."""

    count: int = 0
    moved: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    kept: int = 0
    unproven: dict[str, int] = field(default_factory=dict)


def rekey_store(
    store: Any, models: Iterable[str | os.PathLike] = (), data: Iterable[str | os.PathLike] = ()
) -> Rekeyed:
    """Re-key the runs of a store whose ids an earlier identity made (meta `ids` below
    `IDS_VERSION`; version 1 hashed the inputs' absolute paths): each id becomes `run_id` of its
    config (the task data's content key, which version-1 runs did not record, read from the data at
    the recorded path now; the retired defaults a search ran under, `_retired_defaults`, named in its
    settings; the model's key by what loading reads, `_model_keys`, for `models` and the folders the
    runs name; the task data's key by what loading reads, `_data_keys`, for `data` and the folders
    the runs name), and every reference follows (a fine-tuning's mask, deps, the plan, the studies).
    All or nothing, in one transaction: not while a live process runs one of its runs (it would
    finish under its old id), and not when a run's data is gone (its dependents would point at a
    renamed search; a store carried elsewhere is re-keyed where its data is). A run whose model
    folder or task files changed keeps its key, and so does one whose folder is gone where the
    spec's `models` and `data` are given (a sweep: its own runs' inputs are here, by key); without
    them, a folder a run of before names that is not here leaves the store to be re-keyed where it
    is (its key cannot be told, and a store marked with today's version and the old key would run
    that run again). Where runs would get one id, one does and the others keep their old ids
    (`_new_ids`). Then the directories of each re-keyed run not done (`runs/<name>_<id8>/`, a
    search's `masks/<name>_<id8>/` and its `.stepNNNNNN` ones) take the new id's names, so that a
    search or fine-tuning under way resumes from its checkpoint (`_move_dirs`); a done run's stay,
    as its recorded `mask_dir` names them."""
    if store.readonly or not ids_outdated(store):
        return Rekeyed()
    # The folders are hashed before the store is locked (a model's weights take a while to read).
    keys = _Keys.read(store.db.execute("SELECT config FROM runs").fetchall(), models, data)
    with store.transaction() as db:
        rows = db.execute("SELECT * FROM runs").fetchall()
        before = store.get_meta("ids") or 1
        now = time.time()
        if any(r["status"] == "running" and not owner_gone(r, now, store.stale_after) for r in rows):
            return Rekeyed()
        found = _new_ids(rows, before, keys)
        if found is None:
            return Rekeyed()
        updates = found.updates
        new = {old: run_id_ for old, run_id_, *_ in updates}
        for old, *_ in updates:  # two steps: a new id may be another run's old one
            db.execute("UPDATE runs SET id = ? WHERE id = ?", (f"rekey:{old}", old))
        for old, run_id_, config, deps in updates:
            db.execute(
                "UPDATE runs SET id = ?, config = ?, deps = ? WHERE id = ?",
                (run_id_, json.dumps(config, sort_keys=True), json.dumps(deps), f"rekey:{old}"),
            )
        meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('plan', 'studies')"))
        if "plan" in meta:
            plan = [new.get(i, i) for i in store.parse_meta("plan", meta["plan"])]
            db.execute("UPDATE meta SET value = ? WHERE key = 'plan'", (json.dumps(plan),))
        if "studies" in meta:
            studies = {
                k: [new.get(i, i) for i in v] for k, v in store.parse_meta("studies", meta["studies"]).items()
            }
            db.execute("UPDATE meta SET value = ? WHERE key = 'studies'", (json.dumps(studies),))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('ids', ?)", (json.dumps(IDS_VERSION),))
    why = dict(sorted(found.unproven.items(), key=lambda n: _WHY.index(n[0])))
    out = Rekeyed(count=len(new), kept=len(found.kept), unproven=why)
    by_id = {r["id"]: r for r in rows}
    under_way = [(by_id[old]["name"], old, new[old]) for old in new if by_id[old]["status"] != "done"]
    _move_dirs(Path(store.path).parent, under_way, out)
    return out


def _move_dirs(sweep_dir: Path, runs: list[tuple[str, str, str]], out: Rekeyed) -> None:
    """Give the directories of re-keyed runs not done (`runs`: name, old id, new id) their new id's
    names (`Run.dirname`): `runs/<name>_<id8>/` and a search's `masks/<name>_<id8>/` with the masks it
    saved on the way (`.stepNNNNNN`), each renamed at once and only where the new name is free, so a
    search or fine-tuning that was under way resumes from its checkpoint instead of from step 0.

    A directory a live process holds is not moved. `rekey_store` refuses while a run of the store is
    live, but the store knows only who claimed a run: a launched worker (a Slurm job) of a
    coordinator that died runs on, holding `runs/<dir>/.lock`, after its row's heartbeat went stale
    (`owner_gone`). So each run's lock is taken while its directories move (a worker starting now is
    turned away: `Work.in_worker` sees it held), and one held elsewhere is left where it is
    (`out.held`), as is a search whose own `masks/<dir>/run/.lock` is held; that run's work is then
    not resumed under its new id (flock: not seen across machines on every network file system)."""
    masks = sweep_dir / "masks"
    steps = sorted(p.name for p in masks.iterdir()) if masks.is_dir() else []
    for name, old, new in runs:
        try:
            was, now = run_dirname(name, old), run_dirname(name, new)
        except TicketlabError:
            continue  # a name no sweep made a directory of
        if was == now:
            continue
        pairs = [(sweep_dir / "runs" / was, sweep_dir / "runs" / now), (masks / was, masks / now)]
        pairs += [
            (masks / s, masks / f"{now}{s[len(was) :]}")
            for s in steps
            if s.startswith(f"{was}.step") and s[len(was) + 5 :].isdigit()
        ]
        pairs = [(a, b) for a, b in pairs if a.is_dir() and not a.is_symlink() and not os.path.lexists(b)]
        if not pairs:
            continue
        work = sweep_dir / "runs" / was
        try:
            with contextlib.ExitStack() as held:
                if work.is_dir() and not work.is_symlink():
                    held.enter_context(exclusive(work, "sweep run"))
                if (masks / was / "run").is_dir() and (holder := lock_holder(masks / was / "run")):
                    raise busy(masks / was / "run", holder, "search")
                for a, b in pairs:
                    os.rename(a, b)
                    out.moved.append(str(b.relative_to(sweep_dir)))
        except TicketlabError:
            out.held.append(str(work.relative_to(sweep_dir)))


class _Unkeyable(Exception):
    """A run whose new id cannot be computed here (its data is gone, or, without the spec's inputs,
    the model or data folder it names)."""


def _rekeyed(
    row: Any, new: dict[str, str], labels: dict[str, str], before: int, keys: _Keys, out: _NewIds
) -> tuple[str, dict[str, Any], list[str]] | None:
    """(new id, config, deps) of one stored run under `identity`, or None where it keeps its id; the
    store's ids were made by version `before`, `keys` maps the model and data keys of before
    (`_Keys`) and names the folders whose absence blocks the re-key (`_Unkeyable`). A legacy IMP
    search (`_retired_defaults`) is labelled `imp/legacy` (`imp-task/legacy`) in reports, and so are
    the runs of its masks (`labels`: old search id -> label). A run whose task data's key is not
    proven, or whose mask was searched on such a run, is counted in `out.unproven` by why
    (`_Keys.unproven`)."""
    try:
        config, deps = json.loads(row["config"]), json.loads(row["deps"])
    except (TypeError, ValueError):
        return None  # a corrupt row: the store's reader reports it
    if not isinstance(config, dict) or not isinstance(config.get("inputs"), dict):
        return None  # no content keys (a study's row, a run from before them): hashed by its paths
    config = {**config, "inputs": dict(config["inputs"])}
    if before < 4:
        _retired_and_data(row, config, labels)
    # A model folder changed since the run (or gone, in a sweep: `gone` empty) keeps its old key:
    # never another folder's key, so it is never reused, and it blocks no other run's re-key.
    if before < 5 and (key := config["inputs"].get("model")) is not None:
        if key in keys.models:
            config["inputs"]["model"] = keys.models[key]
        elif config.get("model") in keys.gone:
            raise _Unkeyable(row["id"])  # the model is not here: re-keyed where it is
    # So does a task whose files changed since, or are not here (in a sweep).
    if before < 6 and (key := config["inputs"].get("data")) is not None and (read := _task_data(config)):
        if (key, read[0]) in keys.data:
            config["inputs"]["data"] = keys.data[(key, read[0])]
        elif read[1] in keys.gone:
            raise _Unkeyable(row["id"])  # the data is not here: re-keyed where it is
        else:
            out.unproven[keys.unproven.get((key, read[0]), MISSING)] += 1
            out.stuck.add(row["id"])
    if isinstance(config.get("mask"), dict):
        search = config["mask"]["search"]
        if search in out.stuck and row["id"] not in out.stuck:
            out.unproven[MASKED] += 1
        config["mask"] = {**config["mask"], "search": new.get(search, search)}
        config["method"] = labels.get(search, config.get("method"))
    deps = [new.get(d, d) for d in deps]
    run_id_ = run_id(config)
    return (run_id_, config, deps) if run_id_ != row["id"] else None


def _retired_and_data(row: Any, config: dict[str, Any], labels: dict[str, str]) -> None:
    """Version 4 (in place): the retired defaults a search ran under in its settings, and the task
    data's content key, which version-1 runs did not record, read from the data at its path now."""
    if retired := _retired_defaults(config):
        config["settings"] = {**config["settings"], **retired}
        if retired.get("variant") == LEGACY_IMP and "/" not in config["method"]:
            config["method"] = labels[row["id"]] = f"{config['method']}/{LEGACY_IMP}"
    source = config.get("source")  # a per-task search's source task (a fine-tuning's: its label)
    data = source.get("data") if isinstance(source, dict) else config.get("data", False)
    if data is not False and "data" not in config["inputs"]:
        key = content_key([data]) if data is not None else None
        if data is not None and key is None:
            raise _Unkeyable(row["id"])  # the data is not here any more
        config["inputs"]["data"] = key
