"""Validation of a batch's input file before any line runs, as OpenAI does it: every line is a JSON
object with a unique `custom_id`, `method: POST`, a `url` equal to the batch's endpoint and a body
the endpoint accepts. Each bad line is named in `errors.data` (code, line, message, param) and the
batch fails; a good file's line positions go to the store page by page (the file is streamed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from margin.batch.lines import LineTooLong, RawLine, split_lines
from margin.config.batch import BatchConfig
from margin.storage.batches import BatchRecord, BatchStore, LineSpec
from margin.storage.blobs import BlobNotFound, BlobStore

PAGE_LINES = 1000
YIELD_EVERY = 256  # lines between turns given back to the event loop


class BodyChecker(Protocol):
    def check(self, endpoint: str, body: dict[str, Any]) -> tuple[str, str | None] | None:
        """Why `body` is not a valid request for `endpoint` (message, param), or None when it is."""


@dataclass(slots=True)
class Validation:
    lines: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0

    def fail(self, settings: BatchConfig, code: str, line: int | None, message: str, param: str | None) -> None:
        self.error_count += 1
        if len(self.errors) < settings.max_errors_listed:
            self.errors.append({"code": code, "line": line, "message": message, "param": param})


class Validator:
    def __init__(self, store: BatchStore, blobs: BlobStore, checker: BodyChecker, settings: BatchConfig) -> None:
        self.store = store
        self.blobs = blobs
        self.checker = checker
        self.settings = settings

    async def validate(self, batch: BatchRecord, keep_alive: Callable[[], Awaitable[None]]) -> Validation:
        """Check every line of `batch`'s input file, recording good lines' positions; `keep_alive`
        is awaited now and then (it renews the batch's lease)."""
        outcome = Validation()
        file = await self.store.get_file(batch.input_file_id)
        if file is None:
            outcome.fail(self.settings, "file_not_found", None, "The input file was deleted.", "input_file_id")
            return outcome
        seen: set[str] = set()
        page: list[LineSpec] = []
        try:
            async for raw in split_lines(self.blobs.read(file.blob), max_line_bytes=self.settings.max_line_bytes):
                spec = self._line(batch.endpoint, raw, seen, outcome)
                if spec is not None and not outcome.errors:
                    page.append(spec)
                if len(page) >= PAGE_LINES:
                    await self.store.add_lines(batch.batch_id, page)
                    page = []
                    await keep_alive()
                if raw.line_no % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except LineTooLong as exc:
            outcome.fail(self.settings, "line_too_long", exc.line_no, str(exc), None)
        except BlobNotFound:
            outcome.fail(self.settings, "file_not_found", None, "The input file's contents are gone.", "input_file_id")
        self._totals(outcome)
        if not outcome.errors:
            await self.store.add_lines(batch.batch_id, page)
        return outcome

    def _totals(self, outcome: Validation) -> None:
        if outcome.lines == 0 and not outcome.errors:
            outcome.fail(self.settings, "empty_file", None, "The input file has no requests.", "input_file_id")
        limit = self.settings.max_requests
        if outcome.lines > limit:
            message = f"The batch has {outcome.lines:,} requests; at most {limit:,} are accepted."
            outcome.fail(self.settings, "too_many_tasks", None, message, "input_file_id")

    def _line(self, endpoint: str, raw: RawLine, seen: set[str], outcome: Validation) -> LineSpec | None:
        if not raw.data.strip():
            return None  # blank lines (a trailing newline) are not requests
        outcome.lines += 1
        checked = self._checked(endpoint, raw.data, seen)
        if not isinstance(checked, str):
            code, message, param = checked
            outcome.fail(self.settings, code, raw.line_no, message, param)
            return None
        return LineSpec(raw.line_no, raw.offset, len(raw.data), checked)

    def _checked(self, endpoint: str, data: bytes, seen: set[str]) -> str | tuple[str, str, str | None]:
        """The line's custom_id when it is a valid request, else (code, message, param)."""
        try:
            line = orjson.loads(data)
        except orjson.JSONDecodeError:
            line = None
        if not isinstance(line, dict):
            return "invalid_json_line", "This line is not parseable as valid JSON.", None
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            return "missing_required_parameter", "Each request needs a custom_id (a non-empty string).", "custom_id"
        if custom_id in seen:
            message = (
                "The custom_id for this request is a duplicate of another request. "
                "The custom_id parameter must be unique for each request in a batch."
            )
            return "duplicate_custom_id", message, "custom_id"
        seen.add(custom_id)
        if line.get("method") != "POST":
            return "invalid_method", "Each request's method must be POST.", "method"
        if line.get("url") != endpoint:
            return "url_mismatch", "The provided URL for this request does not match the batch endpoint.", "url"
        body = line.get("body")
        if not isinstance(body, dict):
            return "invalid_request", "Each request needs a body (a JSON object).", "body"
        problem = self.checker.check(endpoint, body)
        if problem is not None:
            message, param = problem
            return "invalid_request", message, f"body.{param}" if param else "body"
        return custom_id
