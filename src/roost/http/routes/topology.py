"""Topology and build version: the handshake every RavenDB client makes before its first real request.

Every node reports the live nodes of its cluster (roost.cluster.nodes), each with the URL it printed at start-up
(``Server.url``: ``https://localhost:PORT`` for the generated certificate, or PublicServerUrl), because the clients
switch to the reported URLs for every later request, verify the certificate against their host names and fail over
from one to the next.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from roost import RAVEN_SERVER_VERSION, __version__
from roost.http.body import json_response
from roost.http.headers import NO_STORE
from roost.http.middleware import SERVICES, identity_of
from roost.http.routing import RouteTable
from roost.names import database_name
from roost.security import authz
from roost.types import Level

routes = RouteTable()

# Stable for the life of the process: clients use it only to tell clusters apart.
_TOPOLOGY_ID = str(uuid.uuid4())


@routes.get("/topology", level=Level.VALID_USER)
async def database_topology(request: web.Request) -> web.StreamResponse:
    """``GET /topology?name={db}``: the live nodes serving a database (every node serves every database), this
    node first.

    A missing database is RavenDB's 503 with ``Database-Missing``, which the clients turn into
    DatabaseDoesNotExistException. A caller without access to the database gets the refusal the database's
    own routes give, before the existence check: the answer must not tell it whether the database exists.
    """
    services = request.app[SERVICES]
    name = request.query.get("name")
    database: str | None = None
    if name:
        database = database_name(name)
        if (refused := authz.refusal(Level.DATABASE_READ, identity_of(request), database)) is not None:
            raise refused
        await services.documents.ensure_exists(database)
    nodes = await services.cluster.live()
    return json_response({
        "Nodes": [{"Url": n.url, "ClusterTag": n.tag, "ServerRole": "Member", "Database": database} for n in nodes],
        "Etag": await services.cluster.version(),
    })


@routes.get("/cluster/topology", level=Level.VALID_USER)
async def cluster_topology(request: web.Request) -> web.StreamResponse:
    """The cluster view the client's server-wide executor needs: every key here is required by 7.2.7. Members are
    the live nodes; AllNodes every registered one (a stopped node stays a member until removed)."""
    cluster = request.app[SERVICES].cluster
    live = await cluster.live()
    registered = {n.tag: n.url for n in await cluster.all()}
    members = {n.tag: n.url for n in live}
    etag = await cluster.version()
    leader = min(members, key=lambda t: (len(t), t))
    return json_response(
        {
            "Leader": leader,
            "NodeTag": cluster.tag,
            "CurrentState": "Leader" if leader == cluster.tag else "Follower",
            "Etag": etag,
            "Status": {},
            "Topology": {
                "TopologyId": _TOPOLOGY_ID,
                "AllNodes": {**registered, **members},
                "Members": members,
                "Promotables": {},
                "Watchers": {},
                "LastNodeId": max([*registered, *members], key=lambda t: (len(t), t)),
                "Etag": etag,
            },
        }
    )


@routes.delete("/admin/cluster/node", level=Level.CLUSTER_ADMIN)
async def remove_node(request: web.Request) -> web.StreamResponse:
    """RavenDB's ``DELETE /admin/cluster/node?nodeTag=B``: the node leaves the cluster and its server certificate is
    revoked on every node (``roost cluster remove-node B``)."""
    removed = await request.app[SERVICES].cluster.remove(identity_of(request), request.query.get("nodeTag"))
    return json_response(removed, headers=NO_STORE)


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
