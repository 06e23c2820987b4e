"""The learned decision: a logistic model over similarity and lexical features of a (query,
cached question) pair that the guard let through, and over where the candidate stands among the
others the index returned (how far ahead of the best other one it is, and of the best other one whose
cached answer differs: a paraphrase cached with the same answer is no rival), whose output is the
probability that the two have the same answer. The guard stays a hard rule in front of it: its checks as soft features
(weights learned) served fewer hits at equal wrong rate on ComQA's train split (docs/caching.md).

Features are cheap (a few set operations on the guard's tokens, computed only for candidates that
clear the floor) and scoring is one dot product, so the stage adds microseconds to a lookup. The
weights are a small JSON file; the package ships one fitted on the train split of ComQA
(`python bench/cache_realistic.py --fit-learned`), and `margin cache calibrate --fit-learned OUT`
fits one on a deployment's own labelled pairs (fitting needs scipy, the `evals` extra; scoring
needs numpy only).
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from margin.caching.semantic.guard import Features, agree, features, stem
from margin.caching.semantic.lexicon import COMMON
from margin.embedding import Embedder

Vector = NDArray[np.float64]
Matrix = NDArray[np.float64]
FEATURES = (
    "cosine",
    "cosine_closeness",  # -log(1 - cosine): spreads the top of the scale, where decisions are made
    "behind_best",  # best candidate's cosine minus this one's
    "rank",
    "token_jaccard",
    "content_jaccard",  # words outside the common-word list
    "char3_jaccard",
    "length_ratio",
    "same_opener",  # the first word (what/how/is ...) is the same
    "unshared_content",  # stemmed words outside the common-word list found in only one of the two
    "same_wh",  # the same set of question words (what/when/where/who/which/why/how)
    "query_only_content",  # the two halves of unshared_content: an aspect added by the query...
    "cached_only_content",  # ...or one the cached question has and the query lacks
    "and_differs",  # "when and where" vs "where": one side joins two asks
    "wh_count_gap",  # how many more question words one side has
    "ahead_of_rival",  # closeness of this candidate minus that of the best other one the index returned
    "ahead_of_other_answer",  # ...minus that of the best other one whose cached answer differs from this one's
)
# What a labelled pair determines on its own (no other candidates): the features a user's pairs fit.
PAIR_FEATURES = FEATURES[: FEATURES.index("ahead_of_rival")]
_WH = frozenset(("what", "when", "where", "who", "which", "why", "how", "whom", "whose"))
SHIPPED = "learned-comqa.json"
DEFAULT_FLOOR = 0.8  # candidates below this cosine are not scored (nothing below it was trained on)
_FORMAT = 4
_READABLE = (2, 3, 4)  # format 2: the 15 pair features, before ahead_of_rival; 3: 16, before the answer features


@dataclass(frozen=True, slots=True)
class PairContext:
    """Where a candidate stands among those the index returned for the query."""

    rank: int = 0
    best_similarity: float | None = None  # None: this candidate is the best
    runner_up: float | None = None  # the second-best candidate's cosine; None: no other candidate
    # The best cosine among the other candidates whose cached answer differs from this one's (0.0:
    # none differs); None: answers unknown, every other candidate counts as differing.
    answer_rival: float | None = None

    @classmethod
    def among(
        cls, similarities: Sequence[float], rank: int, answers: Sequence[object | None] | None = None
    ) -> PairContext:
        """The context of candidate `rank` among the index's candidates (best first) and, where known,
        their cached answers' fingerprints (None: that entry's answer is unknown, it differs from all)."""
        runner_up = similarities[1] if len(similarities) > 1 else None
        if answers is None:
            return cls(rank, similarities[0], runner_up)
        own = answers[rank]
        differing = [s for i, s in enumerate(similarities) if i != rank and (own is None or answers[i] != own)]
        return cls(rank, similarities[0], runner_up, max(differing, default=0.0))

    def rival(self, similarity: float) -> float:
        """The best other candidate's cosine (0 where there is none)."""
        if self.rank > 0 and self.best_similarity is not None:
            return self.best_similarity
        return self.runner_up if self.runner_up is not None else 0.0


