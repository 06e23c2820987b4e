"""`margin.api.body.read_body` reads the ASGI receive channel directly (issue 27, third pass): the
same limits, errors and Starlette-compatible caching as reading through `Request.stream()`."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from margin.api.body import read_body
from margin.errors import PayloadTooLarge, UnsupportedMediaType


def _request(messages: list[dict[str, Any]], headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers or []}
    return Request(scope, receive)


def _parts(*chunks: bytes) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]


async def test_a_body_in_several_messages_is_joined_and_cached_for_request_body() -> None:
    request = _request(_parts(b'{"model": "m", ', b"", b'"messages": []}'))
    body = await read_body(request, 1000)
    assert body.data == {"model": "m", "messages": []}
    assert body.size == len(b'{"model": "m", "messages": []}')
    assert await request.body() == b'{"model": "m", "messages": []}'  # no second read of the channel


async def test_a_body_read_before_is_that_body() -> None:
    request = _request(_parts(b'{"a": 1}'))
    assert await request.body() == b'{"a": 1}'
    assert (await read_body(request, 1000)).data == {"a": 1}
    with pytest.raises(PayloadTooLarge):
        await read_body(request, 3)


async def test_the_limit_stops_reading_midway() -> None:
    request = _request(_parts(b"x" * 600, b"x" * 600, b"never read"))
    with pytest.raises(PayloadTooLarge, match="1000-byte limit"):
        await read_body(request, 1000)


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    request = _request([], headers=[(b"content-length", b"5000"), (b"content-type", b"application/json")])
    with pytest.raises(PayloadTooLarge):
        await read_body(request, 1000)


async def test_content_type_first_occurrence_wins() -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-type", b"application/json")]
    with pytest.raises(UnsupportedMediaType, match="text/plain"):
        await read_body(_request(_parts(b"{}"), headers), 1000)
    json_first = [(b"content-type", b"application/json; charset=utf-8"), (b"content-type", b"text/plain")]
    assert (await read_body(_request(_parts(b'{"b": 2}'), json_first), 1000)).data == {"b": 2}


async def test_a_client_leaving_midway_is_a_disconnect() -> None:
    request = _request([*_parts(b'{"a": ', b"")[:1], {"type": "http.disconnect"}])
    with pytest.raises(ClientDisconnect):
        await read_body(request, 1000)
