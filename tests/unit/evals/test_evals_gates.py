"""Paired comparisons and the gate verdict: non-inferiority on quality, ceilings on the rest."""

from __future__ import annotations

from decimal import Decimal

import pytest
from evals_support import row, run_of
from pydantic import ValidationError

from margin.config.gates import GatesConfig, QualityGate
from margin.config.model import ModelGroupConfig
from margin.evals.compare import compare_runs
from margin.evals.errors import ResultsFileError
from margin.evals.gates import apply_gates

N = 100


def runs(wrong_in_candidate: int, wrong_in_baseline: int = 0, model: str = "cand") -> tuple:  # type: ignore[type-arg]
    baseline = run_of([row(f"q{i}", 0.0 if i < wrong_in_baseline else 1.0, model="base") for i in range(N)])
    candidate = run_of([row(f"q{i}", 0.0 if N - i <= wrong_in_candidate else 1.0, model=model) for i in range(N)])
    return baseline, candidate


def gate(verdict: object, name: str):  # type: ignore[no-untyped-def]
    return next(g for g in verdict.gates if g.name == name)  # type: ignore[attr-defined]


def test_an_equal_candidate_passes_quality_and_a_worse_one_fails() -> None:
    equal = compare_runs(*runs(0))
    assert equal.mean_diff == 0.0 and equal.ties == N
    verdict = apply_gates(equal, GatesConfig())
    assert verdict.passed and [g.name for g in verdict.gates] == ["coverage", "quality"]
    worse = compare_runs(*runs(20))
    assert worse.mean_diff == pytest.approx(-0.2) and len(worse.losses) == 20 and not worse.wins
    assert worse.mcnemar is not None and worse.mcnemar.p_value == pytest.approx(2 / 2**20)
    failed = apply_gates(worse, GatesConfig())
    assert not failed.passed and [g.name for g in failed.failed] == ["quality"]
    quality = gate(failed, "quality")
    assert quality.bound == -0.02 and quality.rule == ">" and quality.measured < -0.1


def test_non_inferiority_uses_the_lower_bound_not_the_mean() -> None:
    # 2 losses in 100 items: mean difference -0.02; its 95% lower bound is well below it
    comparison = compare_runs(*runs(2))
    assert comparison.mean_diff == pytest.approx(-0.02)
    tolerant = apply_gates(comparison, GatesConfig(quality=QualityGate(max_drop=0.05)))
    strict = apply_gates(comparison, GatesConfig(quality=QualityGate(max_drop=0.03)))
    assert gate(tolerant, "quality").passed and not gate(strict, "quality").passed
    assert -0.05 < comparison.lower_bound(0.95) < -0.03  # type: ignore[operator]
    assert comparison.lower_bound(0.99) < comparison.lower_bound(0.95)  # type: ignore[operator]


def test_ceilings_name_the_measured_value_and_the_bound() -> None:
    comparison = compare_runs(*runs(0))
    gates = GatesConfig(
        quality=None, p95_latency_ms=150, error_rate=0.01, cost_per_success_usd=Decimal("0.0005"), ttft_p95_ms=500
    )
    verdict = apply_gates(comparison, gates)
    assert gate(verdict, "p95_latency_ms").passed and gate(verdict, "p95_latency_ms").measured == 100.0
    assert gate(verdict, "error_rate").passed and gate(verdict, "error_rate").measured == 0.0
    cost = gate(verdict, "cost_per_success_usd")
    assert not cost.passed and cost.measured == Decimal("0.001") and cost.bound == Decimal("0.0005")
    ttft = gate(verdict, "ttft_p95_ms")
    assert not ttft.passed and ttft.measured is None and "not measured" in ttft.detail


def test_errors_count_in_the_error_rate_and_as_zero_quality() -> None:
    baseline, _ = runs(0)
    candidate = run_of([row(f"q{i}", 1.0, ok=i >= 5) for i in range(N)])
    comparison = compare_runs(baseline, candidate)
    assert comparison.candidate.error_rate == 0.05 and comparison.mean_diff == pytest.approx(-0.05)
    verdict = apply_gates(comparison, GatesConfig(quality=None, error_rate=0.01))
    assert not verdict.passed and gate(verdict, "error_rate").measured == 0.05


def test_an_incomplete_candidate_fails_coverage() -> None:
    baseline, candidate = runs(0)
    partial = run_of([r for r in candidate if r.id != "q7"])
    verdict = apply_gates(compare_runs(baseline, partial), GatesConfig(quality=None))
    coverage = gate(verdict, "coverage")
    assert not coverage.passed and "q7" in coverage.detail and "99 of 100" in coverage.detail


def test_a_run_without_cost_fails_the_cost_gate_and_never_counts_as_free() -> None:
    baseline, _ = runs(0)
    streamed = run_of([row(f"q{i}", 1.0, cost_usd=None, ttft_ms=20.0) for i in range(N)])
    comparison = compare_runs(baseline, streamed)
    assert comparison.candidate.cost.per_success_usd is None and not comparison.candidate.cost.complete
    verdict = apply_gates(comparison, GatesConfig(quality=None, cost_per_success_usd=Decimal("1"), ttft_p95_ms=50))
    assert not gate(verdict, "cost_per_success_usd").passed and gate(verdict, "ttft_p95_ms").passed


def test_graded_scores_use_the_bootstrap_and_skip_mcnemar() -> None:
    baseline = run_of([row(f"q{i}", 0.8, binary=False) for i in range(20)])
    candidate = run_of([row(f"q{i}", 0.7, binary=False) for i in range(20)])
    comparison = compare_runs(baseline, candidate)
    assert comparison.mcnemar is None and comparison.mean_diff == pytest.approx(-0.1)


def test_runs_of_different_sets_are_refused() -> None:
    baseline, _ = runs(0)
    other = run_of([row("q0", 1.0, set="another")])
    with pytest.raises(ResultsFileError, match="same set"):
        compare_runs(baseline, other)


def test_gates_config_is_strict_and_hangs_off_a_model_group() -> None:
    group = ModelGroupConfig.model_validate(
        {
            "name": "chat",
            "deployments": ["a"],
            "gates": {"quality": {"max_drop": 0.01}, "cost_per_success_usd": "0.002"},
        }
    )
    assert group.gates is not None and group.gates.cost_per_success_usd == Decimal("0.002")
    assert group.gates.quality == QualityGate(max_drop=0.01, confidence=0.95)
    with pytest.raises(ValidationError):
        GatesConfig.model_validate({"p99_latency_ms": 100})
    with pytest.raises(ValidationError):
        GatesConfig.model_validate({"quality": {"confidence": 1.5}})
