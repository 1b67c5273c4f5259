"""Build the aiohttp application for a Server."""

from __future__ import annotations

from aiohttp import web, web_response

from roost.http import openapi
from roost.http.browsers import BROWSERS, BrowserPolicy
from roost.http.middleware import BARE_HANDLERS, SERVER, security_middleware
from roost.http.routes import (
    authority,
    backups,
    certificates,
    databases,
    documents,
    hilo,
    queries,
    security,
    studio,
    topology,
    twofactor,
)
from roost.http.routing import RouteTable, install
from roost.server import Server

# aiohttp writes "Server: Python/3.11 aiohttp/3.14.5" on every response, its own 400s for malformed requests too:
# an attacker's version lookup for free. Its one default lives in this module global, read at each response.
setattr(web_response, "SERVER_SOFTWARE", "Roost")  # noqa: B010 (the name is not exported for mypy)

ROUTE_TABLES: list[RouteTable] = [
    certificates.routes, databases.routes, documents.routes, studio.routes,
    topology.routes, hilo.routes, queries.routes, twofactor.routes, security.routes, backups.routes,
    authority.routes, openapi.routes,
]


def build_app(server: Server) -> web.Application:
    app = web.Application(middlewares=[security_middleware], client_max_size=server.settings.max_body_bytes)
    app[SERVER] = server
    app[BROWSERS] = BrowserPolicy(server.settings)
    tables = list(ROUTE_TABLES)
    app[BARE_HANDLERS] = frozenset()
    if server.settings.bench_unauthenticated_route:
        # BENCH ONLY (issue 7, figure 4): a route without identity/authz, to measure what they cost.
        from roost.http.routes import bench

        tables.append(bench.routes)
        app[BARE_HANDLERS] = frozenset(route.handler for route in bench.routes.routes)
    install(app, tables)
    return app
