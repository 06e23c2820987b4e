"""Asking the teacher through margin for a dataset (docs/tuning.md, "Datasets"): every call declares
`x-margin-purpose: tuning`, so its ledger row is tagged `tuning` (and a `tag:tuning` budget charges
it) and it runs at endpoint class batch. Live (margin.tuning.build.LiveTeacher over this wire), or
one batch of margin's batch tier (`/v1/files` + `/v1/batches`, created with the same purpose, so
every line is tagged too), cheaper where the teacher has a native batch API."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from margin.evals.wire import Wire, WireResponse
from margin.tuning.build import TeacherAnswer, TeacherReply
from margin.tuning.errors import TuningError

TUNING_PURPOSE = "tuning"
PURPOSE_HEADER = "x-margin-purpose"
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class PurposeWire:
    """`inner` with `x-margin-purpose: tuning` (and the caller's key) on every request."""

    def __init__(self, inner: Wire, api_key: str | None = None) -> None:
        self.inner = inner
        self.headers = {PURPOSE_HEADER: TUNING_PURPOSE}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"

    def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> AbstractAsyncContextManager[WireResponse]:
        return self.inner.request(method, path, body, {**headers, **self.headers})

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _read(resp: WireResponse) -> bytes:
    return b"".join([block async for block in resp.body()])


async def _call(wire: Wire, method: str, path: str, body: bytes | None, content_type: str) -> dict[str, Any]:
    async with wire.request(method, path, body, {"content-type": content_type}) as resp:
        raw = await _read(resp)
        status = resp.status
    try:
        value = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        value = {}
    if status >= 400 or not isinstance(value, dict):
        message = value.get("error", {}).get("message") if isinstance(value, dict) else None
        raise TuningError(f"the batch tier answered {status} to {method} {path}: {message or raw[:200]!r}")
    return value


class BatchTeacher:
    """Every prompt as one line of one batch through margin's batch tier; waits for it to end."""

    def __init__(
        self, wire: Wire, model: str, params: Mapping[str, Any], *, poll_s: float = 1.0, timeout_s: float = 86400
    ) -> None:
        self.wire = wire  # a PurposeWire: the batch is created with x-margin-purpose: tuning
        self.model = model
        self.params = dict(params)
        self.poll_s = poll_s
        self.timeout_s = timeout_s

    def _input(self, prompts: Mapping[str, Sequence[Mapping[str, Any]]]) -> bytes:
        lines = (
            {"custom_id": key, "method": "POST", "url": "/v1/chat/completions",
             "body": {**self.params, "model": self.model, "messages": list(messages)}}
            for key, messages in prompts.items()
        )  # fmt: skip
        return b"".join(orjson.dumps(line) + b"\n" for line in lines)

    async def answer_all(self, prompts: Mapping[str, Sequence[Mapping[str, Any]]]) -> TeacherReply:
        boundary = "margin-" + os.urandom(12).hex()
        form = _multipart(self._input(prompts), boundary)
        uploaded = await _call(self.wire, "POST", "/v1/files", form, f"multipart/form-data; boundary={boundary}")
        body = {"input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        batch = await _call(self.wire, "POST", "/v1/batches", orjson.dumps(body), "application/json")
        deadline = time.monotonic() + self.timeout_s
        while batch.get("status") not in _TERMINAL:
            if time.monotonic() > deadline:
                raise TuningError(f"batch {batch['id']} did not end within {self.timeout_s:g} s (left running)")
            await asyncio.sleep(self.poll_s)
            batch = await _call(self.wire, "GET", f"/v1/batches/{batch['id']}", None, "application/json")
        answers = await self._answers(batch.get("output_file_id"))
        counts = batch.get("request_counts") or {}
        return TeacherReply(answers, int(counts.get("completed", 0)) + int(counts.get("failed", 0)), _cost(batch))

    async def _answers(self, output_file_id: str | None) -> dict[str, TeacherAnswer]:
        if not output_file_id:
            return {}
        async with self.wire.request("GET", f"/v1/files/{output_file_id}/content", None, {}) as resp:
            raw = await _read(resp)
            if resp.status >= 400:
                raise TuningError(f"the batch's output file {output_file_id} answered {resp.status}")
        out: dict[str, TeacherAnswer] = {}
        for line in _lines(raw):
            response = line.get("response") or {}
            try:
                text = response["body"]["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                out[str(line.get("custom_id"))] = TeacherAnswer(None, str(line.get("error") or "no answer"))
                continue
            out[str(line.get("custom_id"))] = TeacherAnswer(str(text) if text else None)
        return out


def _lines(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for line in raw.splitlines():
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _cost(batch: Mapping[str, Any]) -> Decimal:
    try:
        return Decimal(str((batch.get("margin") or {}).get("cost_usd", "0")))
    except InvalidOperation:
        return Decimal(0)


def _multipart(data: bytes, boundary: str) -> bytes:
    dash = f"--{boundary}\r\n".encode()
    return (
        dash + b'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        + dash + b'Content-Disposition: form-data; name="file"; filename="tuning-teacher.jsonl"\r\n'
        + b"Content-Type: application/jsonl\r\n\r\n" + data + f"\r\n--{boundary}--\r\n".encode()
    )  # fmt: skip
