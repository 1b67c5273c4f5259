"""Routes declare exactly one authorization level when they are registered (tests/test_routes.py checks the built
app: every route it serves has one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from roost.types import Level

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    level: Level


class RouteTable:
    """A list of routes, each with its level. ``install`` adds them to an app and records handler -> level."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, method: str, path: str, *, level: Level) -> Callable[[Handler], Handler]:
        if not isinstance(level, Level):
            raise TypeError(f"{method} {path}: the level must be a roost.types.Level, not {level!r}")

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, path, handler, level))
            return handler

        return register

    def get(self, path: str, *, level: Level) -> Callable[[Handler], Handler]:
        return self.route("GET", path, level=level)

    def post(self, path: str, *, level: Level) -> Callable[[Handler], Handler]:
        return self.route("POST", path, level=level)

    def put(self, path: str, *, level: Level) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, level=level)

    def delete(self, path: str, *, level: Level) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, level=level)


LEVELS = web.AppKey("levels", dict)
TABLES = web.AppKey("route_tables", list)  # what install() added, for the OpenAPI description (openapi.py)


def install(app: web.Application, tables: list[RouteTable]) -> None:
    levels: dict[Handler, Level] = {}
    for table in tables:
        for route in table.routes:
            app.router.add_route(route.method, route.path, route.handler)
            if route.method == "GET":  # HTTP semantics: HEAD is GET without the body, at the same level
                app.router.add_route("HEAD", route.path, route.handler)
            if route.handler in levels and levels[route.handler] is not route.level:
                raise ValueError(f"{route.handler.__name__} is registered with two levels")
            levels[route.handler] = route.level
    app[LEVELS] = levels
    app[TABLES] = list(tables)
