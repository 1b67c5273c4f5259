"""Reading requests: JSON bodies (RavenDB's clients send no Content-Type), query values, size limits."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from roost.errors import BadRequestError, PayloadTooLargeError


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_bytes(request: web.Request) -> bytes:
    limit = request.client_max_size  # the app's client_max_size is Settings.max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLargeError(f"The request body is {length} bytes; the limit is {limit} bytes (max_body_bytes).")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLargeError(
            f"The request body is larger than the limit of {limit} bytes (max_body_bytes)."
        ) from None


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    """Parse the body as UTF-8 JSON whatever the Content-Type says. Empty body -> None when not required."""
    raw = await read_bytes(request)
    if not raw.strip():
        if required:
            raise BadRequestError("The request body is empty; a JSON object was expected.")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"The request body is not UTF-8 (byte {exc.start}).") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"Malformed JSON body at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
    except ValueError as exc:
        raise BadRequestError(f"Malformed JSON body: {exc}.") from None
    except RecursionError:
        # json.loads recurses once per nesting level: a body of 100,000 '[' would otherwise be a 500.
        raise BadRequestError("The JSON body is nested too deeply.") from None


async def read_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
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


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )
