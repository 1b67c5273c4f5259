"""What clients and tools ask a database at start: ``/stats``, ``/collections/stats`` and ``/configuration/client``,
in RavenDB's shapes (the Python client's parsers need ``SizeOnDisk`` and the collection keys; the others are read
when present)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from roost.http.body import json_response
from roost.http.middleware import SERVICES
from roost.http.routing import RouteTable
from roost.types import Level

routes = RouteTable()


def _size(size_in_bytes: int) -> dict[str, Any]:
    return {"SizeInBytes": size_in_bytes, "HumaneSize": f"{size_in_bytes} Bytes"}


@routes.get("/databases/{db}/stats", level=Level.DATABASE_READ)
async def database_stats(request: web.Request) -> web.StreamResponse:
    documents = request.app[SERVICES].documents
    row, last_etag, collections = await documents.statistics(request.match_info["db"])
    attachments, unique_attachments, counters = await documents.attachment_and_counter_counts(row.name)
    return json_response({
        "LastDocEtag": last_etag,
        "LastDatabaseEtag": last_etag,
        "CountOfIndexes": 0,  # Roost has no indexes: queries read the collection (docs/ravendb-clients.md)
        "CountOfDocuments": sum(collections.values()),
        "CountOfRevisionDocuments": 0,
        "CountOfDocumentsConflicts": 0,
        "CountOfTombstones": 0,
        "CountOfConflicts": 0,
        "CountOfAttachments": attachments,
        "CountOfUniqueAttachments": unique_attachments,
        "CountOfCounterEntries": counters,
        "CountOfTimeSeriesSegments": 0,
        "Indexes": [],
        "DatabaseChangeVector": f"A:{last_etag}-{row.database_id}" if last_etag else "",
        "DatabaseId": row.database_id,
        "Is64Bit": True,
        "Pager": "Roost.Storage",
        "LastIndexingTime": None,
        # The databases of a node share one store: no per-database size to report, so none is claimed.
        "SizeOnDisk": _size(0),
        "TempBuffersSizeOnDisk": _size(0),
        "NumberOfTransactionMergerQueueOperations": 0,
    })


@routes.get("/databases/{db}/collections/stats", level=Level.DATABASE_READ)
async def collection_stats(request: web.Request) -> web.StreamResponse:
    _, _, collections = await request.app[SERVICES].documents.statistics(request.match_info["db"])
    return json_response({"CountOfDocuments": sum(collections.values()), "CountOfConflicts": 0,
                          "Collections": collections})


@routes.get("/databases/{db}/configuration/client", level=Level.DATABASE_READ)
async def client_configuration(request: web.Request) -> web.StreamResponse:
    # RavenDB's answer when no client configuration is set: the client keeps its own conventions.
    await request.app[SERVICES].documents.ensure_exists(request.match_info["db"])
    return json_response({"Etag": 0, "Configuration": None})
