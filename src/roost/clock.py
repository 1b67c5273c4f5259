"""The one clock Roost reads: no other module looks at the wall clock (tests/test_contracts.py holds it).

Tests may move it in two ways, and only these: replace ``now`` in-process (the only thing they may mock), or
start a server with ``Settings.test_clock_offset_seconds``, which the server hands to ``set_offset`` at start so
that every part of it (identity checks, 2FA, issuance, audit, backups) sees the same moved time.
"""

from __future__ import annotations

import datetime as dt

_offset = dt.timedelta(0)


def set_offset(seconds: float) -> None:
    """Move this process's clock by ``seconds`` (tests only; the server warns at start when it is set)."""
    global _offset
    _offset = dt.timedelta(seconds=seconds)


def now() -> dt.datetime:
    """The current time, UTC, aware."""
    return dt.datetime.now(dt.UTC) + _offset if _offset else dt.datetime.now(dt.UTC)


def wire_date(value: dt.datetime) -> str:
    """RavenDB's date format: seven fractional digits and ``Z``. The Python client rejects dates without them."""
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}0Z"


def parse_wire_date(text: str) -> dt.datetime:
    """Parse RavenDB-style and ISO-8601 dates (with or without fraction, ``Z`` or offset; naive means UTC)."""
    if len(text) == 28 and text[19] == "." and text[27] == "Z":
        # Fast path for the format Roost writes itself (registry loads parse two per certificate).
        return dt.datetime.fromisoformat(text[:26]).replace(tzinfo=dt.UTC)
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    head, dot, rest = value.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        tail = rest[len(digits):]
        value = f"{head}.{digits[:6].ljust(6, '0')}{tail}"
    parsed = dt.datetime.fromisoformat(value)
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
