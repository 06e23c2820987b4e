"""The streaming multipart/form-data reader: parts and their bytes come out whole however the body is
cut into network blocks (a delimiter split across blocks included), and broken bodies are a 400."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from margin.api.multipart import MultipartReader, boundary_of
from margin.errors import InvalidRequest, UnsupportedMediaType

BOUNDARY = b"----margin7MA4YWxkTrZu0gW"


def form(file_bytes: bytes, *, purpose: str = "batch", preamble: bytes = b"") -> bytes:
    return (
        preamble + b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="purpose"\r\n\r\n' + purpose.encode() + b"\r\n"
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="in put.jsonl"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + file_bytes + b"\r\n"
        b"--" + BOUNDARY + b"--\r\n"
    )  # fmt: skip


async def blocks(body: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for size in sizes:
        if start >= len(body):
            return
        yield body[start : start + size]
        start += size
    if start < len(body):
        yield body[start:]


async def read(body: bytes, sizes: list[int]) -> dict[str, tuple[str | None, bytes]]:
    parts: dict[str, tuple[str | None, bytes]] = {}
    async for part in MultipartReader(blocks(body, sizes), BOUNDARY).parts():
        data = b"".join([chunk async for chunk in part.chunks()])
        parts[part.name or ""] = (part.filename, data)
    return parts


@pytest.mark.parametrize("seed", range(20))
async def test_parts_survive_any_block_boundaries(seed: int) -> None:
    rng = random.Random(seed)
    # File bytes that contain near-delimiters: CRLF, dashes, a boundary prefix.
    payload = b'{"a": 1}\r\n--' + BOUNDARY[:-3] + b"\r\n" + bytes(rng.randrange(256) for _ in range(5000))
    body = form(payload, preamble=b"ignored preamble\r\n")
    sizes = [rng.choice([1, 2, 3, 7, 64, 1000]) for _ in range(len(body))]
    assert await read(body, sizes) == {"purpose": (None, b"batch"), "file": ("in put.jsonl", payload)}


async def test_an_unread_part_is_skipped_and_text_is_bounded() -> None:
    reader = MultipartReader(blocks(form(b"x" * 10_000), [100] * 200), BOUNDARY)
    names = []
    async for part in reader.parts():
        names.append(part.name)  # bytes left unread: the reader skips them
    assert names == ["purpose", "file"]


@pytest.mark.parametrize(
    "body",
    [
        form(b"data")[:-20],  # ends inside the last part
        b"--" + BOUNDARY + b"\r\nno end of headers",
        b"--" + BOUNDARY + b"XX",  # a boundary followed by neither CRLF nor --
    ],
)
async def test_a_broken_body_is_a_400(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match="malformed"):
        await read(body, [50] * 100)


def test_the_boundary_comes_from_the_content_type() -> None:
    assert boundary_of('multipart/form-data; boundary="abc def"') == b"abc def"
    assert boundary_of("multipart/form-data; charset=utf-8; boundary=xyz") == b"xyz"
    with pytest.raises(UnsupportedMediaType):
        boundary_of("application/json")
    with pytest.raises(InvalidRequest, match="no boundary"):
        boundary_of("multipart/form-data")
