"""The semantic cache on real users' questions: hit rate against wrong-answer rate, plain cosine vs
margin's decision, on a held-out split it was never tuned on.

Data: ComQA (real WikiAnswers questions in paraphrase clusters, each with its answers; see
bench/fetch_comqa.py, which puts it in bench/results/comqa/), or with `--corpus stackexchange`
AskUbuntu and Meta Stack Exchange titles that users marked as duplicates, or not (CC BY-SA; see
bench/fetch_stackexchange.py and bench/cache_corpora.py: a cluster is a set of linked duplicates,
its answer the cluster). Without the data this bench says so and exits 0 (CI never runs
benchmarks; nothing here is committed data).

Method, fixed before any tuning:
1. Questions are deduplicated (identical after normalisation; a text in two clusters with different
   answers is dropped) and split by a hash of their cluster id: train or test. Nothing is tuned on test.
2. Two questions "have the same answer" when their clusters' answer sets are equal.
3. Adversarial near-duplicates are made from cached questions by rule (negation, a changed number,
   a swapped unit, swapped entities around "and"/"to", "when" vs "where", "how should I" vs
   "should I"): each has an answer of its own, so any hit from one is wrong.
4. Per split, a static cache: the first question of each cluster (by hash) is cached; the cluster's
   other questions are queries with a true duplicate cached; single-question clusters are split by
   hash into cached distractors and new queries; adversarial variants of cached questions are queries.
5. Each query's 4 nearest cached questions (cosine, MiniLM) are the candidates; a decision accepts
   the first candidate it likes. A hit is wrong when the answers differ.
6. Curves over thresholds on test; the default setting of each decision is chosen on train (the
   lowest threshold whose train wrong rate is <= 0.25%, half the target) and reported on test.
7. The learned decision (margin.caching.semantic.learned: the guard, then a logistic model over
   cosine, rank, gap to the best candidate, lead over the best other candidate and lexical overlap)
   is fitted on the train split only (`--fit-learned` rewrites the shipped model file from it and
   prints the min_probability that 4-fold cross-validation on train picks); its threshold is a
   probability. `--compare-learned FILE` adds another model file's row to the same run.

Embeddings are cached in bench/results/comqa/ (one MiniLM pass over ~11k texts, ~1 min on 2 cores).

    python bench/cache_realistic.py [--corpus comqa|stackexchange] [--curve] [--fit-learned]
    [--compare-learned FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cache_corpora import STACKEXCHANGE, Question, load_stackexchange

from margin.caching.semantic.calibrate import normalise
from margin.caching.semantic.guard import Features, agree, features
from margin.caching.semantic.learned import (
    SHIPPED,
    LearnedDecision,
    PairContext,
    fit_decision,
    load_decision,
    pair_features,
)
from margin.config.cache import SemanticCacheConfig
from margin.embedding import MiniLMEmbedder, minilm_available

DATA = Path(__file__).parent / "results" / "comqa"
LEARNED_OUT = Path(__file__).parents[1] / "src" / "margin" / "caching" / "semantic" / SHIPPED
LEARNED_L2 = 1.0
FILES = ("comqa_train.json", "comqa_dev.json")
CANDIDATES = 4
TRAIN_WRONG_BUDGET = 0.0025


@dataclass
class Split:
    name: str
    cached: list[Question] = field(default_factory=list)
    queries: list[Question] = field(default_factory=list)


def bucket(key: str, buckets: int = 100) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % buckets


def load_questions() -> list[Question] | None:
    if not all((DATA / name).exists() for name in FILES):
        return None
    by_text: dict[str, list[Question]] = {}
    for name in FILES:
        for cluster in json.loads((DATA / name).read_text()):
            answer = frozenset(a.strip().lower() for a in cluster["answers"] if a.strip())
            for text in cluster["questions"]:
                by_text.setdefault(normalise(text), []).append(Question(text, answer, cluster["cluster_id"]))
    kept = []
    for copies in by_text.values():
        if len({q.answer for q in copies}) == 1:  # one text, one answer; else the label is unknowable
            kept.append(copies[0])
    return kept


# -- adversarial near-duplicates ------------------------------------------------------------------

_AUX = re.compile(r"\b(is|was|are|were|did|does|do|can|could|will|would|should|has|have)\b")
_NUMBER = re.compile(r"\b\d+\b")
_UNITS = {
    "miles": "kilometers",
    "kilometers": "miles",
    "km": "miles",
    "feet": "meters",
    "meters": "feet",
    "pounds": "kilograms",
    "dollars": "euros",
    "celsius": "fahrenheit",
    "fahrenheit": "celsius",
}
# Only ordered connectors: "china and india" is "india and china", "paris to rome" is not "rome to paris".
_SWAP = re.compile(r"\b(\w{3,}) (to|than|beat|defeat|defeated|into) (\w{3,})\b")
_FUNCTION = frozenset(
    [
        "the",
        "and",
        "for",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "how",
        "did",
        "does",
        "are",
        "is",
        "has",
        "have",
        "been",
        "with",
        "according",
    ]
)
_WH = {"when": "where", "where": "when", "who": "what", "largest": "smallest", "first": "last", "born": "die"}


def adversarial(text: str) -> list[tuple[str, str]]:
    lowered = text.lower()
    out = []
    if match := _AUX.search(lowered):
        out.append(("negation", lowered[: match.end()] + " not" + lowered[match.end() :]))
    if match := _NUMBER.search(lowered):
        out.append(("number", lowered[: match.start()] + str(int(match.group()) + 1) + lowered[match.end() :]))
    for unit, other in _UNITS.items():
        if re.search(rf"\b{unit}\b", lowered):
            out.append(("unit", re.sub(rf"\b{unit}\b", other, lowered, count=1)))
            break
    match = _SWAP.search(lowered)
    if match and match.group(1) != match.group(3) and not {match.group(1), match.group(3)} & _FUNCTION:
        swapped = f"{match.group(3)} {match.group(2)} {match.group(1)}"
        out.append(("swapped", lowered[: match.start()] + swapped + lowered[match.end() :]))
    for word, other in _WH.items():
        if re.search(rf"\b{word}\b", lowered):
            out.append(("wh-word", re.sub(rf"\b{word}\b", other, lowered, count=1)))
            break
    if match := re.match(r"how (should|can|do|does) ", lowered):
        out.append(("how-should", lowered[len("how ") :]))
    return out


def make_splits(questions: Sequence[Question]) -> dict[str, Split]:
    clusters: dict[str, list[Question]] = {}
    for q in questions:
        clusters.setdefault(q.cluster, []).append(q)
    splits = {"train": Split("train"), "test": Split("test")}
    for cluster_id, members in clusters.items():
        split = splits["train" if bucket("split:" + cluster_id) < 50 else "test"]
        members = sorted(members, key=lambda q: bucket("order:" + q.text, 10**6))
        if len(members) == 1 and bucket("role:" + cluster_id) < 50:
            split.queries.append(members[0])  # a new question: nothing of its kind is cached
            continue
        split.cached.append(members[0])
        split.queries.extend(members[1:])
        for kind, variant in adversarial(members[0].text)[:2]:
            if bucket("adv:" + variant) < 40:
                split.queries.append(Question(variant, None, "adv:" + variant, kind))
    return splits


# -- embeddings (cached) --------------------------------------------------------------------------


def embed_all(texts: Sequence[str], directory: Path = DATA) -> dict[str, np.ndarray]:
    unique = sorted(set(texts))
    digest = hashlib.sha256("\n".join(unique).encode()).hexdigest()[:16]
    path = directory / f"embeddings-minilm-{digest}.npy"
    if path.exists():
        matrix = np.load(path)
    else:
        embedder = MiniLMEmbedder(threads=2)
        embedder.load()
        started = time.perf_counter()
        matrix = np.concatenate([embedder.embed(unique[i : i + 64]) for i in range(0, len(unique), 64)])
        print(f"embedded {len(unique)} texts in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        np.save(path, matrix)
    return dict(zip(unique, matrix, strict=True))


# -- decisions ------------------------------------------------------------------------------------


@dataclass
class Candidate:
    cached: Question
    similarity: float


@dataclass
class Query:
    question: Question
    candidates: list[Candidate]


def candidates(split: Split, vectors: dict[str, np.ndarray]) -> list[Query]:
    matrix = np.stack([vectors[q.text] for q in split.cached])
    out = []
    for q in split.queries:
        scores = matrix @ vectors[q.text]
        top = np.argsort(-scores)[:CANDIDATES]
        out.append(Query(q, [Candidate(split.cached[i], float(scores[i])) for i in top]))
    return out


Feats = Callable[[str], Features]
Decision = Callable[[Query, float], Candidate | None]
COSINE_GRID = [round(x, 3) for x in np.arange(0.70, 1.0001, 0.005)]
PROBABILITY_GRID = sorted({round(float(x), 4) for x in 1 - np.geomspace(0.5, 0.0005, 120)})
BUDGETS = (0.001, 0.0025, 0.005, 0.01, 0.02)


@dataclass(frozen=True)
class Rule:
    decide: Decision
    grid: Sequence[float]


def cosine(query: Query, threshold: float) -> Candidate | None:
    best = query.candidates[0]
    return best if best.similarity >= threshold else None


def guarded(feats: Feats) -> Decision:
    def decide(query: Query, threshold: float) -> Candidate | None:
        for c in query.candidates:
            if c.similarity < threshold:
                return None
            if agree(feats(c.cached.text), feats(query.question.text)).ok:
                return c
        return None

    return decide


def learned(model: LearnedDecision, feats: Feats) -> Decision:
    """As the engine decides with a learned model: candidates best first down to the model's cosine
    floor, the guard first, then the model's probability against the threshold."""
    scores: dict[tuple[str, str], float] = {}

    def probability(query: Query, rank: int) -> float:
        c = query.candidates[rank]
        key = (query.question.text, c.cached.text)
        if key not in scores:
            context = context_of(query, rank)
            row = pair_features(feats(query.question.text), feats(c.cached.text), c.similarity, context)
            scores[key] = model.probability(row)
        return scores[key]

    def decide(query: Query, threshold: float) -> Candidate | None:
        for rank, c in enumerate(query.candidates):
            if c.similarity < model.floor:
                return None
            if agree(feats(c.cached.text), feats(query.question.text)).ok and probability(query, rank) >= threshold:
                return c
        return None

    return decide


