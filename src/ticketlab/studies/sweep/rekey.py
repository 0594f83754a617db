"""Re-keying a store whose run ids an earlier identity made (meta `ids` below `IDS_VERSION`):
version 1 hashed the inputs' absolute paths; version 4 names in a search's settings the retired
defaults it ran under (`_retired_defaults`), so a run under today's defaults never reuses it; version
5 keys a model by what loading it reads (`core.files.model_key`: not its card), so a run recorded
under its folder's whole content (`_model_keys`) gets the model's key where the folder is unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from ...core.files import content_key, model_key
from ...models.arch import ARCHS
from ..records import owner_gone
from ..run_ids import IDS_VERSION, run_id
from .methods import LEGACY_IMP


def _retired_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that name, in a search run stored before ids version 4, the defaults it was
    searched under and that are no longer the defaults (issue 34):

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
        model_type = json.loads((Path(model) / "config.json").read_text())["model_type"]
        return ARCHS[model_type].targets()
    except (OSError, TypeError, ValueError, KeyError):
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


def rekey_store(store: Any, models: Iterable[str | os.PathLike] = ()) -> int:
    """Re-key the runs of a store whose ids an earlier identity made (meta `ids` below
    `IDS_VERSION`; version 1 hashed the inputs' absolute paths): each id becomes `run_id` of its
    config (the task data's content key, which version-1 runs did not record, read from the data at
    the recorded path now; the retired defaults a search ran under, `_retired_defaults`, named in its
    settings; the model's key by what loading reads, `_model_keys`, for `models` and the folders the
    runs name), and every reference follows (a fine-tuning's mask, deps, the plan, the studies). All
    or nothing, in one transaction: not while a live process runs one of its runs (it would finish
    under its old id), and not when a run's data is gone (its dependents would point at a renamed
    search; a store carried elsewhere is re-keyed where its data is). A run whose model folder
    changed keeps its key, and so does one whose folder is gone where `models` are given (a sweep:
    its own runs' model is here, by key); without them (a report), a folder a version-4 run names
    that is not here leaves the store to be re-keyed where it is (its key cannot be told, and a
    store marked version 5 with the old key would run that run again). Returns how many runs got a
    new id."""
    if store.readonly or not ids_outdated(store):
        return 0
    # The folders are hashed before the store is locked (a model's weights take a while to read).
    keys, gone = _model_keys(store.db.execute("SELECT config FROM runs").fetchall(), models)
    if models:
        gone = set()
    with store.transaction() as db:
        rows = db.execute("SELECT * FROM runs").fetchall()
        before = store.get_meta("ids") or 1
        now = time.time()
        if any(r["status"] == "running" and not owner_gone(r, now, store.stale_after) for r in rows):
            return 0
        new: dict[str, str] = {}  # old id -> new id
        labels: dict[str, str] = {}  # old id of a search -> its new method label
        updates = []
        # Searches first: the other runs name them.
        for row in sorted(rows, key=lambda r: r["kind"] != "search"):
            try:
                moved = _rekeyed(row, new, labels, before, keys, gone)
            except _Unkeyable:
                return 0
            if moved is not None:
                new[row["id"]] = moved[0]
                updates.append((row["id"], *moved))
        if len(set(new.values())) < len(new) or set(new.values()) & ({r["id"] for r in rows} - set(new)):
            return 0  # two runs would become one: leave the store as it is rather than guess
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
    return len(new)


class _Unkeyable(Exception):
    """A run whose new id cannot be computed here (its data is gone, or a report's model folder)."""


def _rekeyed(
    row: Any,
    new: dict[str, str],
    labels: dict[str, str],
    before: int,
    models: dict[str, str],
    gone: Collection[str] = (),
) -> tuple[str, dict[str, Any], list[str]] | None:
    """(new id, config, deps) of one stored run under `identity`, or None where it keeps its id; the
    store's ids were made by version `before`, `models` maps model keys (`_model_keys`), `gone`: the
    model folders whose absence blocks the re-key (`_Unkeyable`). A legacy IMP search
    (`_retired_defaults`) is labelled `imp/legacy` (`imp-task/legacy`) in reports, and so are the
    runs of its masks (`labels`: old search id -> label)."""
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
        if key in models:
            config["inputs"]["model"] = models[key]
        elif config.get("model") in gone:
            raise _Unkeyable(row["id"])  # the model is not here: re-keyed where it is
    if isinstance(config.get("mask"), dict):
        search = config["mask"]["search"]
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