def pair_features(query: Features, cached: Features, similarity: float, context: PairContext) -> Vector:
    q_tokens, c_tokens = set(query.tokens), set(cached.tokens)
    q_content, c_content = q_tokens - COMMON, c_tokens - COMMON
    q_stems, c_stems = {stem(t) for t in q_content}, {stem(t) for t in c_content}
    q_wh, c_wh = [t for t in query.tokens if t in _WH], [t for t in cached.tokens if t in _WH]
    best = similarity if context.best_similarity is None else context.best_similarity
    lengths = (len(query.tokens), len(cached.tokens))
    values = [
        similarity,
        _closeness(similarity),
        best - similarity,
        float(context.rank),
        _jaccard(q_tokens, c_tokens),
        _jaccard(q_content, c_content),
        _jaccard(_trigrams(query.text), _trigrams(cached.text)),
        min(lengths) / max(lengths) if max(lengths) else 1.0,
        1.0 if query.tokens[:1] == cached.tokens[:1] else 0.0,
        float(len(q_stems ^ c_stems)),
        1.0 if q_tokens & _WH == c_tokens & _WH else 0.0,
        float(len(q_stems - c_stems)),
        float(len(c_stems - q_stems)),
        1.0 if query.tokens.count("and") != cached.tokens.count("and") else 0.0,
        float(abs(len(q_wh) - len(c_wh))),
        _closeness(similarity) - _closeness(context.rival(similarity)),
        _closeness(similarity)
        - _closeness(context.rival(similarity) if context.answer_rival is None else context.answer_rival),
    ]
    return np.asarray(values, dtype=np.float64)


def _closeness(similarity: float) -> float:
    return -math.log(max(1e-4, 1.0 - similarity))


