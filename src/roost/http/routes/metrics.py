"""``GET /metrics``: Prometheus text format (prometheus-client), readable by Operator and above.

What the request path pays is http/counters.py (a dict lookup and one or two Counter increments per request).
Everything else (certificate expiries,
registry size) is read from the registry when /metrics is scraped, so it costs nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from roost.http.counters import METRICS, RequestMetrics
from roost.http.headers import NO_STORE
from roost.http.middleware import SERVICES
from roost.http.routing import RouteTable
from roost.services import Services
from roost.types import Level

routes = RouteTable()


class _Collector(Collector):
    def __init__(self, services: Services, metrics: RequestMetrics, app: web.Application) -> None:
        self._services = services
        self._metrics = metrics
        self._app = app

    def collect(self) -> Iterator[Metric]:
        expiry = GaugeMetricFamily(
            "roost_certificate_expiration_timestamp_seconds",
            "When each registered client certificate expires (Unix time), cert-manager's naming.",
            labels=["name", "thumbprint", "clearance"])
        definitions = list(self._services.registry.all())
        for d in definitions:
            expiry.add_metric([d.name, d.thumbprint, d.clearance.value], d.not_after.timestamp())
        yield expiry
        server = GaugeMetricFamily("roost_server_certificate_expiration_timestamp_seconds",
                                   "When the certificate this server presents expires (Unix time).",
                                   labels=["thumbprint"])
        if (current := self._services.server_certificate) is not None:
            server.add_metric([current.info.thumbprint], current.info.not_after.timestamp())
        yield server
        yield GaugeMetricFamily("roost_registered_certificates", "Certificates in the registry.",
                                value=len(definitions))
        refusals = CounterMetricFamily("roost_authorization_refusals", "Requests refused, by Reason.",
                                       labels=["reason"])
        for reason, count in sorted(self._metrics.refusals.items()):
            refusals.add_metric([reason], count)
        yield refusals
        two_factor = CounterMetricFamily("roost_two_factor_refusals", "2FA codes refused, by outcome: wrong (counted "
                                         "towards a lockout), replay (a code used already), locked (during a "
                                         "lockout).", labels=["outcome"])
        for outcome in ("wrong", "replay", "locked"):
            two_factor.add_metric([outcome], self._metrics.two_factor.get(outcome, 0))
        yield two_factor
        requests = CounterMetricFamily("roost_http_requests", "Requests answered, by route level and status.",
                                       labels=["level", "status"])
        for (level, status), count in sorted(self._metrics.by_level(self._app).items()):
            requests.add_metric([level, str(status)], count)
        yield requests


@routes.get("/metrics", level=Level.OPERATOR)
async def metrics(request: web.Request) -> web.StreamResponse:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(request.app[SERVICES], request.app[METRICS], request.app))
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4,
                                                                   **NO_STORE})
