"""Model cards: the README.md with Hugging Face Hub metadata that goes with what ticketlab writes for
others to use: an exported checkpoint and a ticket artefact (`ticketlab export`, `export_pretrained`,
`save_ticket`), a compacted model (`ticketlab compact`, `save_compacted`) and a pushed mask
(`ticketlab push`, `push_mask`, which adds the card to the upload, never to the mask's folder).

One writer for all of them: YAML front matter the Hub reads (`base_model`, `library_name`, `tags`,
`license` where the base model's own card gives one, `pipeline_tag` for a model with its head, and a
`ticketlab` block with the method and the sparsity), then the method, the sparsity the mask
achieved, its targets, how to load it, and the BibTeX of the method's paper and of ticketlab.

    from ticketlab.masks.card import front_matter, model_card
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml

from .. import __version__
from ..core.errors import TicketlabError
from ..core.files.atomic import atomic_write_text
from ..core.files.inputs import read_text
from .io import MaskConfig

CARD = "README.md"
Kind = Literal["checkpoint", "compacted", "mask", "ticket"]

# What each kind is, for the card's first line.
WHAT = {
    "checkpoint": "A pruned checkpoint of the base model (as found, or fine-tuned with its mask): the "
    "mask's pruned weights are zeros in it.",
    "compacted": "A compacted model: the base model without the attention heads and FFN units its "
    "structured ticket prunes (a smaller, faster model).",
    "mask": "A ticketlab mask (a lottery ticket): one bit per target weight of the base model, "
    "applied onto it when loaded; the model's weights are not in this folder.",
    "ticket": "A fine-tuned ticket beside its base model: the mask and the weights that differ from "
    "the base.",
}
PIPELINE = {"mlm": "fill-mask", "seq-cls": "text-classification", "qa": "question-answering"}
AUTO = {"mlm": "AutoModelForMaskedLM", "seq-cls": "AutoModelForSequenceClassification"}
AUTO |= {"qa": "AutoModelForQuestionAnswering", "base": "AutoModel"}

BIBTEX = {
    "liu2022tamt": """@inproceedings{liu2022tamt,
  title     = {Learning to Win Lottery Tickets in {BERT} Transfer via Task-agnostic Mask Training},
  author    = {Liu, Yuanxin and Meng, Fandong and Lin, Zheng and Fu, Peng and Cao, Yanan and
               Wang, Weiping and Zhou, Jie},
  booktitle = {Proceedings of the 2022 Conference of the North American Chapter of the Association
               for Computational Linguistics: Human Language Technologies (NAACL)},
  year      = {2022}
}""",
    "chen2020lottery": """@inproceedings{chen2020lottery,
  title     = {The Lottery Ticket Hypothesis for Pre-trained {BERT} Networks},
  author    = {Chen, Tianlong and Frankle, Jonathan and Chang, Shiyu and Liu, Sijia and
               Zhang, Yang and Wang, Zhangyang and Carbin, Michael},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume    = {33},
  pages     = {15834--15846},
  year      = {2020}
}""",
    "liang2021super": """@inproceedings{liang2021super,
  title     = {Super Tickets in Pre-Trained Language Models: From Model Compression to Improving
               Generalization},
  author    = {Liang, Chen and Zuo, Simiao and Chen, Minshuo and Jiang, Haoming and Liu, Xiaodong and
               He, Pengcheng and Zhao, Tuo and Chen, Weizhu},
  booktitle = {Proceedings of the 59th Annual Meeting of the Association for Computational
               Linguistics and the 11th International Joint Conference on Natural Language
               Processing (ACL-IJCNLP)},
  pages     = {6524--6538},
  year      = {2021}
}""",
    "sun2024wanda": """@inproceedings{sun2024wanda,
  title     = {A Simple and Effective Pruning Approach for Large Language Models},
  author    = {Sun, Mingjie and Liu, Zhuang and Bair, Anna and Kolter, J. Zico},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024}
}""",
    "frantar2023sparsegpt": """@inproceedings{frantar2023sparsegpt,
  title     = {{SparseGPT}: Massive Language Models Can Be Accurately Pruned in One-Shot},
  author    = {Frantar, Elias and Alistarh, Dan},
  booktitle = {Proceedings of the 40th International Conference on Machine Learning (ICML)},
  series    = {Proceedings of Machine Learning Research},
  volume    = {202},
  pages     = {10323--10337},
  year      = {2023}
}""",
    "ticketlab": f"""@software{{ticketlab,
  title   = {{ticketlab: lottery tickets in pre-trained transformer encoders}},
  author  = {{{{ticketlab developers}}}},
  version = {{{__version__}}},
  license = {{Apache-2.0}},
  year    = {{2026}}
}}""",
}


# The paper of each method, by the first part of a mask's method name (`tamt-kd`, `imp-task`, `st-random`):
# TAMT's, with OMP and random pruning as its baselines; Chen et al.'s IMP; Liang et al.'s structured
# tickets; Wanda's and SparseGPT's (every registered method has its row: `test_model_cards.py`).
PAPERS = {
    "tamt": "liu2022tamt",
    "omp": "liu2022tamt",
    "random": "liu2022tamt",
    "imp": "chen2020lottery",
    "st": "liang2021super",
    "wanda": "sun2024wanda",
    "sparsegpt": "frantar2023sparsegpt",
}


def papers(config: MaskConfig) -> list[str]:
    """The BibTeX keys of the papers whose method made the mask (`PAPERS`); none for another method."""
    if config.kind == "structured":
        return [PAPERS["st"]]
    paper = PAPERS.get(config.method.lower().split("-", 1)[0])
    return [paper] if paper is not None else []


def front_matter(text: str) -> dict[str, Any]:
    """A card's YAML front matter ({} where it has none, or none that parses as a mapping)."""
    if not text.startswith("---\n") or "\n---" not in text[3:]:
        return {}
    try:
        found = yaml.safe_load(text[4 : text.index("\n---", 3)])
    except yaml.YAMLError:
        return {}
    return found if isinstance(found, dict) else {}


