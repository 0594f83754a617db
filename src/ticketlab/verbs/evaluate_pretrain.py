"""`ticketlab evaluate-pretrain`: `evaluate_pretraining(PretrainEvalConfig)`, one row per subnetwork.

The config is read when `ticketlab evaluate-pretrain --help` is parsed: torch, transformers and the
evaluation are imported when the function runs, from `verbs.evaluate_subnetwork` (tests/test_startup.py
pins it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..core.checks import BlockLength, FieldError, PositiveInt, Seed, changed, check_config, option
from ..core.errors import ConfigError, TicketlabError
from ..core.files.atomic import atomic_write_json
from ..core.files.caches import CORPUS_CACHE_HELP
from ..core.files.inputs import read_json
from ..core.files.keys import CORPUS_PATHS
from ..core.outputs import check_output
from ..lm.options import DECODER_HELP, KD_INPUT_HELP, Decoder, KdInput

log = logging.getLogger(__name__)

# How a mask's row is scored: the full model's row is the same whatever they say.
MASK_OPTIONS = ("decoder", "kd_input", "mlm_head", "ignore_hash")


@dataclass
class PretrainEvalConfig:
    """MLM dev loss / accuracy and KD dev loss of the full model and of subnetworks (TAMT Fig. 5).

    Every block of `corpus` is scored, 15% of its tokens corrupted with a fixed seed per block, so
    every row sees the same masked positions. Without `model`, each mask is evaluated on the base
    model it records (e.g. IMP's rewound weights)."""

    corpus: Sequence[str | os.PathLike] = option(
        help=f"dev text: {CORPUS_PATHS} (a dataset's validation split)",
        metavar="PATH",
    )
    model: str | None = None
    masks: Sequence[str | os.PathLike] = option(
        factory=list, help="mask directories to evaluate", flag="--mask", metavar="MASK_DIR"
    )
    full: bool = option(False, "also evaluate the full model (default without --mask)")
    max_length: BlockLength | None = option(
        None, "tokens per block (default 512, or the model's positions if fewer)"
    )
    max_blocks: PositiveInt | None = option(None, "evaluate only the first N blocks")
    batch_size: PositiveInt = option(32, "blocks per forward pass")
    seed: Seed = option(0, "seed of the corruption")
    no_kd: bool = option(False, "skip the KD loss (halves the time)")
    mlm_head: Literal["original", "trained"] = option(
        "original",
        "the MLM head a mask's MLM loss is made with: the original pre-trained head for every method (TAMT, "
        "Liu et al. 2022: eval_mlm.py --load_mlm_head false, its §4.2.2, Fig. 5) or TAMT-MLM's trained head "
        "where its mask directory has one (the MLM loss of what the search trained)",
    )
    ignore_mlm_head: bool = option(
        False, "the original MLM head for every mask: what --mlm-head original (the default) gives"
    )
    decoder: Decoder = option("dense", DECODER_HELP)
    kd_input: KdInput = option("clean", KD_INPUT_HELP)
    ignore_hash: bool = option(False, "apply masks found on other weights")
    text_column: str = option("text", "column of `datasets` sources")
    cache_dir: str | os.PathLike | None = option(None, CORPUS_CACHE_HELP, metavar="DIR")
    out: str | os.PathLike | None = option(
        None,
        "also write the results as JSON to FILE, after each row: a rerun of the same command reuses the "
        "rows there that were scored with the same settings and inputs",
        metavar="FILE",
    )
    progress: bool = True  # progress bars while scoring (False: none)

    def __post_init__(self) -> None:
        check_config(self)
        if not self.corpus:
            raise ConfigError("give a corpus to evaluate on")
        if self.model is None and not self.masks:
            raise ConfigError("give model (or masks, whose base model is used)")
        if self.ignore_mlm_head and self.mlm_head == "trained":  # one asks for the head the other refuses
            raise ConfigError("mlm_head trained and ignore_mlm_head contradict each other: give one")
        if not self.masks and (unused := changed(self, MASK_OPTIONS)):
            raise FieldError(unused[0], "says how masks are scored, and none is given")
        if self.no_kd and self.kd_input != "clean":
            raise FieldError("kd_input", "is the KD loss's input, which no_kd skips")
        if self.model is None and self.full:  # masks may record different bases: which one is "full"?
            raise ConfigError(
                "full: give the full model to evaluate (--model); without it each mask is evaluated "
                "on the base model it records"
            )

    @property
    def uses_trained_head(self) -> bool:
        """Whether a TAMT-MLM mask is scored with the head it trained (`mlm_head="trained"`)."""
        return self.mlm_head == "trained" and not self.ignore_mlm_head

    @property
    def targets(self) -> list[str | None]:
        """None (the full model) and the mask directories, in the order of the rows."""
        return ([None] if self.full or not self.masks else []) + [str(m) for m in self.masks]


EVAL_KEYS = frozenset({"name", "mask", "model", "method", "sparsity", "max_length"})  # in every row


def _is_evaluation(path: Path) -> bool:
    """An earlier `evaluate_pretraining` output (its rows), which a new one may replace; any other
    file at `--out` is the user's."""
    try:
        rows = read_json(path, "evaluation")
    except TicketlabError:
        return False
    return (
        isinstance(rows, list)
        and bool(rows)
        and all(isinstance(r, dict) and set(r) >= EVAL_KEYS for r in rows)
    )


def evaluate_pretraining(config: PretrainEvalConfig) -> list[dict[str, Any]]:
    """One row per subnetwork (`config.targets`): name, mask, model, method, sparsity, mlm_loss,
    mlm_acc, mlm_ppl, kd_loss and the block / token counts. With `config.out`, each row also records
    its `identity` (settings and the content keys of what it read) and the file is rewritten after
    each row; a row already there with the same identity is reused, not scored again."""
    if config.out:
        reads = [config.model, *config.masks, *config.corpus]
        check_output(config.out, kind="evaluation", is_file=True, inputs=reads, ours=_is_evaluation)
    # lazy: `--help` reads this config; the scoring imports torch
    from .evaluate_subnetwork import check_inputs, evaluate_subnetwork, row_identity

    check_inputs(config)
    earlier = _earlier_rows(config)
    blocks_cache: dict = {}  # the corpus is tokenized once per base model
    rows: list[dict[str, Any]] = []
    for target in config.targets:
        identity = row_identity(config, target) if config.out else None
        row = earlier.get(target)
        if row is None or row.get("identity") != identity:
            row = evaluate_subnetwork(config, target, blocks_cache)
            row = row if identity is None else {**row, "identity": identity}
        else:
            log.info(f"{row['name']}: scored with the same settings and inputs in {config.out}, kept")
        rows.append(row)
        if config.out:
            atomic_write_json(config.out, rows)
    return rows


def _earlier_rows(config: PretrainEvalConfig) -> dict[str | None, dict[str, Any]]:
    """The rows an earlier run left at `config.out`, by their mask (None: the full model)."""
    if not config.out or not Path(config.out).is_file():
        return {}
    return {r["mask"]: r for r in read_json(Path(config.out), "evaluation")}
