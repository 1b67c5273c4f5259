"""``POST /databases/{db}/queries``: RQL over a collection, answered in RavenDB's query-result shape.

Roost has no indexes: a query reads the collection it names (``from Users``; ``@all_docs`` reads
everything) and filters, orders and pages in memory with ``roost.documents.rql``. Results are never
stale, so ``IsStale`` is always false and ``WaitForNonStaleResults`` is satisfied at once.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from roost import clock
from roost.documents import rql
from roost.documents.includes import referenced_by_all
from roost.documents.store import SERVER_TAG, render
from roost.errors import BadRequestError
from roost.http.body import json_response, read_object
from roost.http.middleware import SERVICES
from roost.http.routing import RouteTable
from roost.names import is_document_id
from roost.types import Level

routes = RouteTable()

_MAX_PAGING = (1 << 31) - 1


def _paging_value(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_PAGING:
        raise BadRequestError(f"{key} must be a whole number between 0 and {_MAX_PAGING}, not {value!r}.")
    return value


def _result_etag(documents: list[Mapping[str, Any]], total: int) -> int:
    """A number that changes when the answer changes (RavenDB's ResultEtag is a 64-bit hash too)."""
    vectors = [(d.get("@metadata") or {}).get("@change-vector") for d in documents]
    return zlib.crc32(json.dumps([total, vectors]).encode())


def _index_name(query: rql.Query) -> str:
    # RavenDB names collection scans this way; Roost never builds an index, so every query is one.
    return "AllDocs" if query.collection is None else f"collection/{query.collection}"


@routes.post("/databases/{db}/queries", level=Level.DATABASE_READ)
async def run_query(request: web.Request) -> web.StreamResponse:
    await request.app[SERVICES].documents.ensure_exists(request.match_info["db"])
    return await answer_query(request, request.match_info["db"], await read_object(request))


async def answer_query(request: web.Request, db: str, body: dict[str, Any]) -> web.Response:
    """The query ``body`` on ``db`` (also a lazy query inside ``multi_get``, which has read the body itself)."""
    started = time.monotonic()
    documents = request.app[SERVICES].documents
    await documents.ensure_exists(db)
    text = body.get("Query")
    if not isinstance(text, str):
        raise BadRequestError("Query must be a string of RQL, such as \"from 'Users' where Name = $p0\".")
    parameters = body.get("QueryParameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise BadRequestError("QueryParameters must be a JSON object mapping names (without '$') to values.")
    start = _paging_value(body, "Start") or 0
    page_size = _paging_value(body, "PageSize")
    query = rql.parse(text)

    stored = await documents.scan(db, query.collection)
    result = query.run((render(d) for d in stored), parameters, start, page_size)

    includes: dict[str, Any] = {}
    if query.includes:
        # A referenced value that could never be an id is not an include; it must not fail the whole query.
        wanted = [i for i in referenced_by_all(result.documents, query.includes) if is_document_id(i)]
        if wanted:
            for doc in await documents.get(db, wanted):
                if doc is not None:
                    includes[doc.id] = render(doc)
    now = clock.wire_date(clock.now())
    return json_response(
        {
            "Results": result.results,
            "Includes": includes,
            "IncludedPaths": list(query.includes) or None,
            "IsStale": False,
            "IndexName": _index_name(query),
            "IndexTimestamp": now,
            "LastQueryTime": now,
            "TotalResults": result.total,
            "LongTotalResults": result.total,
            # RavenDB's SkippedResults counts duplicates a distinct query dropped; Roost has no distinct.
            "SkippedResults": 0,
            "DurationInMs": int((time.monotonic() - started) * 1000),
            "ResultEtag": _result_etag(result.documents, result.total),
            "NodeTag": SERVER_TAG,
        }
    )
