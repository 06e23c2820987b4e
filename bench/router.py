"""Learned-router benchmark on the RouteLLM outcomes (../shared/data/routellm), in one run.

It measures the model that `margin router train DATA` with defaults produces: one model over every
benchmark of the file (contaminated rows dropped, as train drops them). Cross-validation over the
file's own folds (its `fold` field): for each fold, train on the other folds (every searched
hyper-parameter is picked on inner folds of those rows), score the held-out fold, and report each
benchmark's metrics as the mean and spread over the held-out folds. A bag-of-words ridge regression
trained on the same rows in the same fold is the baseline. Also measured: the strong share that
thresholds calibrated for a configured share give on the held-out fold, transfer across benchmarks,
and the decision latency (scorer + thresholds, one prompt per call) pinned to one core.

Embeddings of the prompts are cached in bench/results/router_cache/ (git-ignored), so a rerun
skips the embedder; the static token table is cached there too (distilling it takes ~40 s).

    python bench/router.py [--data DIR] [--embedder static] [--no-cross] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from margin.embedding import StaticMiniLMEmbedder
from margin.routing.learned.baselines import fit_bag_of_words_ridge
from margin.routing.learned.crossval import rows_of
from margin.routing.learned.evaluation import Evaluation, evaluate_scores
from margin.routing.learned.features import FeatureSpec, Featurizer
from margin.routing.learned.outcomes import Outcomes, load_outcomes
from margin.routing.learned.router import LearnedRouter
from margin.routing.learned.thresholds import TierThresholds
from margin.routing.learned.training import TrainingResult, train_scorer

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routellm"
DATA_FILE = "routellm_pairs_train.jsonl"
CACHE = Path(__file__).resolve().parent / "results" / "router_cache"
# (APGR, CPT50, CPT80) of the best published RouteLLM router, from the data README.
ANCHORS = {"mmlu": (0.603, 0.354, 0.703), "gsm8k": (0.622, 0.336, 0.633)}
CROSS = (("mmlu", "gsm8k"), ("gsm8k", "mmlu"), ("mmlu+gsm8k", "mtbench"))
SHARES = (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9)


@dataclass
class FoldResult:
    fold: int
    router: dict[str, Evaluation]  # by benchmark
    baseline: dict[str, Evaluation]
    realised_share: dict[float, float]  # configured share -> share of held-out prompts sent strong
    gated_right: dict[str, float]  # benchmark -> share of its held-out prompts the gate sent to its task
    seconds: float


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MARGIN_ROUTELLM_DIR", DEFAULT_DATA)))
    parser.add_argument("--embedder", default="static", help="the featurizer's embedder (train's --embedder)")
    parser.add_argument("--no-cross", action="store_true", help="skip the cross-benchmark rows")
    parser.add_argument("--latency-prompts", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write every number as JSON here")
    args = parser.parse_args()
    path = args.data / DATA_FILE
    if not path.is_file():
        print(f"no data at {path}; pass --data", file=sys.stderr)
        return 2
    outcomes = load_outcomes(path).select(include_contaminated=False)
    featurizer = build_featurizer(args.embedder)
    features = cached_features(featurizer, outcomes)
    folds: list[FoldResult] = []
    last: TrainingResult | None = None
    for fold in outcomes.fold_names():
        result, last = run_fold(outcomes, features, featurizer, fold)
        folds.append(result)
    assert last is not None  # the file has at least one fold
    cross = [] if args.no_cross else cross_benchmark(outcomes, features, featurizer)
    latency = decision_latency(last, outcomes, args.latency_prompts)
    print(report(outcomes, folds, cross, latency, last))
    if args.json:
        args.json.write_text(json.dumps(as_json(folds, cross, latency), indent=2), encoding="utf-8")
    return 0


def build_featurizer(embedder: str) -> Featurizer:
    spec = FeatureSpec(embedder=embedder)  # type: ignore[arg-type]  # from the command line
    if embedder != "static":
        return Featurizer(spec)
    table_path = CACHE / "static_table.npy"
    if not table_path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(table_path, StaticMiniLMEmbedder.distil().table)
    return Featurizer(spec, StaticMiniLMEmbedder(np.load(table_path), max_tokens=spec.max_tokens, keep=spec.keep))


def cached_features(featurizer: Featurizer, outcomes: Outcomes) -> np.ndarray:
    """The featurizer's rows for every prompt, from the cache when the prompts and spec match."""
    digest = hashlib.sha256(json.dumps([featurizer.spec.to_json(), outcomes.prompts]).encode()).hexdigest()[:16]
    path = CACHE / f"features_{featurizer.spec.embedder}_{digest}.npy"
    if path.is_file():
        return np.asarray(np.load(path), dtype=np.float64)
    started = time.perf_counter()
    features = featurizer.transform(outcomes.prompts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, features)
    print(f"featurized {len(outcomes)} prompts in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return features


def run_fold(
    outcomes: Outcomes, features: np.ndarray, featurizer: Featurizer, fold: int
) -> tuple[FoldResult, TrainingResult]:
    started = time.perf_counter()
    test = outcomes.fold == fold
    train_rows, test_rows = outcomes.take(~test), outcomes.take(test)
    trained = train_scorer(train_rows, featurizer=featurizer, features=features[~test])
    scores = trained.scorer.score_features(features[test], test_rows.prompts)
    baseline = fit_bag_of_words_ridge(train_rows).score(test_rows.prompts)
    realised = {}
    for share in SHARES:
        threshold = trained.calibration.threshold_for_share(share)
        realised[share] = float(np.mean(scores >= threshold))
    result = FoldResult(
        fold=fold,
        router=per_benchmark(scores, test_rows),
        baseline=per_benchmark(baseline, test_rows),
        realised_share=realised,
        gated_right=gate_accuracy(trained, features[test], test_rows),
        seconds=time.perf_counter() - started,
    )
    print(f"fold {fold}: trained and scored in {result.seconds:.0f}s (l2 {trained.l2})", file=sys.stderr)
    return result, trained


def gate_accuracy(trained: TrainingResult, features: np.ndarray, outcomes: Outcomes) -> dict[str, float]:
    gate = trained.scorer.gate
    if gate is None:
        return {}
    predicted = np.asarray(gate.tasks)[gate.predict(features)]
    truth = np.asarray(outcomes.benchmarks)
    return {name: float(np.mean(predicted[truth == name] == name)) for name in outcomes.benchmark_names()}


def per_benchmark(scores: np.ndarray, outcomes: Outcomes) -> dict[str, Evaluation]:
    evaluations = {}
    for benchmark in outcomes.benchmark_names():
        rows = rows_of(outcomes, [benchmark])
        evaluations[benchmark] = evaluate_scores(scores[rows], outcomes.take(rows))
    return evaluations


def cross_benchmark(outcomes: Outcomes, features: np.ndarray, featurizer: Featurizer) -> list[dict[str, Any]]:
    """Train on every row of one benchmark (or two), evaluate on every row of another."""
    rows = []
    for source, target in CROSS:
        train_mask, test_mask = rows_of(outcomes, source.split("+")), rows_of(outcomes, [target])
        train_rows, test_rows = outcomes.take(train_mask), outcomes.take(test_mask)
        trained = train_scorer(train_rows, featurizer=featurizer, features=features[train_mask])
        scores = trained.scorer.score_features(features[test_mask], test_rows.prompts)
        baseline = fit_bag_of_words_ridge(train_rows).score(test_rows.prompts)
        rows.append(
            {
                "setting": f"{source} -> {target}",
                "test_rows": len(test_rows),
                "router": evaluate_scores(scores, test_rows).router_summary,
                "baseline": evaluate_scores(baseline, test_rows).router_summary,
            }
        )
    return rows


def decision_latency(trained: TrainingResult, outcomes: Outcomes, count: int, rounds: int = 3) -> dict[str, Any]:
    """Milliseconds per LearnedRouter.route(prompt) (featurize, word score, gate, head, threshold),
    one prompt per call, with this process pinned to one CPU. Each round times the same prompts;
    the figures are the median round's, so one burst of other jobs on the shared cores does not
    decide them (every round's p99 is reported beside)."""
    table = trained.calibration
    router = LearnedRouter(trained.scorer, TierThresholds.by_share(table, ("cheap", "strong"), [0.3]))
    rng = np.random.default_rng(0)
    sample = [outcomes.prompts[i] for i in rng.choice(len(outcomes), size=min(count, len(outcomes)), replace=False)]
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        router.route_many(sample[:20])  # warm-up: tokenizer load, first-call allocations
        measured = [_time_routes(router, sample) for _ in range(rounds)]
    finally:
        os.sched_setaffinity(0, allowed)
    p99s = [float(np.percentile(values, 99)) for values in measured]
    median = measured[int(np.argsort(p99s)[len(p99s) // 2])]
    return {
        "p50": float(np.percentile(median, 50)),
        "p95": float(np.percentile(median, 95)),
        "p99": float(np.percentile(median, 99)),
        "max": float(median.max()),
        "p99_by_round": p99s,
        "load_1min": os.getloadavg()[0],
    }


def _time_routes(router: LearnedRouter, prompts: list[str]) -> np.ndarray:
    timings = []
    for prompt in prompts:
        started = time.perf_counter()
        router.route(prompt)
        timings.append((time.perf_counter() - started) * 1e3)
    return np.array(timings)


def fold_stats(folds: list[FoldResult], benchmark: str, side: str, metric: str) -> tuple[float, float, float]:
    """Mean, std and min over the held-out folds of one summary metric."""
    values = [getattr(getattr(f, side)[benchmark].router_summary, metric) for f in folds if benchmark in f.router]
    return float(np.mean(values)), float(np.std(values)), float(np.min(values))


def report(
    outcomes: Outcomes,
    folds: list[FoldResult],
    cross: list[dict[str, Any]],
    latency: dict[str, Any],
    last: TrainingResult,
) -> str:
    lines = [
        f"Model: {last.scorer.name} (margin router train defaults; {last.scorer.metadata['vocabulary_size']} "
        f"terms), {len(folds)}-fold cross-validation over the file's folds, {len(outcomes)} uncontaminated prompts.",
        "",
        *benchmark_table(outcomes, folds),
        "",
        "Realised strong share on the held-out fold at a configured share (thresholds from the model's calibration):",
        *share_table(folds),
        "",
        "Gate: held-out prompts sent to their own benchmark's task: "
        + ", ".join(
            f"{name} {np.mean([f.gated_right[name] for f in folds if name in f.gated_right]):.1%}"
            for name in outcomes.benchmark_names()
            if any(name in f.gated_right for f in folds)
        ),
        "",
    ]
    if cross:
        lines += [*cross_table(cross), ""]
    rounds = ", ".join(f"{value:.2f}" for value in latency["p99_by_round"])
    lines.append(
        f"Decision latency, one prompt per call, one core (median of {len(latency['p99_by_round'])} rounds): "
        f"p50 {latency['p50']:.2f} ms, p95 {latency['p95']:.2f} ms, p99 {latency['p99']:.2f} ms, "
        f"max {latency['max']:.2f} ms; p99 by round {rounds} ms (load average {latency['load_1min']:.1f})."
    )
    return "\n".join(lines)


def benchmark_table(outcomes: Outcomes, folds: list[FoldResult]) -> list[str]:
    header = (
        "benchmark",
        "test rows",
        "APGR (+-std, min)",
        "CPT(50%)",
        "CPT(80%)",
        "red@95%",
        "BoW ridge APGR",
        "BoW CPT(50%)",
        "gain over BoW",
        "published",
    )
    rows = []
    for benchmark in outcomes.benchmark_names():
        mean, std, low = fold_stats(folds, benchmark, "router", "apgr")
        base_mean, base_std, _ = fold_stats(folds, benchmark, "baseline", "apgr")
        gains = [f.router[benchmark].router_summary.apgr - f.baseline[benchmark].router_summary.apgr for f in folds]
        anchor = ANCHORS.get(benchmark)
        rows.append(
            (
                benchmark,
                str(sum(f.router[benchmark].rows for f in folds)),
                f"{mean:.3f} +-{std:.3f} ({low:.3f})",
                f"{fold_stats(folds, benchmark, 'router', 'cpt50')[0]:.1%}",
                f"{fold_stats(folds, benchmark, 'router', 'cpt80')[0]:.1%}",
                f"{fold_stats(folds, benchmark, 'router', 'strong_call_reduction_at_95')[0]:.1%}",
                f"{base_mean:.3f} +-{base_std:.3f}",
                f"{fold_stats(folds, benchmark, 'baseline', 'cpt50')[0]:.1%}",
                f"{np.mean(gains):+.3f} (min {np.min(gains):+.3f})",
                f"{anchor[0]:.3f} / {anchor[1]:.1%}" if anchor else "-",
            )
        )
    notes = [
        "APGR: mean over held-out folds, +- std, (min); CPT and red@95% (strong calls saved at 95% of strong-only",
        "quality): means. Random router: APGR 0.500, CPT(50%) 50%. published: best RouteLLM router, APGR / CPT(50%).",
    ]
    return [*_table(header, rows), *notes]


def share_table(folds: list[FoldResult]) -> list[str]:
    header = ("configured", *(f"fold {f.fold}" for f in folds), "worst error")
    rows = []
    for share in SHARES:
        realised = [f.realised_share[share] for f in folds]
        worst = max(realised, key=lambda value: abs(value - share))
        rows.append((f"{share:.0%}", *(f"{value:.1%}" for value in realised), f"{(worst - share) * 100:+.1f} points"))
    return _table(header, rows)


def cross_table(cross: list[dict[str, Any]]) -> list[str]:
    header = ("cross-benchmark", "test rows", "APGR", "CPT(50%)", "CPT(80%)", "BoW ridge APGR")
    rows = [
        (
            item["setting"],
            str(item["test_rows"]),
            f"{item['router'].apgr:.3f}",
            f"{item['router'].cpt50:.1%}",
            f"{item['router'].cpt80:.1%}",
            f"{item['baseline'].apgr:.3f}",
        )
        for item in cross
    ]
    return _table(header, rows)


def as_json(folds: list[FoldResult], cross: list[dict[str, Any]], latency: dict[str, Any]) -> dict[str, Any]:
    def summary(evaluation: Evaluation) -> dict[str, float]:
        s = evaluation.router_summary
        return {"apgr": s.apgr, "cpt50": s.cpt50, "cpt80": s.cpt80, "red95": s.strong_call_reduction_at_95}

    return {
        "folds": [
            {
                "fold": f.fold,
                "router": {b: summary(e) for b, e in f.router.items()},
                "baseline": {b: summary(e) for b, e in f.baseline.items()},
                "realised_share": {str(k): v for k, v in f.realised_share.items()},
                "gated_right": f.gated_right,
                "seconds": f.seconds,
            }
            for f in folds
        ],
        "cross": [
            {"setting": c["setting"], "router_apgr": c["router"].apgr, "baseline_apgr": c["baseline"].apgr}
            for c in cross
        ],
        "latency_ms": latency,
    }


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


if __name__ == "__main__":
    sys.exit(main())
