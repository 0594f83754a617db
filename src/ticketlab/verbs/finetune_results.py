"""What a fine-tuning run answers: `FinetuneResult` (one seed, with its reported evaluation's
per-example predictions: `tasks.predictions`) and its summary over seeds (`summarize`: mean ± std
of every metric, by `mean_std`), and where each seed's run is (`seed_dir`)."""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.checks import check_fields, required
from ..core.errors import TicketlabError

RESULT_FILE, SUMMARY_FILE = "result.json", "results.json"  # one seed's run; RUN_DIR's summary over seeds


@dataclass
class FinetuneResult:
    task: str
    metric: str  # the metric that picked `best`
    seed: int
    best: dict[str, Any]  # the eval record ({"step", every metric}) with the best `metric`
    final: dict[str, Any]  # the last eval record
    history: list[dict[str, Any]]
    steps: int
    epochs: float  # steps * batch / n_train
    n_train: int
    n_dev: dict[str, int]
    skipped: dict[str, int]
    sparsity: float  # of the mask's target weights (0 for the full model)
    mask: str | None
    train_time_s: float  # optimisation, summed over resumes
    eval_time_s: float
    wall_time_s: float  # this invocation
    checkpoint: str  # `FinetuneConfig.checkpoint`: which evaluation `reported` is
    resumed_from: int = 0
    out_dir: str | None = None
    model_dir: str | None = None
    selected_by: str | None = None  # the eval key that picked `best`, when not `metric` (select_fraction)
    # the reported evaluation's per-example predictions and labels (`tasks.predictions`), whichever
    # step it is; None: not kept (SQuAD keeps none)
    predictions: dict[str, Any] | None = None

    @property
    def best_score(self) -> float:
        return float(self.best[self.metric])

    @property
    def final_score(self) -> float:
        return float(self.final[self.metric])

    @property
    def reported(self) -> dict[str, Any]:
        """The eval record the run reports (`FinetuneConfig.checkpoint`): the best step's when a
        selection part of the dev set picked it (scored on the rest) or under "best-dev", else the
        last one's. `predictions` are this record's."""
        return self.best if self.selected_by is not None or self.checkpoint == "best-dev" else self.final

    @property
    def reported_score(self) -> float:
        """The score the run reports: `reported`'s `metric`."""
        return float(self.reported[self.metric])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, source: str = "fine-tuning result") -> FinetuneResult:
        """A result read back (`to_dict`), or one line naming `source` and what it lacks; fields
        this version does not know are left out."""
        missing = [n for n in required(cls) if n not in d] if isinstance(d, dict) else required(cls)
        if missing:
            raise TicketlabError(f"{source}: not a fine-tuning result (missing {', '.join(missing)})")
        result = cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
        wrong = check_fields(result)
        if wrong:
            raise TicketlabError(f"{source}: not a fine-tuning result ({wrong})")
        return result


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for a single run)."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}


def summarize(results: Sequence[FinetuneResult]) -> dict[str, Any]:
    """Mean ± std over seeds of every metric of the best and of the final eval records."""
    if not results:
        raise ValueError("no results to summarise")
    keys = [k for k in results[0].best if k != "step"]
    return {
        "task": results[0].task,
        "metric": results[0].metric,
        "mask": results[0].mask,
        "sparsity": results[0].sparsity,
        "seeds": [r.seed for r in results],
        "best": {k: mean_std([r.best[k] for r in results]) for k in keys},
        "final": {k: mean_std([r.final[k] for r in results]) for k in keys},
        "reported": mean_std([r.reported_score for r in results]),  # `FinetuneConfig.checkpoint`
        "checkpoint": results[0].checkpoint,
        "train_time_s": sum(r.train_time_s for r in results),
        "eval_time_s": sum(r.eval_time_s for r in results),
        # each seed's history and predictions stay in its own result.json
        "runs": [
            {k: v for k, v in r.to_dict().items() if k not in ("history", "predictions")} for r in results
        ],
    }


def seed_dir(out_dir: str | os.PathLike, seed: int) -> Path:
    """The run directory of one seed of `finetune_seeds` in RUN_DIR `out_dir`."""
    return Path(out_dir) / f"seed-{seed}"
