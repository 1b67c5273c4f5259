"""Create, delete, list databases and read a database record (RavenDB's routes and shapes)."""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from roost.documents.store import SERVER_TAG
from roost.errors import BadRequestError, NotFoundError
from roost.http.body import SMALL_BODY, json_response, query_bool, query_int, read_json
from roost.http.headers import NO_STORE
from roost.http.middleware import SERVICES, identity_of
from roost.http.routing import RouteTable
from roost.names import database_name
from roost.types import Level

routes = RouteTable()

# RavenDB answers cluster writes with the Raft index that applied them; a single node only needs it to increase.
_raft_index = itertools.count(1)


def _record(name: str, database_id: str, etag: int) -> dict[str, Any]:
    return {
        "DatabaseName": name,
        "Disabled": False,
        "Encrypted": False,
        "Etag": etag,
        "DatabaseState": "Normal",
        "Settings": {},
        "Topology": {
            "Members": [SERVER_TAG],
            "Promotables": [],
            "Rehabs": [],
            "ReplicationFactor": 1,
            "DynamicNodesDistribution": False,
            "DatabaseTopologyIdBase64": database_id,
            "PriorityOrder": [],
        },
    }


@routes.put("/admin/databases", level=Level.OPERATOR)
async def create_database(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, required=False, limit=SMALL_BODY)
    if body is not None and not isinstance(body, dict):
        raise BadRequestError("The database record must be a JSON object.")
    name = request.query.get("name") or (body or {}).get("DatabaseName")
    name = database_name(name)
    if body and body.get("DatabaseName") not in (None, name):
        raise BadRequestError(
            f"The name in the query ('{name}') and in the record ('{body.get('DatabaseName')}') differ."
        )
    row = await request.app[SERVICES].databases.create(name, actor=identity_of(request))
    return json_response({"RaftCommandIndex": next(_raft_index), "Name": row.name, "NodesAddedTo": [SERVER_TAG]},
                         status=201)


@routes.delete("/admin/databases", level=Level.OPERATOR)
async def delete_databases(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, required=False, limit=SMALL_BODY)
    names: Any = None
    if isinstance(body, dict):
        names = body.get("DatabaseNames")
    elif body is not None:
        raise BadRequestError("The body must be a JSON object with DatabaseNames.")
    if names is None and request.query.get("name"):
        names = request.query.getall("name")
    if not isinstance(names, list) or not names:
        raise BadRequestError("DatabaseNames is required: a non-empty list of database names.")
    checked = [database_name(n) for n in names]
    documents = request.app[SERVICES].documents
    missing = [n for n in checked if not await documents.exists(n)]
    if missing:
        raise NotFoundError(f"Database '{missing[0]}' does not exist; nothing was deleted.")
    for name in checked:
        await request.app[SERVICES].databases.delete(name, actor=identity_of(request))
    return json_response({"RaftCommandIndex": next(_raft_index), "PendingDeletes": []})


@routes.get("/databases", level=Level.VALID_USER)
async def list_databases(request: web.Request) -> web.StreamResponse:
    identity = identity_of(request)
    start = query_int(request, "start", 0)
    page_size = query_int(request, "pageSize", 1 << 30, 1)
    rows = await request.app[SERVICES].documents.list_databases()
    visible = [r for r in rows if identity.access_to(r.name) is not None]
    page = visible[start : start + page_size]
    if query_bool(request, "namesOnly"):
        return json_response({"Databases": [r.name for r in page]})
    return json_response({"Databases": [
        {"Name": r.name, "Disabled": False, "IsEncrypted": False, "Access": identity.access_to(r.name),
         "CreatedAt": r.created}
        for r in page
    ]})


@routes.get("/admin/databases", level=Level.OPERATOR)
async def get_database_record(request: web.Request) -> web.StreamResponse:
    name = database_name(request.query.get("name"))
    row = await request.app[SERVICES].documents.get_database(name)
    if row is None:
        raise NotFoundError(f"Database '{name}' does not exist.")
    count = await request.app[SERVICES].documents.count(name)
    return json_response(_record(row.name, row.database_id, count))


@routes.get("/admin/databases/access", level=Level.OPERATOR)
async def database_access(request: web.Request) -> web.StreamResponse:
    """Every certificate that reaches the database ``name``, with its access and why (clearance, permission or
    configuration): the Studio's "Who has access"."""
    services = request.app[SERVICES]
    name = database_name(request.query.get("name"))
    row = await services.documents.get_database(name)
    if row is None:
        raise NotFoundError(f"Database '{name}' does not exist.")
    return json_response({"Database": row.name, "Certificates": services.certificates.database_access(row.name)},
                         headers=NO_STORE)
