"""Build the aiohttp application for a Server."""

from __future__ import annotations

from typing import Any

from aiohttp import web, web_response

from roost.http import openapi
from roost.http.browsers import BROWSERS, BrowserPolicy
from roost.http.counters import METRICS, RequestMetrics
from roost.http.middleware import PROXY, SERVICES, security_middleware
from roost.http.routes import (
    attachments,
    authority,
    backups,
    bulk_insert,
    certificates,
    changes,
    counters,
    databases,
    documents,
    hilo,
    lifecycle,
    metrics,
    multi_get,
    queries,
    security,
    statistics,
    studio,
    topology,
    twofactor,
)
from roost.http.routing import RouteTable, install
from roost.security.proxy import TrustedProxy
from roost.services import Services

# aiohttp writes "Server: Python/3.11 aiohttp/3.14.5" on every response, its own 400s for malformed requests too:
# an attacker's version lookup for free. Its one default lives in this module global, read at each response.
setattr(web_response, "SERVER_SOFTWARE", "Roost")  # noqa: B010 (the name is not exported for mypy)

ROUTE_TABLES: list[RouteTable] = [
    certificates.routes, databases.routes, documents.routes, studio.routes,
    topology.routes, hilo.routes, queries.routes, twofactor.routes, security.routes, backups.routes,
    authority.routes, openapi.routes, lifecycle.routes, metrics.routes,
    statistics.routes, multi_get.routes, counters.routes, attachments.routes,
    bulk_insert.routes, changes.routes,
]


def build_app(services: Services, *, middleware: Any = security_middleware) -> web.Application:
    """The product's app. ``middleware`` is the request middleware: the product's always; the benchmark's figure 4
    passes the same middleware around a security path that does nothing (see roost.http.middleware)."""
    app = web.Application(middlewares=[middleware], client_max_size=services.settings.max_body_bytes)
    app[SERVICES] = services
    app[BROWSERS] = BrowserPolicy(services.settings)
    settings = services.settings
    app[PROXY] = TrustedProxy(header=settings.trusted_proxy_header, socket_path=settings.trusted_proxy_socket,
                              thumbprints=settings.trusted_proxy_thumbprints)
    app[METRICS] = RequestMetrics()
    install(app, list(ROUTE_TABLES))
    return app
