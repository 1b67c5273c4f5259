"""BENCH ONLY (issue 7, figure 4): the document GET with identity and authorization skipped, to price them.

Installed only when ``Settings.bench_unauthenticated_route`` is on (off by default; ``roost serve
--Bench.UnauthenticatedRoute=true``); it is not in ``ROUTE_TABLES``. It answers exactly what
``GET /databases/{db}/docs?id=`` answers, through the same code, minus the security middleware's identify and
authorize steps. Never turn it on for a server that holds real data: anyone who passes TLS can read documents.
"""

from __future__ import annotations

from aiohttp import web

from roost.http.routes.documents import get_docs
from roost.http.routing import RouteTable
from roost.types import Level

routes = RouteTable()


@routes.get("/bench/bare/databases/{db}/docs", level=Level.UNAUTHENTICATED)
async def bare_get_docs(request: web.Request) -> web.StreamResponse:
    return await get_docs(request)