def fit_learned(train: Sequence[Query], feats: Feats, floor: float) -> LearnedDecision:
    """The learned model from the train split only: every candidate above the floor that the guard lets through."""
    rows, labels = training_rows(train, feats, floor)
    source = (
        f"ComQA train split of bench/cache_realistic.py ({len(train)} queries, {len(rows)} guard-passing candidate "
        f"pairs with cosine >= {floor}; MiniLM; L2 {LEARNED_L2}); python bench/cache_realistic.py --fit-learned"
    )
    return fit_decision(np.stack(rows), labels, l2=LEARNED_L2, trained_on=source, floor=floor)


def training_rows(queries: Sequence[Query], feats: Feats, floor: float) -> tuple[list[np.ndarray], list[bool]]:
    rows, labels = [], []
    for query in queries:
        for rank, c in enumerate(query.candidates):
            if c.similarity < floor or not agree(feats(c.cached.text), feats(query.question.text)).ok:
                continue
            rows.append(
                pair_features(feats(query.question.text), feats(c.cached.text), c.similarity, context_of(query, rank))
            )
            labels.append(right(query, c))
    return rows, labels


def cross_validated_default(train: Sequence[Query], feats: Feats, floor: float, folds: int = 4) -> Point:
    """`min_probability` from the train split alone, by cross-validation over clusters: each train
    query is decided by a model fitted on the other folds; the lowest probability whose out-of-fold
    wrong rate stays within TRAIN_WRONG_BUDGET (the default the config documents)."""
    fold_of = [bucket("cv:" + q.question.cluster, folds) for q in train]
    deciders = {}
    for fold in range(folds):
        rows, labels = training_rows([q for q, f in zip(train, fold_of, strict=True) if f != fold], feats, floor)
        deciders[fold] = learned(fit_decision(np.stack(rows), labels, l2=LEARNED_L2, floor=floor), feats)
    points = []
    for t in PROBABILITY_GRID:
        hits = [(q, h) for q, f in zip(train, fold_of, strict=True) if (h := deciders[f](q, t)) is not None]
        points.append(Point(t, len(hits), sum(1 for q, h in hits if not right(q, h)), len(train)))
    chosen = default_from_train(points)
    return next(p for p in points if p.threshold == chosen)


