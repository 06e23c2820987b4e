"""The calls `margin batch` makes to a running gateway's /v1/files and /v1/batches, as any OpenAI
client would. Uploads are streamed from disk (multipart/form-data written as it is sent)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click
import orjson

from margin.providers.gateway_client import GatewayClient

BLOCK_BYTES = 1 << 20


class GatewayRefused(click.ClickException):
    """The gateway answered with an error: its message is what the user sees."""


class BatchClient:
    def __init__(self, url: str, api_key: str | None, *, timeout_s: float = 600.0) -> None:
        self.gateway = GatewayClient(url, timeout_s=timeout_s, connections=4)
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    async def aclose(self) -> None:
        await self.gateway.aclose()

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = orjson.dumps(body) if body is not None else None
        headers = {**self.headers, "content-type": "application/json"}
        async with self.gateway.request(method, path, data, headers) as response:
            raw = b"".join([block async for block in response.body()])
            return _checked(response.status, raw)

    async def upload(self, path: Path) -> dict[str, Any]:
        boundary = "margin-" + os.urandom(12).hex()
        headers = {**self.headers, "content-type": f"multipart/form-data; boundary={boundary}"}
        async with self.gateway.request("POST", "/v1/files", _multipart(path, boundary), headers) as response:
            raw = b"".join([block async for block in response.body()])
            return _checked(response.status, raw)

    async def content(self, file_id: str) -> AsyncIterator[bytes]:
        async with self.gateway.request("GET", f"/v1/files/{file_id}/content", None, self.headers) as response:
            if response.status >= 400:
                _checked(response.status, b"".join([block async for block in response.body()]))
            async for block in response.body():
                yield block


def _checked(status: int, raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        body = {}
    if status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else raw[:200].decode(errors="replace")
        raise GatewayRefused(f"the gateway answered {status}: {message}")
    if not isinstance(body, dict):
        raise GatewayRefused("the gateway's answer is not a JSON object")
    return body


async def _multipart(path: Path, boundary: str) -> AsyncIterator[bytes]:
    dash = f"--{boundary}\r\n".encode()
    yield dash + b'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
    name = path.name.replace('"', "")
    yield dash + f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'.encode()
    yield b"Content-Type: application/jsonl\r\n\r\n"
    with path.open("rb") as file:
        while block := await asyncio.to_thread(file.read, BLOCK_BYTES):
            yield block
    yield f"\r\n--{boundary}--\r\n".encode()
