"""An HTTP client for margin's own API, for tools that call a running gateway as a client would
(`margin eval run --url`). It lives here because providers/ is the one place that imports the HTTP
client; it knows nothing of evals, only how to send a request and hand back the status, headers and
body as it arrives. Failures to get an answer become `ConnectionError` / `TimeoutError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp


class GatewayResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.headers.items()}

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for block in self._response.content.iter_any():
                yield block
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"the answer broke off: {exc}") from None


class GatewayClient:
    """One connection pool to `base_url` (e.g. http://127.0.0.1:8080), shared by concurrent calls."""

    def __init__(self, base_url: str, *, timeout_s: float = 300.0, connections: int = 100) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connections)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    @asynccontextmanager
    async def request(
        self, method: str, path: str, body: bytes | AsyncIterable[bytes] | None, headers: Mapping[str, str]
    ) -> AsyncIterator[GatewayResponse]:
        """`body` may be a stream of blocks (an upload read from disk as it is sent)."""
        try:
            async with self._open().request(method, self.base_url + path, data=body, headers=dict(headers)) as resp:
                yield GatewayResponse(resp)
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"{self.base_url}: {exc}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
