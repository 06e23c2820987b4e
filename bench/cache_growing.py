"""The semantic cache's decisions in a cache that grows, as the gateway's does: every miss is stored.

bench/cache_realistic.py measures a static cache (one question per cluster cached), where two close
cached questions always have different answers. Here each split's queries are replayed in a fixed
order (by hash) against a cache that starts with the split's cached questions and stores every
query it misses (with its cluster's answer), so paraphrases of one another pile up in the cache as
they would in production, and a decision that refuses close neighbours pays for it.

Decisions: plain cosine, the guarded cosine, the learned decision on the 15 pair features and the
learned decision with `ahead_of_rival` (16 features). `--split test` (default): the learned models
are fitted on the whole train split (the 16-feature one is the shipped file when it was fitted that
way) and the test split is replayed. `--split train`: 4-fold cross-validation by cluster, each
fold replayed with models fitted on the other folds. Printed: the most hits each decision serves
with a wrong rate within each budget (threshold picked on the replayed split: an upper envelope,
as in cache_realistic.py) and the hits at the config defaults. Data: ComQA, as cache_realistic.py.

    python bench/cache_growing.py [--split test|train]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from cache_corpora import Question
from cache_realistic import (
    LEARNED_L2,
    Candidate,
    Decision,
    Feats,
    Query,
    Split,
    bucket,
    cosine,
    embed_all,
    guarded,
    learned,
    load_questions,
    make_splits,
    right,
    training_rows,
)
from cache_realistic import candidates as static_candidates

from margin.caching.semantic.guard import Features, features
from margin.caching.semantic.learned import FEATURES, PAIR_FEATURES, LearnedDecision, fit_decision
from margin.config.cache import SemanticCacheConfig
from margin.embedding import minilm_available

COSINES = (0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.995)
PROBABILITIES = (
    0.8,
    0.85,
    0.9,
    0.92,
    0.94,
    0.95,
    0.96,
    0.963,
    0.967,
    0.97,
    0.975,
    0.98,
    0.985,
    0.99,
    0.995,
    0.998,
    0.999,
)
BUDGETS = (0.001, 0.005, 0.01)
FOLDS = 4


def replay(
    cached: Sequence[Question], queries: Sequence[Question], vectors: dict[str, np.ndarray], decide: Decision, t: float
) -> np.ndarray:
    """[hits, wrong, real hits, real wrong] of one replay at threshold t."""
    cache = list(cached)
    matrix = np.zeros((len(cached) + len(queries), next(iter(vectors.values())).shape[0]), dtype=np.float32)
    for i, q in enumerate(cache):
        matrix[i] = vectors[q.text]
    counts = np.zeros(4)
    for q in sorted(queries, key=lambda q: bucket("replay:" + q.text, 10**6)):
        scores = matrix[: len(cache)] @ vectors[q.text]
        near = np.argpartition(-scores, 3)[:4] if len(cache) > 4 else np.arange(len(cache))
        top = near[np.argsort(-scores[near])]
        query = Query(q, [Candidate(cache[j], float(scores[j])) for j in top])
        hit = decide(query, t)
        if hit is None:
            matrix[len(cache)] = vectors[q.text]
            cache.append(q)
            continue
        wrong = not right(query, hit)
        counts += [1, wrong, q.kind == "real", q.kind == "real" and wrong]
    return counts


def fit(queries: Sequence[Query], feats: Feats, names: tuple[str, ...]) -> LearnedDecision:
    rows, labels = training_rows(queries, feats, 0.8)
    return fit_decision(np.stack(rows), labels, l2=LEARNED_L2, floor=0.8, features=names)


def _fold_of(cluster: str) -> int:
    return bucket("cv:" + cluster, FOLDS)


def run(split_name: str) -> int:
    questions = load_questions()
    if questions is None or not minilm_available():
        print("ComQA or MiniLM missing (see bench/cache_realistic.py): skipped")
        return 0
    splits = make_splits(questions)
    vectors = embed_all([q.text for s in splits.values() for q in (*s.cached, *s.queries)])
    memo: dict[str, Features] = {}

    def feats(text: str) -> Features:
        if text not in memo:
            memo[text] = features(text)
        return memo[text]

    train = static_candidates(splits["train"], vectors)
    if split_name == "test":
        parts = [(splits["test"], train)]
    else:
        parts = []
        for fold in range(FOLDS):
            part = Split(f"train fold {fold}")
            part.cached = [q for q in splits["train"].cached if _fold_of(q.cluster) == fold]
            part.queries = [q for q in splits["train"].queries if _fold_of(q.cluster) == fold]
            parts.append((part, [q for q in train if _fold_of(q.question.cluster) != fold]))
    totals = {name: np.zeros((len(grid), 4)) for name, grid in GRIDS.items()}
    for part, fit_on in parts:
        models = {
            "learned-15": fit(fit_on, feats, PAIR_FEATURES),
            "learned-16": fit(fit_on, feats, RIVAL_FEATURES),
            "learned-17": fit(fit_on, feats, FEATURES),
        }
        for name, grid in GRIDS.items():
            for i, t in enumerate(grid):
                decide = (
                    cosine
                    if name == "cosine"
                    else guarded(feats)
                    if name == "guarded"
                    else learned(models[name], feats)
                )
                totals[name][i] += replay(part.cached, part.queries, vectors, decide, t)
    report(
        split_name,
        totals,
        sum(len(p.queries) for p, _ in parts),
        sum(1 for p, _ in parts for q in p.queries if q.kind == "real"),
    )
    return 0


GRIDS = {
    "cosine": COSINES,
    "guarded": COSINES,
    "learned-15": PROBABILITIES,
    "learned-16": PROBABILITIES,
    "learned-17": PROBABILITIES,
}
RIVAL_FEATURES = FEATURES[: FEATURES.index("ahead_of_rival") + 1]


def report(split_name: str, totals: dict[str, np.ndarray], queries: int, real: int) -> None:
    documented = SemanticCacheConfig()
    defaults = {
        "guarded": documented.threshold,
        "learned-15": documented.min_probability,
        "learned-16": documented.min_probability,
        "learned-17": documented.min_probability,
    }
    print(f"growing cache, {split_name} split: {queries} queries ({real} real); every miss stored")
    budgets = "".join(f"{'<= ' + format(b, '.1%'):>12}" for b in BUDGETS)
    print(f"{'decision':<11} {'set':<5}{budgets}   at the config default")
    for name, grid in GRIDS.items():
        for label, (h, w, n) in (("all", (0, 1, queries)), ("real", (2, 3, real))):
            cells = ""
            for budget in BUDGETS:
                allowed = [row[h] for row in totals[name] if row[w] <= budget * n]
                cells += f"{(format(max(allowed) / n, '.1%') if allowed else '-'):>12}"
            at = ""
            if name in defaults:
                row = totals[name][list(grid).index(defaults[name])]
                at = f"{row[h] / n:.1%} hits, {row[w] / n:.2%} wrong ({int(row[w])}) at {defaults[name]}"
            print(f"{name:<11} {label:<5}{cells}   {at}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("test", "train"), default="test")
    return run(parser.parse_args().split)


if __name__ == "__main__":
    sys.exit(main())
