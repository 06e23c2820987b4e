"""Building a dataset (docs/tuning.md, "Datasets"): candidates (a prompt, and the teacher's answer
where it is already known), redacted, deduplicated and bounded, the missing answers asked of the
teacher (through margin: ledger rows tagged `tuning`), split and written whole.

Everything that can refuse is checked before the teacher is asked: an empty or tiny set after
deduplication costs nothing. Nothing is written unless the whole dataset is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from margin.config.tuning import TuningConfig
from margin.evals.redact import redact
from margin.tuning.dataset import DatasetManifest, Split, check_name, example_id, prompt_of, write_dataset
from margin.tuning.dedup import assign_splits, deduplicate
from margin.tuning.errors import DatasetError


@dataclass(frozen=True, slots=True)
class Candidate:
    """A prompt (its messages before the answer) and, when known, the teacher's answer."""

    messages: list[dict[str, Any]]
    answer: str | None = None
    origin: str = ""  # where it came from (a sample id, a file line), for messages


@dataclass(frozen=True, slots=True)
class TeacherAnswer:
    text: str | None
    error: str | None = None
    cost_usd: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TeacherReply:
    answers: dict[str, TeacherAnswer]  # prompt id -> answer; a prompt left out is a failed call
    calls: int  # calls made through margin (ledger rows tagged `tuning`)
    cost_usd: Decimal  # their cost, as margin reported it


class Teacher(Protocol):
    """Answers prompts: live calls through margin, or one batch of margin's batch tier."""

    async def answer_all(self, prompts: Mapping[str, Sequence[Mapping[str, Any]]]) -> TeacherReply: ...


TextFilter = Callable[[str, dict[str, int]], str]  # more redaction after the patterns: (text, found) -> text


@dataclass(frozen=True, slots=True)
class BuildRequest:
    name: str
    source: str  # traffic | prompts | jsonl
    group: str | None
    team: str | None = None
    teacher: str | None = None
    redaction: bool = True
    retention_days: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    more_redaction: TextFilter | None = None  # the group's sample's names and addresses (Presidio), if any


@dataclass(slots=True)
class _Tally:
    skipped: dict[str, int] = field(default_factory=dict)
    redactions: dict[str, int] = field(default_factory=dict)  # what was redacted, by kind
    calls: int = 0
    cost: Decimal = Decimal(0)
    failed: int = 0  # teacher calls that brought no answer
    first_error: str | None = None  # the first one's reason (a spent tuning budget, an unknown model ...)

    def skip(self, why: str, n: int = 1) -> None:
        if n:
            self.skipped[why] = self.skipped.get(why, 0) + n


def redact_messages(
    messages: Sequence[Mapping[str, Any]], found: dict[str, int], more: TextFilter | None = None
) -> list[dict[str, Any]]:
    """The production sample's redaction of every text: the patterns (margin.evals.redact), then `more`."""
    return [{"role": str(m["role"]), "content": redact_text(str(m["content"]), found, more)} for m in messages]


def redact_text(text: str, found: dict[str, int], more: TextFilter | None = None) -> str:
    clean = redact(text)
    for label, n in clean.found.items():
        found[label] = found.get(label, 0) + n
    return clean.text if more is None else more(clean.text, found)


async def build_dataset(
    data_dir: Path, request: BuildRequest, candidates: Sequence[Candidate], teacher: Teacher | None,
    settings: TuningConfig, *, clock: float | None = None,
) -> DatasetManifest:  # fmt: skip
    """Build and write the dataset; DatasetError (nothing written, nothing asked) when it would be
    empty or smaller than `settings.min_examples`."""
    check_name(request.name)
    tally = _Tally()
    examples = _prepare(candidates, request, settings, tally)
    deduped = deduplicate(examples, near_duplicate=settings.dedup.near_duplicate, same_split=settings.dedup.same_split)
    _enough(len(deduped.kept), request, settings, "after deduplication")
    answered = await _answered(deduped.kept, teacher, request, tally)
    by_id = {e["id"]: e for e in answered}
    deduped.clusters = [c for e, c in zip(deduped.kept, deduped.clusters, strict=True) if e["id"] in by_id]
    deduped.kept = [by_id[e["id"]] for e in deduped.kept if e["id"] in by_id]
    why = f" ({tally.failed} teacher calls failed, the first: {tally.first_error})" if tally.failed else ""
    _enough(len(deduped.kept), request, settings, f"after the teacher's answers{why}")
    split = settings.split
    splits = assign_splits(deduped, validation=split.validation, test=split.test, salt=split.salt)
    _splittable(splits, request)
    manifest = DatasetManifest(
        name=request.name, source=request.source, group=request.group, team=request.team,
        teacher=request.teacher, created=time.time() if clock is None else clock,
        counts={s: len(v) for s, v in splits.items()}, dedup=deduped.dropped, redaction=request.redaction,
        retention_days=request.retention_days, teacher_calls=tally.calls, teacher_cost_usd=str(tally.cost),
        skipped=tally.skipped, settings={**request.settings, "redactions": tally.redactions},
    )  # fmt: skip
    write_dataset(data_dir, manifest, splits)
    return manifest


