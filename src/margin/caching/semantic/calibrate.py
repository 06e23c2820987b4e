"""Threshold calibration from labelled question pairs (same answer or not).

For each route, pick the lowest cosine threshold at which the hits the cache would serve (pairs at
or above the threshold that also pass the guard) have a precision whose one-sided Clopper-Pearson
lower bound reaches the target: the point estimate of a few hundred pairs says 1.000 where the data
only supports 0.92. When no threshold gets there, nothing is recommended, and the report says how
many more labelled pairs like these it would take.

Pairs are deduplicated first: two questions identical after normalisation are the exact cache's
job and would only inflate the precision, and a pair listed twice counts once (a pair listed with
both labels is dropped: it says nothing).

Input: JSON lines `{"a": "...", "b": "...", "same": true, "route": "gpt-4o"}` (`route` optional;
`label`/`duplicate` accepted for `same`, as 0/1 or booleans).
"""

from __future__ import annotations

import math
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from margin.caching.semantic.bounds import clopper_pearson_lower, reaches, trials_needed
from margin.caching.semantic.guard import agree, features
from margin.embedding import Embedder

DEFAULT_ROUTE = "*"
CONFIDENCE = 0.95  # one-sided
_EDGE_CHARACTERS = "\"'`.,;:!?()[]-\u00bf\u00a1\u201c\u201d\u2018\u2019"  # quotes, brackets, ¿ ¡ and end marks


@dataclass(frozen=True, slots=True)
class LabelledPair:
    a: str
    b: str
    same: bool
    route: str = DEFAULT_ROUTE


@dataclass(frozen=True, slots=True)
class ScoredPair:
    similarity: float
    guard_ok: bool
    same: bool


@dataclass(frozen=True, slots=True)
class Deduplication:
    read: int
    identical: int  # a and b the same after normalisation: dropped
    repeated: int  # the same pair again with the same label: dropped
    conflicting: int  # pairs listed with both labels: every copy dropped

    @property
    def kept(self) -> int:
        return self.read - self.identical - self.repeated - self.conflicting


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    threshold: float
    served: int  # pairs that would be hits
    wrong: int  # of which have different answers
    positives: int  # pairs with the same answer (all of them, served or not)
    negatives: int
    confidence: float = CONFIDENCE

    @property
    def precision(self) -> float:
        return 1.0 - self.wrong / self.served if self.served else 1.0

    @property
    def recall(self) -> float:
        return (self.served - self.wrong) / self.positives if self.positives else 0.0

    @property
    def false_hit_rate(self) -> float:
        return self.wrong / self.negatives if self.negatives else 0.0

    @property
    def precision_lower_bound(self) -> float:
        """One-sided Clopper-Pearson bound: the precision the calibration set lets us be sure of."""
        return clopper_pearson_lower(self.served - self.wrong, self.served, self.confidence)


@dataclass(frozen=True, slots=True)
class Calibration:
    """The outcome for one route and decision: a recommended threshold, or a refusal that says why
    and how many more labelled pairs it would take (None: more of the same cannot get there)."""

    target: float
    recommended: OperatingPoint | None
    best: OperatingPoint  # the point with the highest lower bound (the recommendation, when there is one)
    pairs: int
    more_pairs_needed: int | None
    variable: str = "threshold"  # what is chosen: the cosine threshold, or the learned decision's min_probability

    @property
    def refusal(self) -> str | None:
        if self.recommended is not None:
            return None
        level, name = f"{self.best.confidence:.0%}", self.variable
        reached = (
            f"the {level} lower bound of precision reaches at most {self.best.precision_lower_bound:.3f}"
            f" ({name} {self.best.threshold:.4f}: {self.best.served} hits, {self.best.wrong} wrong)"
            if self.best.served
            else f"no {name} serves a hit"
        )
        if self.more_pairs_needed is None:
            advice = (
                f"no {name} has an observed precision above the target, so more pairs like these will not help:"
                " lower the target or use a stricter decision"
            )
        else:
            advice = f"about {self.more_pairs_needed} more labelled pairs like these would be needed"
        return f"no {name} recommended for target {self.target:.3f} from {self.pairs} pairs: {reached}; {advice}"


