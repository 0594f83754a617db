"""What executes one run of a sweep (`Work`): a search, a fine-tuning or a pre-training evaluation,
from its planned config to its metrics. It touches only files, no store, so it runs in the sweep's
process or, pickled, in a launched worker's; `runner.py` decides what runs and records it.

A run's directory is `runs/<run>/` (`run_dir`, a `RunDir`): its result `sweep_result.json` is
written last, so a run whose result is there is collected, not repeated. `summary` is how a run's
metrics read in the sweep's log (`rows.error_text`, how its failure does).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ...core.errors import TicketlabError
from ...core.files.inputs import read_json
from ...train.run_dir import RunDir
from ..rows import error_text
from ..run_ids import Run
from .adapters import FinetuneJob, PretrainEvalJob
from .jobs import SearchJob
from .methods import base_method
from .plan import pct
from .provenance import here
from .sweep_spec import SweepSpec

RESULT = "sweep_result.json"  # not result.json: the library functions may write theirs there


def run_dir(sweep_dir: Path, run: Run) -> RunDir:
    """A run's work directory `runs/<run>/`: its result is `sweep_result.json` ({"id", "config",
    "metrics"}); its checkpoints are those of the library function it calls, in the same folder."""
    return RunDir(sweep_dir / "runs" / run.dirname, "sweep run", result=RESULT, checkpoint=None)


def _mask_sparsity(mask_dir: Path) -> float | None:
    cfg = read_json(mask_dir / "mask_config.json", "mask config")
    return cfg.get("achieved_sparsity") if isinstance(cfg, dict) else None


class Work:
    """What executes one run: no store, only files, so it runs in the sweep's process or, pickled, in
    a worker's (a local subprocess, a Slurm job). It writes the run's artefacts into the sweep
    directory (`masks/`, `runs/<run>/`) and last `runs/<run>/sweep_result.json`, atomically, and
    returns the run's metrics; a run whose result file is there is not repeated."""

    def __init__(self, spec: SweepSpec, sweep_dir: Path, methods, finetune_fn, pretrain_eval_fn):
        self.spec, self.dir, self.methods = spec, sweep_dir, methods
        self.finetune_fn, self.pretrain_eval_fn = finetune_fn, pretrain_eval_fn

    def __call__(self, run: Run, mask_dir: Path | None) -> dict[str, Any]:
        with run_dir(self.dir, run).held() as work:  # a coordinator seeing it held waits (Runner.busy)
            done = work.finished()
            if done is not None:  # finished earlier but not recorded (killed in between)
                return done["metrics"]
            metrics = getattr(self, "_" + run.kind.replace("-", "_"))(run, work.path, mask_dir)
            made = here()  # read back if another process records it
            work.finish({"id": run.id, "config": run.config, "metrics": metrics, "where": made})
        return metrics

    def in_worker(self, run: Run, mask_dir: Path | None) -> dict[str, Any]:
        """The entry point of a launched job: the metrics and where they were made, or the error
        (a run that raises is failed, not retried: a retry would raise again)."""
        t0, started = time.perf_counter(), time.time()
        where = {**here(), "started": started}
        try:  # a lock that is no lock ticketlab made (a FIFO planted there) fails the run in one line
            holder = run_dir(self.dir, run).holder()
            if holder is not None:  # another process runs it now: the coordinator waits for it
                return {"busy": holder, **where}
            metrics = self(run, mask_dir)
        except Exception as e:
            return {"error": error_text(e), **where}
        return {"metrics": metrics, "wall_s": round(time.perf_counter() - t0, 3), **where}

    def _search(self, run: Run, work: Path, mask_dir: Path | None) -> dict[str, Any]:
        c = run.config
        job = SearchJob(
            model=c["model"],
            method=base_method(c["method"]),  # what runs; a variant label only adds settings
            sparsity=c["sparsity"],
            seed=c["seed"],
            steps=c["steps"],
            save_at=list(c["save_at"]),
            settings=self._settings(run),
            corpus=c["corpus"],
            mask_dir=self.dir / "masks" / run.dirname,
            work_dir=work,
            source=c.get("source"),
        )
        out = self.methods[job.method].search(job)
        if not (job.mask_dir / "mask_config.json").is_file():
            raise TicketlabError(f"{c['method']} finished without writing its mask to {job.mask_dir}")
        intermediate = []
        for i in sorted(out.intermediate, key=lambda i: i["step"]):
            path = Path(i["mask_dir"])
            intermediate.append(
                {
                    "step": int(i["step"]),
                    "mask_dir": str(path.resolve().relative_to(self.dir)),
                    "time_s": i.get("time_s"),
                    "achieved_sparsity": _mask_sparsity(path),
                }
            )
        missing = sorted(set(c["save_at"]) - {i["step"] for i in intermediate})
        if missing:
            raise TicketlabError(f"{c['method']} did not save the masks at steps {missing} it was asked for")
        return {
            "mask_dir": str(job.mask_dir.relative_to(self.dir)),
            "achieved_sparsity": _mask_sparsity(job.mask_dir),
            "steps": out.steps,
            "time_s": out.time_s,
            "intermediate": intermediate,
            **{k: v for k, v in out.metrics.items() if k not in ("mask_dir", "intermediate")},
        }

    def _settings(self, run: Run) -> dict[str, Any]:
        """The run's settings plus those of the spec left out of its identity (logging, checkpoints)."""
        c = run.config
        if run.kind == "search":
            full = self.spec.search_settings(c["method"])
            full.pop("steps", None)
        else:
            full = self.spec.finetune_settings(c["task_label"])
            full.pop("train_size", None)
        return {**full, **c["settings"]}

    def _finetune(self, run: Run, work: Path, mask_dir: Path | None) -> dict[str, Any]:
        c = run.config
        job = FinetuneJob(
            model=c["model"],
            mask_dir=mask_dir,
            task=c["task"],
            data=c["data"],
            seed=c["seed"],
            train_size=c["train_size"],
            settings=self._settings(run),
            out_dir=work,
        )
        return dataclasses.asdict(self.finetune_fn(job))

    def _pretrain_eval(self, run: Run, work: Path, mask_dir: Path | None) -> dict[str, Any]:
        c = run.config
        job = PretrainEvalJob(
            model=c["model"],
            mask_dir=mask_dir,
            corpus=c["corpus"],
            settings=c["settings"],
            out_dir=work,
        )
        return {k: float(v) for k, v in self.pretrain_eval_fn(job).items()}


def summary(run: Run, m: dict[str, Any]) -> str:
    if run.kind == "finetune":
        return f" ({m['metric']} {m['score']:.4g})"
    if run.kind == "search":
        s = m.get("achieved_sparsity")
        return f" (sparsity {pct(s)}%, {m['steps']} steps)" if s is not None else ""
    return " (" + ", ".join(f"{k} {v:.4g}" for k, v in m.items() if k.endswith(("_loss", "_acc"))) + ")"
