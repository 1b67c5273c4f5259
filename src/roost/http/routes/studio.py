"""The Studio: static files shipped inside the package, served with a strict Content-Security-Policy."""

from __future__ import annotations

import mimetypes
from importlib import resources
from pathlib import Path

from aiohttp import web

from roost.errors import NotFoundError
from roost.http.headers import STUDIO
from roost.http.routing import RouteTable
from roost.types import Level

routes = RouteTable()

STUDIO_DIR = Path(str(resources.files("roost") / "studio"))
@routes.get("/", level=Level.UNAUTHENTICATED)
async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/studio/")


@routes.get("/studio", level=Level.UNAUTHENTICATED)
async def studio_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/studio/")


@routes.get("/studio/{path:.*}", level=Level.UNAUTHENTICATED)
async def studio_file(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"] or "index.html"
    base = STUDIO_DIR.resolve()
    try:
        target = (base / relative).resolve()
        found = target.is_relative_to(base) and target.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or one it cannot hold: no such file
        found = False
    if not found:
        raise NotFoundError(f"There is no Studio file '{relative[:200]}'.")
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix == ".js":
        content_type = "text/javascript"
    return web.Response(body=target.read_bytes(), content_type=content_type, headers=STUDIO)
