"""Fitting the task-head scorer (task_heads.py) from per-prompt outcomes, with out-of-fold calibration.

Label: y = 1/2 + 1/2 * clip((strong - weak) / gain_scale, -1, 1), i.e. 1 when the strong tier wins,
0 when the cheap one wins, 1/2 on a tie (0/1 scores), and proportional to the grade gap for graded
scores. The scale is the largest |gap| *within each benchmark*: one scale for a whole file let 61
MT-Bench rows (1-10 grades, gaps up to 8) squash every 0/1 label of MMLU and GSM8K to 0.5 +- 0.0625.
A logistic fit on this soft label estimates P(strong better) + P(tie)/2, whose ranking is the
expected quality gain. Measured on the RouteLLM data this beats "P(strong wins)" alone by 0.03-0.04
APGR on MMLU: prompts that both tiers fail look hard, but routing them gains nothing.

Every hyper-parameter that is searched (the word ridge's alpha, each head's L2) is picked on folds of
the training rows only, so a caller that holds out a fold gets an honest measurement of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from margin.routing.learned.calibration import CalibrationTable, calibrate
from margin.routing.learned.curve import apgr, routing_curve
from margin.routing.learned.features import FeatureSpec, Featurizer
from margin.routing.learned.gate import TaskGate
from margin.routing.learned.heads import LinearHead
from margin.routing.learned.logistic import fit_logistic
from margin.routing.learned.outcomes import Outcomes
from margin.routing.learned.stacking import category_targets, fit_word_scorer
from margin.routing.learned.task_heads import TaskHeadScorer

Matrix = NDArray[np.float64]
Vector = NDArray[np.float64]
DEFAULT_L2_GRID: tuple[float, ...] = (300.0, 1000.0, 3000.0, 10000.0)
SHARED_HEAD = "*"  # the name, in metadata, of the head fitted on every row


@dataclass(frozen=True)
class TrainingConfig:
    features: FeatureSpec = field(default_factory=FeatureSpec)
    # Candidate L2 strengths (on the summed loss) for each head; the best out-of-fold log-loss on
    # the head's training rows wins. Log-loss, not APGR: it is smoother, so it picks more reliably
    # on small sets (GSM8K folds). 300 is there for small tasks (GSM8K picks 300-3000).
    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID
    # The lexical columns (30; 20 in version 2, 13 in version 1) are dense and each informative, next
    # to hundreds of embedding dimensions that each carry little: penalising them 9x less measured
    # about +0.01 APGR on MMLU and GSM8K (with the 13 version-1 columns; kept as is since). A searched
    # multiplier of it per head (x1, 1/3, 1/9), with an L2 grid up to 30,000, gained on inner folds
    # but not on held-out ones, at 2.5-3x the training time: removed.
    lexical_penalty: float = 1.0 / 9.0
    # The word score is one column that summarises thousands of words: penalised 100x less.
    word_penalty: float = 0.01
    # Candidate ridge strengths of the word score (picked by out-of-fold squared error).
    word_alphas: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
    # 2: word pairs too ("more than", "which of"), 1: single words.
    word_ngrams: int = 2
    # How far the word score's target is pulled to the category mean (stacking.py), and the
    # pseudo-rows that shrink a small category's mean to the overall one.
    word_blend: float = 0.5
    category_smoothing: float = 20.0
    # A benchmark with fewer training rows than this gets no head of its own (the shared one).
    min_task_rows: int = 200


@dataclass(frozen=True)
class TrainingResult:
    scorer: TaskHeadScorer
    calibration: CalibrationTable
    out_of_fold_scores: Vector
    l2: dict[str, float]  # the L2 each head picked, by task ("*": the shared head)
    out_of_fold_apgr: float


def gain_labels(
    weak: Vector, strong: Vector, benchmarks: Sequence[str] | None = None
) -> tuple[Vector, dict[str, float]]:
    """Soft labels (see module doc) and the scale used for each benchmark (its largest |gap|).

    Without `benchmarks` every row is one group, named "all". A benchmark whose tiers never differ
    gets scale 1 (its labels are all 1/2).
    """
    gap = strong - weak
    names = np.asarray(["all"] * gap.size if benchmarks is None else list(benchmarks), dtype=object)
    if names.size != gap.size:
        raise ValueError("benchmarks must name one benchmark per row")
    labels = np.full_like(gap, 0.5)
    scales: dict[str, float] = {}
    for name in sorted(set(names.tolist())):
        rows = names == name
        largest = float(np.max(np.abs(gap[rows])))
        scales[name] = largest if largest > 0 else 1.0
        labels[rows] = 0.5 + 0.5 * np.clip(gap[rows] / scales[name], -1.0, 1.0)
    return labels, scales


def fit_head(features: Matrix, labels: Vector, l2: float | Vector) -> LinearHead:
    mean = features.mean(axis=0)
    # Constant columns (e.g. a lexical flag absent from the data) get scale 1, not a division by 0.
    scale = np.where(features.std(axis=0) > 1e-9, features.std(axis=0), 1.0)
    model = fit_logistic((features - mean) / scale, labels, l2=l2)
    return LinearHead(mean=mean, scale=scale, weights=model.weights, bias=model.bias)


def out_of_fold_scores(features: Matrix, folds: NDArray[np.int64], l2: float | Vector, labels: Vector) -> Vector:
    """Score every row with a head fitted on the other folds (rows of a single-fold set: in-sample)."""
    scores = np.zeros(labels.size)
    fold_names = np.unique(folds)
    if fold_names.size < 2:
        return fit_head(features, labels, l2).predict(features)
    for fold in fold_names:
        test = folds == fold
        scores[test] = fit_head(features[~test], labels[~test], l2).predict(features[test])
    return scores


def fit_head_by_folds(
    features: Matrix, labels: Vector, folds: NDArray[np.int64], penalty: Vector, grid: Sequence[float]
) -> tuple[LinearHead, float, Vector]:
    """Pick L2 from `grid` by out-of-fold log-loss; the head refitted on every row, its L2, and the
    out-of-fold scores at that L2."""
    best: tuple[float, float, Vector] | None = None
    for l2 in grid:
        oof = out_of_fold_scores(features, folds, l2 * penalty, labels)
        loss = log_loss(oof, labels)
        if best is None or loss < best[0]:
            best = (loss, l2, oof)
    if best is None:
        raise ValueError("l2_grid must not be empty")
    _, l2, oof = best
    return fit_head(features, labels, l2 * penalty), l2, oof


def train_scorer(
    outcomes: Outcomes,
    config: TrainingConfig | None = None,
    *,
    featurizer: Featurizer | None = None,
    features: Matrix | None = None,
) -> TrainingResult:
    """Fit the word score, one head per task (L2 by out-of-fold log-loss) and the task gate;
    calibrate on the out-of-fold scores.

    Pass precomputed `features` (featurizer rows aligned with `outcomes`) to skip embedding, e.g.
    when the same prompts are trained on many times in a benchmark.
    """
    config = config or TrainingConfig()
    featurizer = featurizer or Featurizer(config.features)
    matrix = featurizer.transform(outcomes.prompts) if features is None else features
    labels, gain_scales = gain_labels(outcomes.weak_score, outcomes.strong_score, outcomes.benchmarks)
    targets = category_targets(
        labels, outcomes.categories, blend=config.word_blend, smoothing=config.category_smoothing
    )
    embedding = matrix[:, : featurizer.embedding_dim]
    texts = [featurizer.spec.clip(prompt) for prompt in outcomes.prompts]  # what the scorer will read
    word_fit = fit_word_scorer(texts, embedding, targets, outcomes.fold, config.word_alphas, ngrams=config.word_ngrams)
    # The heads learn from out-of-fold word scores: in-sample ones would look better than they are.
    stacked = np.hstack([matrix, word_fit.out_of_fold[:, None]])
    penalty = np.concatenate(
        [
            np.ones(featurizer.embedding_dim),
            np.full(featurizer.lexical_dim, config.lexical_penalty),
            [config.word_penalty],
        ]
    )
    heads = _fit_task_heads(stacked, labels, outcomes, penalty, config)
    calibration = calibrate(heads.out_of_fold, outcomes.weak_score, outcomes.strong_score)
    value = _safe_apgr(heads.out_of_fold, outcomes)
    metadata = {
        "l2": heads.l2,
        "lexical_penalty": config.lexical_penalty,
        "word_penalty": config.word_penalty,
        "word_alpha": word_fit.alpha,
        "word_blend": config.word_blend,
        "vocabulary_size": word_fit.scorer.vocabulary.size,
        "gain_scale": gain_scales,  # per benchmark
        "train_rows": len(outcomes),
        "benchmarks": outcomes.benchmark_names(),
        "out_of_fold_apgr": value,
        "out_of_fold_log_loss": log_loss(heads.out_of_fold, labels),
        "calibration": calibration.to_json(),
    }
    gate = TaskGate.fit(matrix, outcomes.benchmarks) if len(heads.heads) > 1 else None
    scorer = TaskHeadScorer(
        featurizer=featurizer,
        words=word_fit.scorer,
        heads=tuple(heads.heads),
        gate=gate,
        head_of_task=tuple(heads.head_of_task[name] for name in gate.tasks) if gate else (0,),
        metadata=metadata,
    )
    return TrainingResult(scorer, calibration, heads.out_of_fold, heads.l2, value)


@dataclass(frozen=True)
class _TaskHeads:
    heads: list[LinearHead]
    head_of_task: dict[str, int]  # benchmark -> index into heads
    l2: dict[str, float]
    out_of_fold: Vector


def _fit_task_heads(
    features: Matrix, labels: Vector, outcomes: Outcomes, penalty: Vector, config: TrainingConfig
) -> _TaskHeads:
    """A head per benchmark with at least min_task_rows rows; a shared head (every row) for the rest,
    or for everything when fewer than two benchmarks qualify."""
    benchmarks = np.asarray(outcomes.benchmarks, dtype=object)
    names = outcomes.benchmark_names()
    own = [name for name in names if np.count_nonzero(benchmarks == name) >= config.min_task_rows]
    if len(own) < 2:
        own = []
    groups = [(name, benchmarks == name) for name in own]
    if len(own) < len(names):
        groups.insert(0, (SHARED_HEAD, np.ones(len(outcomes), dtype=np.bool_)))
    heads: list[LinearHead] = []
    l2: dict[str, float] = {}
    out_of_fold = np.zeros(len(outcomes))
    for name, rows in groups:
        head, l2[name], oof = fit_head_by_folds(
            features[rows], labels[rows], outcomes.fold[rows], penalty, config.l2_grid
        )
        heads.append(head)
        # The shared head comes first, so each task's own head then overwrites its rows.
        out_of_fold[rows] = oof
    group_names = [name for name, _ in groups]
    head_of_task = {name: group_names.index(name) if name in own else 0 for name in names}
    return _TaskHeads(heads=heads, head_of_task=head_of_task, l2=l2, out_of_fold=out_of_fold)


def log_loss(probabilities: Vector, labels: Vector) -> float:
    """Mean cross-entropy of probabilities against (soft) labels."""
    p = np.clip(probabilities, 1e-9, 1.0 - 1e-9)
    return float(-np.mean(labels * np.log(p) + (1.0 - labels) * np.log(1.0 - p)))


def _safe_apgr(scores: Vector, outcomes: Outcomes) -> float:
    curve = routing_curve(scores, outcomes.weak_score, outcomes.strong_score)
    if abs(curve.strong_quality - curve.weak_quality) < 1e-12:
        return 0.0
    return apgr(curve)
