"""Reading requests: JSON bodies (RavenDB's clients send no Content-Type), query values, size and time limits.

Every route reads its body through here, so the rules hold for all of them at once: a body is at most the
request's limit (``body_limit``: ``Settings.max_body_bytes``, or ``SMALL_BODY`` for a caller that is not
authenticated and for routes that take a few fields), it arrives within ``Settings.http_body_timeout_seconds``,
and it is valid Unicode (a JSON ``"\\ud800"`` escape is valid JSON syntax but no character: it is refused here,
before anything is stored).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from roost import json_codec
from roost.errors import BadRequestError, PayloadTooLargeError, RequestTimeoutError

# Enough for any request made of a few names, ids and codes (2FA login, allowlist, QR code, database record).
SMALL_BODY = 64 * 1024
BODY_LIMIT = "roost.body_limit"  # request key: the limit the middleware chose for this caller
BODY_TIMEOUT = "roost.body_timeout"  # request key: seconds to receive the whole body (extended, see MIN_BODY_RATE)
MIN_BODY_RATE = 64 * 1024  # bytes per second: each chunk received extends the body's deadline by len / this
# A \uD800-\uDFFF escape: the only way a decoded UTF-8 text can yield a surrogate through json.loads.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def is_valid_unicode(text: str) -> bool:
    """No lone surrogate (what Python keeps from ``\\ud800`` escapes and from undecodable bytes it was asked to
    keep): such a string can be neither stored portably nor written back as UTF-8."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ensure_valid_unicode(value: Any) -> None:
    """Walk a parsed JSON value; 400 at the first key or string that holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_valid_unicode(item):
                raise BadRequestError(
                    "The JSON body holds invalid Unicode (a lone UTF-16 surrogate such as \\ud800); send text as "
                    "valid UTF-8 or as escaped surrogate pairs.")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _limit(request: web.Request, limit: int | None) -> int:
    chosen: int = request.get(BODY_LIMIT, request.client_max_size)  # client_max_size is Settings.max_body_bytes
    return min(chosen, limit) if limit is not None else chosen


def too_large(length: int | None, limit: int) -> PayloadTooLargeError:
    """The one 413 message: how large the body is, when the client said so, and the limit for this request."""
    size = f"{length} bytes" if length is not None else "larger than the limit"
    return PayloadTooLargeError(f"The request body is {size}; the limit for this request is {limit} bytes.")


async def read_bytes(request: web.Request, *, limit: int | None = None) -> bytes:
    """The whole body, at most ``limit`` bytes (and never more than the middleware's limit for this caller)."""
    limit = _limit(request, limit)
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(length, limit)
    timeout: float | None = request.get(BODY_TIMEOUT)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            async with asyncio.timeout_at(deadline):
                chunk = await request.content.read(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise too_large(None, limit)
            chunks.append(chunk)
            if deadline is not None:
                # A client sending at least MIN_BODY_RATE never runs out of time, however large its body; one that
                # trickles earns next to nothing.
                deadline += len(chunk) / MIN_BODY_RATE
    except TimeoutError:
        # A body trickled byte by byte (slowloris) would hold the connection and its buffer for as long as it likes.
        raise RequestTimeoutError(
            f"The request body did not arrive in time: {timeout:g} seconds (http_body_timeout_seconds) plus one "
            f"second per {MIN_BODY_RATE // 1024} KiB received.") from None


async def read_json(request: web.Request, *, required: bool = True, limit: int | None = None) -> Any:
    """Parse the body as UTF-8 JSON whatever the Content-Type says. Empty body -> None when not required."""
    raw = await read_bytes(request, limit=limit)
    if not raw.strip():
        if required:
            raise BadRequestError("The request body is empty; a JSON object was expected.")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"The request body is not UTF-8 (byte {exc.start}).") from None
    try:
        value = _parse(text)
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"Malformed JSON body at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
    except ValueError as exc:
        raise BadRequestError(f"Malformed JSON body: {exc}.") from None
    except RecursionError:
        # json.loads recurses once per nesting level: a body of 100,000 '[' would otherwise be a 500.
        raise BadRequestError("The JSON body is nested too deeply.") from None
    if _SURROGATE_ESCAPE.search(text):  # rare: only then walk the value (a valid pair is one character, and passes)
        _ensure_valid_unicode(value)
    return value


async def read_object(request: web.Request, *, limit: int | None = None) -> dict[str, Any]:
    body = await read_json(request, limit=limit)
    if not isinstance(body, dict):
        raise BadRequestError("The request body must be a JSON object.")
    return body


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    text = value.strip().casefold()
    if text in ("true", "1", "yes", ""):
        return True if text else default
    if text in ("false", "0", "no"):
        return False
    raise BadRequestError(f"The query parameter '{name}' must be true or false, not '{value}'.")


def query_int(request: web.Request, name: str, default: int, low: int = 0, high: int = 1 << 31) -> int:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequestError(f"The query parameter '{name}' must be a whole number, not '{value}'.") from None
    if not low <= number <= high:
        raise BadRequestError(f"The query parameter '{name}' must be between {low} and {high}.")
    return number


def _parse(text: str) -> Any:
    """orjson where it reads what ``json`` would (roost.json_codec): anything it rejects (NaN, a lone surrogate,
    deep nesting, bad syntax) is decided and worded by ``json`` as before."""
    return json_codec.loads(text, parse_constant=_no_constants)


def json_bytes(data: Any) -> bytes:
    """UTF-8 JSON. A lone surrogate (a row stored before bodies were checked) is written as its ``\\ud800`` escape
    rather than failing the whole answer: one bad row must never make a database unreadable."""
    try:
        return json_codec.dumps_bytes(data)
    except UnicodeEncodeError:
        return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode()


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json_bytes(data),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )
