"""How an eval reaches margin: one HTTP exchange at a time, over a socket (margin.providers.
gateway_client, aiohttp) or in-process (margin.evals.asgi_wire, straight into the ASGI app). Both
raise `ConnectionError` or `TimeoutError` when no answer could be had."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class WireResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Lower-case names."""
        ...

    def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives, block by block."""
        ...


class Wire(Protocol):
    def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> AbstractAsyncContextManager[WireResponse]: ...

    async def aclose(self) -> None: ...