def _prepare(
    candidates: Sequence[Candidate], request: BuildRequest, settings: TuningConfig, tally: _Tally
) -> list[dict[str, Any]]:
    found = tally.redactions
    out = []
    for candidate in candidates:
        prompt = prompt_of(candidate.messages)
        if not any(m.get("role") == "user" and str(m.get("content", "")).strip() for m in prompt):
            tally.skip("no_user_text")
            continue
        if sum(len(str(m.get("content", ""))) for m in prompt) > settings.max_prompt_chars:
            tally.skip("too_long")
            continue
        more = request.more_redaction
        messages = redact_messages(prompt, found, more) if request.redaction else [dict(m) for m in prompt]
        answer = candidate.answer
        if answer is not None and request.redaction:
            answer = redact_text(answer, found, more)
        out.append({"id": example_id(messages), "messages": messages, "answer": answer})
    return out


async def _answered(
    examples: Sequence[dict[str, Any]], teacher: Teacher | None, request: BuildRequest, tally: _Tally
) -> list[dict[str, Any]]:
    missing = {e["id"]: e["messages"] for e in examples if not e.get("answer")}
    answers: dict[str, TeacherAnswer] = {}
    if missing:
        if teacher is None:
            raise DatasetError(f"{len(missing)} examples have no answer and no teacher was named (--teacher)")
        reply = await teacher.answer_all(missing)
        answers, tally.calls, tally.cost = reply.answers, tally.calls + reply.calls, tally.cost + reply.cost_usd
    out = []
    for example in examples:
        text = example.get("answer")
        if example["id"] in missing:
            got = answers.get(example["id"], TeacherAnswer(None, "no answer"))
            text = got.text
            if text is None:
                tally.failed += 1
                tally.first_error = tally.first_error or got.error
            if text is not None and request.redaction:
                text = redact_text(text, tally.redactions, request.more_redaction)
        if not text or not str(text).strip():
            tally.skip("teacher_failed" if example["id"] in missing else "empty_answer")
            continue
        messages = [*example["messages"], {"role": "assistant", "content": str(text)}]
        out.append({"messages": messages, "id": example["id"]})
    return out


def _enough(count: int, request: BuildRequest, settings: TuningConfig, when: str) -> None:
    if count == 0:
        raise DatasetError(f"dataset {request.name!r} would be empty {when}: nothing was written")
    if count < settings.min_examples:
        raise DatasetError(
            f"dataset {request.name!r} has {count} examples {when}, fewer than tuning.min_examples "
            f"({settings.min_examples}): nothing was written"
        )


def _splittable(splits: Mapping[Split, Sequence[Any]], request: BuildRequest) -> None:
    empty = [s for s in ("train", "test") if not splits[s]]
    if empty:
        raise DatasetError(
            f"dataset {request.name!r}: no example landed in {' and '.join(empty)} (too few distinct prompts "
            "for tuning.split): nothing was written"
        )


class LiveTeacher:
    """Each prompt asked of the teacher through margin, `concurrency` at a time."""

    def __init__(self, completer: Any, model: str, params: Mapping[str, Any], *, concurrency: int = 4) -> None:
        self.completer = completer  # margin.evals.completion.Completer
        self.model = model
        self.params = dict(params)
        self.concurrency = concurrency

    async def answer_all(self, prompts: Mapping[str, Sequence[Mapping[str, Any]]]) -> TeacherReply:
        slots = asyncio.Semaphore(self.concurrency)

        async def one(messages: Sequence[Mapping[str, Any]]) -> TeacherAnswer:
            async with slots:
                done = await self.completer.complete(self.model, messages, self.params)
            return TeacherAnswer(done.text if done.ok else None, done.error, done.cost_usd)

        keys = list(prompts)
        results = await asyncio.gather(*(one(prompts[k]) for k in keys))
        cost = sum((r.cost_usd for r in results if r.cost_usd is not None), Decimal(0))
        return TeacherReply(dict(zip(keys, results, strict=True)), len(keys), cost)


def with_settings(request: BuildRequest, **more: Any) -> BuildRequest:
    return replace(request, settings={**request.settings, **more})
