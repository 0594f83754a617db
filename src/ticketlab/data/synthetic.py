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
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from ..errors import ConfigError
from ..files import atomic_dir, atomic_write_json
from ..validation import BlockLength, PositiveInt, Probability, check_config

GENERATOR_VERSION = 2  # bump when the language or the tasks change: it is part of every cache key

# --------------------------------------------------------------------------- lexicon
# One string per class. Concepts are separated by spaces, synonyms of a concept by "=", the
# inflected forms of a word by "/": nouns are singular/plural, transitive verbs 3sg/base/participle,
# intransitive verbs 3sg/base. A concept's first form is the one task training sets always use.

ANIMATE = (
    "dog/dogs=hound/hounds cat/cats=kitty/kitties child/children=kid/kids woman/women=lady/ladies "
    "man/men=fellow/fellows teacher/teachers=tutor/tutors doctor/doctors=physician/physicians "
    "student/students=pupil/pupils friend/friends=pal/pals horse/horses=steed/steeds "
    "artist/artists=painter/painters farmer/farmers king/kings queen/queens bird/birds neighbor/neighbors"
)
INANIMATE = (
    "film/films=movie/movies meal/meals=dinner/dinners house/houses=home/homes car/cars=auto/autos "
    "story/stories=tale/tales picture/pictures=photo/photos gift/gifts=present/presents "
    "boat/boats=ship/ships song/songs=tune/tunes game/games=match/matches "
    "book/books garden/gardens letter/letters cake/cakes"
)
TVERBS = {
    +1: "loves/love/loved=adores/adore/adored likes/like/liked=enjoys/enjoy/enjoyed "
    "admires/admire/admired=respects/respect/respected praises/praise/praised=applauds/applaud/applauded",
    -1: "hates/hate/hated=detests/detest/detested dislikes/dislike/disliked=resents/resent/resented "
    "fears/fear/feared=dreads/dread/dreaded blames/blame/blamed=scolds/scold/scolded",
    0: "sees/see/seen=notices/notice/noticed finds/find/found=discovers/discover/discovered "
    "watches/watch/watched=observes/observe/observed carries/carry/carried=holds/hold/held "
    "buys/buy/bought=purchases/purchase/purchased visits/visit/visited",
}
IVERBS = {
    +1: "smiles/smile=grins/grin laughs/laugh=giggles/giggle",
    -1: "cries/cry=weeps/weep complains/complain=grumbles/grumble",
    0: "runs/run=sprints/sprint walks/walk=strolls/stroll sleeps/sleep=naps/nap sings/sing waits/wait "
    "arrives/arrive",
}
ADJECTIVES = {
    +1: "good=fine great=superb nice=pleasant happy=cheerful wonderful=marvelous excellent=brilliant "
    "kind=gentle lovely=charming",
    -1: "bad=poor awful=dreadful terrible=horrible sad=gloomy nasty=rude boring=dull ugly=hideous cruel=mean",
    0: "big=large small=little old=aged new=modern quiet=silent fast=quick young red blue green tall heavy",
}
INTENSIFIERS = "very=really extremely=incredibly quite"
ADVERBS = "quickly=rapidly often=frequently rarely=seldom slowly today again"
PREPOSITIONS = "near=beside with behind under from"
DET_SG = "a every each this that one".split()
DET_PL = "these those many some two three several".split()
DET_ANY = "the my your his her our their".split()
FUNCTION_WORDS = "who which does do is are was were not by and but .".split()
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

TASKS = ("sentiment", "acceptability", "paraphrase")
N_TOPICS = 4
TOPICAL = ("animate", "inanimate", "tverb", "iverb", "adj")


def topic(c: Concept) -> int | None:
    """The topic of a noun, verb or adjective (a fixed property, like its polarity)."""
    return c.index % N_TOPICS if c.cls in TOPICAL else None


@dataclass(frozen=True)
class Concept:
    """A meaning; `forms` holds one tuple of inflected forms per synonym."""

    cls: str  # animate, inanimate, tverb, iverb, adj, intens, adv, prep
    index: int
    polarity: int  # +1 positive, -1 negative, 0 neutral
    forms: tuple[tuple[str, ...], ...]


