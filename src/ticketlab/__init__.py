"""ticketlab: find, train and transfer lottery tickets in pre-trained transformer language models.

One call per verb, each taking a config dataclass that is validated when it is built:

    ticketlab.prune(PruneConfig(...))                       ticketlab prune
    ticketlab.search(SearchConfig(method=TamtConfig(...)))  ticketlab search tamt|imp
    ticketlab.evaluate_pretraining(PretrainEvalConfig(...)) ticketlab evaluate-pretrain
    ticketlab.finetune(FinetuneConfig(...), out_dir)        ticketlab finetune (one seed;
    ticketlab.finetune_seeds(config, seeds, out_dir)          several, with mean ± std)
    ticketlab.pretrain(PretrainConfig(...), corpus, out)    ticketlab pretrain
    ticketlab.compact(CompactConfig(...))                   ticketlab compact
    ticketlab.export(ExportConfig(...))                     ticketlab export
    ticketlab.info(InfoConfig(mask))                        ticketlab info
    ticketlab.compare(CompareConfig([mask, ...]))           ticketlab compare
    ticketlab.compare_runs(CompareRunsConfig([run, ...]))   ticketlab compare RUN_DIR ...
    ticketlab.run_sweep(ticketlab.load_spec(path), out)     ticketlab sweep
    ticketlab.write_report(sweep_dir)                       ticketlab report
    ticketlab.push_mask(mask_dir, "org/repo/sub")           ticketlab push
    ticketlab.save_ticket(model, out, base=...)              ticketlab export --base (a fine-tuned
    ticketlab.load_ticket(out)                                 ticket beside its base; one call back)
    ticketlab.register_arch(model_type, ticketlab.Arch(...))  (a family of your own; --targets)
    ticketlab.register_method(ticketlab.Method(...))          (a method of your own: ticketlab
                                                              prune|search NAME, sweeps, reports;
                                                              built in: ticketlab/methods/NAME/register.py)

`ticketlab.finetune` is the function; its module is `ticketlab.verbs.finetune`
(`from ticketlab.verbs.finetune import X`, `importlib.import_module("ticketlab.verbs.finetune")`).
"""

import importlib

from .core.lazy import lazy_exports

__version__ = "0.1.0"

# Every public name is imported on first use (PEP 562), so `import ticketlab` and `ticketlab --help`
# do not pay for torch, transformers and scikit-learn before a verb needs them.
_LAZY = {
    "PretrainEvalConfig": "verbs.evaluate_pretrain",
    "PruneConfig": "verbs.prune",
    "PruneResult": "verbs.prune",
    "SearchConfig": "verbs.search",
    "evaluate_pretraining": "verbs.evaluate_pretrain",
    "prune": "verbs.prune",
    "search": "verbs.search",
    "Method": "methods.registry",
    "Preset": "methods.registry",
    "register_method": "methods.registry",
    "FinetuneConfig": "verbs.finetune",
    "FinetuneResult": "verbs.finetune",
    "finetune": "verbs.finetune",
    "finetune_seeds": "verbs.finetune",
    "CompactConfig": "verbs.compact",
    "compact": "verbs.compact",
    "CompareConfig": "verbs.compare",
    "compare": "verbs.compare",
    "CompareRunsConfig": "verbs.compare_runs",
    "compare_runs": "verbs.compare_runs",
    "ExportConfig": "verbs.export",
    "export": "verbs.export",
    "InfoConfig": "verbs.info",
    "info": "verbs.info",
    "PretrainConfig": "lm.pretrain_config",
    "pretrain": "lm.pretrain",
    "write_tokens": "lm.pretrain",
    "run_demo": "demo.pipeline",
    "ImpConfig": "methods",
    "SearchResult": "methods",
    "TamtConfig": "methods",
    "run_sweep": "studies",
    "load_spec": "studies",
    "spec_from_dict": "studies",
    "write_report": "studies.report",
    "push_mask": "masks.push",
    "save_ticket": "masks.ticket",
    "load_ticket": "masks.ticket",
    "register_arch": "models.arch",
    "Arch": "models.arch",
    "HeadLayout": "models.arch",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

# Compacted models load with transformers' Auto classes (`ticketlab.masks.hf_auto`: registered when
# transformers' auto modules are imported, so this costs no import here).
importlib.import_module(".masks.hf_auto", __name__).install()


__all__ = [
    "Arch",
    "CompactConfig",
    "CompareConfig",
    "CompareRunsConfig",
    "ExportConfig",
    "FinetuneConfig",
    "InfoConfig",
    "PretrainConfig",
    "FinetuneResult",
    "HeadLayout",
    "ImpConfig",
    "Method",
    "Preset",
    "PretrainEvalConfig",
    "PruneConfig",
    "PruneResult",
    "SearchConfig",
    "SearchResult",
    "TamtConfig",
    "compact",
    "compare",
    "compare_runs",
    "evaluate_pretraining",
    "export",
    "finetune",
    "finetune_seeds",
    "info",
    "load_spec",
    "load_ticket",
    "pretrain",
    "prune",
    "push_mask",
    "register_arch",
    "register_method",
    "run_demo",
    "run_sweep",
    "save_ticket",
    "search",
    "spec_from_dict",
    "write_report",
    "write_tokens",
]
