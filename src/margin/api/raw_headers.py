"""The few request headers a handler reads, picked in one pass over the ASGI scope's raw list."""

from __future__ import annotations

from collections.abc import Iterable


def picked_headers(raw: Iterable[tuple[bytes, bytes]], wanted: frozenset[bytes]) -> dict[bytes, str]:
    """The `wanted` headers (lower-case names) present in `raw`, first occurrence winning as with
    Starlette's `Headers.get`, which scans the whole list once per name asked."""
    found: dict[bytes, str] = {}
    for name, value in raw:
        if name in wanted and name not in found:
            found[name] = value.decode("latin-1")
    return found
