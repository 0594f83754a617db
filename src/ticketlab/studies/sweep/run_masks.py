"""A sweep's masks as its runs use them: where a fine-tuning's or an evaluation's mask is
(`mask_dir_of`), which masks exactly a finished run made or used (`mask_provenance`: content hashes),
and the searches run again because their masks are gone while a run still needs one (a sweep carried
to another machine by its results.sqlite alone)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...core.errors import TicketlabError
from ..run_ids import Run
from ..store import RunRecord, Store
from .provenance import MASK_HASH, mask_hash, mask_hashes
from .work import run_dir


class SweepMasks:
    """The mask part of a `Runner` (its fields are the runner's)."""

    runs: list[Run]
    store: Store
    dir: Path
    log: Callable[[str], None]
    _lost_hashes: dict[str, dict[str, str]]

    def _lost_masks(self) -> dict[str, RunRecord]:
        """The done searches (id -> their store record) whose mask files are gone while a run still
        to do needs one of them: a sweep carried to another machine by its results.sqlite alone
        (masks are large)."""
        statuses = self.store.statuses()
        needed: dict[str, set[int | None]] = {}  # search id -> the steps of its masks still needed
        for r in self.runs:
            if statuses.get(r.id) != "done" and r.kind != "search" and r.config.get("mask") is not None:
                needed.setdefault(r.config["mask"]["search"], set()).add(r.config["mask"]["step"])
        lost = {}
        for run in self.runs:
            if run.id not in needed or statuses.get(run.id) != "done":
                continue
            rec = self.store.get(run.id)
            dirs = {
                None: rec.metrics["mask_dir"],
                **{i["step"]: i["mask_dir"] for i in rec.metrics["intermediate"]},
            }
            if not all(
                step in dirs and (self.dir / dirs[step] / "masks.safetensors").is_file()
                for step in needed[run.id]
            ):
                lost[run.id] = rec
        return lost

    def _reopen_lost_masks(self) -> None:
        """Run again each done search whose masks are gone and still needed (`_lost_masks`)."""
        by_id = {r.id: r for r in self.runs}
        for run_id, rec in self._lost_masks().items():
            run = by_id[run_id]
            run_dir(self.dir, run).forget()  # or Work returns it
            if self.store.reopen(run.id, finished=rec.finished):  # not if another sweep just re-ran it
                self.log(f"note: masks of {run.name} are gone: it runs again for the runs that need them")
                self._lost_hashes[run.id] = mask_hashes(rec.provenance)

    def _check_refound(self, run: Run, provenance: dict[str, Any]) -> None:
        """Say so when a search re-run for lost masks made other masks than the done runs used."""
        old = self._lost_hashes.pop(run.id, None)
        if old is None:
            return
        new = mask_hashes(provenance)
        # A hash of another kind (of a mask file's bytes, in some stores' provenance) says nothing.
        differ = [k for k, h in old.items() if h.startswith(MASK_HASH) and new.get(k) not in (None, h)]
        if differ:
            self.log(
                f"warning: the re-run of {run.name} found other masks than before (at {', '.join(differ)}): "
                "the runs done before used the old ones (their provenance's mask_hash tells which)"
            )

    def mask_provenance(self, run: Run, metrics: dict[str, Any]) -> dict[str, Any]:
        """Which masks exactly a finished run made (a search) or used: their content hashes."""
        prov: dict[str, Any] = {}
        if run.kind == "search":
            prov["mask_hash"] = mask_hash(self.dir / metrics["mask_dir"])
            prov["intermediate_hashes"] = {
                str(i["step"]): mask_hash(self.dir / i["mask_dir"]) for i in metrics["intermediate"]
            }
            self._check_refound(run, prov)
        elif run.config["mask"] is not None:
            prov["mask_dir"] = str(self.mask_dir_of(run).relative_to(self.dir))
            prov["mask_hash"] = mask_hash(self.mask_dir_of(run))
        return prov

    def mask_dir_of(self, run: Run) -> Path | None:
        """The mask directory a fine-tuning / evaluation run uses (None: the dense model, a search)."""
        ref = run.config.get("mask")
        if ref is None:
            return None
        search = self.store.get(ref["search"])
        if search is None or search.status != "done":
            raise TicketlabError(f"the search run {ref['search']} that makes this mask is not done")
        if ref["step"] is None:
            return self.dir / search.metrics["mask_dir"]
        step = next(i for i in search.metrics["intermediate"] if i["step"] == ref["step"])
        return self.dir / step["mask_dir"]