def _parse(cls: str, spec: str, polarity: int = 0, start: int = 0) -> list[Concept]:
    return [
        Concept(cls, start + i, polarity, tuple(tuple(w.split("/")) for w in group.split("=")))
        for i, group in enumerate(spec.split())
    ]


def _parse_polar(cls: str, specs: dict[int, str]) -> list[Concept]:
    out: list[Concept] = []
    for polarity, spec in specs.items():
        out += _parse(cls, spec, polarity, start=len(out))
    return out


class Lexicon:
    """Every concept of the language, by class and polarity."""

    def __init__(self) -> None:
        self.nouns = {"animate": _parse("animate", ANIMATE), "inanimate": _parse("inanimate", INANIMATE)}
        self.tverbs = _parse_polar("tverb", TVERBS)
        self.iverbs = _parse_polar("iverb", IVERBS)
        self.adjs = _parse_polar("adj", ADJECTIVES)
        self.intens = _parse("intens", INTENSIFIERS)
        self.advs = _parse("adv", ADVERBS)
        self.preps = _parse("prep", PREPOSITIONS)

    def concepts(self) -> list[Concept]:
        groups = [*self.nouns.values(), self.tverbs, self.iverbs, self.adjs, self.intens, self.advs]
        return [c for g in [*groups, self.preps] for c in g]

    def words(self) -> list[str]:
        """The vocabulary (without special tokens), in a fixed order."""
        out = [w for c in self.concepts() for syn in c.forms for w in syn]
        out += DET_SG + DET_PL + DET_ANY + FUNCTION_WORDS
        return list(dict.fromkeys(out))  # stable de-duplication ("found" is not repeated, etc.)

    def polar(self, items: list[Concept], polarity: int) -> list[Concept]:
        return [c for c in items if c.polarity == polarity]


