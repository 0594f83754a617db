"""The verbs: the Python API, one config + one function per verb (`ticketlab.prune(PruneConfig(...))`).

Where a verb goes: a module here with its config (a dataclass whose fields carry the CLI's help in
their metadata, `core.checks.option`) and its function, re-exported by `ticketlab/__init__.py`'s lazy
table, plus a module in `cli/` and a row in its table. Two kinds:

- a verb whose config `ticketlab VERB --help` reads keeps its module torch-free, and its function
  imports its work when it runs (one `# lazy:` import): prune, search, evaluate-pretrain;
- the others import what they need at the top, their config apart where `--help` reads it
  (finetune: `finetune_config.py`) or their options declared by their CLI module: export, compact,
  info, compare.

`pretrain` is a verb whose config and function live in `lm/` (`lm.pretrain_config`, `lm.pretrain`),
beside the objectives it trains; `ticketlab.pretrain` re-exports it."""
