"""Evals beside the request path: eval sets, graders (one protocol; judges are graders too), runs,
paired comparisons and gates (docs/evals.md).

The library reaches margin only through what it is given: a `Completer` (any object with an async
`complete(model, messages, params) -> Completion`), or a `Wire` to margin's HTTP API (over a socket:
margin.providers.gateway_client; in-process: `AsgiWire`). Online use needs no eval set: build a
grader with `build_grader(spec, GraderEnv(...))` and `await grader.grade(Sample(messages, answer))`.
"""

from __future__ import annotations

from margin.evals.compare import Comparison, ItemDiff, compare_runs
from margin.evals.completion import Completer, Completion
from margin.evals.errors import EvalError, EvalSetError, ExtraMissing, GatewayUnusable, GraderSpecError
from margin.evals.gates import GateResult, GateVerdict, apply_gates
from margin.evals.graders.protocol import Grade, Grader, GraderEnv, GraderFactory, Sample
from margin.evals.graders.registry import ENTRY_POINT_GROUP, build_grader
from margin.evals.items import EvalItem, EvalManifest, JudgeSettings
from margin.evals.loader import EvalSet, load_eval_set
from margin.evals.results import ItemResult, RunResults, read_results
from margin.evals.runner import Runner, RunOutcome
from margin.evals.summary import RunSummary, summarise

__all__ = [
    "ENTRY_POINT_GROUP",
    "Comparison",
    "Completer",
    "Completion",
    "EvalError",
    "EvalItem",
    "EvalManifest",
    "EvalSet",
    "EvalSetError",
    "ExtraMissing",
    "GateResult",
    "GateVerdict",
    "GatewayUnusable",
    "Grade",
    "Grader",
    "GraderEnv",
    "GraderFactory",
    "GraderSpecError",
    "ItemDiff",
    "ItemResult",
    "JudgeSettings",
    "RunOutcome",
    "RunResults",
    "RunSummary",
    "Runner",
    "Sample",
    "apply_gates",
    "build_grader",
    "compare_runs",
    "load_eval_set",
    "read_results",
    "summarise",
]