def context_of(query: Query, rank: int) -> PairContext:
    """As the engine sees a candidate: its rank, the best candidate's cosine and the runner-up's, and
    which candidates' cached answers are its own (a cached question's answer is its cluster's; an
    adversarial variant's is unknown, unlike any other)."""
    similarities = [c.similarity for c in query.candidates]
    return PairContext.among(similarities, rank, [c.cached.answer for c in query.candidates])


def right(query: Query, hit: Candidate) -> bool:
    return query.question.answer is not None and hit.cached.answer == query.question.answer


@dataclass(frozen=True)
class Point:
    threshold: float
    hits: int
    wrong: int
    queries: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries

    @property
    def wrong_rate(self) -> float:
        return self.wrong / self.queries


def curve(queries: Sequence[Query], decide: Decision, thresholds: Sequence[float]) -> list[Point]:
    points = []
    for t in thresholds:
        hits = [(q, h) for q in queries if (h := decide(q, t)) is not None]
        points.append(Point(t, len(hits), sum(1 for q, h in hits if not right(q, h)), len(queries)))
    return points


def best_within(points: Sequence[Point], wrong_rate: float) -> Point | None:
    allowed = [p for p in points if p.wrong_rate <= wrong_rate]
    return max(allowed, key=lambda p: p.hits) if allowed else None