LEXICON = Lexicon()


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines the generated corpus and tasks (and so the cache key)."""

    seed: int = 0
    corpus_sentences: PositiveInt = 60_000  # MLM pre-training corpus
    block_length: BlockLength = 32  # corpus lines hold block_length - 2 words (see `corpus_lines`)
    dev_sentences: PositiveInt = 2_000  # held-out corpus text for MLM dev loss
    train_examples: PositiveInt = 1_000  # per task
    dev_examples: PositiveInt = 500  # per task
    holdout: Probability = 0.5  # fraction of synonym groups whose other forms stay out of task training sets
    p_two_clauses: Probability = 0.3
    p_negation: Probability = 0.25
    p_topic: Probability = 0.8  # chance that a content word comes from the sentence's topic
    tasks: tuple[str, ...] = TASKS

    def __post_init__(self) -> None:
        check_config(self)
        unknown = set(self.tasks) - set(TASKS)
        if unknown or not self.tasks:
            raise ConfigError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        object.__setattr__(self, "tasks", tuple(self.tasks))

    def key(self) -> str:
        """A short hash of the settings and the generator version: the cache directory's name."""
        blob = json.dumps({"version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- structures

Tok = tuple[str, str]  # (word, tag); tags mark what corruptions may touch: DET_SG/DET_PL/FIN/...


@dataclass
class NP:
    noun: Concept
    plural: bool
    det: str
    adjs: list[tuple[Concept | None, Concept]] = field(default_factory=list)  # (intensifier, adjective)
    pp: tuple[Concept, NP] | None = None  # prepositional phrase: (preposition, its object)
    # A relative clause; its subject is this NP (a cycle, hence no compare/repr; rendered once).
    rc: Clause | None = field(default=None, compare=False, repr=False)


@dataclass
class Clause:
    """One clause. `pred` is a verb for trans/intr and an adjective for cop."""

    kind: Literal["trans", "intr", "cop"]
    subj: NP  # the agent (trans/intr) or the thing described (cop)
    pred: Concept
    obj: NP | None = None  # the patient (trans)
    negated: bool = False
    passive: bool = False
    past: bool = False
    intens: Concept | None = None  # cop: "is very happy"
    adv: Concept | None = None  # intr: "runs quickly"


# --------------------------------------------------------------------------- rendering


class Renderer:
    """Turns structures into tagged words, picking a synonym at random for every content word.

    `restricted` concepts (the held-out synonym groups in task training sets) always use their
    first form.
    """

    def __init__(self, rng: random.Random, restricted: frozenset[tuple[str, int]] = frozenset()):
        self.rng = rng
        self.restricted = restricted

    def form(self, c: Concept) -> tuple[str, ...]:
        if (c.cls, c.index) in self.restricted:
            return c.forms[0]
        return self.rng.choice(c.forms)

    def np(self, np: NP) -> list[Tok]:
        det_tag = "DET_PL" if np.det in DET_PL else "DET_SG" if np.det in DET_SG else "DET"
        toks: list[Tok] = [(np.det, det_tag)]
        for intens, adj in np.adjs:
            if intens is not None:
                toks.append((self.form(intens)[0], "INTENS"))
            toks.append((self.form(adj)[0], "ADJ"))
        toks.append((self.form(np.noun)[int(np.plural)], "N_PL" if np.plural else "N_SG"))
        if np.pp is not None:
            toks += [(self.form(np.pp[0])[0], "PREP"), *self.np(np.pp[1])]
        if np.rc is not None:
            toks += [("who" if np.noun.cls == "animate" else "which", "REL"), *self.vp(np.rc)]
        return toks

    def vp(self, c: Clause) -> list[Tok]:
        """The clause after its subject; in the passive, after the patient."""
        pl = (c.obj.plural if c.passive else c.subj.plural) if c.obj is not None else c.subj.plural
        be = ("were" if pl else "was") if c.past else ("are" if pl else "is")
        neg: list[Tok] = [("not", "NOT")] if c.negated else []
        if c.kind == "cop":
            intens = [(self.form(c.intens)[0], "INTENS")] if c.intens is not None else []
            return [(be, "FIN"), *neg, *intens, (self.form(c.pred)[0], "ADJ")]
        if c.kind == "trans" and c.passive:
            return [(be, "FIN"), *neg, (self.form(c.pred)[2], "PART"), ("by", "BY"), *self.np(c.subj)]
        forms = self.form(c.pred)
        if c.negated:
            verb = [("do" if pl else "does", "FIN"), *neg, (forms[1], "BASE")]
        else:
            verb = [(forms[1] if pl else forms[0], "FIN")]
        rest = self.np(c.obj) if c.kind == "trans" else []
        adv = [(self.form(c.adv)[0], "ADV")] if c.adv is not None else []
        return [*verb, *rest, *adv]

    def clause(self, c: Clause) -> list[Tok]:
        head = c.obj if c.kind == "trans" and c.passive else c.subj
        return [*self.np(head), *self.vp(c)]

    def sentence(self, clauses: list[Clause], conjs: list[str]) -> list[Tok]:
        toks = self.clause(clauses[0])
        for conj, c in zip(conjs, clauses[1:], strict=True):
            toks += [(conj, "CONJ"), *self.clause(c)]
        return [*toks, (".", "PUNCT")]


def words(toks: list[Tok]) -> str:
    return " ".join(w for w, _ in toks)


# --------------------------------------------------------------------------- sampling structures


class Sampler:
    """Draws random structures. `polarity` fixes which sentiment words a clause may use."""

    def __init__(self, rng: random.Random, config: SyntheticConfig):
        self.rng = rng
        self.config = config
        self.topic = 0  # set per sentence

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def new_topic(self) -> None:
        self.topic = self.rng.randrange(N_TOPICS)

    def pick(self, items: list[Concept]) -> Concept:
        """A concept, from the sentence's topic with probability `p_topic` (when the class has one)."""
        if self.chance(self.config.p_topic):
            items = [c for c in items if topic(c) == self.topic] or items
        return self.rng.choice(items)

    def adjective(self, polarity: int, p_sentiment: float) -> Concept:
        sentiment = polarity if polarity and self.chance(p_sentiment) else 0
        return self.pick(LEXICON.polar(LEXICON.adjs, sentiment))

    def np(self, polarity: int, animate: bool | None = None, depth: int = 0, neutral: bool = False) -> NP:
        kind = ("animate" if animate else "inanimate") if animate is not None else None
        kind = kind or self.rng.choice(["animate", "inanimate"])
        plural = self.chance(0.5)
        det = "the" if self.chance(0.4) else self.rng.choice((DET_PL if plural else DET_SG) + DET_ANY[1:])
        n_adj = self.rng.choices([0, 1, 2], weights=[0.55, 0.35, 0.1])[0]
        adjs = [
            (
                self.rng.choice(LEXICON.intens) if self.chance(0.15) else None,
                self.adjective(0 if neutral else polarity, 0.6),
            )
            for _ in range(n_adj)
        ]
        if n_adj == 2 and adjs[0][1] == adjs[1][1]:
            adjs = adjs[:1]  # "the old old dog"
        np = NP(self.pick(LEXICON.nouns[kind]), plural, det, adjs)
        if depth == 0 and self.chance(0.3):
            if self.chance(0.5):
                np.pp = (self.rng.choice(LEXICON.preps), self.np(polarity, depth=1, neutral=neutral))
            elif not neutral:
                np.rc = self.clause(polarity, subj=np, depth=1)
        return np

    def clause(
        self,
        polarity: int,
        subj: NP | None = None,
        depth: int = 0,
        kind: str | None = None,
        p_sentiment: float = 0.75,
    ) -> Clause:
        """A clause whose sentiment words fit `polarity` (the predicate's flipped when negated)."""
        kind = kind or self.rng.choices(["trans", "intr", "cop"], weights=[0.45, 0.2, 0.35])[0]
        negated = self.chance(self.config.p_negation)
        pred_polarity = polarity * (-1 if negated else 1) if self.chance(p_sentiment) else 0
        animate = None if kind == "cop" else True
        subj = subj or self.np(polarity, animate=animate, depth=depth)
        if kind == "cop":
            pred = self.pick(LEXICON.polar(LEXICON.adjs, pred_polarity))
            intens = self.rng.choice(LEXICON.intens) if self.chance(0.2) else None
            return Clause("cop", subj, pred, negated=negated, past=self.chance(0.3), intens=intens)
        if kind == "intr":
            pred = self.pick(LEXICON.polar(LEXICON.iverbs, pred_polarity))
            adv = self.rng.choice(LEXICON.advs) if self.chance(0.4) else None
            return Clause("intr", subj, pred, negated=negated, adv=adv)
        pred = self.pick(LEXICON.polar(LEXICON.tverbs, pred_polarity))
        # A relative clause's verb must agree with its head, so relatives are not passive.
        passive = depth == 0 and self.chance(0.25)
        obj = self.np(polarity, depth=depth)
        return Clause("trans", subj, pred, obj, negated=negated, passive=passive, past=self.chance(0.3))

    def sentence(self, polarity: int, p_sentiment_last: float = 0.75) -> tuple[list[Clause], list[str]]:
        """One or two clauses; `polarity` is the last clause's ("but" flips the one before it)."""
        self.new_topic()
        if not self.chance(self.config.p_two_clauses):
            return [self.clause(polarity, p_sentiment=p_sentiment_last)], []
        conj = self.rng.choice(["and", "but"])
        first = polarity * (-1 if conj == "but" else 1)
        return [self.clause(first), self.clause(polarity, p_sentiment=p_sentiment_last)], [conj]


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
# What each task looks like to the fine-tuning code: its `task.json` (a `ticketlab.tasks.TaskSpec`).
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
        raise ConfigError(f"unknown synthetic task {task!r}; choose from {', '.join(TASKS)}")
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
    from .tokenizer import word_level_tokenizer

    out = Path(out_dir)
    if (out / "synthetic.json").is_file():
        return out
    with atomic_dir(out, kind="synthetic data") as tmp:
        (tmp / "corpus").mkdir()
        for split in ("train", "dev"):
            text = "\n".join(corpus_lines(config, split)) + "\n"
            (tmp / "corpus" / f"{split}.txt").write_text(text)
        for task in config.tasks:
            folder = tmp / "tasks" / task_id(task)
            folder.mkdir(parents=True)
            for split in ("train", "dev"):
                (folder / f"{split}.tsv").write_text(_tsv(task_examples(config, task, split)))
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
