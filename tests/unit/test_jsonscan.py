"""The nesting scan against a plain-Python reference: brackets in strings and escapes do not
count, any bytes are scanned without raising, and the bound is exact."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput
from core.jsonscan import nesting_exceeds


def _reference_depth(text: bytes) -> int:
    """The deepest nesting of arrays and objects outside strings, one byte at a time."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        ch = chr(c)
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return deepest


def _nested(n: int) -> bytes:
    return b'{"readings":[' + b"[" * n + b"]" * n + b"]}"


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"", 0),
        (b"1", 0),
        (b'{"site": "a"}', 1),
        (b'{"readings": [{"site": "a"}, {"site": "b"}]}', 3),
        (_nested(1000), 1002),
        (b'{"s": "[[[[[[[[[[[[[[[[[[[["}', 1),  # brackets inside a string
        (b'{"s": "a\\"[[[[[[[[[[[[[[[[[[[["}', 1),  # an escaped quote does not end the string
        (b'{"s": "a\\\\"}' + b"[" * 40, 40),  # an escaped backslash does not escape the quote
        (b"]]]]]][[[", 3),  # stray closers are not negative depth
        (b"\xff\x00[\xfe[", 2),  # not JSON, not even UTF-8: scanned all the same
    ],
)
def test_depth_of_known_texts(text: bytes, depth: int) -> None:
    assert _reference_depth(text) == depth
    if depth:
        assert nesting_exceeds(text, depth - 1) is True
    assert nesting_exceeds(text, depth) is False


@settings(max_examples=400)
@given(st.binary(max_size=300) | st.text(alphabet='[]{}"\\ab,: ', max_size=300).map(str.encode))
def test_matches_the_reference(text: bytes) -> None:
    depth = _reference_depth(text)
    for limit in {0, 1, 2, max(depth - 1, 0), depth, depth + 1}:
        assert nesting_exceeds(text, limit) is (depth > limit)


@settings(max_examples=100)
@given(st.recursive(st.integers() | st.text(max_size=5), lambda c: st.lists(c, max_size=3), max_leaves=30))
def test_json_documents(doc: object) -> None:
    text = json.dumps(doc).encode()
    depth = _reference_depth(text)
    assert nesting_exceeds(text, depth) is False
    if depth:
        assert nesting_exceeds(text, depth - 1) is True


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(InvalidInput):
        nesting_exceeds(b"[]", -1)
