"""Every route declares its authorization level; the table is the one the server installs."""

from __future__ import annotations

import pytest
from aiohttp import web

from roost.http.app import ROUTE_TABLES
from roost.http.routing import LEVELS, RouteTable, install
from roost.types import Level


def test_every_installed_route_has_a_level() -> None:
    app = web.Application()
    install(app, ROUTE_TABLES)
    levels = app[LEVELS]
    handlers = {route.handler for route in app.router.routes()}
    missing = [h.__name__ for h in handlers if h not in levels]
    assert not missing, f"routes without a level: {missing}"
    assert all(isinstance(level, Level) for level in levels.values())


def test_admin_routes_are_not_open() -> None:
    """A path under /admin/ is never reachable below Operator, except database-level admin routes."""
    for table in ROUTE_TABLES:
        for route in table.routes:
            if route.path.startswith("/admin/"):
                assert route.level in (Level.OPERATOR, Level.CLUSTER_ADMIN), route
            if "{db}" in route.path:
                assert route.level.is_database_level, route


def test_a_route_without_a_level_is_refused() -> None:
    table = RouteTable()
    with pytest.raises(TypeError):
        table.route("GET", "/x", level="Operator")  # type: ignore[arg-type]


def test_head_answers_like_get_at_the_same_level(server) -> None:  # type: ignore[no-untyped-def]
    ok = server.admin().head(f"{server.url}/certificates/whoami")
    assert ok.status_code == 200 and ok.content == b""
    refused = server.session(None).head(f"{server.url}/certificates/whoami")
    assert refused.status_code == 403
