r"""One-shot pruning of a pre-trained model into a mask directory.

  omp        one-shot magnitude pruning: keep the largest |W| (TAMT's default ranking is local)
  random     random pruning with the same per-matrix (local) or overall (global) sparsity
  wanda      Wanda (Sun et al. 2024): |W|·‖X‖ per output row, X from calibration sequences of --corpus
  sparsegpt  SparseGPT (Frantar & Alistarh 2023): layer-wise OBS on the calibration inputs' Hessian;
             its mask over θ0 is a ticket, its reconstructed weights (written beside the mask,
             `export --reconstructed`) a sparse model, not a ticket

Example:
  ticketlab prune omp --model models/minilm-mlm --sparsity 0.7 --out masks/omp70
  ticketlab prune omp --model models/minilm-mlm --pattern 2:4 --out masks/omp-2-4
  ticketlab prune wanda --model models/minilm-mlm --corpus data/corpus/train.txt --calibration 128 \
      --sparsity 0.7 --out masks/wanda70
  ticketlab prune sparsegpt --model models/minilm-mlm --corpus data/corpus/train.txt --sparsity 0.7 \
      --damp 0.05 --out masks/sparsegpt70
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..core.checks import documented, option_flags, option_name
from ..core.errors import ConfigError
from ..methods.registry import methods
from ..verbs.prune import PruneConfig, prune
from .common import (
    add_config_arguments,
    add_model_argument,
    add_pattern_argument,
    add_targets_argument,
    config_from_args,
    documented_fields,
    sparsity_arg,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    one_shot = methods("prune")
    listed = "; ".join(f"{name}: {m.help}" for name, m in one_shot.items())
    p.add_argument("method", choices=sorted(one_shot), help=f"pruning method ({listed})")
    add_model_argument(p)
    p.add_argument(
        "--sparsity", type=sparsity_arg, help="fraction of target weights set to zero (or give --pattern)"
    )
    add_pattern_argument(p)
    add_config_arguments(p, PruneConfig, ["ranking", "seed", "pooler"])
    add_targets_argument(p)
    calibration = p.add_argument_group("calibration (wanda, sparsegpt)")
    add_config_arguments(
        calibration, PruneConfig, ["corpus", "calibration", "calibration_length", "text_column", "cache_dir"]
    )
    for name, method in one_shot.items():  # a method's own settings, in a group of their own
        if method.config is not None:
            own = p.add_argument_group(f"{name} only")
            # default None: a setting given to another method is refused, not silently unused
            add_config_arguments(own, method.config, documented_fields(method.config), unset=True)
    p.add_argument("--out", required=True, metavar="DIR", help="mask directory to write")


def method_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The chosen method's own settings given on the command line, by option name (None: a method
    without settings); a ConfigError for a setting of another method's."""
    given = {}
    for name, method in methods("prune").items():
        for f in documented(method.config):
            if (value := getattr(args, option_name(f), None)) is not None:
                if name != args.method:
                    raise ConfigError(f"{option_flags(f)[0]}: a setting of {name}, not of {args.method}")
                given[option_name(f)] = value
    return given if methods("prune")[args.method].config is not None else None


def run(args: argparse.Namespace) -> int:
    fields = [f.name for f in dataclasses.fields(PruneConfig) if f.name != "settings"]  # options all
    config = config_from_args(PruneConfig, args, fields, settings=method_settings(args))
    mask = prune(config).mask
    shape = f" ({config.pattern})" if config.pattern else ""
    print(f"{args.method}: {mask.sparsity:.2%}{shape} of {mask.numel:,} target weights pruned -> {args.out}")
    return 0
