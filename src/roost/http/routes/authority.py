"""Roost's internal CA certificate as PEM: what clients verify the server with (``roost-ca.crt``).

The client package carries the CA only inside its ``.pfx`` chain (one ``.crt`` per package, as RavenDB's), so this
is where a script or the Studio gets it as a file. It is public, but the route still asks for a valid client
certificate like every other non-Studio route: nobody without one learns anything from this server.
"""

from __future__ import annotations

from aiohttp import web

from roost.errors import NotFoundError
from roost.http.headers import NO_STORE
from roost.http.middleware import SERVICES
from roost.http.routing import RouteTable
from roost.types import Level

routes = RouteTable()

CA_FILE_NAME = "roost-ca.crt"


@routes.get("/certificates/ca", level=Level.VALID_USER)
async def ca_certificate(request: web.Request) -> web.StreamResponse:
    authority = request.app[SERVICES].authority
    if authority is None:
        raise NotFoundError("This server has no internal CA: it runs without TLS (unsecured mode).")
    return web.Response(body=authority.certificate_pem(), content_type="application/x-pem-file", headers={
        "Content-Disposition": f'attachment; filename="{CA_FILE_NAME}"', **NO_STORE})
