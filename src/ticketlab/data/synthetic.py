"""A synthetic language with real structure, and downstream tasks drawn from it: the demo's offline data.

`ticketlab demo` has to run on a machine with no network and no files, yet show pruning methods
that differ for real reasons. So the project generates its own small language, close enough to
English that a reader can follow it, whose rules a tiny BERT learns by masked-LM pre-training in a
few CPU minutes, and whose downstream tasks need what MLM learns:

* word classes: determiners, adjectives (with intensifiers), nouns (animate / inanimate), transitive
  and intransitive verbs, manner adverbs, prepositions, relative pronouns (`who` for animate nouns,
  `which` for inanimate ones);
* agreement in number between a determiner and its noun ("a dog", "these dogs") and between a
  subject and its finite verb, across a prepositional phrase or relative clause that may carry the
  other number ("the dogs near the cat *run*"), including auxiliaries (does/do, is/are, was/were);
* passive voice ("the film is loved by the kids"); negation (does not / is not);
* synonyms: most words come in 2 forms that the generator uses interchangeably (dog = hound,
  great = superb), so MLM learns that they mean the same thing;
* topics: every noun, verb and adjective belongs to one of 4 topics and a sentence mostly draws its
  words from one topic, so the context tells concepts apart (without it "dog" and "cat" would be
  interchangeable for MLM, and so would be their synonyms);
* sentiment: every clause has a polarity; sentiment-bearing adjectives and verbs agree with it
  ("not" flips the predicate: "the film is not awful" is positive) and clauses joined by `and`
  share it while `but` reverses it.

Tasks (GLUE-like TSV files with a header row):

* `sentiment` (like SST-2, accuracy): the polarity of the last clause.
* `acceptability` (like CoLA, Matthews correlation): a grammatical sentence, or one corrupted by
  broken agreement (verb or determiner number) or two adjacent words of different classes swapped.
* `paraphrase` (like MRPC, accuracy / F1): a pair of short sentences expressing the same proposition
  in other words (synonyms) or a changed one (a noun, verb or adjective of another topic, negation
  toggled, a noun's number changed), each rendered with its own synonym choices. (Voice changes and
  agent/patient swaps were tried and dropped: a 2-layer model stays at chance on them in 300 steps.)

A *lexical generalisation split* makes the pre-trained knowledge matter: for a held-out half of the
synonym groups, the task *training* sets use only the first form ("great", never "superb"), while
the dev sets use all forms. Only a model that learnt in pre-training that "superb" behaves like
"great" gets those dev examples right, so a ticket that keeps more of what MLM learnt scores higher.

What the demo's BERT (L2/H128, 2000-3000 MLM steps) measurably learns: word classes, agreement (the
number of a masked finite verb is right 98-100% of the time, attractors included), topics and
synonyms (synonyms' embeddings have cosine 0.57 vs 0.41 for other words of their class); sentence
polarity only weakly (a masked adjective's polarity barely follows the sentence's yet).

Everything is a pure function of `SyntheticConfig` (seeded `random.Random` streams, no global state).

The language itself (lexicon, `SyntheticConfig`, sentence structures, rendering, sampling) is
`grammar.py`; this module draws the corpus and the tasks from it and writes them as files.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Literal

from ..core.errors import ConfigError, did_you_mean
from ..core.files.atomic import atomic_write_json, atomic_write_text
from ..core.outputs import atomic_dir
from .grammar import (
    ADJECTIVES,
    ADVERBS,
    ANIMATE,
    DET_ANY,
    DET_PL,
    DET_SG,
    FUNCTION_WORDS,
    GENERATOR_VERSION,
    INANIMATE,
    INTENSIFIERS,
    IVERBS,
    LEXICON,
    N_TOPICS,
    NP,
    PREPOSITIONS,
    SPECIAL_TOKENS,
    TASKS,
    TOPICAL,
    TVERBS,
    Clause,
    Concept,
    Lexicon,
    Renderer,
    Sampler,
    SyntheticConfig,
    Tok,
    topic,
    words,
)
from .tokenizer import word_level_tokenizer

__all__ = [  # the language's names stay importable from here
    "ADJECTIVES",
    "ADVERBS",
    "ANIMATE",
    "DET_ANY",
    "DET_PL",
    "DET_SG",
    "FUNCTION_WORDS",
    "GENERATOR_VERSION",
    "INANIMATE",
    "INTENSIFIERS",
    "IVERBS",
    "LEXICON",
    "N_TOPICS",
    "NP",
    "PREPOSITIONS",
    "SPECIAL_TOKENS",
    "TASKS",
    "TASK_BUILDERS",
    "TASK_INFO",
    "TASK_PREFIX",
    "TOPICAL",
    "TVERBS",
    "Clause",
    "Concept",
    "Lexicon",
    "Renderer",
    "Sampler",
    "SyntheticConfig",
    "Tok",
    "acceptability_examples",
    "corpus_lines",
    "corpus_sentences",
    "corrupt",
    "paraphrase_examples",
    "restricted_concepts",
    "sentiment_examples",
    "task_examples",
    "task_id",
    "task_spec",
    "topic",
    "words",
    "write_dataset",
]


# --------------------------------------------------------------------------- corpus and tasks


def _stream(config: SyntheticConfig, name: str) -> random.Random:
    """An independent random stream per (seed, purpose): adding a task does not change the others."""
    digest = hashlib.sha256(f"{config.seed}:{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def restricted_concepts(config: SyntheticConfig) -> frozenset[tuple[str, int]]:
    """The held-out synonym groups: task training sets use only their first form."""
    groups = sorted((c.cls, c.index) for c in LEXICON.concepts() if len(c.forms) > 1)
    rng = _stream(config, "holdout")
    return frozenset(rng.sample(groups, round(config.holdout * len(groups))))


def corpus_sentences(config: SyntheticConfig, split: Literal["train", "dev"] = "train") -> Iterator[str]:
    rng = _stream(config, f"corpus-{split}")
    sampler, render = Sampler(rng, config), Renderer(rng)
    n = config.corpus_sentences if split == "train" else config.dev_sentences
    for _ in range(n):
        yield words(render.sentence(*sampler.sentence(rng.choice([-1, 1]))))


def corpus_lines(config: SyntheticConfig, split: Literal["train", "dev"] = "train") -> Iterator[str]:
    """The corpus as lines of exactly `block_length - 2` words, each starting at a sentence start.

    Corpus loaders cut the token stream into blocks of `block_length - 2` tokens plus [CLS] and [SEP]
    (`data.corpus`); with one token per word, every block is then one of these lines. A tiny BERT
    learns this language far faster when a block starts where a sentence starts (so positions mean
    something, as in the downstream tasks) and is short: measured on 2 CPU threads, 700 steps
    reach an MLM dev loss of 2.8 this way and stay at the unigram plateau (4.6) with 64-token blocks
    cut anywhere. A sentence that does not fit is cut, and the next line starts a new sentence.
    """
    width = config.block_length - 2
    line: list[str] = []
    for sentence in corpus_sentences(config, split):
        line += sentence.split()
        if len(line) >= width:
            yield " ".join(line[:width])
            line = []
    if line:
        yield " ".join(line)


def sentiment_examples(rng: random.Random, config: SyntheticConfig, render: Renderer, n: int) -> list[dict]:
    """Label 1 = positive. The last clause always carries a sentiment-bearing predicate."""
    sampler, out = Sampler(rng, config), []
    for _ in range(n):
        polarity = rng.choice([-1, 1])
        clauses, conjs = sampler.sentence(polarity, p_sentiment_last=1.0)
        out.append({"sentence": words(render.sentence(clauses, conjs)), "label": int(polarity > 0)})
    return out


def _flip_number(word: str) -> str | None:
    return _NUMBER_FLIP.get(word)


def _number_flips() -> dict[str, str]:
    """Finite verb and auxiliary forms and their other-number twins (runs <-> run, is <-> are)."""
    pairs = [("is", "are"), ("was", "were"), ("does", "do")]
    pairs += [(syn[0], syn[1]) for c in LEXICON.tverbs + LEXICON.iverbs for syn in c.forms]
    return {a: b for x, y in pairs for a, b in ((x, y), (y, x))}


_NUMBER_FLIP = _number_flips()


def corrupt(toks: list[Tok], rng: random.Random) -> tuple[list[Tok], str]:
    """Make a grammatical sentence ungrammatical in one of three ways; returns it and the way."""
    kinds = ["agreement", "determiner", "order"]
    rng.shuffle(kinds)
    for kind in kinds:
        out = list(toks)
        if kind == "agreement":
            spots = [i for i, (w, t) in enumerate(toks) if t == "FIN" and _flip_number(w)]
            if spots:
                i = rng.choice(spots)
                out[i] = (_flip_number(toks[i][0]), "FIN")
                return out, kind
        elif kind == "determiner":
            spots = [i for i, (_, t) in enumerate(toks) if t in ("DET_SG", "DET_PL")]
            if spots:
                i = rng.choice(spots)
                out[i] = (rng.choice(DET_PL if toks[i][1] == "DET_SG" else DET_SG), "DET")
                return out, kind
        else:
            # Adjacent words of different classes: the grammar has fixed slots, so this breaks it.
            spots = [i for i in range(len(toks) - 2) if toks[i][1] != toks[i + 1][1]]
            if spots:
                i = rng.choice(spots)
                out[i], out[i + 1] = out[i + 1], out[i]
                return out, kind
    raise AssertionError("every sentence has a finite verb")  # pragma: no cover


def acceptability_examples(
    rng: random.Random, config: SyntheticConfig, render: Renderer, n: int
) -> list[dict]:
    """Label 1 = grammatical; half the examples are corrupted."""
    sampler, out = Sampler(rng, config), []
    for _ in range(n):
        toks = render.sentence(*sampler.sentence(rng.choice([-1, 1])))
        label = int(rng.random() < 0.5)
        if not label:
            toks, _ = corrupt(toks, rng)
        out.append({"sentence": words(toks), "label": label})
    return out


def _other(items: list[Concept], c: Concept, rng: random.Random) -> Concept:
    """Another concept than `c`, from another topic (the context then tells them apart, see `topic`)."""
    return rng.choice([x for x in items if topic(x) != topic(c)] or [x for x in items if x != c])


def _change_meaning(c: Clause, rng: random.Random) -> Clause:
    """A clause that means something else: exactly one change of agent/patient, word, negation or number."""
    kind = rng.choice(["word", "word", "negation", "number"])
    if kind == "negation":
        return replace(c, negated=not c.negated)
    which = rng.choice(["subj", "obj"])
    np: NP = getattr(c, which)
    if kind == "number":
        det = rng.choice(DET_SG if np.plural else DET_PL) if np.det not in DET_ANY else np.det
        return replace(c, **{which: replace(np, plural=not np.plural, det=det)})
    slot = rng.choice(["noun", "verb", "adj"] if np.adjs else ["noun", "verb"])
    if slot == "verb":
        return replace(c, pred=_other(LEXICON.tverbs, c.pred, rng))
    if slot == "noun":
        return replace(c, **{which: replace(np, noun=_other(LEXICON.nouns[np.noun.cls], np.noun, rng))})
    i = rng.randrange(len(np.adjs))
    intens, adj = np.adjs[i]
    pool = [a for a in LEXICON.polar(LEXICON.adjs, 0) if a not in [x for _, x in np.adjs]]
    adjs = [*np.adjs[:i], (intens, _other(pool, adj, rng)), *np.adjs[i + 1 :]]
    return replace(c, **{which: replace(np, adjs=adjs)})


def paraphrase_examples(rng: random.Random, config: SyntheticConfig, render: Renderer, n: int) -> list[dict]:
    """Label 1 = same meaning. Both sentences are rendered with independent synonym choices."""
    sampler, out = Sampler(rng, config), []
    for _ in range(n):
        # One short transitive clause (at most one adjective per noun: a 2-layer model must align the
        # two sentences word by word); adjectives are neutral so toggling negation stays coherent.
        sampler.new_topic()
        subj, obj = (sampler.np(0, animate=a, depth=1, neutral=True) for a in (True, None))
        subj, obj = replace(subj, adjs=subj.adjs[:1]), replace(obj, adjs=obj.adjs[:1])
        clause = replace(sampler.clause(rng.choice([-1, 1]), subj=subj, depth=1, kind="trans"), obj=obj)
        label = int(rng.random() < 0.5)
        other = clause if label else _change_meaning(clause, rng)
        s1, s2 = (words(render.sentence([c], [])) for c in (clause, other))
        out.append({"sentence1": s1, "sentence2": s2, "label": label})
    return out


TASK_BUILDERS = {
    "sentiment": sentiment_examples,
    "acceptability": acceptability_examples,
    "paraphrase": paraphrase_examples,
}
# What each task looks like to the fine-tuning code: its `task.json` (a `ticketlab.tasks.registry.TaskSpec`).
TASK_INFO = {
    "sentiment": {"text_columns": ["sentence"], "metrics": ["accuracy"], "like": "SST-2"},
    "acceptability": {"text_columns": ["sentence"], "metrics": ["mcc"], "like": "CoLA"},
    "paraphrase": {"text_columns": ["sentence1", "sentence2"], "metrics": ["accuracy", "f1"], "like": "MRPC"},
}
TASK_PREFIX = "synth-"


def task_id(task: str) -> str:
    """The registry id (and folder name) of a synthetic task: `synth-sentiment`."""
    return TASK_PREFIX + task


def task_spec(task: str, **finetune: float) -> dict:
    """The `task.json` of a synthetic task; `finetune` sets its defaults (lr, batch_size, epochs, ...)."""
    info = TASK_INFO[task]
    cols = info["text_columns"]
    return {
        "id": task_id(task),
        "text_a": cols[0],
        "text_b": cols[1] if len(cols) > 1 else None,
        "label": "label",
        "metrics": info["metrics"],
        "description": f"synthetic {task} ({info['like']}-like, {'/'.join(info['metrics'])})",
        **finetune,
    }


def task_examples(config: SyntheticConfig, task: str, split: Literal["train", "dev"]) -> list[dict]:
    """Examples of one task split; training sets use only the first form of held-out synonym groups."""
    if task not in TASK_BUILDERS:
        raise ConfigError(
            f"unknown synthetic task {task!r}{did_you_mean(task, TASKS)}; choose from {', '.join(TASKS)}"
        )
    rng = _stream(config, f"{task}-{split}")
    restricted = restricted_concepts(config) if split == "train" else frozenset()
    n = config.train_examples if split == "train" else config.dev_examples
    return TASK_BUILDERS[task](rng, config, Renderer(rng, restricted), n)


# --------------------------------------------------------------------------- writing files


def _tsv(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["\t".join(cols)] + ["\t".join(str(r[c]) for c in cols) for r in rows]
    return "\n".join(lines) + "\n"


def write_dataset(config: SyntheticConfig, out_dir: str | Path, **finetune: float) -> Path:
    """Write the corpus, the tasks and a tokenizer under `out_dir` (atomically, skipped if present).

    Layout (the tasks folder works as `--data-dir` for `ticketlab finetune --task synth-sentiment`)::

        out_dir/corpus/train.txt, dev.txt                 lines of block_length - 2 words (`corpus_lines`)
        out_dir/tasks/synth-<task>/train.tsv, dev.tsv     header row; label column `label` (0/1)
        out_dir/tasks/synth-<task>/task.json              its TaskSpec; `finetune` sets lr, epochs, ...
        out_dir/tokenizer/                                word-level tokenizer (PreTrainedTokenizerFast)
        out_dir/synthetic.json                            settings, generator version, cache key
    """
    out = Path(out_dir)
    if (out / "synthetic.json").is_file():
        return out
    with atomic_dir(out, kind="synthetic data") as tmp:
        (tmp / "corpus").mkdir()
        for split in ("train", "dev"):
            text = "\n".join(corpus_lines(config, split)) + "\n"
            atomic_write_text(tmp / "corpus" / f"{split}.txt", text)
        for task in config.tasks:
            folder = tmp / "tasks" / task_id(task)
            folder.mkdir(parents=True)
            for split in ("train", "dev"):
                atomic_write_text(folder / f"{split}.tsv", _tsv(task_examples(config, task, split)))
            atomic_write_json(folder / "task.json", task_spec(task, **finetune))
        word_level_tokenizer(LEXICON.words(), model_max_length=128).save_pretrained(tmp / "tokenizer")
        atomic_write_json(
            tmp / "synthetic.json",
            {
                "generator_version": GENERATOR_VERSION,
                "key": config.key(),
                "config": asdict(config),
                "vocabulary": len(LEXICON.words()) + len(SPECIAL_TOKENS),
                "tasks": [task_id(t) for t in config.tasks],
            },
        )
    return out
