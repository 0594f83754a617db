"""ticketlab: find, train and transfer lottery tickets in pre-trained transformer language models.

One call per verb, each taking a config dataclass that is validated when it is built:

    ticketlab.prune(PruneConfig(...))                       ticketlab prune
    ticketlab.search(SearchConfig(method=TamtConfig(...)))  ticketlab search tamt|imp
    ticketlab.evaluate_pretraining(PretrainEvalConfig(...)) ticketlab evaluate-pretrain
    ticketlab.finetune(FinetuneConfig(...), out_dir)        ticketlab finetune (one seed;
    ticketlab.finetune_seeds(config, seeds, out_dir)          several, with mean ± std)
    ticketlab.run_sweep(ticketlab.load_spec(path), out)     ticketlab sweep
    ticketlab.write_report(sweep_dir)                       ticketlab report

`ticketlab.finetune` is the function; its module is `import ticketlab.finetune` /
`importlib.import_module("ticketlab.finetune")`, and `from ticketlab.finetune import X` works as usual.
"""

__version__ = "0.1.0"

from .api import (  # noqa: E402  (after __version__, which the modules below read)
    PretrainEvalConfig,
    PruneConfig,
    PruneResult,
    SearchConfig,
    evaluate_pretraining,
    prune,
    search,
)
from .finetune import FinetuneConfig, FinetuneResult, finetune, finetune_seeds  # noqa: E402
from .pruning import ImpConfig, SearchResult, TamtConfig  # noqa: E402

_LAZY = {  # the experiments layer pulls in plotting: imported on first use
    "run_sweep": "experiments",
    "load_spec": "experiments",
    "spec_from_dict": "experiments",
    "write_report": "experiments.report",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'ticketlab' has no attribute {name!r}")


__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "ImpConfig",
    "PretrainEvalConfig",
    "PruneConfig",
    "PruneResult",
    "SearchConfig",
    "SearchResult",
    "TamtConfig",
    "evaluate_pretraining",
    "finetune",
    "finetune_seeds",
    "load_spec",
    "prune",
    "run_sweep",
    "search",
    "spec_from_dict",
    "write_report",
]
