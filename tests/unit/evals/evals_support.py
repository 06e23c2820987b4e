"""Shared helpers of the eval unit tests: a scripted completer, samples, result rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from margin.evals.completion import Completion
from margin.evals.graders.protocol import Sample
from margin.evals.results import ItemResult, RunResults

Reply = Callable[[str, Sequence[Mapping[str, Any]]], Completion]


class ScriptedCompleter:
    """Answers each call with `reply(model, messages)`, and remembers every call."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.calls: list[tuple[str, list[Mapping[str, Any]], dict[str, Any]]] = []

    async def complete(
        self, model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> Completion:
        self.calls.append((model, list(messages), dict(params)))
        return self.reply(model, messages)


def answer(text: str, **fields: Any) -> Completion:
    return Completion(text=text, status=200, latency_ms=fields.pop("latency_ms", 10.0), **fields)


def sample(answer_text: str, *references: Any, question: str = "q?") -> Sample:
    return Sample(messages=[{"role": "user", "content": question}], answer=answer_text, references=references)


def row(item_id: str, score: float | None, *, model: str = "m", ok: bool = True, **fields: Any) -> ItemResult:
    values: dict[str, Any] = {
        "id": item_id,
        "set": "s",
        "set_version": "1",
        "model": model,
        "answer": "a" if ok else None,
        "error": None if ok else "HTTP 502: upstream failed",
        "score": score if ok else None,
        "passed": bool(score) and ok,
        "grader": "exact",
        "binary": True,
        "latency_ms": 100.0,
        "cost_usd": Decimal("0.001") if ok else None,
    }
    values.update(fields)
    return ItemResult(**values)


def run_of(rows: list[ItemResult], path: str = "run.jsonl") -> RunResults:
    return RunResults(Path(path), {r.id: r for r in rows})
