"""The synthetic language of `synthetic.py`: its lexicon (word classes, synonym forms, topics,
polarity), `SyntheticConfig` (everything that determines the generated data, and its cache key), the
structures a sentence is made of (`NP`, `Clause`), how they are rendered as words (`Renderer`:
agreement, voice, negation, synonym choice) and how they are sampled (`Sampler`: topics, polarity,
relative clauses and prepositional phrases).

The corpus and the tasks drawn from it, and the files written, are `synthetic.py`. Everything is a
pure function of `SyntheticConfig` (seeded `random.Random` streams, no global state).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from typing import Literal

from ..core.checks import BlockLength, PositiveInt, Probability, Seed, check_config
from ..core.errors import ConfigError

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

    seed: Seed = 0
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
