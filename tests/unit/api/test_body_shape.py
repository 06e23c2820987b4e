"""The raw-bytes scan that bounds what a body can make margin do before it is parsed (issue 16, 2)."""

from __future__ import annotations

import json
import sys
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.api.body_shape import (
    MAX_JSON_CONTAINERS,
    MAX_JSON_DEPTH,
    MAX_JSON_STRINGS,
    MAX_JSON_VALUES,
    ORJSON_DUMPS_DEPTH,
    check_shape,
    shape_of,
)
from margin.errors import InvalidRequest, PayloadTooLarge

# Levels margin may add around a client's value when it serialises it again (an Anthropic tool schema
# moves one level down in the OpenAI shape; the cache key wraps the request in one object).
HEADROOM = 8


def nested_text(depth: int, inner: str = "1") -> str:
    """`depth` arrays and objects around `inner`, alternating, as JSON text."""
    opens, closes = [], []
    for level in range(depth):
        if level % 2:
            opens.append('{"k":')
            closes.append("}")
        else:
            opens.append("[")
            closes.append("]")
    return "".join(opens) + inner + "".join(reversed(closes))


def reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    return 0


def test_orjson_serialises_what_margin_accepts_with_room_to_spare() -> None:
    """The bound is taken from orjson's real limit: if an upgrade lowers it, this fails first."""
    at_limit = orjson.loads(nested_text(ORJSON_DUMPS_DEPTH))
    orjson.dumps(at_limit)
    with pytest.raises(TypeError, match="Recursion limit"):
        orjson.dumps([at_limit])
    assert MAX_JSON_DEPTH + HEADROOM < ORJSON_DUMPS_DEPTH
    # What margin builds around a client's value at the bound still serialises.
    client = orjson.loads(nested_text(MAX_JSON_DEPTH))
    orjson.dumps({"request": {"tools": [{"function": {"parameters": client}}]}})


@pytest.mark.parametrize("depth", [1, 2, 127, 128])
def test_a_body_at_or_under_the_depth_bound_is_accepted(depth: int) -> None:
    body = f'{{"model": "m", "x": {nested_text(depth - 1)}}}'.encode()
    assert reference_depth(orjson.loads(body)) == depth
    check_shape(body)


@pytest.mark.parametrize("depth", [129, 255, 300, 1024])
def test_a_body_deeper_than_the_bound_is_a_400(depth: int) -> None:
    body = f'{{"model": "m", "x": {nested_text(depth - 1)}}}'.encode()
    with pytest.raises(InvalidRequest) as refused:
        check_shape(body)
    assert refused.value.status == 400 and refused.value.error_code == "json_too_deep"
    assert f"{depth} levels" in refused.value.message


def test_brackets_quotes_and_escapes_inside_strings_are_text() -> None:
    tricky = 'a "quoted" [[[{{{ ,,, \\ \\" \\\\" ]]]'
    deep_text = "[" * 500 + "," * 600_000
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": tricky}], "note": deep_text})
    shape = check_shape(body)
    assert shape.strings == 9  # 5 keys, "m", "user" and the two texts
    assert shape.values < 10 and shape.depth == 0


def test_depth_counts_outside_strings_only() -> None:
    inner = '"' + "[" * 300 + '\\"' + "{" * 300 + '"'  # a string full of brackets, with an escaped quote
    body = f'{{"x": {nested_text(140, inner)}}}'.encode()
    assert reference_depth(orjson.loads(body)) == 141
    assert shape_of(body).depth == 141


keys = st.text(alphabet='k[]"\\,')
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab[]{},"\\:\n '),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=200))
def test_depth_matches_a_walk_of_the_parsed_body(value: Any, wrap: int) -> None:
    text = nested_text(wrap, json.dumps(value))
    body = text.encode()
    parsed = orjson.loads(body)
    shape = shape_of(body)
    expected = reference_depth(parsed)
    if shape.depth or expected > MAX_JSON_DEPTH:
        assert shape.depth == expected
    assert shape.containers in (0, _containers(parsed))


def _containers(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_containers(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_containers(v) for v in value)
    return 0


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b'{"x": [' + b"0," * MAX_JSON_VALUES + b"0]}", "values"),
        (b'{"x": [' + b"{}," * MAX_JSON_CONTAINERS + b"{}]}", "arrays and objects"),
        (b'{"x": [' + b'"",' * MAX_JSON_STRINGS + b'""]}', "strings"),
        (b'"' * (2 * MAX_JSON_STRINGS + 4), "strings"),  # not JSON at all: refused before the parser sees it
    ],
)
def test_too_many_values_are_refused_before_parsing(body: bytes, what: str) -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        check_shape(body)
    assert refused.value.status == 413 and refused.value.error_code == "json_too_large"
    assert what in refused.value.message


def test_the_largest_legitimate_bodies_pass() -> None:
    messages = [{"role": "user", "content": 'a [bracketed], "quoted" text\n' * 20}] * 2048
    check_shape(orjson.dumps({"model": "m", "messages": messages}))
    token_arrays = [[7] * 300] * 1000  # an embeddings request of token ids: 300,000 of them
    check_shape(orjson.dumps({"model": "m", "input": token_arrays}))
    check_shape(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 8_000_000}]}))


def test_the_scan_needs_no_recursion() -> None:
    """A million brackets deep costs the scan no stack: it never parses."""
    body = b"[" * 1_000_000 + b"]" * 1_000_000
    with pytest.raises(PayloadTooLarge):
        check_shape(body)
    limit = sys.getrecursionlimit()
    assert limit < 1_000_000
