"""How deep a JSON text nests, found by one pass of a Numba kernel, before anything decodes it.

A decoder that builds or skips nested values recurses once per level; msgspec stops at Python's
recursion limit minus the stack already in use, so what it accepts depends on where it is called
from. `nesting_exceeds` gives the ingest path a bound that does not: a value nesting deeper than
the limit is refused before it is decoded. The scan is over bytes: brackets inside strings (and
escaped quotes within them) do not count, and text that is not JSON at all is the decoder's to
refuse, so the scan never fails on it.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

from core.errors import InvalidInput

__all__ = ["nesting_exceeds"]

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
# what each byte outside a string does to the depth
_STEP = np.zeros(256, dtype=np.int64)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def nesting_exceeds(value: bytes, limit: int) -> bool:
    """True when `value` opens more than `limit` arrays or objects inside one another."""
    if limit < 0:
        raise InvalidInput(f"limit must be >= 0, got {limit}")
    # every level needs an opening bracket: a text with fewer (a single reading has one) cannot
    # nest past the limit, and bytes.count is far cheaper than any scan
    if value.count(b"[") + value.count(b"{") <= limit:
        return False
    return bool(_exceeds(np.frombuffer(value, dtype=np.uint8), limit))


@njit(cache=True)
def _exceeds(text: NDArray[np.uint8], limit: int) -> bool:
    depth = 0
    in_string = False
    escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == _BACKSLASH:
                escaped = True
            elif c == _QUOTE:
                in_string = False
        elif c == _QUOTE:
            in_string = True
        else:
            # a stray closer at depth 0 is not JSON: the decoder refuses it, the scan need not
            depth = max(depth + _STEP[c], 0)
            if depth > limit:
                return True
    return False