def _jaccard(a: set[str], b: set[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _trigrams(text: str) -> set[str]:
    squeezed = " ".join(text.split())
    return {squeezed[i : i + 3] for i in range(len(squeezed) - 2)}


@dataclass(frozen=True, eq=False)  # compared by identity: one loaded model per file
class LearnedDecision:
    """Standardised features -> logistic probability. `trained_on` says what data fitted it.

    `features` names the columns of `pair_features` rows the model reads (all of FEATURES, or
    PAIR_FEATURES for a model fitted on labelled pairs alone); rows are always full width."""

    weights: Vector
    bias: float
    mean: Vector
    scale: Vector
    trained_on: str = ""
    floor: float = DEFAULT_FLOOR
    features: tuple[str, ...] = FEATURES

    @functools.cached_property
    def _columns(self) -> NDArray[np.intp]:
        return np.asarray([FEATURES.index(name) for name in self.features], dtype=np.intp)

    def probability(self, features: Vector) -> float:
        z = float(((features[self._columns] - self.mean) / self.scale) @ self.weights) + self.bias
        return 0.5 * (1.0 + math.tanh(0.5 * z))

    def probabilities(self, rows: Matrix) -> Vector:
        z = ((rows[:, self._columns] - self.mean) / self.scale) @ self.weights + self.bias
        result: Vector = 0.5 * (1.0 + np.tanh(0.5 * z))
        return result

    def to_json(self) -> bytes:
        body = {
            "format": _FORMAT,
            "trained_on": self.trained_on,
            "floor": self.floor,
            "features": list(self.features),
            "weights": [round(float(w), 6) for w in self.weights],
            "bias": round(self.bias, 6),
            "mean": [round(float(m), 6) for m in self.mean],
            "scale": [round(float(s), 6) for s in self.scale],
        }
        return orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def from_json(cls, raw: bytes | str) -> LearnedDecision:
        body = orjson.loads(raw)
        names = tuple(body.get("features", ()))
        if body.get("format") not in _READABLE or not names or not set(names) <= set(FEATURES):
            raise ValueError(f"not a learned-decision file (format {_FORMAT}, features among {', '.join(FEATURES)})")
        if len(body["weights"]) != len(names):
            raise ValueError("a learned-decision file needs one weight per feature")
        return cls(
            weights=np.asarray(body["weights"], dtype=np.float64),
            bias=float(body["bias"]),
            mean=np.asarray(body["mean"], dtype=np.float64),
            scale=np.asarray(body["scale"], dtype=np.float64),
            trained_on=str(body.get("trained_on", "")),
            floor=float(body.get("floor", DEFAULT_FLOOR)),
            features=names,
        )


def load_decision(path: Path | None = None) -> LearnedDecision:
    """The decision in `path`, or the one shipped with the package."""
    if path is not None:
        return LearnedDecision.from_json(path.read_bytes())
    return LearnedDecision.from_json(resources.files("margin.caching.semantic").joinpath(SHIPPED).read_bytes())


@functools.lru_cache(maxsize=8)
def cached_decision(path: str | None) -> LearnedDecision:
    """`load_decision`, read once per file for the life of the process (route policies are rebuilt often)."""
    return load_decision(Path(path) if path is not None else None)


def fit_decision(
    rows: Matrix,
    labels: Sequence[bool],
    *,
    l2: float = 1.0,
    trained_on: str = "",
    floor: float = DEFAULT_FLOOR,
    features: tuple[str, ...] = FEATURES,
) -> LearnedDecision:
    """L2-regularised logistic regression on standardised features (scipy's L-BFGS, `evals` extra):
    full-width `pair_features` rows, of which the model reads the columns named in `features`."""
    optimize: Any = importlib.import_module("scipy.optimize")
    y = np.asarray(labels, dtype=np.float64)
    if rows.shape != (len(y), len(FEATURES)) or len(set(labels)) < 2:
        raise ValueError("fitting needs one feature row per label and both labels present")
    rows = rows[:, [FEATURES.index(name) for name in features]]
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-9] = 1.0
    design = np.hstack([(rows - mean) / scale, np.ones((len(y), 1))])

    def loss(theta: Vector) -> tuple[float, Vector]:
        z = design @ theta
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        penalty = theta.copy()
        penalty[-1] = 0.0  # the bias is not penalised
        value = float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * penalty @ penalty)
        return value, design.T @ (p - y) + l2 * penalty

    found = optimize.minimize(loss, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B")
    theta = np.asarray(found.x, dtype=np.float64)
    return LearnedDecision(theta[:-1], float(theta[-1]), mean, scale, trained_on, floor, features)


@dataclass(frozen=True)
class PairTable:
    """Labelled pairs as the learned decision sees them (each pair on its own: rank 0)."""

    rows: Matrix
    guard_ok: list[bool]
    same: list[bool]


def pair_table(pairs: Sequence[tuple[str, str, bool]], embedder: Embedder, *, batch: int = 64) -> PairTable:
    rows, guard_ok, same = [], [], []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        vectors = embedder.embed([text for a, b, _ in chunk for text in (a, b)])
        for i, (a, b, label) in enumerate(chunk):
            fa, fb = features(a), features(b)
            rows.append(pair_features(fb, fa, float(vectors[2 * i] @ vectors[2 * i + 1]), PairContext()))
            guard_ok.append(agree(fa, fb).ok)
            same.append(label)
    return PairTable(np.stack(rows) if rows else np.zeros((0, len(FEATURES))), guard_ok, same)


@dataclass(frozen=True)
class FoldedFit:
    model: LearnedDecision
    probabilities: list[float]  # out of fold, one per pair the model was fitted on
    same: list[bool]


def fit_out_of_fold(table: PairTable, *, folds: int = 2, l2: float = 1.0, trained_on: str = "") -> FoldedFit:
    """The model fitted on every guard-passing pair above the floor, and each such pair's probability
    from a model that never saw it (by fold): a threshold chosen on those is not flattered by the fit.
    A pair alone has no other candidates, so the model reads PAIR_FEATURES (no ahead_of_rival)."""
    eligible = [i for i, ok in enumerate(table.guard_ok) if ok and table.rows[i, 0] >= DEFAULT_FLOOR]
    labels = [table.same[i] for i in eligible]
    out_of_fold = np.zeros(len(eligible))
    fold_of = np.zeros(len(eligible), dtype=np.int64)
    for label in (True, False):  # stratified: each fold gets its share of both labels
        where = [k for k, same in enumerate(labels) if same is label]
        fold_of[where] = np.arange(len(where)) % folds
    for fold in range(folds):
        held = fold_of == fold
        train = [i for i, h in zip(eligible, held, strict=True) if not h]
        model = fit_decision(table.rows[train], [table.same[i] for i in train], l2=l2, features=PAIR_FEATURES)
        out_of_fold[held] = model.probabilities(table.rows[[i for i, h in zip(eligible, held, strict=True) if h]])
    final = fit_decision(table.rows[eligible], labels, l2=l2, trained_on=trained_on, features=PAIR_FEATURES)
    return FoldedFit(final, [float(p) for p in out_of_fold], labels)