def default_from_train(points: Sequence[Point]) -> float:
    """The lowest threshold whose train wrong rate is within budget, from the top down."""
    chosen = max(p.threshold for p in points)
    for p in sorted(points, key=lambda p: -p.threshold):
        if p.wrong_rate > TRAIN_WRONG_BUDGET:
            break
        chosen = p.threshold
    return chosen


# -- the report -----------------------------------------------------------------------------------


def composition(split: Split) -> str:
    kinds: dict[str, int] = {}
    for q in split.queries:
        kinds[q.kind] = kinds.get(q.kind, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))


def run(show_curve: bool, fit: bool, corpus: str = "comqa", compare: Path | None = None) -> int:
    directory = DATA if corpus == "comqa" else STACKEXCHANGE
    clustering = load_stackexchange() if corpus == "stackexchange" else None
    questions = load_questions() if corpus == "comqa" else (clustering.questions if clustering else None)
    if not questions:
        print(f"{corpus} not found in {directory}: run bench/fetch_{corpus}.py first (skipped)")
        return 0
    if not minilm_available():
        print("MiniLM not installed (the embed extra): skipped")
        return 0
    splits = make_splits(questions)
    vectors = embed_all([q.text for s in splits.values() for q in (*s.cached, *s.queries)], directory)
    cache: dict[str, Features] = {}

    def feats(text: str) -> Features:
        found = cache.get(text)
        if found is None:
            found = cache[text] = features(text)
        return found

    train, test = candidates(splits["train"], vectors), candidates(splits["test"], vectors)
    if fit:
        LEARNED_OUT.write_bytes(fit_learned(train, feats, floor=0.8).to_json())
        print(f"fitted on the train split only, written to {LEARNED_OUT}")
        cv = cross_validated_default(train, feats, floor=0.8)
        print(
            f"min_probability from 4-fold CV on train (by cluster): {cv.threshold} "
            f"(out of fold: {cv.hit_rate:.1%} hits, {cv.wrong_rate:.2%} wrong of {cv.queries} train queries)"
        )
    model = load_decision()
    chosen = {
        "cosine": Rule(cosine, COSINE_GRID),
        "guarded": Rule(guarded(feats), COSINE_GRID),
        "learned": Rule(learned(model, feats), PROBABILITY_GRID),
    }
    if compare is not None:
        chosen["compared"] = Rule(learned(load_decision(compare), feats), PROBABILITY_GRID)
        print(f"compared: the learned model in {compare}")
    print(f"corpus: {corpus}; machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"learned model: {model.trained_on}")
    for split in splits.values():
        print(f"{split.name}: {len(split.cached)} cached, {len(split.queries)} queries ({composition(split)})")
    for label, keep in (("all test queries (real + adversarial)", None), ("real test queries only", "real")):
        report(
            label,
            chosen,
            [q for q in train if keep in (None, q.question.kind)],
            [q for q in test if keep in (None, q.question.kind)],
            show_curve,
        )
    return 0


def report(label: str, chosen: dict[str, Rule], train: list[Query], test: list[Query], show_curve: bool) -> None:
    print(f"\n{label}: {len(test)}")
    budgets = "".join(f"  {'wrong <= ' + format(b, '.2%'):>18}" for b in BUDGETS)
    print(f"{'decision':<9} {'default (train)':>15} {'test hit':>9} {'wrong':>6}{budgets}   (best test hit, x cosine)")
    test_curves = {}
    for name, rule in chosen.items():
        default = default_from_train(curve(train, rule.decide, rule.grid))
        at_default = curve(test, rule.decide, [default])[0]
        test_curves[name] = curve(test, rule.decide, rule.grid)
        cells = ""
        for budget in BUDGETS:
            best = best_within(test_curves[name], budget)
            base = best_within(test_curves["cosine"], budget)
            ratio = f"{best.hits / base.hits:.2f}x" if best and base and base.hits else "-"
            cells += f"  {f'{best.hit_rate:.1%} ({ratio})' if best else '-':>18}"
        print(f"{name:<9} {default:>15.4f} {at_default.hit_rate:>9.2%} {at_default.wrong_rate:>6.2%}{cells}")
    documented = SemanticCacheConfig()
    for name, setting in (("guarded", documented.threshold), ("learned", documented.min_probability)):
        p = curve(test, chosen[name].decide, [setting])[0]
        print(f"{name} at the config default {setting:g}: {p.hit_rate:.2%} hit, {p.wrong_rate:.2%} wrong ({p.wrong})")
    if show_curve:
        print("test curves: threshold  hit% / wrong%")
        for name, points in test_curves.items():
            print(f"{name}: " + ", ".join(f"{p.threshold:g} {p.hit_rate:.1%}/{p.wrong_rate:.2%}" for p in points))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curve", action="store_true", help="print the whole test curve of each decision")
    parser.add_argument(
        "--corpus", choices=("comqa", "stackexchange"), default="comqa", help="see bench/cache_corpora.py"
    )
    parser.add_argument(
        "--fit-learned", action="store_true", help=f"fit the learned decision on the train split, write {SHIPPED}"
    )
    parser.add_argument(
        "--compare-learned", type=Path, metavar="FILE", help="also report the learned decision with this model file"
    )
    args = parser.parse_args()
    if args.fit_learned and args.corpus != "comqa":
        parser.error("--fit-learned fits the shipped model on ComQA's train split only")
    return run(args.curve, args.fit_learned, args.corpus, args.compare_learned)


if __name__ == "__main__":
    sys.exit(main())
