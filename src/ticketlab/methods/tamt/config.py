"""TAMT's settings, in a module that imports no torch: `ticketlab search tamt --help` builds its
options from `TamtConfig` (`core.checks.option`), and parsing must not wait seconds for torch and
transformers. Beside it, TAMT's budget (Tab. 2's steps and the schedule they stop in) and the lr a
short search needs to move a mask (`moving_lr`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from ...core.checks import Fraction, LearningRate, Range, Seed, check_config, option
from ...core.errors import ConfigError
from ...lm.options import DECODER_HELP, KD_INPUT_HELP, TEACHER_HELP, Decoder, KdInput, Teacher
from ...masks.pattern import parse_pattern, pattern_sparsity
from ...masks.targets import POOLER_HELP, Targets
from ..options import Count, Ranking

# `lm.objectives.Objective` (the losses), spelt out here: objectives.py imports torch and transformers
# (tests/test_startup.py pins the two to the same names).
Objective = Literal["mlm", "kd", "mlm+kd"]
Init = Literal["omp", "random"]
ScoreDtype = Literal["float32", "bfloat16"]
# TAMT-KD's training data: the corpus's blocks (the MLM data), or TAMT's own KD data (`data.kd_chunks`)
KdData = Literal["blocks", "reference"]


@dataclass
class TamtConfig:
    """Settings of one TAMT search (defaults: TAMT §4.1.3 and Table 1)."""

    sparsity: Fraction | None  # None with a pattern: the one it implies
    objective: Objective = option("mlm", "training objective")
    init: Init = option("omp", "initial mask")
    ranking: Ranking = option("local", "rank per matrix (local) or over all targets (global)")
    # Scores are float32 and move about lr per step: a start α·φ of 1e8 is a mask no search changes,
    # and `--alpha 1e308` overflowed. The paper's are φ = 0.01, α = 2.
    threshold: Annotated[float, Range(gt=0, le=1e4)] = option(0.01, "φ of Eq. 3/5")
    alpha: Annotated[float, Range(ge=1, le=1e4)] = option(2.0, "α of Eq. 5: initial score α·φ, above the cut")
    train_head: bool = option(  # TAMT-MLM trains the MLM head's transform and bias too (§3.4.3)
        True, "TAMT-MLM: keep the MLM head frozen", flag="--freeze-head"
    )
    head_lr: LearningRate | None = option(
        None, "TAMT-MLM: learning rate of the MLM head (default: --lr, as in TAMT)"
    )
    seed: Seed = 0  # for random init
    targets: Targets = None
    score_dtype: ScoreDtype = option(
        "float32",
        "bfloat16: scores, their gradients and Adam moments in bf16 with stochastic rounding "
        "(6 bytes less per target weight: less memory than dense training)",
    )
    # "N:M": exactly N of every M kept after every step (per-group cuts)
    pattern: str | None = None
    pooler: bool = option(True, POOLER_HELP)  # held at its OMP start: no TAMT loss reaches it
    decoder: Decoder = option("dense", DECODER_HELP)
    kd_input: KdInput | None = option(
        None,
        KD_INPUT_HELP + " (default: clean for TAMT-KD; TAMT-MLM+KD distils on its MLM batch, as TAMT's "
        "train_mlm.py --use_kd does)",
    )
    # None: TAMT's per objective (`teacher_mode`)
    kd_teacher: Teacher | None = option(
        None,
        TEACHER_HELP + " (default: train for TAMT-KD, as train_kd.py; eval for TAMT-MLM+KD, whose "
        "train_mlm.py loads its teacher with transformers' from_pretrained, which sets eval mode)",
    )
    kd_data: KdData = option(
        "blocks",
        "TAMT-KD's training data: blocks (the corpus's max-length blocks, the MLM data; KD averaged over "
        "real tokens) or reference (TAMT's pregenerate_training_data.py --one_seq: [CLS] A [SEP] B [SEP] "
        "chunks of the corpus's documents with segment ids and one token corrupted per sequence, padded "
        "to --max-length, KD averaged over every position, padding included, as its train_kd.py; needs "
        "--dev)",
    )
    # TAMT's masker prunes int(s·n) weights of a matrix (its OMP init's count)
    count: Count = option(
        "floor",
        "weights pruned per matrix (or over all targets with --ranking global): floor, int(s·n) as "
        "TAMT's masker, or round(s·n) as torch's pruning and `prune omp`",
    )

    def __post_init__(self) -> None:
        check_config(self)  # types and ranges (a nan threshold is refused here, not as a diverged search)
        self.sparsity = pattern_sparsity(self.sparsity, self.pattern, self.ranking)
        self.pattern = self.pattern and str(parse_pattern(self.pattern))  # " 2:4" is recorded as "2:4"
        self._check_kd_data()

    def _check_kd_data(self) -> None:
        """TAMT's KD data are TAMT-KD's alone, and read as they are: no MLM corruption to distil on."""
        if self.kd_data != "reference":
            return
        if self.objective != "kd":
            raise ConfigError(f"kd_data 'reference' is TAMT-KD's data: objective kd, not {self.objective!r}")
        if self.kd_input == "corrupted":
            raise ConfigError("kd_data 'reference' has no MLM corruption to distil on: leave kd_input out")

    @property
    def trains_head(self) -> bool:
        return self.train_head and "mlm" in self.objective

    @property
    def kd_reads(self) -> KdInput | None:
        """What the KD loss reads (None: no KD loss): `kd_input`, else TAMT's code's choice per objective."""
        if "kd" not in self.objective:
            return None
        return self.kd_input or ("clean" if self.objective == "kd" else "corrupted")

    @property
    def teacher_mode(self) -> Teacher:
        """The KD teacher's mode in training: `kd_teacher`, else TAMT's code's per objective."""
        return self.kd_teacher or ("train" if self.objective == "kd" else "eval")

    @property
    def paper_lr(self) -> float:
        return 2e-5 if self.objective == "kd" else 5e-5  # Table 1

    def default_lr(self, steps: int, horizon: int | None = None) -> float:
        """The lr of a search of `steps` on a linear schedule to `horizon` when none is given: Table 1's,
        raised where the search is too short for it to move a mask (`moving_lr`)."""
        return max(self.paper_lr, moving_lr(self.alpha * self.threshold, steps, horizon))


