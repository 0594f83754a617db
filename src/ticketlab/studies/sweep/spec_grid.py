"""A sweep spec's grid as its runs read it: each method's search settings, sparsities, search and
fine-tuning seeds and source tasks, each task's fine-tuning settings (a `SweepSpec`'s own keys
resolved: a method's over the sweep's)."""

from __future__ import annotations

from typing import Any

from .jobs import MethodSpec

# A method's own grid keys (besides its search settings): sparsities, source tasks and seeds.
GRID_KEYS = ("sparsities", "sources", "search_seeds", "finetune_seeds")


class SpecGrid:
    """The resolved grid of a `SweepSpec` (its fields are the spec's)."""

    tasks: dict[str, Any]
    methods: dict[str, dict[str, Any]]
    sparsities: list[float]
    search_seeds: list[int]
    finetune_seeds: list[int] | int
    search: dict[str, Any]
    finetune: dict[str, Any]
    method_specs: dict[str, MethodSpec]  # the spec's registry entries of its methods

    def search_settings(self, method: str) -> dict[str, Any]:
        """The search settings `method` reads: the spec's `search` block under its own overrides."""
        spec = self.method_specs[method]
        allowed = spec.settings | ({"steps"} if spec.uses_steps else set())
        merged = {**self.search, **self.methods[method]}
        return {k: v for k, v in sorted(merged.items()) if k in allowed and k not in GRID_KEYS}

    def method_sparsities(self, method: str) -> list[float]:
        """The sparsities `method` is searched at: its own `sparsities`, else the sweep's."""
        own = self.methods[method].get("sparsities")
        return list(own) if own is not None else list(self.sparsities)

    def method_seeds(self, method: str) -> list[int | None]:
        """The seeds `method`'s masks are searched with: its own `search_seeds`, else the sweep's;
        [None] for a deterministic method (one mask)."""
        if not self.method_specs[method].seeded:
            return [None]
        own = self.methods[method].get("search_seeds")
        return list(own) if own is not None else list(self.search_seeds)

    def method_finetune_seeds(self, method: str) -> list[int] | int:
        """The seeds each of `method`'s masks (or the full model) is fine-tuned with on every task of
        the main grid, pinned (a list) or drawn per mask (their number, `plan.mask_seeds`): its own
        `finetune_seeds`, else the sweep's `seeds.finetune`. A deterministic
        method's spread is its fine-tuning seeds' alone, so a study gives it more of them (the
        declared claims' planner counts them: `claim_plans._side_units`). The curves (`search_curve`,
        `data_curve`) keep the sweep's seeds for every method: no declared claim reads them (a claim
        is made on the main grid), their points then compare methods at equal seeds, and a method's
        extra seeds there would be multiplied by every budget or training-set size."""
        own = self.methods[method].get("finetune_seeds")
        chosen = own if own is not None else self.finetune_seeds
        return list(chosen) if isinstance(chosen, list) else chosen

    def finetune_count(self, method: str) -> int:
        """How many fine-tuning seeds each of `method`'s masks has on the main grid."""
        seeds = self.method_finetune_seeds(method)
        return len(seeds) if isinstance(seeds, list) else seeds

    def shared_seeds(self) -> bool:
        """Whether the main grid's masks share their fine-tuning seeds (a pinned list anywhere)."""
        return any(isinstance(self.method_finetune_seeds(m), list) for m in self.methods)

    def all_finetune_seeds(self) -> list[int]:
        """Every pinned fine-tuning seed the plan uses (the sweep's, then the methods' own beyond
        them), or [0] to stand for drawn ones: what the dry run builds the fine-tunings' configs with
        (a seed changes no setting the checks read)."""
        lists = [
            s
            for s in (self.finetune_seeds, *map(self.method_finetune_seeds, self.methods))
            if isinstance(s, list)
        ]
        return list(dict.fromkeys(f for s in lists for f in s)) or [0]

    def sources(self, method: str) -> list[str]:
        """The task labels a per-task method searches on (default: every task); [] for the others."""
        if not self.method_specs[method].per_task:
            return []
        return list(self.methods[method].get("sources") or self.tasks)

    def finetune_settings(self, task: str) -> dict[str, Any]:
        return dict(sorted({**self.finetune, **self.tasks[task].settings}.items()))
