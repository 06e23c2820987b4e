"""JSONL read as a stream: each line with its number and byte offset, one block in memory at a time."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


class LineTooLong(ValueError):
    def __init__(self, line_no: int, limit: int) -> None:
        super().__init__(f"line {line_no} is longer than {limit:,} bytes")
        self.line_no = line_no
        self.limit = limit


@dataclass(frozen=True, slots=True)
class RawLine:
    line_no: int  # 1-based
    offset: int  # of its first byte in the file
    data: bytes  # without the newline (a trailing \r is kept: JSON ignores it)


async def split_lines(blocks: AsyncIterable[bytes], *, max_line_bytes: int) -> AsyncIterator[RawLine]:
    """The lines of a byte stream; a last line without a newline counts too."""
    offset = 0
    line_no = 0
    pending = bytearray()
    async for block in blocks:
        start = 0
        while (newline := block.find(b"\n", start)) != -1:
            piece = block[start:newline]
            if pending:
                pending += piece
                data = bytes(pending)
                pending.clear()
            else:
                data = piece
            line_no += 1
            if len(data) > max_line_bytes:
                raise LineTooLong(line_no, max_line_bytes)
            yield RawLine(line_no, offset, data)
            offset += len(data) + 1
            start = newline + 1
        pending += block[start:]
        if len(pending) > max_line_bytes:
            raise LineTooLong(line_no + 1, max_line_bytes)
    if pending:
        yield RawLine(line_no + 1, offset, bytes(pending))
