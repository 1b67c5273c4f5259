"""Counters: ``GET|POST /databases/{db}/counters`` as ``session.counters_for`` and the counter operations use them.

A counter is a 64-bit total on a document, listed by name in its ``@metadata.@counters``; it is written in the
document's transaction, deleted with it and carried in backups with it (``roost.storage.base.COUNTER_VALUES``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from roost.documents.store import counters_command
from roost.errors import BadRequestError
from roost.http.body import json_response, query_bool, read_object
from roost.http.middleware import SERVICES
from roost.http.routing import RouteTable
from roost.types import Level

routes = RouteTable()

MAX_DOCUMENTS = 1024


def counters_detail(doc_id: str, values: tuple[tuple[str, int | None], ...]) -> dict[str, Any]:
    """RavenDB's CountersDetail: one entry per counter asked for, null for one the document does not have."""
    return {"Counters": [
        None if value is None else
        {"DocumentId": doc_id, "CounterName": name, "TotalValue": value, "CounterValues": None}
        for name, value in values
    ]}


@routes.get("/databases/{db}/counters", level=Level.DATABASE_READ)
async def get_counters(request: web.Request) -> web.StreamResponse:
    doc_id = request.query.get("docId")
    if not doc_id:
        raise BadRequestError("The query parameter 'docId' is required: the document whose counters to read.")
    names = request.query.getall("counter", [])
    query_bool(request, "full")  # one node: the per-node values RavenDB would add are the total itself
    found = await request.app[SERVICES].documents.counter_values(request.match_info["db"], doc_id, names)
    if found is None:
        return web.Response(status=404)
    document, values = found
    return json_response(counters_detail(document.id, values))


@routes.post("/databases/{db}/counters", level=Level.DATABASE_WRITE)
async def post_counters(request: web.Request) -> web.StreamResponse:
    """RavenDB's CounterBatch: increments, deletes and gets on several documents, in one transaction."""
    body = await read_object(request)
    documents = body.get("Documents")
    if not isinstance(documents, list) or not documents or len(documents) > MAX_DOCUMENTS:
        raise BadRequestError(f"Documents must be a list of 1 to {MAX_DOCUMENTS} document counter operations.")
    commands = []
    for index, raw in enumerate(documents):
        if not isinstance(raw, dict):
            raise BadRequestError(f"Documents #{index} must be a JSON object.")
        commands.append(counters_command(raw.get("DocumentId"), raw.get("Operations"), f"Documents #{index}"))
    results = await request.app[SERVICES].documents.batch(request.match_info["db"], list(commands))
    merged: list[Any] = []
    for result in results:
        merged += counters_detail(result.id, result.counters)["Counters"]
    return json_response({"Counters": merged})
