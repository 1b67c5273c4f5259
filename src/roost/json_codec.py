"""JSON on the hot paths (document bodies in and out, stored rows) through orjson, with the standard library's
meaning kept exactly.

orjson is several times faster than ``json`` but differs at the edges: it reads integers beyond 64 bits as floats
(silently losing digits) and cannot write them, and it refuses lone surrogates. So orjson takes only what it
reads or writes exactly as ``json`` would; anything else (a run of 19 or more digits, a write it refuses, a parse
it rejects) goes through the standard library, whose results and error messages the callers already rely on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

# A number orjson might not read exactly: 19+ digits (2**63 has 19). Also matches digits inside strings, which
# only costs those texts the slower path.
_LONG_DIGITS = re.compile(r"\d{19}")


def loads(text: str | bytes, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """Parse like ``json.loads``; raises what ``json.loads`` raises. orjson never accepts NaN or Infinity, so
    ``parse_constant`` only matters on the standard library's path."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # the standard library decides, and words the error
    return json.loads(text, parse_constant=parse_constant)


def dumps_bytes(data: Any) -> bytes:
    """Compact UTF-8 JSON, as ``json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()``;
    raises what that raises (UnicodeEncodeError for a lone surrogate)."""
    try:
        return orjson.dumps(data)
    except TypeError:  # an integer beyond 64 bits, a lone surrogate, a non-string key
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def dumps(data: Any) -> str:
    return dumps_bytes(data).decode("utf-8")

