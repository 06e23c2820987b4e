"""GET a model server's Prometheus /metrics page for the autoscaler (margin.autoscale), with its own
small connection pool so a slow model server never holds a connection the request path needs."""

from __future__ import annotations

import aiohttp


class MetricsPageError(OSError):
    """The page could not be read: not a 200, or the connection failed (the message says which).
    An OSError, so the scraper's fetch contract is "TimeoutError or OSError" whatever the client."""


class MetricsPages:
    def __init__(self, *, max_connections: int = 8) -> None:
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def get(self, url: str, timeout_s: float) -> str:
        """The page's text; raises TimeoutError past `timeout_s` (connect and read together)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.max_connections))
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._session.get(url, timeout=timeout) as response:
                if response.status != 200:
                    raise MetricsPageError(f"HTTP {response.status}")
                return await response.text()
        except aiohttp.ClientError as exc:
            raise MetricsPageError(type(exc).__name__) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
