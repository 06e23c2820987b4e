"""What a JSON body may make margin do, checked on its raw bytes before it is parsed.

Parsing (orjson) and validating (pydantic) run in C while holding the GIL: a worker thread does not
keep the event loop free while they run (measured: `orjson.loads` of an 8 MB body of empty objects
in a thread stalled the loop 255 ms, as long as the parse). So the work a body can cause is
bounded before any of it is done, by a scan that runs at C speed (`bytes.count`, `replace`,
`split`, `translate`; about 10 ms for an 8 MB body, microseconds for a usual one):

- depth: at most MAX_JSON_DEPTH nested arrays and objects, the body itself being level 1. orjson
  parses 1,024 levels but serialises only ORJSON_DUMPS_DEPTH (measured: `orjson.dumps` raises
  TypeError "Recursion limit reached" on the 255th), and margin serialises what the client sent
  again: in the upstream body, the cache key and the translations between the OpenAI and Anthropic
  shapes, which put a client's value up to a few levels deeper than it came (a tool schema moves
  from `tools[].input_schema` to `tools[].function.parameters`). Half of orjson's limit leaves that
  headroom many times over; JSON schemas and tool arguments in practice nest a dozen levels.
- values: at most MAX_JSON_VALUES array elements and object members in all, of which at most
  MAX_JSON_CONTAINERS arrays and objects (the costliest to build: about 130 ns each against
  30 ns for a number). An embeddings request of token arrays (OpenAI allows 300,000 tokens) fits;
  a body of a million empty objects does not. And at most MAX_JSON_STRINGS strings (keys included):
  2,048 chat messages (server.max_messages) use about 12,000.

How: escaped backslashes and quotes are removed, the rest split on quotes, and only the parts
outside strings are counted, so brackets and commas inside text never count. The split follows
JSON's own rules, and where a body breaks them (a quote or backslash outside a string) orjson
fails at that point, before anything the scan may have miscounted after it.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass

from margin.errors import InvalidRequest, PayloadTooLarge

ORJSON_DUMPS_DEPTH = 254  # nested containers orjson serialises (tests/unit/api/test_body_shape.py checks it)
MAX_JSON_DEPTH = 128
MAX_JSON_VALUES = 500_000
MAX_JSON_CONTAINERS = 50_000
MAX_JSON_STRINGS = 100_000

_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(_BRACKETS)))
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(_BRACKETS + b',"')))
# An opening bracket steps the running depth up by one, a closing one down: as bytes 2 and 0, so
# that depth after i brackets = (sum of the first i bytes) - i.
_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


@dataclass(frozen=True, slots=True)
class BodyShape:
    strings: int  # keys and string values
    containers: int  # arrays and objects (0: not counted, too few to matter)
    values: int  # array elements and object members (an upper bound: commas + containers; 0: not counted)
    depth: int  # deepest nesting of containers (0: not worked out, containers <= MAX_JSON_DEPTH)


def shape_of(raw: bytes) -> BodyShape:
    """The counts of `raw`'s JSON structure, ignoring everything inside strings. Raises
    PayloadTooLarge as soon as a count is over its bound (the rest is then not worked out)."""
    if b"\\" in raw:  # escapes: an escaped backslash or quote is text, not structure
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    plain = raw.translate(None, _NOT_STRUCTURE)  # brackets, commas and quotes: usually a small part
    quotes = plain.count(b'"')
    strings = quotes // 2
    if strings > MAX_JSON_STRINGS:
        raise _too_many("strings", MAX_JSON_STRINGS)
    if len(plain) - quotes <= MAX_JSON_DEPTH:
        # Even counting what is inside strings, too few brackets and commas to be over any bound.
        return BodyShape(strings=strings, containers=0, values=0, depth=0)
    outside = b"".join(plain.split(b'"')[0::2]) if strings else plain  # at most 2 x MAX_JSON_STRINGS parts
    containers = outside.count(b"{") + outside.count(b"[")
    if containers > MAX_JSON_CONTAINERS:
        raise _too_many("arrays and objects", MAX_JSON_CONTAINERS)
    values = outside.count(b",") + containers
    if values > MAX_JSON_VALUES:
        raise _too_many("values", MAX_JSON_VALUES)
    depth = _depth(outside) if containers > MAX_JSON_DEPTH else 0
    return BodyShape(strings=strings, containers=containers, values=values, depth=depth)


def check_shape(raw: bytes) -> BodyShape:
    """`shape_of`, and a 400 for a body nested deeper than margin can forward."""
    shape = shape_of(raw)
    if shape.depth > MAX_JSON_DEPTH:
        raise InvalidRequest(
            f"The request body nests arrays and objects {shape.depth} levels deep; at most {MAX_JSON_DEPTH} "
            "are accepted.",
            code="json_too_deep",
        )
    return shape


def _depth(outside: bytes) -> int:
    steps = outside.translate(None, _NOT_BRACKETS).translate(_STEPS)
    if not steps:
        return 0
    # C-level iterators end to end: about 40 ns per bracket.
    deepest: int = max(map(operator.sub, itertools.accumulate(steps), range(1, len(steps) + 1)))
    return deepest


def _too_many(what: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body holds more than {limit:,} JSON {what}; send fewer (or split the request).",
        code="json_too_large",
    )
