"""Reading a request body: size limit, content type, shape (margin.api.body_shape), JSON, message
count, then schema validation.

What a body costs the event loop is bounded before it is spent: the shape scan caps nesting and the
number of values before orjson builds anything, the message count is checked before validation,
and a large body is validated on a worker thread (pydantic calls back into Python for every
message, so the loop gets its turn at least every `sys.getswitchinterval()`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from margin.api.body_shape import check_shape
from margin.api.raw_headers import picked_headers
from margin.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType, shown

Model = TypeVar("Model", bound=BaseModel)
T = TypeVar("T")

# Bodies larger than this are validated (and translated) on a worker thread; below it the thread
# hand-off (about 0.1 ms) would cost more than the work.
OFF_LOOP_BYTES = 64 * 1024
_BODY_HEADERS = frozenset((b"content-type", b"content-length"))


@dataclass(frozen=True, slots=True)
class JsonBody:
    """A parsed request body, and its size in bytes (which decides where it is validated)."""

    data: dict[str, Any]
    size: int


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    return (await read_body(request, max_bytes)).data


async def read_body(request: Request, max_bytes: int, *, max_messages: int | None = None) -> JsonBody:
    headers = picked_headers(request.scope["headers"], _BODY_HEADERS)
    content_type, declared = headers.get(b"content-type", "application/json"), headers.get(b"content-length")
    if "json" not in content_type.split(";")[0]:
        raise UnsupportedMediaType(f"Send the body as application/json, not {shown(content_type)}.")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The request body is larger than the {max_bytes}-byte limit.")
    raw = await _receive_body(request, max_bytes)
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    check_shape(raw)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc.msg} (at byte {exc.pos}).") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    messages = data.get("messages")
    if max_messages is not None and isinstance(messages, list) and len(messages) > max_messages:
        raise InvalidRequest(
            f"messages: {len(messages)} messages is more than the {max_messages} this gateway accepts "
            "(server.max_messages).",
            param="messages",
            code="too_many_messages",
        )
    return JsonBody(data, len(raw))


async def _receive_body(request: Request, max_bytes: int) -> bytes:
    """The body from the ASGI `receive` channel, stopped at `max_bytes`. The messages are read
    directly: `Request.stream()` is an async generator, which the event loop registers and
    finalises on every request (a body usually arrives in one message). As with Starlette, a body
    read before is that body, and one read here is what `request.body()` answers later."""
    if hasattr(request, "_body"):
        cached: bytes = request._body
        if len(cached) > max_bytes:
            raise PayloadTooLarge(f"The request body is larger than the {max_bytes}-byte limit.")
        return cached
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The request body is larger than the {max_bytes}-byte limit.")
        if chunk:
            chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    request._body = body
    request._stream_consumed = True
    return body


async def off_loop_if_large(body: JsonBody, work: Callable[[], T]) -> T:
    """`work()` (validating or translating `body`), on a worker thread when the body is large."""
    if body.size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(work)
    return work()


async def validated(model: type[Model], body: JsonBody) -> Model:
    return await off_loop_if_large(body, lambda: validate(model, body.data))


# A body can hold thousands of wrong values (server.max_messages is 2,048): the message names every
# problem up to this many, then says how many more there are.
MAX_PROBLEMS_LISTED = 50


def validate(model: type[Model], data: dict[str, Any]) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> InvalidRequest:
    """Every problem pydantic found, each as `field: what is wrong`, joined by `; `; `param` names the
    first problem's field (the OpenAI envelope has room for one)."""
    problems: list[tuple[str | None, str]] = []
    for error in exc.errors(include_url=False, include_input=False):
        param = ".".join(str(p) for p in error["loc"] if not _internal(p)) or None
        problem = (param, error["msg"].removeprefix("Value error, "))
        if problem not in problems:  # a union reports each member's miss at the same place
            problems.append(problem)
    listed = [f"{param}: {message}" if param else message for param, message in problems[:MAX_PROBLEMS_LISTED]]
    more = len(problems) - len(listed)
    text = "; ".join(listed) + (f"; and {more} more" if more else "")
    count = f"{len(problems)} problems: " if len(problems) > 1 else ""
    return InvalidRequest(f"{count}{text}", param=problems[0][0])


def _internal(part: Any) -> bool:
    # pydantic names union members ("str", "list[ContentPart]") in locations; clients never wrote those.
    return isinstance(part, str) and (part[:1].islower() and ("[" in part or part in {"str", "int", "dict"}))