def base_license(base_model: str) -> str | None:
    """The licence a local base model's own card declares (None for a hub id or a card without one)."""
    card = Path(base_model).expanduser() / CARD
    if not card.is_file():
        return None
    try:
        found = front_matter(read_text(card, "model card")).get("license")
    except TicketlabError:
        return None
    return found if isinstance(found, str) else None


def sparsity_facts(config: MaskConfig, sparsity: float | None) -> dict[str, Any]:
    """The card's `ticketlab` block: the method and the sparsity achieved (the fraction of the target
    weights that are zero), the target, and for a structured ticket the fraction of units pruned."""
    achieved = sparsity if sparsity is not None else config.achieved_sparsity
    facts = {
        "method": config.method,
        "sparsity": round(float(achieved if achieved is not None else config.sparsity), 6),
    }
    facts["target_sparsity"] = float(config.sparsity)
    if config.pattern:
        facts["pattern"] = config.pattern
    if config.units is not None:
        facts["units_pruned"] = dict(config.units.get("pruned", {}))
    if config.seed is not None:
        facts["seed"] = config.seed
    return facts


def model_card(
    config: MaskConfig,
    *,
    kind: Kind,
    head: str | None = None,
    sparsity: float | None = None,
    notes: tuple[str, ...] = (),
    licence: str | None = None,
) -> str:
    """The card's text: front matter, then what it is, its sparsity and targets, how to load it and
    what to cite. `sparsity`: the achieved one where the caller has the mask (else the config's);
    `head`: the model's head, for a checkpoint or a compacted model; `notes`: further lines;
    `licence`: the base model's, where the caller has read it (else a local base's card's)."""
    facts = sparsity_facts(config, sparsity)
    meta: dict[str, Any] = {"base_model": config.base_model}
    meta["library_name"] = "ticketlab" if kind in ("mask", "ticket") else "transformers"
    meta["tags"] = ["ticketlab", "lottery-ticket", "pruning", "sparse", config.method]
    if (licence := licence or base_license(config.base_model)) is not None:
        meta["license"] = licence
    if head in PIPELINE and kind in ("checkpoint", "compacted"):
        meta["pipeline_tag"] = PIPELINE[head]
    meta["ticketlab"] = facts
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    what = WHAT[kind]
    if kind == "checkpoint" and isinstance(weights := config.search.get("exported_weights"), str):
        what = f"A sparse checkpoint: {weights}; the mask's pruned weights are zeros in it."
    lines += [f"# {config.method} at {facts['sparsity']:.1%} sparsity on {config.base_model}", "", what, ""]
    lines += [
        f"- base model: `{config.base_model}`",
        f"- method: `{config.method}`" + (f", seed {config.seed}" if config.seed is not None else ""),
        f"- sparsity achieved: {facts['sparsity']:.2%} of the target weights are zero "
        f"(target {config.sparsity:.0%})",
        f"- targets: {_targets(config.targets)}",
        *(
            [f"- units pruned: {', '.join(f'{k} {v:.1%}' for k, v in facts['units_pruned'].items())}"]
            if facts.get("units_pruned")
            else []
        ),
        *(f"- {note}" for note in notes),
        "",
        "## How to load",
        "",
        *_how_to_load(kind, head, config),
        "",
        "## Citation",
        "",
        "```bibtex",
        "\n\n".join(BIBTEX[k] for k in [*papers(config), "ticketlab"]),
        "```",
        "",
    ]
    return "\n".join(lines)


def _targets(targets: str | list[str]) -> str:
    if isinstance(targets, str):
        return f"the weights matching `{targets}`"
    shown = ", ".join(f"`{t}`" for t in targets[:8])
    return shown + (f" and {len(targets) - 8} more" if len(targets) > 8 else "")


def _how_to_load(kind: Kind, head: str | None, config: MaskConfig) -> list[str]:
    """The card's loading example; PATH stands for this folder or its hub id."""
    auto = AUTO.get(head or "base", "AutoModel")
    loader = "load_unit_mask_onto" if config.kind == "structured" else "load_mask_onto"
    code = {
        "checkpoint": [f"from transformers import {auto}", "", f'model = {auto}.from_pretrained("PATH")'],
        "compacted": [
            "import ticketlab  # registers the compacted model type with transformers' Auto classes",
            f"from transformers import {auto}",
            "",
            f'model = {auto}.from_pretrained("PATH")',
        ],
        "mask": [
            "from transformers import AutoModelForSequenceClassification",
            f"from ticketlab.masks import {loader}",
            "",
            f'model = AutoModelForSequenceClassification.from_pretrained("{config.base_model}")',
            f'{loader}(model, "PATH")  # checks the base weights; pruned weights stay zero in training',
        ],
        "ticket": ["import ticketlab", "", 'model = ticketlab.load_ticket("PATH")'],
    }[kind]
    shell = [f"ticketlab finetune --model {config.base_model} --mask PATH --task sst2 --out runs/sst2"]
    tail = ["", "or on the command line:", "", "```bash", *shell, "```"] if kind == "mask" else []
    return ["`PATH` is this folder, or its hub id.", "", "```python", *code, "```", *tail]


def write_model_card(directory: str | os.PathLike, config: MaskConfig, **kw: Any) -> Path:
    """Write `model_card(config, **kw)` as README.md into `directory` (atomically)."""
    path = Path(directory) / CARD
    atomic_write_text(path, model_card(config, **kw))
    return path
