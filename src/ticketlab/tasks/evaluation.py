"""A task's dev evaluation: per-example model outputs (`predict`), every metric on every eval split
(GLUE style) or SQuAD's best answer spans, and a dev set cut into a part that selects (scores
`select_<name>`) and a part that is reported (`split_dev`). `tasks.objective` builds a task's
`eval_fn` from these."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.features import Features, length_sorted_batches
from ..train.config import PAYLOAD, CollateFn, EvalFn, eval_payload
from .metrics import check_split, squad_metrics
from .predictions import encode_predictions
from .registry import TaskSpec, metric_key
from .scores import GLUE_METRICS
from .squad import SquadExamples, best_answers

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def forward(model: nn.Module, batch: dict[str, Tensor]) -> Any:
    """The model's output for the batch's model inputs (labels and bookkeeping columns left out)."""
    return model(**{k: batch[k] for k in MODEL_INPUTS if k in batch})


@torch.inference_mode()
def predict(
    model: nn.Module,
    features: Features,
    collate: CollateFn,
    batch_size: int,
    outputs: Callable[[Any], list[Tensor]],
    per_token: bool = False,
) -> list[list[np.ndarray]]:
    """Per-example model outputs in dataset order: `outputs(model_output)` picks (B, ...) tensors.

    With `per_token` they are (B, T) and each row is cut to the example's own length. Batches are
    length-sorted so that little is spent on padding.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = features.lengths()
    results: list[list[np.ndarray]] = [[] for _ in range(len(features))]
    try:
        for idx in length_sorted_batches(lengths, batch_size):
            batch = collate([features[i] for i in idx], None)
            batch = {k: v.to(device) for k, v in batch.items()}
            tensors = [t.float().cpu().numpy() for t in outputs(forward(model, batch))]
            for row, i in enumerate(idx):
                results[i] = [t[row, : lengths[i]] if per_token else t[row] for t in tensors]
    finally:
        model.train(was_training)
    return results


def glue_eval(spec: TaskSpec, dev: dict[str, Features], collate: CollateFn, batch_size: int) -> EvalFn:
    """Every metric on every dev split; each call leaves the main split's per-example predictions in
    its `train.config.PAYLOAD`: the loop keeps them for the evaluation a run reports, whichever step."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, (split, feats) in enumerate(dev.items()):
            logits = np.stack(
                [r[0] for r in predict(model, feats, collate, batch_size, lambda o: [o.logits])]
            )
            preds = logits[:, 0] if spec.kind == "regression" else logits.argmax(-1)  # (N,)
            labels = feats.columns["labels"]
            for m in spec.metrics:
                out[metric_key(m, split, spec.eval_splits)] = GLUE_METRICS[m](preds, labels)
            if i == 0:  # class ids, or a regression's outputs (N,): once per evaluation, a few KB
                setattr(evaluate, PAYLOAD, encode_predictions(preds, labels))
        return out

    return evaluate


SELECT = "select_"  # prefix of the scores on the selection part of the dev set


def split_dev(features: Features, fraction: float, seed: int) -> tuple[Features, Features]:
    """(selection part, report part) of a dev set (`split_indices`)."""
    select, report = split_indices(len(features), fraction, seed)
    return features.subset(select), features.subset(report)


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(selection part, report part) of a dev set of `n` examples, as sorted indices: round(fraction
    · n) seeded examples, and the rest. Each part needs MIN_SPLIT examples: a score on one example is
    0 or 100, and would pick a step or a level (or be reported) on chance alone. The report reads it
    too: a task's constant predictor is scored on the part its scores are read on."""
    k = check_split(n, fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[:k]), sorted(order[k:])


def selected_eval(report: EvalFn, select: EvalFn) -> EvalFn:
    def evaluate(model: nn.Module) -> dict[str, float]:
        out = {**report(model), **{SELECT + k: v for k, v in select(model).items()}}
        setattr(evaluate, PAYLOAD, eval_payload(report))  # the reported part's predictions
        return out

    return evaluate


def squad_eval(
    examples: SquadExamples,
    feats: Features,
    collate: CollateFn,
    batch_size: int,
    n_best: int,
    max_answer_length: int,
) -> EvalFn:
    """Exact match and F1 of the best answer spans; no payload: a SQuAD run keeps no predictions."""
    gold = dict(zip(examples.ids, examples.answers, strict=True))

    def evaluate(model: nn.Module) -> dict[str, float]:
        out = predict(model, feats, collate, batch_size, lambda o: [o.start_logits, o.end_logits], True)
        answers = best_answers(
            examples,
            feats,
            [r[0] for r in out],
            [r[1] for r in out],
            n_best=n_best,
            max_answer_length=max_answer_length,
        )
        return squad_metrics(answers, gold)

    return evaluate
