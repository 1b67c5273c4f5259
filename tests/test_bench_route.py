"""The bench-only bare route (issue 7, figure 4) exists only when its setting is on."""

from __future__ import annotations

from types import SimpleNamespace

from roost.http.app import build_app
from roost.settings import Settings


def _paths(on: bool) -> set[str]:
    server = SimpleNamespace(settings=Settings(bench_unauthenticated_route=on))
    app = build_app(server)  # type: ignore[arg-type]
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def test_the_bare_route_is_absent_by_default() -> None:
    assert Settings().bench_unauthenticated_route is False
    assert not any(p.startswith("/bench/") for p in _paths(False))


def test_the_bare_route_is_installed_only_when_asked() -> None:
    assert "/bench/bare/databases/{db}/docs" in _paths(True)