def normalise(text: str) -> str:
    """What "the same question" means for deduplication: case, width, spacing and edge punctuation aside."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return folded.strip(_EDGE_CHARACTERS + " ")


def deduplicate(pairs: Sequence[LabelledPair]) -> tuple[list[LabelledPair], Deduplication]:
    """Drop pairs whose questions are identical after normalisation, repeats of a pair (either
    order), and every copy of a pair that is labelled both ways."""
    copies: dict[tuple[str, str, str], list[LabelledPair]] = {}
    identical = 0
    for pair in pairs:
        a, b = normalise(pair.a), normalise(pair.b)
        if a == b:
            identical += 1
        else:
            copies.setdefault((pair.route, min(a, b), max(a, b)), []).append(pair)
    kept, repeated, conflicting = [], 0, 0
    for listed in copies.values():
        if len({p.same for p in listed}) > 1:
            conflicting += len(listed)
        else:
            kept.append(listed[0])
            repeated += len(listed) - 1
    return kept, Deduplication(len(pairs), identical, repeated, conflicting)


def read_pairs(path: Path) -> list[LabelledPair]:
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        raw = orjson.loads(line)
        label = raw.get("same", raw.get("label", raw.get("duplicate")))
        if not isinstance(raw.get("a"), str) or not isinstance(raw.get("b"), str) or label is None:
            raise ValueError(f"{path}:{number}: need string fields a and b and a label (same)")
        pairs.append(LabelledPair(raw["a"], raw["b"], bool(label), str(raw.get("route") or DEFAULT_ROUTE)))
    return pairs


def score_pairs(pairs: Sequence[LabelledPair], embedder: Embedder, *, batch: int = 64) -> list[ScoredPair]:
    scored = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        vectors = embedder.embed([text for pair in chunk for text in (pair.a, pair.b)])
        for i, pair in enumerate(chunk):
            similarity = float(vectors[2 * i] @ vectors[2 * i + 1])
            ok = agree(features(pair.a), features(pair.b)).ok
            scored.append(ScoredPair(similarity, ok, pair.same))
    return scored


def operating_point(
    scored: Iterable[ScoredPair], threshold: float, *, guard: bool, confidence: float = CONFIDENCE
) -> OperatingPoint:
    pairs = list(scored)
    served = [p for p in pairs if p.similarity >= threshold and (p.guard_ok or not guard)]
    return OperatingPoint(
        threshold=threshold,
        served=len(served),
        wrong=sum(1 for p in served if not p.same),
        positives=sum(1 for p in pairs if p.same),
        negatives=sum(1 for p in pairs if not p.same),
        confidence=confidence,
    )


def choose_threshold(
    scored: Sequence[ScoredPair],
    target_precision: float,
    *,
    guard: bool,
    confidence: float = CONFIDENCE,
    window: int = 50,
    variable: str = "threshold",
) -> Calibration:
    """The lowest threshold whose served hits have a precision lower bound >= `target_precision`,
    scanning down from the top and stopping where `window` consecutive pairs (by similarity) fall
    below the target. The local condition keeps the threshold out of a band where most hits are
    wrong but diluted by the many right ones above it: a workload with more near-misses than the
    calibration set would see far more wrong answers there."""
    positives = sum(1 for p in scored if p.same)
    negatives = len(scored) - positives
    best = OperatingPoint(1.0 + 1e-9, 0, 0, positives, negatives, confidence)  # serves nothing
    recommended: OperatingPoint | None = None
    fewest_pairs, best_bound = math.inf, -1.0
    for point in _candidates(scored, target_precision, guard=guard, confidence=confidence, window=window):
        if reaches(point.served - point.wrong, point.served, target_precision, confidence):
            recommended = best = point
        elif recommended is None:
            if not best.served or reaches(point.served - point.wrong, point.served, best_bound, confidence):
                best, best_bound = point, point.precision_lower_bound  # a higher bound than the best so far
            fewest_pairs = min(fewest_pairs, _pairs_needed(point, len(scored), target_precision, confidence))
    if recommended is not None:
        return Calibration(target_precision, recommended, recommended, len(scored), 0, variable)
    more = None if math.isinf(fewest_pairs) else max(1, math.ceil(fewest_pairs) - len(scored))
    return Calibration(target_precision, None, best, len(scored), more, variable)


def _candidates(
    scored: Sequence[ScoredPair], target: float, *, guard: bool, confidence: float, window: int
) -> Iterator[OperatingPoint]:
    """Every threshold from the top down (one per distinct similarity), until `window` consecutive
    served pairs fall below the target."""
    positives = sum(1 for p in scored if p.same)
    eligible = sorted((p for p in scored if p.guard_ok or not guard), key=lambda p: -p.similarity)
    wrong = 0
    recent: deque[bool] = deque(maxlen=window)
    for i, pair in enumerate(eligible):
        wrong += 0 if pair.same else 1
        recent.append(pair.same)
        if len(recent) == window and sum(recent) / window < target:
            return
        if i + 1 < len(eligible) and eligible[i + 1].similarity == pair.similarity:
            continue  # a threshold cannot split tied pairs
        yield OperatingPoint(pair.similarity, i + 1, wrong, positives, len(scored) - positives, confidence)


def _pairs_needed(point: OperatingPoint, pairs: int, target: float, confidence: float) -> float:
    """Labelled pairs it takes for this threshold to qualify, if new pairs look like these: the hits
    it needs at its observed precision, scaled by the share of pairs that land above it."""
    needed = trials_needed(point.precision, target, confidence)
    if needed is None or point.served == 0:
        return math.inf
    return needed * pairs / point.served


def by_route(pairs: Sequence[LabelledPair]) -> dict[str, list[LabelledPair]]:
    routes: dict[str, list[LabelledPair]] = {}
    for pair in pairs:
        routes.setdefault(pair.route, []).append(pair)
    return routes
