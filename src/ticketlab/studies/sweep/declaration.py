"""A study's declaration: its claims, the definition of each endpoint they are made on (the tasks and
each task's metric) and the units each claim's methods are planned with (the masks, as search seeds,
and the fine-tuning seeds per mask: pinned, or their number where drawn per mask), as one canonical
text and its SHA-256. The store records it before the first run (`record_declaration`); a change of
any of it later (a claim, an endpoint's tasks, one more mask) is a new record with the number of runs
done then, which the report shows as an amendment, with each verdict at the units first declared
beside the final one (`report.declared`).

Both sides compute it from the spec as JSON (`spec.spec_json`, the store's `spec` meta), so the
report reads the same declaration the sweep recorded. A record whose text is a list holds claims
alone (a declaration made before units and endpoints were part of it): it is compared on its
claims, and the report says that its units were not declared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from ...core.errors import TicketlabError
from ...tasks.registry import get_task
from .declared import CLAIMS_META, LOSSES


def _canonical(value: Any) -> tuple[str, str]:
    text = json.dumps(json.loads(json.dumps(value)), sort_keys=True, separators=(",", ":"))
    return text, hashlib.sha256(text.encode()).hexdigest()


def _claims(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The claims as declared: a pilot's SDs are left out (they plan the power, they claim nothing)."""
    return [{k: v for k, v in dict(c).items() if k != "pilot_sd"} for c in spec.get("claims") or []]


def _metric(entry: dict[str, Any] | None, label: str) -> str:
    """A task's main metric by the task registry ('' where the task cannot be looked up here)."""
    task = (entry or {}).get("task", label)
    try:
        return get_task(task, (entry or {}).get("data")).main
    except TicketlabError:
        return ""


def _endpoints(spec: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Each score a claim is made on, by name: its tasks, each with its task and metric."""
    named = {e["name"]: list(e["tasks"]) for e in spec.get("endpoints") or []}
    tasks = spec.get("tasks") or {}
    out = {}
    for c in _claims(spec):
        if c["endpoint"] in LOSSES:
            continue
        labels = named.get(c["endpoint"], [c["endpoint"]])
        out[c["endpoint"]] = [
            {"label": t, "task": (tasks.get(t) or {}).get("task", t), "metric": _metric(tasks.get(t), t)}
            for t in labels
        ]
    return out


def units(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each method a claim reads (a correlation: every method but the full model): its masks' search
    seeds (None: one deterministic mask) and its fine-tuning seeds per mask (a list: pinned; a number:
    drawn per mask)."""
    methods = spec.get("methods") or {}
    claims = _claims(spec)
    named = {m for c in claims for m in (c.get("a"), c.get("b")) if c["kind"] == "compare"}
    if any(c["kind"] == "correlate" for c in claims):
        named |= {m for m in methods if m != "full"}
    out = {}
    for m in sorted(named & set(methods)):
        own = methods[m] or {}
        search = own.get("search_seeds", spec.get("search_seeds"))
        out[m] = {"masks": search, "finetune_seeds": own.get("finetune_seeds", spec.get("finetune_seeds"))}
    return out


def declaration(spec: dict[str, Any]) -> tuple[str, str]:
    """(canonical text, its SHA-256) of the declaration of `spec` (the spec's JSON): its claims, the
    endpoints they are made on and their methods' units."""
    return _canonical({"claims": _claims(spec), "endpoints": _endpoints(spec), "units": units(spec)})


def claims_only(spec: dict[str, Any]) -> tuple[str, str]:
    """(text, hash) of the claims alone: what a record holding claims alone is compared with."""
    return _canonical(_claims(spec))


def same_declaration(record: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Whether a store's record is the declaration of `spec` (a claims-only record: its claims)."""
    if isinstance(json.loads(record["text"]), list):
        return record["hash"] == claims_only(spec)[1]
    return record["hash"] == declaration(spec)[1]


def declared_units(record: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The units a record declared (None: a record of claims alone)."""
    value = json.loads(record["text"])
    return None if isinstance(value, list) else value["units"]


def study_declarations(history: list[dict[str, Any]], study: str | None) -> list[dict[str, Any]]:
    """The records of `history` that are study `study`'s (its spec's name). A store carried over from
    another study, whose runs a new one reuses, keeps that study's records under its name; a record
    without a name is the store's own study's (`record_declaration` names them when another study
    first sweeps into the store)."""
    return [h for h in history if h.get("study", study) == study]


def record_declaration(store, spec: dict[str, Any], plan: Iterable[str] | None = None) -> None:
    """Append the spec's declaration to the store's record when it differs from the last one its
    study recorded (a study's first with its first sweep, even an empty one once claims were
    declared), with the study's name and the number of runs done at that moment: of the plan's runs
    (`plan`, their ids) where given, so that a store carried over from another study counts only the
    runs this one reuses. Called before the store's spec is replaced by this one: where that spec is
    another study's, its records without a name are named after it, so that they are never read as
    this study's first declaration."""
    study = spec.get("name")
    previous = (store.get_meta("spec", {}) or {}).get("name")
    recorded = store.get_meta(CLAIMS_META, []) or []
    history = recorded
    if previous is not None and previous != study:
        history = [{**h, "study": h.get("study", previous)} for h in recorded]
    own = study_declarations(history, study)
    if not ((own and same_declaration(own[-1], spec)) or (not own and not _claims(spec))):
        text, digest = declaration(spec)
        statuses = store.statuses()
        ids = statuses if plan is None else [i for i in plan if i in statuses]
        done = sum(statuses[i] == "done" for i in ids)
        history = [*history, {"study": study, "hash": digest, "text": text, "runs_done": done}]
    if history != recorded:
        store.set_meta(CLAIMS_META, history)
