"""Arguments and helpers shared by several verbs."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import TicketlabError
from ..modeling import head_of, load_config, load_model, load_tokenizer

if TYPE_CHECKING:  # kept out of `ticketlab --help`, which imports this module
    from torch import nn
    from transformers import PreTrainedTokenizerBase


def add_model_argument(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--model",
        required=required,
        metavar="PATH_OR_ID",
        help="pre-trained model: a local directory (offline) or a hub id (online)",
    )


def add_head_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--head",
        choices=["auto", "mlm", "seq-cls", "qa", "base"],
        default="auto",
        help="head to load the model with (auto: the one in its config)",
    )


def load_with_head(model: str, head: str) -> tuple[nn.Module, str, PreTrainedTokenizerBase | None]:
    """(model, the head it was loaded with, its tokenizer or None) for `--model` and `--head`
    (auto: the head in its config); a directory without a tokenizer is written without one."""
    head = head_of(load_config(model)) if head == "auto" else head
    tokenizer = None
    with contextlib.suppress(TicketlabError):
        tokenizer = load_tokenizer(model)
    return load_model(model, head=head), head, tokenizer


def add_targets_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--targets",
        default=None,
        metavar="REGEX",
        help="prunable weights as a regex over module names relative to the encoder "
        "(default: word embeddings + Q, K, V, attention output, FFN in/out of every layer)",
    )


def finite_float(value: str) -> float:
    """argparse type of every float option: `float` accepts 'nan' and 'inf', which no setting means."""
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {value!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value!r}")
    return v


def at_least(low: int) -> Callable[[str], int]:
    """argparse type of an integer option with a floor (`--jobs 0` was taken as 1, `--retries -1`
    and `--max-runs 0` as given): refused when parsed, before any work."""

    def parse(value: str) -> int:
        try:
            v = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {value!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value!r}")
        return v

    return parse


def positive_float(value: str) -> float:
    """A finite number > 0 (a negative --stale-after took over every run another machine held)."""
    v = finite_float(value)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value!r}")
    return v


def finite_floats(parser: argparse.ArgumentParser) -> None:
    """Make every `type=float` option of `parser` and its sub-commands a `finite_float`: a nan or inf
    option is refused when parsed, whatever verb declares it (help and defaults unchanged)."""
    for action in parser._actions:
        if action.type is float:
            action.type = finite_float
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                finite_floats(sub)


def add_pattern_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pattern",
        metavar="N:M",
        help="keep N of every M consecutive weights along the input dimension (e.g. 2:4, which "
        "sparse tensor cores run); implies the sparsity 1 - N/M",
    )


def sparsity_arg(value: str) -> float:
    """argparse type: a fraction in [0, 1); '70%%' is accepted too."""
    try:
        s = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= s < 1.0:
        raise argparse.ArgumentTypeError(f"sparsity must be in [0, 1) (e.g. 0.7 for 70% zeros), got {value}")
    return s
