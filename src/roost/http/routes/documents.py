"""Documents: load, store, delete, batches (RavenDB's /databases/{db}/docs and /bulk_docs)."""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from roost.documents.includes import referenced_by_all
from roost.documents.store import counters_command, render
from roost.errors import BadRequestError
from roost.http.body import json_response, query_int, read_json, read_object
from roost.http.middleware import SERVICES
from roost.http.routes.counters import counters_detail
from roost.http.routing import RouteTable
from roost.names import document_id, is_document_id
from roost.storage.base import BatchCommand, DeleteCommand, StoredDocument
from roost.types import Level

routes = RouteTable()


def _if_match(request: web.Request) -> str | None:
    value = request.headers.get("If-Match")
    if value is None:
        return None
    return value.strip().strip('"')


def _if_none_match(request: web.Request) -> str | None:
    # The client quotes it on cached GETs ("A:1-x") and sends it bare on HEAD: RavenDB strips the quotes.
    value = request.headers.get("If-None-Match")
    return value.strip().strip('"') if value is not None else None


def _etag(found: list[StoredDocument | None], included: list[StoredDocument | None], single: bool) -> str:
    """RavenDB's ETag for a load: the change vector of one document loaded alone, otherwise a hash over every
    result and include (what the client caches under the URL must change whenever any of them does)."""
    if single and not included and found[0] is not None:
        return found[0].change_vector
    digest = hashlib.sha256()
    for document in [*found, None, *included]:
        digest.update(f"{document.id}\0{document.change_vector}\0".encode() if document else b"\1")
    return "H:" + digest.hexdigest()[:32]


async def _load(request: web.Request, db: str, ids: list[str]) -> web.StreamResponse:
    documents = request.app[SERVICES].documents
    found = await documents.get(db, ids)
    if len(ids) == 1 and found[0] is None:
        return web.Response(status=404)
    includes: dict[str, Any] = {}
    included: list[StoredDocument | None] = []
    paths = request.query.getall("include", [])
    if paths:
        # Values that could never be ids are not includes; they must not turn the load into a 400.
        wanted = [i for i in referenced_by_all([d.body for d in found if d], paths) if is_document_id(i)]
        if wanted:
            included = await documents.get(db, wanted)
            for doc_id, doc in zip(wanted, included, strict=True):
                includes[doc_id] = render(doc) if doc else None
    etag = _etag(found, included, len(ids) == 1)
    headers = {"ETag": f'"{etag}"'}
    if _if_none_match(request) == etag:
        return web.Response(status=304, headers=headers)  # the client answers from its cache: no body
    response = json_response({"Results": [render(d) if d else None for d in found], "Includes": includes})
    response.headers.update(headers)
    return response


@routes.get("/databases/{db}/docs", level=Level.DATABASE_READ)
async def get_docs(request: web.Request) -> web.StreamResponse:
    db = request.match_info["db"]
    ids = request.query.getall("id", [])
    if ids:
        return await _load(request, db, ids)
    documents = request.app[SERVICES].documents
    start = query_int(request, "start", 0)
    size = query_int(request, "pageSize", 25, 1, 1024)
    docs, total = await documents.page(db, start, size)  # RavenDB's order: the most recently changed first
    return json_response({"Results": [render(d) for d in docs], "TotalResults": total})


@routes.post("/databases/{db}/docs", level=Level.DATABASE_READ)
async def post_docs(request: web.Request) -> web.StreamResponse:
    """Load many ids (the client switches to POST when the ids would not fit a URL)."""
    body = await read_object(request)
    ids = body.get("Ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise BadRequestError("Ids must be a non-empty list of document ids.")
    return await _load(request, request.match_info["db"], ids)


@routes.put("/databases/{db}/docs", level=Level.DATABASE_WRITE)
async def put_doc(request: web.Request) -> web.StreamResponse:
    db = request.match_info["db"]
    doc_id = document_id(request.query.get("id"))
    body = await read_json(request)
    result = await request.app[SERVICES].documents.put(db, doc_id, body, _if_match(request))
    return json_response({"Id": result.id, "ChangeVector": result.change_vector}, status=201)


@routes.delete("/databases/{db}/docs", level=Level.DATABASE_WRITE)
async def delete_doc(request: web.Request) -> web.StreamResponse:
    db = request.match_info["db"]
    doc_id = document_id(request.query.get("id"))
    await request.app[SERVICES].documents.delete(db, doc_id, _if_match(request))
    return web.Response(status=204)


@routes.post("/databases/{db}/bulk_docs", level=Level.DATABASE_WRITE)
async def bulk_docs(request: web.Request) -> web.StreamResponse:
    db = request.match_info["db"]
    documents = request.app[SERVICES].documents
    body = await read_object(request)
    raw_commands = body.get("Commands")
    if not isinstance(raw_commands, list):
        raise BadRequestError("Commands must be a list of commands.")
    commands: list[BatchCommand] = []
    for index, raw in enumerate(raw_commands):
        if not isinstance(raw, dict):
            raise BadRequestError(f"Command #{index} must be a JSON object.")
        kind = raw.get("Type")
        change_vector = raw.get("ChangeVector")
        if change_vector is not None and not isinstance(change_vector, str):
            raise BadRequestError(f"Command #{index}: ChangeVector must be a string or null.")
        raw_id = raw.get("Id")
        if kind == "PUT":
            if raw_id is not None and not isinstance(raw_id, str):
                raise BadRequestError(f"Command #{index}: Id must be a string.")
            if "Document" not in raw:
                raise BadRequestError(f"Command #{index}: a PUT needs a Document.")
            commands.append(documents.put_command(raw_id, raw["Document"], change_vector))
        elif kind == "DELETE":
            commands.append(DeleteCommand(document_id(raw_id), change_vector))
        elif kind == "Counters":
            counters = raw.get("Counters")
            if not isinstance(counters, dict):
                raise BadRequestError(f"Command #{index}: a Counters command needs Counters, a JSON object.")
            commands.append(counters_command(raw_id if raw_id is not None else counters.get("DocumentId"),
                                             counters.get("Operations"), f"Command #{index}"))
        else:
            raise BadRequestError(
                f"Command #{index}: Type '{kind}' is not supported by Roost; use PUT, DELETE or Counters."
            )
    results = await documents.batch(db, commands)
    out: list[dict[str, Any]] = []
    for result in results:
        if result.kind == "Counters" and result.document is not None:
            out.append({"Type": "Counters", "Id": result.id, "DocumentChangeVector": result.document.change_vector,
                        "CountersDetail": counters_detail(result.id, tuple(
                            (name, value) for name, value in result.counters if value is not None))})
        elif result.document is not None:
            d = result.document
            entry: dict[str, Any] = {"Type": "PUT", "@id": d.id, "@change-vector": d.change_vector,
                                     "@last-modified": d.last_modified}
            if d.collection:
                entry["@collection"] = d.collection
            out.append(entry)
        else:
            out.append({"Type": "DELETE", "@id": result.id, "Id": result.id, "Deleted": result.deleted})
    return json_response({"Results": out, "TransactionIndex": 0}, status=201)
