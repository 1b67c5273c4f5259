"""Build the aiohttp application for a Server."""

from __future__ import annotations

from aiohttp import web

from roost.http.middleware import SERVER, security_middleware
from roost.http.routes import certificates, databases, documents, studio
from roost.http.routing import RouteTable, install
from roost.server import Server

ROUTE_TABLES: list[RouteTable] = [certificates.routes, databases.routes, documents.routes, studio.routes]


def build_app(server: Server) -> web.Application:
    app = web.Application(middlewares=[security_middleware], client_max_size=server.settings.max_body_bytes)
    app[SERVER] = server
    install(app, ROUTE_TABLES)
    return app
