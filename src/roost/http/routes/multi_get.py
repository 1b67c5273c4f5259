"""``POST /databases/{db}/multi_get``: the client's lazy operations, several reads in one round trip.

Each inner request is answered by this database's own read routes only (GET routes of level DatabaseRead, and the
lazy query ``POST /queries``), after the same authorization a direct request gets: a path that names another
database, a write route or anything outside this database is refused inside the answer, never dispatched.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from yarl import URL

from roost.errors import AuthorizationError, BadRequestError, RoostError
from roost.http import errors
from roost.http.body import json_response, read_object
from roost.http.middleware import IDENTITY, SERVICES, identity_of
from roost.http.routes import queries
from roost.http.routing import LEVELS, RouteTable
from roost.security import authz
from roost.types import Level

routes = RouteTable()

MAX_REQUESTS = 1024
# Headers of an inner request that reach its route: only what the read routes look at.
_PASSED_HEADERS = ("If-None-Match",)


def _inner_url(db: str, raw: dict[str, Any], index: int) -> URL:
    path, query = raw.get("Url"), raw.get("Query") or ""
    if not isinstance(path, str) or not isinstance(query, str):
        raise BadRequestError(f"Request #{index}: Url and Query must be strings.")
    prefix = f"/databases/{db}/"
    if not path.casefold().startswith(prefix.casefold()) or "?" in path or "#" in path or "\\" in path:
        raise BadRequestError(f"Request #{index}: Url must be a path under {prefix}; multi_get reads one database.")
    url = URL(path + ("" if not query or query.startswith("?") else "?") + query, encoded=True)
    if url.path != path or any(part in ("", ".", "..") for part in url.path.split("/")[1:]):
        raise BadRequestError(f"Request #{index}: Url must be a plain path, without '.', '..' or '//'.")
    return url


async def _dispatch(request: web.Request, db: str, raw: Any, index: int) -> web.Response:
    if not isinstance(raw, dict):
        raise BadRequestError(f"Request #{index} must be a JSON object.")
    method = (raw.get("Method") or "GET").upper() if isinstance(raw.get("Method") or "GET", str) else ""
    url = _inner_url(db, raw, index)
    headers = raw.get("Headers") or {}
    if not isinstance(headers, dict):
        raise BadRequestError(f"Request #{index}: Headers must be a JSON object.")
    passed = {name: str(value) for name, value in headers.items()
              if isinstance(name, str) and name.title() in _PASSED_HEADERS and isinstance(value, str | int)}
    if method == "POST" and url.path.casefold() == f"/databases/{db}/queries".casefold():
        content = raw.get("Content")
        if not isinstance(content, dict):
            raise BadRequestError(f"Request #{index}: a lazy query needs its Content, a JSON object.")
        return await queries.answer_query(request, db, content)
    if method != "GET":
        raise BadRequestError(f"Request #{index}: multi_get answers GET requests and lazy queries, not {method[:10]}.")
    inner = request.clone(method="GET", rel_url=url, headers=passed)
    match = await request.app.router.resolve(inner)
    level = request.app[LEVELS].get(match.handler) if match.http_exception is None else None
    inner_db = match.get("db")
    if level is None or inner_db is None or inner_db.casefold() != db.casefold():
        raise BadRequestError(f"Request #{index}: there is no read route at {url.path[:200]} in database {db}.")
    if level is not Level.DATABASE_READ:
        raise AuthorizationError(f"Request #{index}: {url.path[:200]} is not a read; multi_get only reads.")
    # The same decision the middleware makes for a direct request (the outer one passed it for Read on db).
    refusal = authz.refusal(level, identity_of(request), inner_db)
    if refusal is not None:
        raise refusal
    match.add_app(request.app)
    match.freeze()
    inner._match_info = match  # what aiohttp's own dispatch sets before it calls a handler
    inner[IDENTITY] = identity_of(request)
    response = await match.handler(inner)
    if not isinstance(response, web.Response):
        raise BadRequestError(f"Request #{index}: {url.path[:200]} streams its answer; request it directly.")
    return response


def _entry(response: web.Response) -> dict[str, Any]:
    body = response.body
    result = json.loads(bytes(body)) if isinstance(body, bytes | bytearray) and body else None
    headers = {k: v for k, v in response.headers.items() if k.casefold() == "etag"}
    return {"Result": result, "StatusCode": response.status, "Headers": headers}


@routes.post("/databases/{db}/multi_get", level=Level.DATABASE_READ)
async def multi_get(request: web.Request) -> web.StreamResponse:
    db = request.match_info["db"]
    await request.app[SERVICES].documents.ensure_exists(db)
    body = await read_object(request)
    inner = body.get("Requests")
    if not isinstance(inner, list) or len(inner) > MAX_REQUESTS:
        raise BadRequestError(f"Requests must be a list of at most {MAX_REQUESTS} requests.")
    results: list[dict[str, Any]] = []
    for index, raw in enumerate(inner):
        try:
            response = await _dispatch(request, db, raw, index)
        except RoostError as error:  # answered inside the list, as RavenDB does: the others still count
            response = errors.render(request, error)
        results.append(_entry(response))
    return json_response({"Results": results})
