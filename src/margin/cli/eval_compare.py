"""The work behind `margin eval compare`: read both runs, pair them, apply the gates, render."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import click

from margin.config import load_config
from margin.config.gates import GatesConfig, QualityGate
from margin.evals.compare import compare_runs
from margin.evals.errors import EvalError, ExtraMissing
from margin.evals.gates import apply_gates
from margin.evals.render import Format, render_comparison
from margin.evals.results import read_results
from margin.evals.stats import scipy_available


@dataclass(frozen=True, slots=True)
class CompareRequest:
    baseline: Path
    candidate: Path
    fmt: str
    gates_from: Path | None
    model_group: str | None
    max_drop: float | None
    confidence: float | None


def execute_compare(request: CompareRequest) -> tuple[str, bool]:
    """(the report, whether every gate passed). Raises EvalError / ConfigError / click.UsageError."""
    if not scipy_available():
        raise ExtraMissing("margin eval compare", "evals", "scipy")
    gates = gates_for(request)
    baseline, candidate = read_results(request.baseline), read_results(request.candidate)
    for run in (baseline, candidate):
        if not len(run):
            raise EvalError(f"{run.path} holds no results")
    level = gates.quality.confidence if gates.quality is not None else 0.95
    comparison = compare_runs(baseline, candidate, level=level)
    verdict = apply_gates(comparison, gates)
    names = (request.baseline.name, request.candidate.name)
    return render_comparison(comparison, verdict, cast(Format, request.fmt), names), verdict.passed


def gates_for(request: CompareRequest) -> GatesConfig:
    """The group's gates from a config file, or a quality gate from the options (or its defaults)."""
    if request.gates_from is None:
        if request.model_group is not None:
            raise click.UsageError("--model-group needs --gates-from CONFIG")
        defaults = QualityGate()
        return GatesConfig(
            quality=QualityGate(
                max_drop=defaults.max_drop if request.max_drop is None else request.max_drop,
                confidence=defaults.confidence if request.confidence is None else request.confidence,
            )
        )
    if request.max_drop is not None or request.confidence is not None:
        raise click.UsageError("--max-drop and --confidence are for runs without --gates-from (the config decides)")
    if request.model_group is None:
        raise click.UsageError("--gates-from needs --model-group G (whose gates apply)")
    config = load_config(request.gates_from)
    group = next((g for g in config.models if request.model_group in (g.name, *g.aliases)), None)
    if group is None:
        known = ", ".join(g.name for g in config.models) or "none"
        raise EvalError(f"{request.gates_from}: no model group {request.model_group!r} (groups: {known})")
    if group.gates is None:
        raise EvalError(f"{request.gates_from}: model group {group.name!r} has no `gates:` section")
    return group.gates
