"""`ticketlab compare RUN_DIR...`: `compare_runs(CompareRunsConfig) -> RunTable`, the fine-tuning runs
of your own (`ticketlab finetune --out RUN_DIR`, `ticketlab.finetune_seeds`) side by side: each run's
task, the score it reports (mean ± SD over its seeds, with their number), its mask and that mask's
sparsity, its seeds and the checkpoint the score is read at. A RUN_DIR holds `results.json`; one
seed's folder (`RUN_DIR/seed-1`, `ticketlab.finetune`'s) holds `result.json` and counts as a run of
one seed. The table puts runs beside each other; it tests nothing (a sweep's report does that).

    import ticketlab
    table = ticketlab.compare_runs(ticketlab.CompareRunsConfig(["runs/sst2-omp70", "runs/sst2-tamt70"]))
    print(table.text())
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core.checks import check_config, is_int, is_number
from ..core.errors import TicketlabError, one_line
from ..core.files.inputs import read_json
from .finetune_results import RESULT_FILE, SUMMARY_FILE, FinetuneResult, summarize


@dataclass
class CompareRunsConfig:
    runs: Sequence[str | os.PathLike]  # fine-tuning run folders: RUN_DIR (results.json) or a seed's

    def __post_init__(self) -> None:
        check_config(self)  # its field's type
        if not self.runs:
            raise TicketlabError("compare needs at least one run folder")


@dataclass
class RunRow:
    run: str  # the folder as given
    task: str
    metric: str
    mean: float  # the reported score (`FinetuneConfig.checkpoint`), mean over the seeds
    std: float  # its sample standard deviation (0 for one seed)
    n: int  # seeds
    seeds: list[int]
    mask: str | None  # None: the full model
    sparsity: float  # of the mask's target weights
    checkpoint: str  # where the score is read: "held-out" (the last evaluation) or "best-dev"


@dataclass
class RunTable:
    rows: list[RunRow]

    def to_dict(self) -> dict[str, Any]:
        """What `ticketlab compare --json` prints."""
        return {"runs": [asdict(r) for r in self.rows]}

    def text(self) -> str:
        """The table as `ticketlab compare` prints it."""
        head = ["run", "task", "metric", "score (mean ± SD, n)", "mask", "sparsity", "seeds", "checkpoint"]
        body = [
            [
                r.run,
                r.task,
                r.metric,
                f"{r.mean:.2f} ± {r.std:.2f} (n={r.n})",
                r.mask or "full model",
                f"{r.sparsity:.1%}",
                " ".join(map(str, r.seeds)),
                r.checkpoint,
            ]
            for r in self.rows
        ]
        body = [[one_line(c) for c in row] for row in body]  # names read from files: one line each
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [head, *body]
        )


def is_run_dir(path: str | os.PathLike) -> bool:
    """A fine-tuning run's folder: it holds results.json (RUN_DIR) or result.json (one seed's)."""
    return (Path(path) / SUMMARY_FILE).is_file() or (Path(path) / RESULT_FILE).is_file()


def compare_runs(config: CompareRunsConfig) -> RunTable:
    """Read every run's results first (a folder that is not a run, or a corrupt results file, is one
    error naming it), then the table, in the order given."""
    return RunTable([run_row(str(path)) for path in config.runs])


def run_row(path: str) -> RunRow:
    folder = Path(path).expanduser()
    if (folder / SUMMARY_FILE).is_file():
        file = folder / SUMMARY_FILE
        summary = read_json(file, "fine-tuning results")
    elif (folder / RESULT_FILE).is_file():
        file = folder / RESULT_FILE
        result = FinetuneResult.from_dict(read_json(file, "fine-tuning result"), str(file))
        try:
            summary = summarize([result])
        except (TypeError, KeyError, ValueError, AttributeError):
            raise TicketlabError(
                f"{file}: not a fine-tuning result (fields missing or of the wrong type)"
            ) from None
    else:
        raise TicketlabError(f"{path}: not a fine-tuning run folder (no {SUMMARY_FILE} or {RESULT_FILE})")
    return _row(path, file, summary)


def _row(path: str, file: Path, summary: Any) -> RunRow:
    """The table's row of a run's summary (`finetune_results.summarize`), each field checked."""
    s = summary if isinstance(summary, dict) else {}
    reported = s.get("reported") if isinstance(s.get("reported"), dict) else {}
    numbers = [reported.get("mean"), reported.get("std"), s.get("sparsity")]
    seeds = s.get("seeds")
    ok = (
        all(isinstance(s.get(k), str) for k in ("task", "metric", "checkpoint"))
        and all(is_number(v) and math.isfinite(v) for v in numbers)
        and isinstance(seeds, list)
        and seeds
        and all(is_int(x) for x in seeds)
        and "mask" in s  # written for every run: null for the full model
        and (s["mask"] is None or isinstance(s["mask"], str))
    )
    if not ok:
        raise TicketlabError(f"{file}: not a fine-tuning result (fields missing or of the wrong type)")
    mean, std, sparsity = (float(v) for v in numbers)
    return RunRow(
        path, s["task"], s["metric"], mean, std, len(seeds), seeds, s["mask"], sparsity, s["checkpoint"]
    )
