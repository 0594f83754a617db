"""One library call per verb: a config dataclass, validated when it is built, and one function.

    prune(PruneConfig)                        `ticketlab prune`              (in `verbs.prune`)
    search(SearchConfig)                      `ticketlab search tamt|imp`    -> SearchResult (here)
    evaluate_pretraining(PretrainEvalConfig)  `ticketlab evaluate-pretrain`  (in `verbs.evaluate_pretrain`)
    finetune / finetune_seeds(FinetuneConfig) `ticketlab finetune`           (in `verbs.finetune`)

Each does everything its verb does (loading the model and its MLM head, the corpus or task, the
accelerator), so the command line is argument parsing -> config -> call, and the sweep calls the
same functions. Messages go to the `ticketlab` logger (the CLI shows them; a sweep writes them to
the run's log). The lower-level pieces (`methods.search_tamt`, `lm.evaluation.evaluate_pretraining`
on blocks) stay available for custom loops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..methods.search_config import SearchConfig

# `SearchConfig` is read when `search --help` is parsed: torch, transformers and the methods are
# imported by the function that runs, from `methods.search_inputs` (tests/test_startup.py pins it).
if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..methods.search import SearchResult

__all__ = ["SearchConfig", "search"]


def search(config: SearchConfig, *, accelerator: Accelerator | None = None) -> SearchResult:
    """Run (or resume, or return the finished) mask search `config` describes; see `SearchConfig`.

    Under `accelerate launch` every process calls it; the global batch is split between them and
    the mask is the one a single process finds."""
    from ..methods.search_inputs import run_search_config  # lazy: SearchConfig is read by `search --help`

    return run_search_config(config, accelerator)
