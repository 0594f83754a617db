"""What a pre-training leaves: its result (`PretrainResult`, read back from a finished output), and
the output folder written once the last step is done (the model, its tokenizer, the log and
`pretrain.json`). `lm.pretrain` trains.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checks import check_fields
from ..core.errors import TicketlabError
from ..core.files.atomic import atomic_write_json
from ..core.files.inputs import read_json
from ..core.outputs import atomic_dir
from ..data.corpus import LMCorpus
from ..models.load import save_tokenizer
from ..train.config import TrainResult
from ..train.loop import LOG
from ..train.run_dir import RunDir, check_same_run
from .pretrain_inputs import PRETRAIN_INPUTS

RESULT_FILE = "pretrain.json"

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    out_dir: str
    steps: int
    train_time_s: float
    dev: dict[str, float]  # final dev mlm_loss, mlm_acc, ...
    unigram_entropy: float  # nats: the loss of a model that ignores context
    params: int
    max_steps: int  # the run's planned steps
    history: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False
    tokens: int = 0  # non-padding tokens trained on
    stopped: bool = False  # this piece's time ran out first: run the same command again to go on

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_time_s if self.train_time_s > 0 else 0.0

    def summary(self) -> str:
        speed = f" ({self.tokens:,} tokens, {self.tokens_per_s:,.0f} tokens/s)" if self.tokens else ""
        if self.stopped:
            return (
                f"stopped at step {self.steps} of {self.max_steps} (time limit of this piece){speed}; "
                "run the same command again to go on"
            )
        return (
            f"{self.steps} steps in {self.train_time_s:.0f}s{speed}: dev MLM loss {self.dev['mlm_loss']:.3f} "
            f"(accuracy {self.dev['mlm_acc']:.1%}) vs {self.unigram_entropy:.3f} for unigram frequencies"
        )


def read_result(path: Path) -> PretrainResult:
    """A finished pre-training's result, or one line naming the file (a corrupt one ended in a traceback)."""
    saved = read_json(path, "pre-training result")
    raw = saved.get("result") if isinstance(saved, dict) else None
    names = {f.name for f in dataclasses.fields(PretrainResult)} - {"cached"}
    if not isinstance(raw, dict) or set(raw) - names:
        raise TicketlabError(f"{path}: not a ticketlab pre-training result (no valid 'result' object)")
    try:
        result = PretrainResult(**raw, cached=True)
    except TypeError as e:  # a required field missing
        raise TicketlabError(f"{path}: corrupt pre-training result ({e})") from None
    wrong = check_fields(result) or (
        None if {"mlm_loss", "mlm_acc"} <= set(result.dev) else "dev must hold mlm_loss and mlm_acc"
    )
    if wrong:
        raise TicketlabError(f"{path}: corrupt pre-training result: {wrong}")
    return result


def finished_result(out: Path, identity: dict[str, Any]) -> PretrainResult:
    """The result of the pre-training finished in `out`, refused when it was made by other settings
    or inputs, or records none to compare with this command's."""
    result = read_result(out / RESULT_FILE)
    saved = read_json(out / RESULT_FILE, "pre-training result").get("identity")
    if not isinstance(saved, dict):
        raise TicketlabError(
            f"{out / RESULT_FILE}: records no identity (settings and inputs), so it cannot be "
            "checked against this command's: pass another --out"
        )
    check_same_run(out, "pre-training", saved, identity, PRETRAIN_INPUTS)
    return result


def summarize(result: TrainResult, out: Path, steps: int, entropy: float, model: nn.Module) -> PretrainResult:
    last = result.final or (result.history[-1] if result.history else {})
    return PretrainResult(
        out_dir=str(out),
        steps=result.steps,
        train_time_s=round(result.train_time_s, 2),
        dev={k: v for k, v in last.items() if k != "step"},
        unigram_entropy=entropy,
        params=sum(p.numel() for p in model.parameters()),
        history=result.history,
        tokens=result.tokens,
        max_steps=steps,
        stopped=result.stopped,
    )


def write_output(
    model, tok, out: Path, settings: tuple, data: LMCorpus, summary: PretrainResult, work_dir: RunDir
) -> None:
    """The model, its tokenizer, the log and pretrain.json (config, identity, corpus, result)."""
    config, identity = settings
    with atomic_dir(out, kind="pre-trained model") as tmp:
        model.to(getattr(torch, config.save_dtype)).save_pretrained(tmp)
        save_tokenizer(tok, tmp)
        if work_dir.file(LOG).is_file():
            shutil.copy(work_dir.file(LOG), tmp / "pretrain_log.jsonl")
        record = asdict(summary)
        record.pop("cached")
        record.pop("stopped")
        atomic_write_json(
            tmp / RESULT_FILE,
            {
                "config": asdict(config),
                "identity": identity,
                "corpus": {**data.info, "summary": data.summary()},
                "result": record,
            },
        )
    # Checkpoints are no longer needed; a file the user put in the work folder stays.
    kept = work_dir.cleanup([LOG, "plan.json", "tokenizer"])
    if kept:
        log.warning(
            "%s: kept %s (not written by ticketlab); delete the folder when done", work_dir.path, kept[0]
        )
