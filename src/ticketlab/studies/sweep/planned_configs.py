"""A sweep spec's dry run: `SweepSpec` (a `PlannedConfigs`) builds the config of every run it plans
(each fine-tuning, search and pre-training evaluation) with the code the runs use, so that the spec
is refused before any work for what a run would refuse, and the refusal names the spec's key that
set the value (lr -> `methods.tamt-mlm.lr` or `search.lr`).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ...core.checks import FieldError
from ...core.errors import ConfigError
from .adapters import FinetuneJob, PretrainEvalJob, finetune_config, pretrain_eval_config
from .jobs import SearchJob
from .methods import base_method, setting_name

# Where a config built only to be checked says its run would write: nothing is written there.
_PLAN_DIR = Path("<plan>")


def _yaml_hint(value: Any) -> str:
    """Why a number may have come as text: YAML 1.1 reads 1e-4 as a string (1.0e-4 is a number)."""
    if not isinstance(value, str) or "e" not in value.lower():
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return f" (YAML reads {value} as text: write the number with a dot, e.g. 1.0e-4)"


class PlannedConfigs:
    """The planned runs' configs of a `SweepSpec` (its fields and `_fail` are the mixing class's)."""

    # ------------------------------------------------------------------ the runs' configs
    @contextlib.contextmanager
    def _naming(self, key_of: Callable[[str | None], str]) -> Iterator[None]:
        """A config's refusal as this file's: `key_of` turns the failing field (None: a check across
        fields) into the spec key that set it, e.g. lr -> `methods.tamt-mlm.lr` or `search.lr`."""
        try:
            yield
        except FieldError as e:
            raise self._fail(key_of(e.field), e.problem + _yaml_hint(e.value)) from None
        except ConfigError as e:
            raise self._fail(key_of(None), str(e)) from None

    def _finetune_key(self, task: str, field: str | None) -> str:
        key = {"max_steps": "steps", "train_samples": "train_size"}.get(field or "", field)
        own = self.tasks[task].settings
        if key in own:
            return f"tasks.{task}.{key}"
        if key in self.finetune:
            return f"finetune.{key}"
        return f"tasks.{task}" if own else "finetune"

    def _search_key(self, method: str, field: str | None) -> str:
        if field in ("dev_fraction", "text_column"):  # the search reads them from the corpus block
            return f"corpus.{field}"
        key = field and setting_name(method, field)  # its option's name: train_head is freeze_head
        own = self.methods[method]
        if key in own:
            return f"methods.{method}.{key}"
        if key in self.search:
            return f"search.{key}"
        return f"methods.{method}" if own else "search"

    def _check_finetune_configs(self, task: str) -> None:
        """Build the `FinetuneConfig` of every fine-tuning of `task` the sweep plans (each seed, the
        methods' own included, and training-set size), with the code the runs use: the dry run refuses
        what a run would."""
        settings = self.finetune_settings(task)
        sizes = [settings.pop("train_size", None)]
        if self.data_curve is not None and task in self.data_curve.tasks:
            sizes += self.data_curve.train_sizes
        t = self.tasks[task]
        for size, seed in itertools.product(sizes, self.all_finetune_seeds()):
            job = FinetuneJob(self.model, None, t.task, t.data, seed, size, settings, _PLAN_DIR)
            with self._naming(lambda field: self._finetune_key(task, field)):
                finetune_config(job)

    def _check_search_configs(self) -> None:
        """Build the config of every search the sweep plans (each sparsity, seed, source task and
        step budget) through its method's `configure`: the one its run builds."""
        for m, spec in self.method_specs.items():
            if spec.configure is None:
                continue
            settings = self.search_settings(m)
            budget = settings.pop("steps", None)
            runs = [(budget, s) for s in self.method_sparsities(m)]
            c = self.search_curve
            if c is not None and spec.curve == "budgets" and m in c.methods:
                runs += [(b, s) for b in c.steps for s in c.sparsities]  # one run per budget (IMP's curve)
            sources = [
                {"label": s, "task": self.tasks[s].task, "data": self.tasks[s].data} for s in self.sources(m)
            ]
            seeds = self.method_seeds(m)
            for (steps, sparsity), seed, source in itertools.product(runs, seeds, sources or [None]):
                job = SearchJob(
                    self.model,
                    base_method(m),  # a variant label (`omp/global`) runs its base method, as the runner does
                    sparsity,
                    seed,
                    steps,
                    [],
                    settings,
                    self.corpus if spec.uses_corpus else None,  # as planned: a per-task search reads none
                    _PLAN_DIR,
                    _PLAN_DIR,
                    source,
                )
                with self._naming(lambda field, m=m: self._search_key(m, field)):
                    spec.configure(job)

    def _check_pretrain_eval_config(self) -> None:
        """A mask's row (the full model's takes fewer of the settings): every setting checked."""
        settings = self.pretrain_eval or {}
        job = PretrainEvalJob(self.model, _PLAN_DIR / "mask", self.corpus or {}, settings, _PLAN_DIR)
        key = lambda field: "corpus.text_column" if field == "text_column" else f"pretrain_eval.{field}"  # noqa: E731
        with self._naming(lambda field: key(field) if field else "pretrain_eval"):
            pretrain_eval_config(job)
