"""Every route declares its authorization level; the table is the one the server installs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiohttp import web

from roost.http.app import ROUTE_TABLES, build_app
from roost.http.openapi import openapi_path
from roost.http.routing import LEVELS, TABLES, RouteTable
from roost.settings import Settings
from roost.types import Level


def built_app(**settings: object) -> web.Application:
    """The application exactly as the server builds it (build_app only reads the server's settings)."""
    return build_app(SimpleNamespace(settings=Settings(**settings)))  # type: ignore[arg-type]


def test_every_route_the_built_app_serves_has_a_level() -> None:
    """Inspects what build_app() made, not install()'s bookkeeping: a route added to the app any other way than
    through a RouteTable (app.router.add_get in build_app, say) has no level and fails here."""
    app = built_app()
    levels = app[LEVELS]
    served = [(r.method, r.resource.canonical if r.resource else "?", r.handler) for r in app.router.routes()]
    assert len(served) > 40
    missing = [f"{method} {path}" for method, path, handler in served if handler not in levels]
    assert not missing, f"routes without a level: {missing}"
    assert all(isinstance(level, Level) for level in levels.values())
    # The product has no benchmark-only route (bench/bare_server.py builds its own app from the product's parts).
    assert not [path for _, path, _ in served if path.startswith("/bench")]
    # Every served route is one the route table declares, with that table's level.
    declared = {(r.method, openapi_path(r.path)): r.level for table in app[TABLES] for r in table.routes}
    for method, path, handler in served:
        key = ("GET" if method == "HEAD" else method, path)
        assert key in declared, f"{method} {path} is served but declared in no RouteTable"
        assert declared[key] is levels[handler], f"{method} {path}"


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
