"""Topology and build version: the handshake every RavenDB client makes before its first real request.

Roost is a single node, tag ``A``. The URL it reports is the one it prints at start-up
(``Server.url``: ``https://localhost:PORT`` for the generated certificate), because the clients switch
to the reported URL for every later request and verify the certificate against its host name.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from roost import RAVEN_SERVER_VERSION, __version__
from roost.documents.store import SERVER_TAG
from roost.http.body import json_response
from roost.http.middleware import SERVICES, identity_of
from roost.http.routing import RouteTable
from roost.names import database_name
from roost.security import authz
from roost.types import Level

routes = RouteTable()

# A single node never changes its topology; clients only compare etags for equality.
TOPOLOGY_ETAG = 1
# Stable for the life of the process: clients use it only to tell clusters apart.
_TOPOLOGY_ID = str(uuid.uuid4())


def _url(request: web.Request) -> str:
    return request.app[SERVICES].url


@routes.get("/topology", level=Level.VALID_USER)
async def database_topology(request: web.Request) -> web.StreamResponse:
    """``GET /topology?name={db}``: the nodes serving a database (here, this one).

    A missing database is RavenDB's 503 with ``Database-Missing``, which the clients turn into
    DatabaseDoesNotExistException. A caller without access to the database gets the refusal the database's
    own routes give, before the existence check: the answer must not tell it whether the database exists.
    """
    name = request.query.get("name")
    node: dict[str, Any] = {"Url": _url(request), "ClusterTag": SERVER_TAG, "ServerRole": "Member"}
    if name:
        name = database_name(name)
        if (refused := authz.refusal(Level.DATABASE_READ, identity_of(request), name)) is not None:
            raise refused
        await request.app[SERVICES].documents.ensure_exists(name)
        node["Database"] = name
    else:
        node["Database"] = None
    return json_response({"Nodes": [node], "Etag": TOPOLOGY_ETAG})


@routes.get("/cluster/topology", level=Level.VALID_USER)
async def cluster_topology(request: web.Request) -> web.StreamResponse:
    """The cluster view the client's server-wide executor needs: every key here is required by 7.2.7."""
    url = _url(request)
    return json_response(
        {
            "Leader": SERVER_TAG,
            "NodeTag": SERVER_TAG,
            "CurrentState": "Leader",
            "Etag": TOPOLOGY_ETAG,
            "Status": {},
            "Topology": {
                "TopologyId": _TOPOLOGY_ID,
                "AllNodes": {SERVER_TAG: url},
                "Members": {SERVER_TAG: url},
                "Promotables": {},
                "Watchers": {},
                "LastNodeId": SERVER_TAG,
                "Etag": TOPOLOGY_ETAG,
            },
        }
    )


def build_version() -> dict[str, Any]:
    """RavenDB's build shape. The clients compare ``Raven-Server-Version`` as a string, so it stays 7.x."""
    major, minor, *rest = (RAVEN_SERVER_VERSION.split(".") + ["0", "0"])[:3]
    patch = rest[0] if rest else "0"
    return {
        "ProductVersion": f"{major}.{minor}",
        "BuildVersion": int(f"{major}{minor}{int(patch):03d}"),
        "CommitHash": f"roost-{__version__}",
        "FullVersion": f"{RAVEN_SERVER_VERSION}-roost-{__version__}",
    }


@routes.get("/build/version", level=Level.UNAUTHENTICATED)
async def get_build_version(request: web.Request) -> web.StreamResponse:
    # Unauthenticated in RavenDB too: tools probe it to tell which server answers, before choosing a certificate.
    return json_response(build_version())
