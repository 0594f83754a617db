"""What one `ticketlab demo` run does (its budgets: data, pre-training, search and fine-tuning
settings), in a module that imports neither torch nor transformers: `ticketlab demo --help` offers
the budgets' names, and parsing must not wait seconds for those imports. `demo/pipeline.py` runs them and
re-exports these names (`ticketlab.demo.pipeline.BUDGETS` is this dict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data.grammar import SyntheticConfig
from ..lm.pretrain_config import PretrainConfig

# IMP under the label of its paper variant, so the demo's table says which IMP it ran
METHODS = ("full", "omp", "random", "imp/chen", "tamt-mlm", "tamt-kd")
SPARSITIES = (0.5, 0.7, 0.9)

# The searches follow TAMT's rules (Liu et al. 2022, Tab. 1, Tab. 2, App. B.2) scaled to the toy, each
# figure from a rule, none from the results (docs/tutorials/demo.md has the arithmetic):
# - one linear schedule of 2 passes over the corpus, as TAMT's 27,920 steps are 2 epochs of
#   WikiText-103: the toy's 18,399 blocks of 32 tokens at batch 32 are 575 steps a pass, 1,150 in all;
# - every search stops where Tab. 2 took its 70% mask (17,000 of 27,920 steps): step 700 of the 1,150
#   (a sweep has one step budget per method: the middle sparsity's), IMP with the same 700 steps, as
#   the paper gives TAMT the iterations IMP took;
# - TAMT's score lr is the tool's default (`TamtConfig.default_lr`): Table 1's where it moves a mask
#   over those steps, else the lr at which one score travels the Eq. 5 gap (0.02) on its own;
#   700 steps of a 1,150-step schedule move a score 700 x (1 - 700/2,300) = 487 lr: the gap at lr 4.1e-5,
#   so TAMT-MLM keeps Table 1's 5e-5 and TAMT-KD's 2e-5 is raised to 4.1e-5;
# - IMP trains weights, at half the toy's pre-training peak lr (1e-3 of 2e-3), as Table 1's 5e-5 is
#   half BERT's pre-training peak (1e-4).
CORPUS_BLOCKS = 18_399  # the default language's training corpus in blocks of 32 tokens (as read)
SEARCH_SCHEDULE = round(2 * CORPUS_BLOCKS / 32)  # 2 passes at batch 32: 1,150 steps
SEARCH_STEPS = round(17_000 / 27_920 * SEARCH_SCHEDULE)  # Tab. 2's 70% stop: 700
IMP = {"variant": "chen"}  # Chen et al.'s IMP
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "imp/chen": {**IMP, "lr": 1e-3},
    "tamt-mlm": {"schedule_steps": SEARCH_SCHEDULE},
    "tamt-kd": {"schedule_steps": SEARCH_SCHEDULE},
}


@dataclass(frozen=True)
class Budget:
    """How much work one demo run does. `default` takes about 11 minutes on 2 free CPU cores;
    `test` seconds."""

    data: SyntheticConfig
    pretrain: PretrainConfig
    search: dict[str, Any]  # the sweep spec's `search:` block (steps, batch_size, lr, max_length)
    finetune: dict[str, Any]  # its `finetune:` block (steps, batch_size, lr, eval_every, max_length)
    pretrain_eval: dict[str, Any] | None
    methods: tuple[str, ...] = METHODS
    method_settings: dict[str, dict[str, Any]] = field(default_factory=lambda: METHOD_SETTINGS)
    sparsities: tuple[float, ...] = SPARSITIES
    search_seeds: tuple[int, ...] = (0,)
    finetune_seeds: tuple[int, ...] = (0,)
    extra: dict[str, Any] = field(default_factory=dict)  # more spec keys (search_curve, data_curve)


BUDGETS: dict[str, Budget] = {
    "default": Budget(
        data=SyntheticConfig(),
        # L2/H128 with a 256-wide FFN, no dropout. Measured (1 CPU thread): 2000 steps reach an MLM dev
        # loss of 2.35 (unigram baseline 5.0) and already know agreement across attractors, but fine-tune
        # poorly (acceptability MCC ~30); 3000 steps reach 2.25 and MCC ~70-76 after 200 steps.
        pretrain=PretrainConfig(
            size="tiny",
            intermediate=256,
            max_length=32,
            positions=64,
            steps=3000,
            batch_size=64,
            lr=2e-3,
            dropout=0.0,
        ),
        # TAMT's rules scaled to the toy (METHOD_SETTINGS above); no lr here: each method's own
        search={"steps": SEARCH_STEPS, "batch_size": 32, "max_length": 32, "dev_blocks": 128},
        # 200 steps with warm-up (no warm-up at lr 1e-3 wrecks the tiny model's features); epochs only
        # caps the data-scarcity runs (200 examples: 63 steps).
        finetune={
            "steps": 200,
            "batch_size": 32,
            "lr": 5e-4,
            "warmup_steps": 20,
            "epochs": 10,
            "eval_every": 50,
            "max_length": 64,
        },
        pretrain_eval={"max_length": 32, "max_blocks": 256},
        extra={
            "search_curve": {"steps": [100], "sparsities": [0.7], "tasks": ["acceptability"]},
            "data_curve": {
                "train_sizes": [200, 500],
                "sparsities": [0.7],
                "methods": ["full", "omp", "tamt-mlm"],
                "tasks": ["acceptability"],
            },
        },
    ),
    "test": Budget(
        data=SyntheticConfig(
            corpus_sentences=600,
            dev_sentences=60,
            train_examples=48,
            dev_examples=32,
            tasks=("sentiment", "paraphrase"),
        ),
        pretrain=PretrainConfig(
            hidden=32, layers=1, heads=2, intermediate=64, max_length=32, positions=64, steps=10, lr=3e-3
        ),
        search={"steps": 10, "batch_size": 8, "max_length": 32},
        finetune={"steps": 4, "batch_size": 8, "lr": 1e-3, "eval_every": 2, "max_length": 48},
        pretrain_eval={"max_length": 32, "max_blocks": 8},
        sparsities=(0.5, 0.9),
        method_settings={"imp/chen": IMP},
    ),
}
