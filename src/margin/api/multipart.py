"""A streaming `multipart/form-data` reader (RFC 7578): parts are read in order, a file part's bytes
handed on as they arrive, so an upload of any size costs one network block of memory.

Used by `POST /v1/files`; small fields (purpose) are read whole up to a bound."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from margin.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

MAX_HEADER_BYTES = 16 * 1024
_BOUNDARY = re.compile(r'boundary="?([^";]{1,200})"?', re.IGNORECASE)
_DISPOSITION_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"|(\w+)=([^;\s]+)')


def boundary_of(content_type: str | None) -> bytes:
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("Upload files as multipart/form-data (fields: purpose, file).")
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise InvalidRequest("The multipart/form-data content type has no boundary.")
    return found.group(1).encode("latin-1")


def _malformed(what: str) -> InvalidRequest:
    return InvalidRequest(f"The multipart/form-data body is malformed: {what}.")


@dataclass(slots=True)
class Part:
    reader: MultipartReader
    headers: dict[str, str]
    name: str | None = None
    filename: str | None = None
    _consumed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        disposition = self.headers.get("content-disposition", "")
        for match in _DISPOSITION_PARAM.finditer(disposition):
            key = (match.group(1) or match.group(3) or "").lower()
            value = match.group(2) if match.group(1) else match.group(4)
            if key == "name":
                self.name = value
            elif key == "filename":
                self.filename = value.replace('\\"', '"')

    async def chunks(self) -> AsyncIterator[bytes]:
        """The part's bytes, as they arrive (once)."""
        if self._consumed:
            return
        self._consumed = True
        async for block in self.reader.part_data():
            yield block

    async def text(self, limit: int = 4096) -> str:
        data = bytearray()
        async for block in self.chunks():
            data += block
            if len(data) > limit:
                raise PayloadTooLarge(f"The form field {self.name!r} is longer than {limit} bytes.")
        return data.decode("utf-8", errors="replace")

    async def drain(self) -> None:
        async for _ in self.chunks():
            pass


class MultipartReader:
    def __init__(self, stream: AsyncIterator[bytes], boundary: bytes) -> None:
        self._stream = stream
        self._buffer = bytearray(b"\r\n")  # so the first delimiter, like every other, follows a CRLF
        self._delimiter = b"\r\n--" + boundary

    async def _fill(self) -> bool:
        try:
            block = await anext(self._stream)
        except StopAsyncIteration:
            return False
        self._buffer += block
        return True

    async def parts(self) -> AsyncIterator[Part]:
        """Each part in order; the previous part's unread bytes are skipped before the next."""
        async for _ in self.part_data():  # the preamble before the first delimiter
            pass
        while True:
            while len(self._buffer) < 2:
                if not await self._fill():
                    raise _malformed("it ends after a boundary")
            if self._buffer[:2] == b"--":
                return
            if self._buffer[:2] != b"\r\n":
                raise _malformed("a boundary is not followed by a line break")
            del self._buffer[:2]
            part = Part(self, await self._headers())
            yield part
            await part.drain()

    async def _headers(self) -> dict[str, str]:
        while (end := self._buffer.find(b"\r\n\r\n")) == -1:
            if len(self._buffer) > MAX_HEADER_BYTES or not await self._fill():
                raise _malformed("a part's headers do not end")
        raw = bytes(self._buffer[:end]).decode("utf-8", errors="replace")
        del self._buffer[: end + 4]
        headers = {}
        for line in raw.split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return headers

    async def part_data(self) -> AsyncIterator[bytes]:
        """Bytes up to the next delimiter (consumed); the delimiter's length is held back until
        the next block shows whether it starts there."""
        keep = len(self._delimiter)
        while True:
            found = self._buffer.find(self._delimiter)
            if found != -1:
                if found:
                    yield bytes(self._buffer[:found])
                del self._buffer[: found + keep]
                return
            if len(self._buffer) > keep:
                block = bytes(self._buffer[:-keep])
                del self._buffer[:-keep]
                yield block
            if not await self._fill():
                raise _malformed("it ends inside a part")
