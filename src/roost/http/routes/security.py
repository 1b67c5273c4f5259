"""Hosted-product security settings read and changed at run time: the IP allowlist and the audit log."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from roost.errors import BadRequestError, RoostError
from roost.http.body import SMALL_BODY, json_response, query_bool, query_int, read_object
from roost.http.headers import NO_STORE
from roost.http.middleware import SERVICES, identity_of, peer_address
from roost.http.routing import RouteTable
from roost.security.allowlist import AllowList
from roost.types import Level

routes = RouteTable()



class LockoutError(RoostError):
    """The new allowlist leaves out the address making the change; nothing was changed."""

    http_status = 409
    error_type = "System.InvalidOperationException"


def _allowed_ips_body(request: web.Request) -> dict[str, Any]:
    services = request.app[SERVICES]
    return {"AllowedIPs": list(services.allowlist.entries), "Everyone": services.allowlist.everyone,
            "YourAddress": peer_address(request)}


@routes.get("/admin/security/allowed-ips", level=Level.OPERATOR)
async def get_allowed_ips(request: web.Request) -> web.StreamResponse:
    return json_response(_allowed_ips_body(request), headers=NO_STORE)


@routes.put("/admin/security/allowed-ips", level=Level.OPERATOR)
async def put_allowed_ips(request: web.Request) -> web.StreamResponse:
    """Body ``{"AllowedIPs": ["203.0.113.7", "10.0.0.0/8"]}``; ``[]`` means everyone. ``?force=true`` accepts a
    list that shuts out the caller's own address (the connection making the change then gets 403s too)."""
    services = request.app[SERVICES]
    body = await read_object(request, limit=SMALL_BODY)
    unknown = sorted(set(body) - {"AllowedIPs"})
    if unknown:
        raise BadRequestError(f"Unknown field(s): {', '.join(unknown)}. The body is {{\"AllowedIPs\": [...]}}.")
    entries = body.get("AllowedIPs")
    if not isinstance(entries, list):
        raise BadRequestError("AllowedIPs must be a list of IP addresses or CIDR ranges ([] means everyone).")
    candidate = AllowList(entries)  # validates every entry before anything changes
    address = peer_address(request)
    force = query_bool(request, "force")
    if not candidate.allows(address) and not force:
        raise LockoutError(
            f"This change would lock out your own address {address}: it is not in the new list. Add it, or repeat "
            "the request with ?force=true (roost security allowed-ips --force) if that is what you want."
        )
    await services.allowed_addresses.replace(list(candidate.entries), actor=identity_of(request), address=address,
                                             forced=force and not candidate.allows(address))
    return json_response(_allowed_ips_body(request), headers=NO_STORE)


@routes.get("/admin/audit", level=Level.OPERATOR)
async def read_audit(request: web.Request) -> web.StreamResponse:
    """``?since=<Seq>`` entries after that one, oldest first; without it the newest ``limit`` (default 100)."""
    since_text = request.query.get("since")
    since = query_int(request, "since", 0) if since_text not in (None, "") else None
    limit = query_int(request, "limit", 100, 1, 10000)
    services = request.app[SERVICES]
    entries = services.audit.read(since, limit)
    seq, _ = services.audit.head
    return json_response({"Entries": entries, "LastSeq": seq}, headers=NO_STORE)