def score_travel(steps: int, horizon: int | None = None, linear: bool = True) -> float:
    """How far AdamW moves a score over `steps`, per unit of lr: about lr a step, times the linear
    schedule's mean over the steps searched (1 - N/2H of its peak for N steps of an H-step schedule,
    a half when it ends at the stop)."""
    horizon = horizon or steps
    return steps * ((1 - steps / (2 * horizon)) if linear else 1.0)


def moving_lr(gap: float, steps: int, horizon: int | None = None, linear: bool = True) -> float:
    """The smallest lr at which one score can travel the whole Eq. 5 gap (α·φ) on its own in a search of
    `steps` (`score_travel`), to two significant digits. A kept and a pruned score can swap once their
    travel together covers the gap (`tamt.search.frozen_mask_warning`), so this lr gives that swap twice
    the travel it needs. The paper's runs are far above it (5e-5 over 17,000 of 27,920 steps moves a score
    0.59, 30 gaps); a search of a few hundred steps at Table 1's lr is below it (200 steps: 0.007)."""
    return float(f"{gap / score_travel(steps, horizon, linear):.2g}")


# TAMT's budget (App. B.2): one linearly decaying schedule over 2 epochs of WikiText-103 at batch 16
# x 512 tokens, 27,920 steps, and the mask of each sparsity is a checkpoint taken part-way through it
# (Tab. 2: `checkpoint-11000` for 50%, ... ; its run_glue scripts load e.g. checkpoint-17000/mask.pt).
# A run trains one sparsity (its masker starts from OMP at the target and holds it): the 50/70/90%
# masks are three runs, each stopped at its own step of the same schedule.
PAPER_SCHEDULE_STEPS = 27920
PAPER_STEPS = {0.2: 3000, 0.3: 6000, 0.4: 8000, 0.5: 11000, 0.6: 14000, 0.7: 17000, 0.8: 20000, 0.9: 22000}
PAPER_TOKENS_PER_STEP = 16 * 512  # TAMT Table 1: batch 16, length 512


def paper_fraction(sparsity: float) -> float:
    """How far into its 27,920-step schedule TAMT took the mask of `sparsity` (Tab. 2 / 27,920):
    linear between the table's sparsities, its first and last value outside them."""
    points = sorted(PAPER_STEPS.items())
    if sparsity <= points[0][0]:
        return points[0][1] / PAPER_SCHEDULE_STEPS
    for (s0, n0), (s1, n1) in zip(points, points[1:], strict=False):
        if sparsity <= s1:
            return (n0 + (n1 - n0) * (sparsity - s0) / (s1 - s0)) / PAPER_SCHEDULE_STEPS
    return points[-1][1] / PAPER_SCHEDULE_STEPS


def paper_schedule_steps(steps: int, sparsity: float) -> int:
    """The schedule horizon TAMT's default gives a search of `steps` at `sparsity`: the search stops
    where the paper's run of that sparsity stopped in its own schedule (17,000 of 27,920 at 70%:
    the lr has decayed to 39% of its peak, the scores have had ~0.70·lr·N of learning rate in all
    rather than the 0.5·lr·N of a schedule that ends at the stop)."""
    return max(steps, round(steps / paper_fraction(sparsity)))


def paper_budget(sparsity: float) -> tuple[int, int]:
    """(steps, schedule steps) of the paper's run of `sparsity` (Tab. 2), or one error naming the table."""
    step = next((n for s, n in PAPER_STEPS.items() if abs(s - sparsity) < 1e-9), None)
    if step is None:
        raise ConfigError(
            f"TAMT's Tab. 2 gives steps for sparsities {', '.join(f'{s:g}' for s in PAPER_STEPS)}, "
            f"not {sparsity:g}: give --steps (the schedule follows the paper's at any sparsity)"
        )
    return step, PAPER_SCHEDULE_STEPS
