"""The offline gate of `margin rollout start`: the group's eval set run on the stable and on the
candidate deployment (through a running margin with --url, or in-process), compared item by item
and held to the group's `gates:` (docs/evals.md). The verdict goes into the rollout's audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from margin.cli.eval_run import RunRequest, execute_run
from margin.config.gates import GatesConfig
from margin.config.model import ModelGroupConfig
from margin.evals.compare import compare_runs
from margin.evals.errors import EvalError
from margin.evals.gates import GateVerdict, apply_gates
from margin.evals.render import comparison_json, render_comparison
from margin.evals.results import read_results
from margin.storage.rollouts import RolloutRecord


@dataclass(frozen=True, slots=True)
class GateRun:
    eval_set: str
    url: str | None
    config_path: Path | None
    api_key: str | None
    concurrency: int
    out_dir: Path


@dataclass(frozen=True, slots=True)
class GateOutcome:
    passed: bool
    report: str  # the comparison table with every gate
    verdict: dict[str, Any]  # the same as JSON, for the audit trail
    reason: str


def run_gate(record: RolloutRecord, group: ModelGroupConfig, run: GateRun) -> GateOutcome:
    """Raises EvalError (a bad set, an unusable gateway) before anything is decided."""
    run.out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for arm, deployment in (("stable", record.stable), ("candidate", record.candidate)):
        paths[arm] = run.out_dir / f"{arm}.results.jsonl"
        request = RunRequest(
            eval_set=run.eval_set, model=deployment, url=run.url, config_path=run.config_path, api_key=run.api_key,
            concurrency=run.concurrency, out=paths[arm], stream=False, retry_errors=True,
        )  # fmt: skip
        execute_run(request)
    baseline, candidate = read_results(paths["stable"]), read_results(paths["candidate"])
    if not len(baseline) or not len(candidate):
        raise EvalError(f"the eval set {run.eval_set!r} produced no results")
    gates = group.gates or GatesConfig()
    level = gates.quality.confidence if gates.quality is not None else 0.95
    comparison = compare_runs(baseline, candidate, level=level)
    verdict = apply_gates(comparison, gates)
    names = (f"{record.stable} (stable)", f"{record.candidate} (candidate)")
    return GateOutcome(
        passed=verdict.passed,
        report=render_comparison(comparison, verdict, "table", names),
        verdict=comparison_json(comparison, verdict, names),
        reason=_reason(verdict, run.eval_set),
    )


def _reason(verdict: GateVerdict, eval_set: str) -> str:
    if verdict.passed:
        return f"offline gate passed on {eval_set}: " + ", ".join(g.name for g in verdict.gates)
    failed = "; ".join(f"{g.name}: {g.detail}" for g in verdict.failed)
    return f"offline gate failed on {eval_set}: {failed}"
