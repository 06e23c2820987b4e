"""Running an eval set through margin: every pending item asked and graded, `concurrency` at a time,
each result appended to the results file as soon as it is graded (so a rerun resumes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from margin.evals.completion import Completer, Completion
from margin.evals.errors import GatewayUnusable
from margin.evals.graders.protocol import Grade, Grader, GraderEnv, Sample
from margin.evals.graders.registry import build_grader
from margin.evals.items import EvalItem
from margin.evals.loader import EvalSet
from margin.evals.results import ItemResult, ResultsWriter, RunResults, check_same_run, read_results


@dataclass(frozen=True, slots=True)
class RunOutcome:
    results: RunResults  # every item's latest result, this run's and earlier ones'
    ran: int
    skipped: int  # already in the results file


def pending_items(eval_set: EvalSet, done: RunResults, *, retry_errors: bool = False) -> list[EvalItem]:
    """Items without a result yet (and, with `retry_errors`, those whose call failed)."""
    return [
        item for item in eval_set.items if item.id not in done.items or (retry_errors and not done.items[item.id].ok)
    ]


def check_models(available: Sequence[str], model: str, eval_set: EvalSet) -> None:
    """Refuse to start when the gateway does not serve the model or the judge's model."""
    wanted = {"--model": model}
    if eval_set.manifest.judge is not None:
        wanted["the judge's model"] = eval_set.manifest.judge.model
    for what, name in wanted.items():
        if name not in available:
            listed = ", ".join(sorted(available)) or "none"
            raise GatewayUnusable(f"{what} {name!r} does not exist on this gateway (it serves: {listed})")


class Runner:
    def __init__(
        self,
        eval_set: EvalSet,
        target: Completer,
        env: GraderEnv,
        *,
        model: str,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        """`overrides`: the run's settings (--param), on top of the set's and each item's params."""
        self.eval_set = eval_set
        self.target = target
        self.env = env
        self.model = model
        self.overrides = dict(overrides or {})
        self.run_params = {**eval_set.manifest.params, **self.overrides}
        self._graders: dict[bytes, Grader] = {}

    def grader_for(self, item: EvalItem) -> Grader:
        spec = self.eval_set.grader_spec(item)
        key = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)
        if key not in self._graders:
            self._graders[key] = build_grader(spec, self.env)
        return self._graders[key]

    async def run_item(self, item: EvalItem) -> ItemResult:
        params = {**self.eval_set.manifest.params, **item.params, **self.overrides}
        messages = item.chat_messages()
        completion = await self.target.complete(self.model, messages, params)
        grader = self.grader_for(item)
        grade = (
            await grader.grade(Sample(messages, completion.text, item.all_references(), item.id))
            if completion.ok and completion.text is not None
            else Grade.undecided("not graded: the call failed")
        )
        return self._result(item, completion, grader, grade)

    def _result(self, item: EvalItem, completion: Completion, grader: Grader, grade: Grade) -> ItemResult:
        return ItemResult(
            id=item.id,
            set=self.eval_set.name,
            set_version=self.eval_set.version,
            model=self.model,
            run_params=self.run_params,
            answer=completion.text,
            error=completion.error,
            status=completion.status,
            score=grade.score if completion.ok else None,
            passed=grade.passed and completion.ok,
            grader=grader.name,
            binary=grader.binary,
            detail=grade.detail,
            judge=grade.judge,
            latency_ms=round(completion.latency_ms, 3),
            ttft_ms=round(completion.ttft_ms, 3) if completion.ttft_ms is not None else None,
            cost_usd=completion.cost_usd,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            request_id=completion.request_id,
            deployment=completion.deployment,
            tags=list(item.tags),
            weight=item.weight,
            finished_at=time.time(),
        )

    async def run(
        self,
        results_path: Path,
        *,
        concurrency: int = 4,
        retry_errors: bool = False,
        on_result: Callable[[ItemResult], None] | None = None,
    ) -> RunOutcome:
        done = read_results(results_path)
        check_same_run(done, self.eval_set.name, self.model, self.run_params)
        todo = pending_items(self.eval_set, done, retry_errors=retry_errors)
        for item in todo:
            self.grader_for(item)  # build every grader before the first call: a bad one fails now
        slots = asyncio.Semaphore(max(1, concurrency))
        with ResultsWriter(results_path) as writer:

            async def one(item: EvalItem) -> None:
                async with slots:
                    result = await self.run_item(item)
                writer.write([result])
                if on_result is not None:
                    on_result(result)

            tasks = [asyncio.ensure_future(one(item)) for item in todo]
            try:
                await asyncio.gather(*tasks)
            finally:  # one item failed the run (or it was interrupted): stop the rest before closing
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return RunOutcome(read_results(results_path), ran=len(todo), skipped=len(self.eval_set.items) - len(todo))
