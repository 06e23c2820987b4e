"""The providers' own Batch APIs over HTTP, for margin's `native` batches (margin.batch.native):
OpenAI's Files + Batches (`POST /v1/files` multipart, `POST /v1/batches`, `GET /v1/batches/{id}`,
`GET /v1/files/{id}/content`, `POST /v1/batches/{id}/cancel`) and Anthropic's Message Batches
(`POST /v1/messages/batches`, `GET .../{id}`, the results JSONL at `results_url`, `.../cancel`).
A provider's error is an UpstreamError with its status, the body cut short and never the key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import orjson

from margin.errors import UpstreamError
from margin.storage.batches import NativeAnswer, NativeProgress

_OPENAI_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
_UNRUN = {"canceled": "batch_cancelled", "expired": "batch_expired"}
TAG_KEY = "margin_batch_id"  # OpenAI metadata naming margin's batch: found again after a crash
FIND_PAGES = 10


class _Client:
    def __init__(self, base_url: str, headers: dict[str, str], *, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    async def request(self, method: str, path: str, **kwargs: Any) -> bytes:
        try:
            async with self.session().request(method, self.url(path), **kwargs) as response:
                data = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"The provider's batch API could not be reached: {type(exc).__name__}") from None
        if status >= 400:
            text = data[:300].decode("utf-8", "replace")
            message = f"The provider's batch API answered {status}: {text}"
            raise UpstreamError(message, details={"upstream_status": status})
        return data

    async def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body = orjson.loads(await self.request(method, path, **kwargs))
        if not isinstance(body, dict):
            raise UpstreamError("The provider's batch API answered something other than an object.", status=502)
        return body


class OpenAIBatchAPI(_Client):
    provider: Literal["openai"] = "openai"

    def __init__(self, base_url: str, api_key: str | None, **kwargs: Any) -> None:
        """`base_url` as the deployment's (ending in /v1)."""
        super().__init__(base_url, {"authorization": f"Bearer {api_key}"} if api_key else {}, **kwargs)

    async def submit(self, endpoint: str, lines: list[tuple[str, dict[str, Any]]], tag: str) -> str:
        data = b"".join(
            orjson.dumps({"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}) + b"\n"
            for custom_id, body in lines
        )
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", data, filename="margin-batch.jsonl", content_type="application/jsonl")
        uploaded = await self.json("POST", "/files", data=form)
        created = await self.json("POST", "/batches", json={
            "input_file_id": uploaded["id"], "endpoint": endpoint, "completion_window": "24h",
            "metadata": {TAG_KEY: tag},
        })  # fmt: skip
        return str(created["id"])

    async def find(self, tag: str) -> str | None:
        """Newest first, up to FIND_PAGES pages of 100: the batch whose metadata carries `tag`."""
        after: str | None = None
        for _ in range(FIND_PAGES):
            query = {"limit": "100", **({"after": after} if after else {})}
            page = await self.json("GET", "/batches", params=query)
            for batch in page.get("data") or []:
                if (batch.get("metadata") or {}).get(TAG_KEY) == tag:
                    return str(batch["id"])
            if not page.get("has_more") or not page.get("data"):
                return None
            after = str(page["data"][-1]["id"])
        return None

    async def progress(self, native_id: str) -> NativeProgress:
        batch = await self.json("GET", f"/batches/{native_id}")
        counts = batch.get("request_counts") or {}
        done = int(counts.get("completed", 0)) + int(counts.get("failed", 0))
        status = str(batch.get("status"))
        return NativeProgress(status in _OPENAI_ENDED, status, done, int(counts.get("total", 0)))

    async def answers(self, native_id: str) -> AsyncIterator[NativeAnswer]:
        batch = await self.json("GET", f"/batches/{native_id}")
        for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
            if not file_id:
                continue
            for raw in (await self.request("GET", f"/files/{file_id}/content")).splitlines():
                if raw.strip():
                    yield _openai_answer(orjson.loads(raw))

    async def cancel(self, native_id: str) -> None:
        await self.request("POST", f"/batches/{native_id}/cancel")


def _openai_answer(line: dict[str, Any]) -> NativeAnswer:
    response = line.get("response")
    if not isinstance(response, dict):
        return NativeAnswer(str(line["custom_id"]), None, None, line.get("error") or {"code": "batch_failed"})
    return NativeAnswer(str(line["custom_id"]), int(response["status_code"]), response.get("body"))


class AnthropicBatchAPI(_Client):
    provider: Literal["anthropic"] = "anthropic"

    def __init__(self, base_url: str, api_key: str | None, *, version: str = "2023-06-01", **kwargs: Any) -> None:
        """`base_url` without /v1, as the deployment's."""
        headers = {"anthropic-version": version, **({"x-api-key": api_key} if api_key else {})}
        super().__init__(base_url.removesuffix("/v1"), headers, **kwargs)

    async def submit(self, endpoint: str, lines: list[tuple[str, dict[str, Any]]], tag: str) -> str:
        requests = [{"custom_id": custom_id, "params": body} for custom_id, body in lines]
        return str((await self.json("POST", "/v1/messages/batches", json={"requests": requests}))["id"])

    async def find(self, tag: str) -> str | None:
        return None  # a Message Batch keeps no label to find it by

    async def progress(self, native_id: str) -> NativeProgress:
        batch = await self.json("GET", f"/v1/messages/batches/{native_id}")
        counts = {k: int(v) for k, v in (batch.get("request_counts") or {}).items()}
        done = counts.get("succeeded", 0) + counts.get("errored", 0)
        total = sum(counts.values())
        status = str(batch.get("processing_status"))
        return NativeProgress(status == "ended", status, done, total)

    async def answers(self, native_id: str) -> AsyncIterator[NativeAnswer]:
        batch = await self.json("GET", f"/v1/messages/batches/{native_id}")
        url = batch.get("results_url") or f"/v1/messages/batches/{native_id}/results"
        for raw in (await self.request("GET", str(url))).splitlines():
            if raw.strip():
                yield _anthropic_answer(orjson.loads(raw))

    async def cancel(self, native_id: str) -> None:
        await self.request("POST", f"/v1/messages/batches/{native_id}/cancel")


def _anthropic_answer(line: dict[str, Any]) -> NativeAnswer:
    custom_id, result = str(line["custom_id"]), line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        return NativeAnswer(custom_id, 200, result.get("message"))
    if kind == "errored":
        error = result.get("error") or {}
        status = 400 if (error.get("error") or {}).get("type") == "invalid_request_error" else 500
        return NativeAnswer(custom_id, status, error)
    code = _UNRUN.get(str(kind), "batch_failed")
    return NativeAnswer(custom_id, None, None, {"code": code, "message": f"The provider's batch line was {kind}."})
