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
METHOD_SETTINGS: dict[str, dict[str, Any]] = {"imp/chen": {"variant": "chen"}}  # Chen et al.'s IMP
SPARSITIES = (0.5, 0.7, 0.9)


@dataclass(frozen=True)
class Budget:
    """How much work one demo run does. `default` takes ~10 minutes on 2 free CPU cores; `test` seconds."""

    data: SyntheticConfig
    pretrain: PretrainConfig
    search: dict[str, Any]  # the sweep spec's `search:` block (steps, batch_size, lr, max_length)
    finetune: dict[str, Any]  # its `finetune:` block (steps, batch_size, lr, eval_every, max_length)
    pretrain_eval: dict[str, Any] | None
    methods: tuple[str, ...] = METHODS
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
        # Short searches need a larger lr than TAMT Table 1's 5e-5 / 2e-5 (made for 10k+ steps).
        search={"steps": 200, "batch_size": 32, "max_length": 32, "lr": 1e-3, "dev_blocks": 128},
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
    ),
}
