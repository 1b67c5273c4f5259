"""HiLo: ranges of numeric ids the clients hand out themselves (``session.store`` without an id).

``GET /databases/{db}/hilo/next`` reserves a range for a tag (the collection prefix, e.g. ``users``): the state is
RavenDB's, the document ``Raven/Hilo/<tag>`` whose ``Max`` is the last id handed out (a client may load or store it);
the client then names documents ``{Prefix}{n}-{ServerTag}`` (``users/1-A``) without asking again
until the range runs out. ``PUT /databases/{db}/hilo/return`` gives the unused tail back when a
store closes, so the next client continues where this one stopped.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

from aiohttp import web

from roost import clock
from roost.documents.store import SERVER_TAG
from roost.errors import BadRequestError
from roost.http.body import json_response, query_int
from roost.http.browsers import changes_state
from roost.http.middleware import SERVICES
from roost.http.routing import RouteTable
from roost.types import Level

routes = RouteTable()

MIN_RANGE = 32
MAX_RANGE = 1024 * 1024
MAX_TAG = 256
_MAX_ID_NUMBER = (1 << 63) - 1


def _tag(request: web.Request) -> str:
    tag = request.query.get("tag", "")
    if not tag.strip():
        raise BadRequestError("The query parameter 'tag' is required: the collection prefix, such as 'users'.")
    if len(tag) > MAX_TAG or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in tag):
        raise BadRequestError(f"The HiLo tag must be at most {MAX_TAG} printable characters.")
    return tag


def _separator(request: web.Request) -> str:
    separator = request.query.get("identityPartsSeparator") or "/"
    if len(separator) != 1 or separator.isalnum() or not separator.isprintable() or separator.isspace():
        raise BadRequestError(
            f"identityPartsSeparator must be one punctuation character such as '/', not '{separator[:10]}'."
        )
    return separator


def _last_range_at(request: web.Request) -> dt.datetime | None:
    text = request.query.get("lastRangeAt", "")
    if not text.strip():
        return None
    try:
        return clock.parse_wire_date(text)
    except ValueError:
        raise BadRequestError(
            f"lastRangeAt must be a date such as 2026-11-23T06:36:09.0000000Z, not '{text[:40]}'."
        ) from None


def capacity(last_size: int, last_range_at: dt.datetime | None, now: dt.datetime) -> int:
    """RavenDB's adaptive range size: a client that comes back quickly gets twice as many ids, one that
    comes back rarely gets half, so busy writers ask less often and idle ones waste fewer ids."""
    if last_size <= 0 or last_range_at is None:
        return MIN_RANGE
    elapsed = (now - last_range_at).total_seconds()
    if elapsed < 30:
        return min(max(MIN_RANGE, last_size * 2), MAX_RANGE)
    if elapsed > 60:
        return max(MIN_RANGE, last_size // 2)
    return min(max(MIN_RANGE, last_size), MAX_RANGE)


# A write: reserving ids changes the database (RavenDB's HiLo endpoints are write endpoints too).
@routes.get("/databases/{db}/hilo/next", level=Level.DATABASE_WRITE)
@changes_state
async def next_range(request: web.Request) -> web.StreamResponse:
    db = request.match_info["db"]
    tag = _tag(request)
    separator = _separator(request)
    last_size = query_int(request, "lastBatchSize", 0, 0, MAX_RANGE)
    # The client's own last Max: RavenDB never starts a range below it (a HiLo document restored from older data).
    last_max = query_int(request, "lastMax", 0, 0, _MAX_ID_NUMBER)
    now = clock.now()
    size = capacity(last_size, _last_range_at(request), now)
    low, high = await request.app[SERVICES].documents.next_hilo_range(db, tag, size, last_max)
    return json_response(
        {
            "Prefix": f"{tag}{separator}",
            "Low": low,
            "High": high,
            "LastSize": size,
            "ServerTag": SERVER_TAG,
            "LastRangeAt": clock.wire_date(now),
        }
    )


@routes.put("/databases/{db}/hilo/return", level=Level.DATABASE_WRITE)
async def return_range(request: web.Request) -> web.StreamResponse:
    db = request.match_info["db"]
    tag = _tag(request)
    end = query_int(request, "end", -1, 0, _MAX_ID_NUMBER)
    last = query_int(request, "last", -1, 0, _MAX_ID_NUMBER)
    if end < 0 or last < 0:
        raise BadRequestError("The query parameters 'end' and 'last' are required whole numbers.")
    if last > end:
        raise BadRequestError(f"'last' ({last}) cannot be beyond the end of the range ({end}).")
    # Not returned (someone took a newer range): the unused ids are simply skipped, never reused.
    await request.app[SERVICES].documents.return_hilo_range(db, tag, end, last)
    return web.Response(status=204)
